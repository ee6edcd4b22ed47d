"""Turn a :class:`~spine_measure.synthetic.anatomy.SpineGeometry` into a radiograph.

The film is simulated in three steps:

1. **Attenuation map** ``mu`` (dimensionless, ``-log`` of the transmitted fraction) on the
   pixel grid: soft tissue with smooth gradients, lung bases, bowel gas and iliac wings; the
   vertebral bodies (trabecular bone with an anisotropic texture plus a bright cortical rim
   ``mu_c exp(-(d / w)^2)`` of the signed distance ``d`` to the body outline, anti-aliased by
   the partial-volume coverage ``clip(0.5 - d / spacing, 0, 1)``); posterior elements; and
   bone cement from its exact binary mask, much denser than bone.
2. **Detector**: transmitted intensity ``I = exp(-mu)`` blurred by a Gaussian of
   ``blur_mm`` (scintillator spread), then quantum noise in the log domain with standard
   deviation ``noise / sqrt(N0 I)`` (Poisson statistics, ``N0 = 4000`` quanta per pixel),
   lightly correlated.
3. **Processing** as a DX "for presentation" image: log signal ``L = -log I``, unsharp
   masking ``L + 0.7 (L - G_12mm * L)`` (the usual dynamic-range compression), a contrast
   gain, then a fixed linear map to ``bits_stored`` bits (``(P + 0.3) / 5.6``), inverted for
   ``MONOCHROME1``.

Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy import ndimage

from spine_measure.synthetic.anatomy import (
    SpineGeometry,
    _body_frame,
    cement_indicator,
    polyline_distance,
)

__all__ = ["RenderOptions", "Film", "FilmTransform", "render_film", "film_transform"]

_N0 = 4000.0


@dataclass(frozen=True)
class RenderOptions:
    """How to draw a film.

    Parameters
    ----------
    spacing_mm
        Pixel spacing in the patient plane (mm), the same along rows and columns.
    shape
        ``(rows, cols)``; ``None`` crops to the anatomy plus ``margin_mm``.
    facing
        Lateral films: side of the image the patient faces (``left`` or ``right``, mirror).
    rotation_deg
        Rotation of the whole spine in the image plane (counter-clockwise on screen).
    offset_mm
        Shift of the anatomy from the centre of the film when ``shape`` is given.
    noise, contrast, blur_mm
        Quantum-noise multiplier (0 = noiseless), contrast gain, detector blur (Gaussian
        sigma, mm).
    polarity
        ``MONOCHROME2`` (bone bright) or ``MONOCHROME1`` (stored inverted).
    bits_stored
        12 to 16; values use ``0 .. 2**bits_stored - 1``.
    margin_mm
        ``(top, anterior, bottom, posterior)`` margins around the anatomy when cropping (on
        AP films "anterior" is used on both sides).
    seed
        Seed of every random texture of the film.
    """

    spacing_mm: float = 0.2
    shape: tuple[int, int] | None = None
    facing: str = "left"
    rotation_deg: float = 0.0
    offset_mm: tuple[float, float] = (0.0, 0.0)
    noise: float = 1.0
    contrast: float = 1.0
    blur_mm: float = 0.15
    polarity: str = "MONOCHROME2"
    bits_stored: int = 12
    margin_mm: tuple[float, float, float, float] = (14.0, 28.0, 10.0, 8.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.spacing_mm > 0 and np.isfinite(self.spacing_mm)):
            raise ValueError(f'Argument "spacing_mm" must be > 0; got {self.spacing_mm!r}')
        if self.facing not in ("left", "right"):
            raise ValueError(f'Argument "facing" must be "left" or "right"; got {self.facing!r}')
        if self.polarity not in ("MONOCHROME1", "MONOCHROME2"):
            raise ValueError(
                f'Argument "polarity" must be MONOCHROME1 or MONOCHROME2; got {self.polarity!r}'
            )
        if not 8 <= self.bits_stored <= 16:
            raise ValueError(f'Argument "bits_stored" must be 8..16; got {self.bits_stored}')
        if self.shape is not None and (len(self.shape) != 2 or min(self.shape) < 16):
            raise ValueError(f'Argument "shape" must be (rows, cols) >= 16; got {self.shape!r}')


@dataclass(frozen=True)
class FilmTransform:
    """Similarity map between the patient frame (mm) and the film (px).

    ``px = centre_px + M (mm - centre_mm) / spacing`` with ``M`` a rotation, preceded by a
    column mirror for films facing right.
    """

    matrix: np.ndarray
    centre_mm: np.ndarray
    centre_px: np.ndarray
    spacing_mm: float
    shape: tuple[int, int]

    def to_px(self, pts_mm: np.ndarray) -> np.ndarray:
        rel = np.asarray(pts_mm) - self.centre_mm
        return self.centre_px + rel @ self.matrix.T / self.spacing_mm

    def to_mm(self, pts_px: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.matrix)
        return self.centre_mm + (np.asarray(pts_px) - self.centre_px) @ inv.T * self.spacing_mm


@dataclass
class Film:
    """A rendered film: stored pixel values, the exact cement mask and pixel landmarks."""

    pixels: np.ndarray
    cement_mask: np.ndarray
    geometry_px: SpineGeometry
    transform: FilmTransform
    options: RenderOptions

    @property
    def landmarks(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``{level: {name: (row, col)}}`` in pixels of the stored image."""
        return {
            v.level: {k: (float(p[0]), float(p[1])) for k, p in v.landmarks.items()}
            for v in self.geometry_px.vertebrae
        }


def film_transform(geom: SpineGeometry, options: RenderOptions) -> FilmTransform:
    """The patient-frame -> film map for ``geom`` under ``options`` (see :class:`FilmTransform`)."""
    a = np.radians(options.rotation_deg)
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[c, -s], [s, c]])
    mirror = np.diag([1.0, -1.0]) if (geom.view == "lateral" and options.facing == "right") \
        else np.eye(2)
    M = mirror @ rot
    pts = geom.all_points()
    q = pts @ M.T / options.spacing_mm
    lo, hi = q.min(0), q.max(0)
    sp = options.spacing_mm
    top, ant, bot, post = (m / sp for m in options.margin_mm)
    if geom.view == "ap":
        left, right = ant, ant
    elif options.facing == "left":
        left, right = ant, post
    else:
        left, right = post, ant
    if options.shape is None:
        shape = (int(np.ceil(hi[0] - lo[0] + top + bot)),
                 int(np.ceil(hi[1] - lo[1] + left + right)))
        shape = (shape[0] + shape[0] % 2, shape[1] + shape[1] % 2)
        centre_px = np.array([top - lo[0], left - lo[1]])
        return FilmTransform(M, np.zeros(2), centre_px, sp, shape)
    shape = tuple(int(x) for x in options.shape)
    mid = 0.5 * (lo + hi)
    centre_px = 0.5 * (np.array(shape) - 1) - mid + np.asarray(options.offset_mm) / sp
    return FilmTransform(M, np.zeros(2), centre_px, sp, shape)  # type: ignore[arg-type]


def _grid_mm(tf: FilmTransform, r0: int, r1: int, c0: int, c1: int):
    rr, cc = np.mgrid[r0:r1, c0:c1]
    px = np.stack([rr.ravel(), cc.ravel()], 1).astype(float)
    return tf.to_mm(px)


def _bbox(tf: FilmTransform, pts_mm: np.ndarray, pad_mm: float):
    q = tf.to_px(pts_mm)
    pad = pad_mm / tf.spacing_mm
    r0 = max(int(np.floor(q[:, 0].min() - pad)), 0)
    c0 = max(int(np.floor(q[:, 1].min() - pad)), 0)
    r1 = min(int(np.ceil(q[:, 0].max() + pad)) + 1, tf.shape[0])
    c1 = min(int(np.ceil(q[:, 1].max() + pad)) + 1, tf.shape[1])
    return r0, r1, c0, c1


def _norm(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def _smooth_large(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur with a large sigma, done on a decimated copy (fast, deterministic)."""
    f = max(1, int(sigma_px // 6))
    if f == 1:
        return ndimage.gaussian_filter(img, sigma_px, mode="nearest")
    small = img[::f, ::f]
    small = ndimage.gaussian_filter(small, sigma_px / f, mode="nearest")
    zoom = (img.shape[0] / small.shape[0], img.shape[1] / small.shape[1])
    out = ndimage.zoom(small, zoom, order=1, mode="nearest", grid_mode=True)
    return out[: img.shape[0], : img.shape[1]]


def _coverage(tf: FilmTransform, poly_mm: np.ndarray, pad_mm: float, k: int = 4):
    """Partial-volume coverage and inner depth (mm) of a polygon on the pixel grid.

    The polygon is rasterised on a ``k``-times finer grid (pixel (r, c) covers
    ``[r - 0.5, r + 0.5)``), coverage is the fraction of covered sub-pixels and the inner
    depth the Euclidean distance transform of the fine mask, averaged per pixel.
    """
    r0, r1, c0, c1 = _bbox(tf, poly_mm, pad_mm)
    if r1 <= r0 or c1 <= c0:
        return None
    q = tf.to_px(poly_mm)
    fr = (q[:, 0] - r0 + 0.5) * k - 0.5
    fc = (q[:, 1] - c0 + 0.5) * k - 0.5
    h, w = r1 - r0, c1 - c0
    fine = np.zeros((h * k, w * k), dtype=np.uint8)
    sub = 8  # cv2 fixed-point fraction bits
    pts = np.stack([fc, fr], 1) * (1 << sub)
    cv2.fillPoly(fine, [np.rint(pts).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=sub)
    cov = fine.reshape(h, k, w, k).mean((1, 3))
    depth = cv2.distanceTransform(fine, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    depth = depth.reshape(h, k, w, k).mean((1, 3)).astype(np.float64)
    depth *= tf.spacing_mm / k
    return (r0, r1, c0, c1), cov, depth


def _shape_layer(mu, tf, poly, base, rim, rim_w, pad=3.0, texture=None, tex_amp=0.0):
    res = _coverage(tf, poly, pad)
    if res is None:
        return None
    (r0, r1, c0, c1), cov, inner = res
    val = base
    if texture is not None:
        val = base * (1.0 + tex_amp * np.tanh(1.3 * texture[r0:r1, c0:c1]))
    mu[r0:r1, c0:c1] += cov * (val + rim * np.exp(-((inner / rim_w) ** 2)))
    return (r0, r1, c0, c1), cov, inner


def render_film(geom: SpineGeometry, options: RenderOptions | None = None) -> Film:
    """Render ``geom`` as a radiograph.

    Returns a :class:`Film` whose ``pixels`` are ``uint16`` stored values (``0 ..
    2**bits_stored - 1``, inverted when ``polarity == "MONOCHROME1"``), ``cement_mask`` the
    exact boolean cement mask used for drawing, and ``geometry_px`` the geometry in film
    pixels ``(row, col)`` (0, 0 = centre of the top-left pixel).

    Examples
    --------
    >>> from spine_measure.synthetic.anatomy import build_lateral_spine, default_lateral_levels
    >>> g = build_lateral_spine(default_lateral_levels("L2", "L4"))
    >>> f = render_film(g, RenderOptions(spacing_mm=0.5, seed=1))
    >>> f.pixels.dtype.name, bool(f.pixels.max() < 4096)
    ('uint16', True)
    """
    opts = options or RenderOptions()
    tf = film_transform(geom, opts)
    sp = tf.spacing_mm
    rows, cols = tf.shape
    ss = np.random.SeedSequence([int(opts.seed), 0x5EED])
    rng = np.random.default_rng(ss)

    # -- soft tissue (anchored to the patient frame, so it moves with the anatomy)
    all_mm = _grid_mm(tf, 0, rows, 0, cols).reshape(rows, cols, 2)
    y, x = all_mm[..., 0], all_mm[..., 1]
    del all_mm
    verts = geom.vertebrae
    spine_x = float(np.mean([v.outline[:, 1].mean() for v in verts]))
    low = _smooth_large(rng.standard_normal((rows, cols)), 25.0 / sp)
    mu = 1.05 + 0.1 * _norm(low)
    if geom.view == "lateral":
        first = verts[0].landmarks
        # the torso is thinner towards the anterior abdominal wall and the back
        mu -= 0.35 * ((x - (spine_x + 10.0)) / 160.0) ** 2
        # lung bases / diaphragm: less dense cranially, posteriorly lower
        y_dia = float(first["Ps"][0]) + 35.0 + 0.25 * (x - spine_x)
        mu -= 0.35 / (1.0 + np.exp((y - y_dia) / 9.0))
    else:
        mu -= 0.4 * ((x - spine_x) / 170.0) ** 2
        y_dia = float(verts[0].landmarks["SL"][0]) + 30.0 + 0.004 * (x - spine_x) ** 2
        mu -= 0.3 / (1.0 + np.exp((y - y_dia) / 10.0))
        for side in (-1.0, 1.0):  # psoas shadows
            xp = spine_x + side * (28.0 + 0.12 * (y - y_dia))
            mu += 0.06 * np.exp(-(((x - xp) / 14.0) ** 2)) * (y > y_dia)
    # bowel gas: a few smooth dark blobs away from the spine (anterior on lateral films)
    for _ in range(7):
        if geom.view == "lateral":
            cx = spine_x - rng.uniform(45.0, 110.0)
        else:
            cx = spine_x + rng.choice([-1.0, 1.0]) * rng.uniform(30.0, 110.0)
        cy = rng.uniform(y.min() + 60.0, y.max())
        ry, rx = rng.uniform(6.0, 18.0), rng.uniform(8.0, 25.0)
        mu -= rng.uniform(0.08, 0.22) * np.exp(-(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2))
    del y, x

    # -- trabecular texture (image-anchored white noise, anisotropic smoothing)
    a, b = 0.55 / sp, 0.16 / sp
    tex = 0.7 * _norm(ndimage.gaussian_filter(rng.standard_normal((rows, cols)), (a, b))) + \
        0.45 * _norm(ndimage.gaussian_filter(rng.standard_normal((rows, cols)), (b, a)))
    tex = _norm(tex + 0.5 * _norm(ndimage.gaussian_filter(rng.standard_normal((rows, cols)),
                                                          1.2 / sp)))

    # -- posterior elements / pedicles (less dense, blurred: they are off the mid-plane)
    post = np.zeros((rows, cols))
    for v in verts:
        for poly in v.posterior:
            _shape_layer(post, tf, poly, 0.16, 0.22, 1.0, texture=tex, tex_amp=0.25)
    if geom.view == "lateral":
        # iliac wing over the lumbosacral junction and ribs over the thoracic levels
        s1 = [v for v in verts if v.level == "S1"]
        if s1:
            c = s1[0].landmarks["Ps"] + np.array([10.0, 30.0])
            t = np.linspace(0, 2 * np.pi, 80, endpoint=False)[:, None]
            wing = c + np.concatenate([55.0 * np.sin(t), 62.0 * np.cos(t)], 1)
            _shape_layer(post, tf, wing, 0.07, 0.12, 3.0, texture=tex, tex_amp=0.3)
        for v in verts:
            if v.level.startswith("T"):
                ps = v.landmarks["Ps"]
                for dy, dx in ((2.0, 0.0), (7.0, 5.0)):
                    t = np.linspace(0.0, 1.0, 30)[:, None]
                    arc = ps + np.array([dy, 6.0 + dx]) + np.concatenate(
                        [34.0 * t ** 1.6, -75.0 * t + 8.0 * np.sin(np.pi * t)], 1)
                    band = np.concatenate([arc, arc[::-1] + np.array([8.0, 0.5])])
                    _shape_layer(post, tf, band, 0.04, 0.1, 1.2)
    else:
        for v in verts:
            if v.level in ("T11", "T12"):
                for side in (-1.0, 1.0):
                    c0 = 0.5 * (v.landmarks["SL"] + v.landmarks["SR"])
                    t = np.linspace(0.0, 1.0, 30)[:, None]
                    arc = c0 + np.concatenate([8.0 + 30.0 * t ** 1.4,
                                               side * (22.0 + 80.0 * t)], 1)
                    band = np.concatenate([arc, arc[::-1] + np.array([8.0, 0.0])])
                    _shape_layer(post, tf, band, 0.06, 0.12, 1.0)
    mu += ndimage.gaussian_filter(post, 0.9 / sp)
    del post

    # -- vertebral bodies
    for v in verts:
        res = _shape_layer(mu, tf, v.outline, 0.27, 0.36, 0.7, pad=2.0,
                           texture=tex, tex_amp=0.28)
        if res is None:
            continue
        (r0, r1, c0, c1), cov, _inner = res
        if v.level not in geom.sclerosis and v.level != geom.cleft_level:
            continue
        pts = _grid_mm(tf, r0, r1, c0, c1)
        if v.level in geom.sclerosis:
            d = polyline_distance(pts, v.superior_curve).reshape(cov.shape)
            mu[r0:r1, c0:c1] += cov * 0.2 * np.exp(-d / 2.5)
        if v.level == geom.cleft_level:
            o, e_ant, n_caud = _body_frame(v)
            lm = v.landmarks
            depth = float(np.hypot(*(lm["As"] - lm["Ps"])))
            ctr = 0.5 * (0.5 * (lm["Ms"] + lm["Mi"])) + 0.5 * (0.5 * (lm["As"] + lm["Ai"]))
            rel = pts - ctr
            el = (rel @ e_ant / (0.22 * depth)) ** 2 + (rel @ n_caud / 2.2) ** 2
            mu[r0:r1, c0:c1] -= 0.3 * cov * np.clip(1.2 - el, 0, 1).reshape(cov.shape)

    # -- cement, from its exact mask
    cement = np.zeros((rows, cols), dtype=bool)
    if geom.cement is not None and geom.cement_level is not None:
        v = geom.vertebra(geom.cement_level)
        r0, r1, c0, c1 = _bbox(tf, v.outline, 16.0)
        pts = _grid_mm(tf, r0, r1, c0, c1)
        m = cement_indicator(geom, pts).reshape(r1 - r0, c1 - c0)
        cement[r0:r1, c0:c1] = m
        amp = 0.12 if geom.cement.distribution == "spongy" else 0.03
        mu += cement * geom.cement.mu * (1.0 + amp * np.tanh(tex))

    # -- detector: blur in the intensity domain, quantum noise in the log domain
    intensity = np.exp(-mu)
    if opts.blur_mm > 0:
        intensity = ndimage.gaussian_filter(intensity, opts.blur_mm / sp, mode="nearest")
    L = -np.log(np.maximum(intensity, 1e-12))
    if opts.noise > 0:
        wn = rng.standard_normal((rows, cols))
        wn = _norm(ndimage.gaussian_filter(wn, 0.6))
        L = L + opts.noise * wn * np.exp(0.5 * L) / np.sqrt(_N0)

    # -- processing and quantisation
    P = L + 0.7 * (L - _smooth_large(L, 12.0 / sp))
    P = opts.contrast * (P - 1.2) + 1.2
    maxval = 2**opts.bits_stored - 1
    vals = np.clip(np.rint((P + 0.3) / 5.6 * maxval), 0, maxval).astype(np.uint16)
    if opts.polarity == "MONOCHROME1":
        vals = (maxval - vals).astype(np.uint16)
    return Film(vals, cement, geom.transformed(tf.to_px), tf, replace(opts))
