"""Carry one film's landmarks to another film of the same patient (pure functions over arrays).

The method, in three stages (documented for users in ``docs/propagation.md``):

1. **Global similarity** (rotation, isotropic scale, translation) between the whole source
   film and the target film: a coarse search over rotation and scale by normalised
   cross-correlation of gradient magnitudes (FFT, ~1/16 of the film), then SimpleITK's
   ``ImageRegistrationMethod`` with Mattes mutual information on a two-level pyramid of a
   ~1/8 resolution copy.
2. **Per-vertebra similarity**: a patch of the source film around each annotated vertebral
   body (the body's box grown by :attr:`ProposeOptions.patch_margin` of its size on each
   side) is registered to the target, starting from the global fit, at a resolution where
   the body is ~:attr:`ProposeOptions.local_body_px` pixels. Segments move relative to each
   other when kyphosis changes; this stage follows them.
3. **Per-endplate refinement** of the vertebrae whose shape changes between time points
   (flagged ``fractured`` or ``treated`` on the source film, e.g. height restored by the
   procedure): each endplate (its two corners and mid point) moves as one rigid piece. It
   starts where the well-fitted neighbour across its disc carries it (the disc keeps its
   shape while the body's height changes) and where the body's own stage-2 fit puts it; from
   each start a band around the endplate (cortex, disc, a strip of the body; cement masked)
   is registered by rotation and translation, and the start whose band matches best wins
   (the body's fit must match clearly better than the neighbour's). An endplate leaves its
   start only for a clearly better match.

Cement is much brighter than bone and is new on the post-operative film. Every film is
normalised to its 1st-99.5th percentile and clipped there (cement saturates instead of
dominating the metric), the metric is mutual information (which does not assume equal
intensities), and for fractured or treated vertebrae the inner part of the body is masked out
of the metric, so only the cortical outline and its surroundings drive the fit.

Every point proposed carries a **confidence** in [0, 1]: the normalised cross-correlation
(NCC) between the source patch and the target resampled through the fitted transform, over
the pixels that drove the fit; the points of an endplate fitted by stage 3 get the smaller of
the vertebra's and their endplate band's value. A vertebra whose fit fails a check (metric did
not converge, patch outside the film, NCC below :attr:`ProposeOptions.min_confidence`, the
local fit disagreeing with the global one by more than the limits) is **not proposed**; its
:class:`VertebraProposal` holds the reason instead of points.

Coordinates are ``(row, col)`` pixels of each stored image (``docs/conventions.md``). Inside
SimpleITK, physical coordinates are ``(x, y) = (col, row)`` in full-resolution pixels of the
film, whatever the pyramid level.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import SimpleITK as sitk

from spine_measure.landmarks import SpineLandmarks, Vertebra

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "GlobalFit",
    "ProposeOptions",
    "Propagation",
    "VertebraProposal",
    "global_align",
    "normalise_film",
    "propagate_landmarks",
]


# --------------------------------------------------------------------------- options / results


@dataclass(frozen=True, kw_only=True)
class ProposeOptions:
    """Tuning of :func:`propagate_landmarks` (defaults are the evaluated ones).

    Parameters
    ----------
    global_px : int
        Longest side of the copy the global fit runs on.
    local_body_px : float
        Size (pixels) a vertebral body is brought to for its local fit.
    patch_margin : float
        Margin around the body's box, as a fraction of the body's size, on each side.
    body_mask : float or None
        Only the body grown by this factor about its centre drives its fit (its outline and
        the discs next to it, not the neighbouring bodies, which move on their own when
        kyphosis changes); None: the whole patch.
    min_confidence : float
        Vertebra fits with a smaller NCC are reported as failed.
    min_confidence_changed : float
        The same for vertebrae whose shape changes (fractured or treated on the source film):
        a restored or collapsed body matches its old self less well, even when placed
        right (their endplates then get stage 3).
    max_shift : float
        Largest distance between the local and the global prediction of a body's centre, as
        a fraction of the body's size.
    max_rotation_deg, max_scale_change : float
        Largest rotation and relative scale change of the local fit against the global one.
    refine_points : bool
        Run stage 3 on fractured / treated vertebrae.
    min_endplate_confidence : float
        Stage 3: a vertebra one of whose endplates matches worse than this (NCC of its band,
        from the better start) is reported as failed: that endplate is not found.
    endplate_band : float
        Stage 3 fits each endplate on the pixels within this fraction of the body's size of
        it (the endplate's cortex, the disc next to it, a strip of the body).
    max_point_shift : float
        Largest move of an endplate's point by its own fit in stage 3 (from its start), as a
        fraction of the body's size; a larger move keeps the endplate at its start.
    seed : int
        Seed of the metric's sampling: the same inputs and seed give the same output.
    """

    global_px: int = 256
    local_body_px: float = 72.0
    patch_margin: float = 0.35
    min_confidence: float = 0.5
    min_confidence_changed: float = 0.35
    max_shift: float = 0.5
    max_rotation_deg: float = 20.0
    max_scale_change: float = 0.15
    body_mask: float | None = 1.3
    refine_points: bool = True
    endplate_band: float = 0.15
    min_endplate_confidence: float = 0.2
    max_point_shift: float = 0.3
    seed: int = 20240311

    def __post_init__(self) -> None:
        for name in ("global_px", "local_body_px", "patch_margin", "max_shift",
                     "max_rotation_deg", "max_scale_change", "endplate_band", "max_point_shift"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f'Argument "{name}" must be a positive number; got {v!r}')
        if not 0.0 <= self.min_endplate_confidence < 1.0:
            raise ValueError(f'Argument "min_endplate_confidence" must be in [0, 1); '
                             f"got {self.min_endplate_confidence!r}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f'Argument "min_confidence" must be in [0, 1); '
                             f"got {self.min_confidence!r}")


@dataclass(frozen=True)
class GlobalFit:
    """The global similarity from source to target pixels.

    ``target = scale * R(angle) (source - centre) + centre + translation`` in ``(row, col)``,
    with ``R`` the rotation by ``rotation_deg`` (positive = counter-clockwise on screen).
    ``confidence`` is the NCC of the two coarse films after alignment over their overlap;
    ``ok`` is False (with ``reason``) when the fit failed.
    """

    scale: float
    rotation_deg: float
    translation: tuple[float, float]
    centre: tuple[float, float]
    confidence: float
    ok: bool = True
    reason: str | None = None

    def matrix(self) -> np.ndarray:
        """The 2 x 3 affine matrix acting on ``(row, col, 1)``."""
        return _similarity_matrix(self.scale, self.rotation_deg, self.centre, self.translation)

    def apply(self, points_rc: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` source ``(row, col)`` points to the target."""
        m = self.matrix()
        p = np.asarray(points_rc, dtype=float).reshape(-1, 2)
        return p @ m[:, :2].T + m[:, 2]


@dataclass(frozen=True)
class VertebraProposal:
    """The proposal for one vertebra: points with confidences, or the reason it failed.

    ``points`` is empty when the fit failed (``reason`` says why); ``refined`` names the
    points placed by the per-endplate stage (carried by a neighbour or moved by their
    endplate's own fit); ``notes`` says, per endplate, from which fit it was taken and how
    well its band matched (or why it kept the body's fit).
    """

    level: str
    points: Mapping[str, tuple[float, float]]
    confidence: float
    point_confidence: Mapping[str, float]
    reason: str | None = None
    refined: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the vertebra is proposed."""
        return self.reason is None


@dataclass(frozen=True)
class Propagation:
    """Outcome of :func:`propagate_landmarks`: the global fit and one entry per vertebra."""

    global_fit: GlobalFit
    vertebrae: tuple[VertebraProposal, ...]
    source: SpineLandmarks = field(repr=False)

    def proposed(self) -> tuple[VertebraProposal, ...]:
        return tuple(v for v in self.vertebrae if v.ok)

    def failed(self) -> tuple[VertebraProposal, ...]:
        return tuple(v for v in self.vertebrae if not v.ok)

    def landmarks(self) -> SpineLandmarks:
        """The proposed vertebrae as landmarks (flags copied from the source film)."""
        verts = []
        for p in self.proposed():
            src = self.source[p.level]
            verts.append(Vertebra(p.level, src.view, dict(p.points), src.fractured,
                                  src.treated, src.excluded))
        return SpineLandmarks(self.source.view, tuple(verts))


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _one_itk_thread() -> Iterator[None]:
    """Run ITK single-threaded: its metrics and filters sum per thread, so with several threads
    the result depends on how the work was split and the same inputs gave different points.
    On these small pyramid images one thread is also faster (less thread start-up)."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _deterministic(fn: F) -> F:
    """``fn`` run under :func:`_one_itk_thread`: same inputs, same output, bit for bit."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _one_itk_thread():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _similarity_matrix(scale: float, rotation_deg: float, centre: tuple[float, float],
                       translation: tuple[float, float]) -> np.ndarray:
    # rotation counter-clockwise on screen: in (x=col, y=row-down) that is angle -a in the
    # usual maths sense; in (row, col) the matrix below maps (dr, dc).
    a = math.radians(rotation_deg)
    c, s = math.cos(a), math.sin(a)
    # (x, y) = (col, row); sitk's Similarity2D: x' = s R(theta)(x - c) + c + t, with
    # R(theta) = [[cos, -sin], [sin, cos]] in (x, y). Screen-CCW is theta = -a.
    rxy = np.array([[c, s], [-s, c]])
    # convert to (row, col): swap axes
    perm = np.array([[0, 1], [1, 0]])
    rrc = perm @ rxy @ perm
    m = np.zeros((2, 3))
    m[:, :2] = scale * rrc
    cen = np.asarray(centre, dtype=float)
    m[:, 2] = cen + np.asarray(translation, dtype=float) - m[:, :2] @ cen
    return m


def normalise_film(pixels: np.ndarray) -> np.ndarray:
    """Film -> float32 in [0, 1]: 1st and 99.5th percentiles mapped to 0 and 1, clipped.

    Clipping keeps cement (much brighter than bone, and new after the procedure) from
    dominating the registration metric. Bright means dense (pass
    :attr:`~spine_measure.io.radiograph.Radiograph.density`).
    """
    a = np.asarray(pixels)
    if a.ndim != 2 or min(a.shape) < 16:
        raise ValueError(f'Argument "pixels" must be a 2-D film of at least 16 x 16; '
                         f"got shape {a.shape}")
    step = max(1, int(math.sqrt(a.size / 250_000)))
    sample = a[::step, ::step].astype(np.float32)
    lo, hi = np.percentile(sample, (1.0, 99.5))
    if not hi > lo:
        return np.zeros(a.shape, np.float32)
    out = (a.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


_SATURATED = np.float32(0.985)
"""Normalised values at or above this are treated as cement (or burnt-out) and masked."""


def _shrink(img: np.ndarray, f: int) -> np.ndarray:
    """Block mean by an integer factor (the last partial block is dropped)."""
    if f <= 1:
        return img
    import cv2

    rows, cols = img.shape[0] // f, img.shape[1] // f
    return cv2.resize(img[: rows * f, : cols * f], (cols, rows), interpolation=cv2.INTER_AREA)


class _Pyramid:
    """Block-mean copies of one film, made on demand, as SimpleITK images whose physical
    coordinates are full-resolution ``(col, row)`` pixels."""

    def __init__(self, film: np.ndarray) -> None:
        self.film = film
        self._arrays: dict[int, np.ndarray] = {1: film}
        self._images: dict[int, sitk.Image] = {}

    def array(self, f: int) -> np.ndarray:
        if f not in self._arrays:
            base = max(k for k in self._arrays if f % k == 0)
            self._arrays[f] = _shrink(self._arrays[base], f // base)
        return self._arrays[f]

    def unsaturated(self, f: int) -> sitk.Image:
        key = -f
        if key not in self._images:
            m = sitk.GetImageFromArray((self.array(f) < _SATURATED).astype(np.uint8))
            m.CopyInformation(self.image(f))
            self._images[key] = m
        return self._images[key]

    def image(self, f: int) -> sitk.Image:
        if f not in self._images:
            self._images[f] = _to_sitk(self.array(f), f, (0, 0))
        return self._images[f]


def _to_sitk(arr: np.ndarray, f: int, offset_rc: tuple[int, int]) -> sitk.Image:
    """SimpleITK image of ``arr`` (a block of level ``f`` starting at pixel ``offset_rc`` of
    that level), with physical coordinates in full-resolution ``(col, row)`` pixels."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr, dtype=np.float32))
    img.SetSpacing((float(f), float(f)))
    img.SetOrigin(((f - 1) / 2 + f * offset_rc[1], (f - 1) / 2 + f * offset_rc[0]))
    return img


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    if a.size < 16:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 else 0.0


def _gradmag(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    from scipy import ndimage

    g = ndimage.gaussian_gradient_magnitude(img.astype(np.float32), sigma)
    return g


def _transform_from(scale: float, angle_xy: float, centre_xy: tuple[float, float],
                    translation_xy: tuple[float, float]) -> sitk.Similarity2DTransform:
    t = sitk.Similarity2DTransform()
    t.SetCenter(centre_xy)
    t.SetScale(scale)
    t.SetAngle(angle_xy)
    t.SetTranslation(translation_xy)
    return t


def _recentred(t: sitk.Similarity2DTransform, centre_xy: tuple[float, float]
               ) -> sitk.Similarity2DTransform:
    """The same map with another centre."""
    moved = t.TransformPoint(centre_xy)
    return _transform_from(t.GetScale(), t.GetAngle(), centre_xy,
                           (moved[0] - centre_xy[0], moved[1] - centre_xy[1]))


def _registration(*, iterations: int, shrink: list[int], sigmas: list[float],
                  sampling: float, seed: int, weights: list[float] | None = None
                  ) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    if sampling < 1.0:
        reg.SetMetricSamplingStrategy(reg.REGULAR)
        reg.SetMetricSamplingPercentage(sampling, seed)
    else:
        reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    if weights is not None:
        reg.SetOptimizerWeights(weights)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _resample(moving: sitk.Image, like: sitk.Image, t: sitk.Transform) -> np.ndarray:
    out = sitk.Resample(moving, like, t, sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    return sitk.GetArrayViewFromImage(out).copy()


# --------------------------------------------------------------------------- global


def _fft_xcorr(image: np.ndarray, tmpl: np.ndarray) -> np.ndarray:
    """Full cross-correlation ``sum_k image[k + s] tmpl[k]`` for every shift (numpy FFT);
    entry ``[i, j]`` is the shift ``(i - th + 1, j - tw + 1)``."""
    h = image.shape[0] + tmpl.shape[0] - 1
    w = image.shape[1] + tmpl.shape[1] - 1
    fh, fw = _fast_len(h), _fast_len(w)
    fa = np.fft.rfft2(image, (fh, fw))
    fb = np.fft.rfft2(tmpl[::-1, ::-1], (fh, fw))
    return np.fft.irfft2(fa * fb, (fh, fw))[:h, :w]


def _fast_len(n: int) -> int:
    m = 1
    while m < n:
        m *= 2
    for cand in (m, m * 3 // 4, m * 5 // 8):
        if cand >= n:
            m = min(m, cand)
    return m


def _coarse_search(src: np.ndarray, tgt: np.ndarray, f_src: int, f_tgt: int,
                   scale_guess: float) -> tuple[float, float, tuple[float, float], float]:
    """Best (scale, rotation_deg, translation_xy, score) of a grid search over rotation and
    scale; translation by normalised FFT cross-correlation of gradient magnitudes."""
    import cv2

    gs = _gradmag(src, 1.0)
    gt = _gradmag(tgt, 1.0)
    gt = (gt - gt.mean()).astype(np.float64)
    energy_img = gt * gt
    ones_t = np.ones_like(gt)
    best: tuple = (-np.inf,)
    h, w = gs.shape
    cs = ((w - 1) / 2.0, (h - 1) / 2.0)  # (x, y) centre at this level
    rel = f_src / f_tgt  # source pixels of this level in target pixels of this level
    for scale in (scale_guess * k for k in (0.92, 1.0, 1.08)):
        for rot in (-10.0, -5.0, 0.0, 5.0, 10.0):
            s = scale * rel
            m = cv2.getRotationMatrix2D(cs, rot, s)
            ow, oh = int(math.ceil(w * s * 1.2)) + 4, int(math.ceil(h * s * 1.2)) + 4
            m[:, 2] += ((ow - 1) / 2.0 - cs[0], (oh - 1) / 2.0 - cs[1])
            warped = cv2.warpAffine(gs, m, (ow, oh), flags=cv2.INTER_LINEAR, borderValue=0)
            support = cv2.warpAffine(np.ones_like(gs), m, (ow, oh), flags=cv2.INTER_NEAREST,
                                     borderValue=0).astype(np.float64)
            inside = support > 0
            tmpl = np.where(inside, warped - warped[inside].mean(), 0.0)
            tnorm = math.sqrt(float((tmpl * tmpl).sum())) or 1.0
            corr = _fft_xcorr(gt, tmpl)
            energy = _fft_xcorr(energy_img, support)
            overlap = _fft_xcorr(ones_t, support)
            score = corr / (tnorm * np.sqrt(np.maximum(energy, 1e-9)))
            score[overlap < support.sum() / 3] = -np.inf
            iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
            val = float(score[iy, ix])
            if val > best[0]:
                best = (val, scale, rot, (ix - ow + 1, iy - oh + 1), m)
    val, scale, rot, shift, m = best
    cx, cy = cs
    tx_level = m[0, 0] * cx + m[0, 1] * cy + m[0, 2] + shift[0]
    ty_level = m[1, 0] * cx + m[1, 1] * cy + m[1, 2] + shift[1]
    src_c = ((f_src - 1) / 2 + f_src * cx, (f_src - 1) / 2 + f_src * cy)
    tgt_c = ((f_tgt - 1) / 2 + f_tgt * tx_level, (f_tgt - 1) / 2 + f_tgt * ty_level)
    return scale, rot, (tgt_c[0] - src_c[0], tgt_c[1] - src_c[1]), val


def _global(src: _Pyramid, tgt: _Pyramid, scale_guess: float, opts: ProposeOptions
            ) -> tuple[GlobalFit, sitk.Similarity2DTransform]:
    f_src = max(1, int(math.ceil(max(src.film.shape) / opts.global_px)))
    f_tgt = max(1, int(round(f_src / scale_guess)))
    fc_src, fc_tgt = 2 * f_src, 2 * f_tgt
    scale, rot, t_xy, score = _coarse_search(src.array(fc_src), tgt.array(fc_tgt), fc_src,
                                             fc_tgt, scale_guess)
    h, w = src.film.shape
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    # screen CCW rotation by `rot` in cv2 (y down) is angle -rot in sitk's (x, y) convention
    init = _transform_from(scale, math.radians(-rot), centre, t_xy)
    fixed = src.image(f_src)
    moving = tgt.image(f_tgt)
    reg = _registration(iterations=100, shrink=[2, 1], sigmas=[1.0, 0.5], sampling=0.25,
                        seed=opts.seed)
    reg.SetInitialTransform(init, inPlace=False)
    try:
        out = reg.Execute(fixed, moving)
    except RuntimeError as exc:
        fit = GlobalFit(scale, rot, (t_xy[1], t_xy[0]), (centre[1], centre[0]), 0.0, False,
                        f"global registration failed: {str(exc).splitlines()[-1][:120]}")
        return fit, init
    t = sitk.Similarity2DTransform(out.GetNthTransform(0) if hasattr(out, "GetNthTransform")
                                   else out)
    warped = _resample(moving, fixed, t)
    fa = sitk.GetArrayViewFromImage(fixed)
    valid = np.isfinite(warped)
    conf = max(0.0, _ncc(fa, np.nan_to_num(warped), valid)) if valid.mean() > 0.2 else 0.0
    tr = t.GetTranslation()
    fit = GlobalFit(float(t.GetScale()), -math.degrees(t.GetAngle()), (tr[1], tr[0]),
                    (centre[1], centre[0]), conf)
    if valid.mean() <= 0.2:
        fit = GlobalFit(fit.scale, fit.rotation_deg, fit.translation, fit.centre, conf, False,
                        "global alignment leaves less than 20 % of the source film on the "
                        "target film")
    elif conf < 0.2:
        fit = GlobalFit(fit.scale, fit.rotation_deg, fit.translation, fit.centre, conf, False,
                        f"global alignment does not match the films (NCC {conf:.2f} < 0.20)")
    return fit, t


@_deterministic
def global_align(source: np.ndarray, target: np.ndarray, *, scale_guess: float = 1.0,
                 options: ProposeOptions | None = None) -> GlobalFit:
    """Fit the global similarity from ``source`` to ``target`` films (stage 1 only).

    Parameters
    ----------
    source, target : 2-D arrays
        Films, bright = dense (any dtype; normalised by :func:`normalise_film`).
    scale_guess : float
        Expected size ratio target/source (e.g. source spacing / target spacing), used to
        centre the coarse scale search (0.9-1.1 times it).
    """
    opts = options or ProposeOptions()
    fit, _ = _global(_Pyramid(normalise_film(source)), _Pyramid(normalise_film(target)),
                     float(scale_guess), opts)
    return fit


# --------------------------------------------------------------------------- local


def _body_points(v: Vertebra) -> np.ndarray:
    return np.array([v.points[n] for n in v.points], dtype=float)


def _quad(v: Vertebra) -> np.ndarray | None:
    names = ("As", "Ai", "Pi", "Ps") if v.view == "lateral" else ("SL", "IL", "IR", "SR")
    if not all(n in v.points for n in names):
        return None
    return np.array([v.points[n] for n in names], dtype=float)


def _size(v: Vertebra) -> float:
    pts = _body_points(v)
    ext = pts.max(0) - pts.min(0)
    return float(max(8.0, min(max(ext), 2.5 * max(8.0, min(ext)))))


def _crop_box(centre_rc: np.ndarray, half: np.ndarray, f: int, shape: tuple[int, int]
              ) -> tuple[int, int, int, int] | None:
    """``(r0, r1, c0, c1)`` at level ``f`` covering full-res ``centre +- half``; None when
    less than half of it lies in the film."""
    lo = np.floor((centre_rc - half) / f).astype(int)
    hi = np.ceil((centre_rc + half) / f).astype(int) + 1
    clo = np.maximum(lo, 0)
    chi = np.minimum(hi, shape)
    if np.any(chi - clo < 8):
        return None
    if np.prod(chi - clo) < 0.5 * np.prod(hi - lo):
        return None
    return int(clo[0]), int(chi[0]), int(clo[1]), int(chi[1])


def _body_mask(quad: np.ndarray, box: tuple[int, int, int, int], f: int, *,
               outer: float | None, inner: float | None) -> np.ndarray:
    """The pixels of the box that drive a fit: inside the body grown by ``outer`` about its
    centre (its outline and the discs next to it, not the neighbours; None: the whole box),
    and outside the body shrunk by ``inner`` (the inside of a body whose shape or content
    changes, e.g. new cement; None: nothing left out)."""
    from skimage.draw import polygon

    r0, r1, c0, c1 = box
    c = quad.mean(0)
    shape = (r1 - r0, c1 - c0)

    def fill(k: float) -> np.ndarray:
        q = c + k * (quad - c)
        rr, cc = polygon((q[:, 0] - (f - 1) / 2) / f - r0, (q[:, 1] - (f - 1) / 2) / f - c0,
                         shape)
        m = np.zeros(shape, bool)
        m[rr, cc] = True
        return m

    m = fill(outer) if outer is not None else np.ones(shape, bool)
    if inner is not None:
        m &= ~fill(inner)
    return m


def _fit_patch(src: _Pyramid, tgt: _Pyramid, f_src: int, f_tgt: int, box: tuple[int, int, int,
               int], init: sitk.Similarity2DTransform, mask: np.ndarray | None,
               weights: list[float] | None, opts: ProposeOptions,
               start_ncc: list[float] | None = None
               ) -> tuple[sitk.Similarity2DTransform | None, float, str | None]:
    r0, r1, c0, c1 = box
    patch = src.array(f_src)[r0:r1, c0:c1]
    fixed = _to_sitk(patch, f_src, (r0, c0))
    # the moving image is a crop of the target around where the patch lands (the method
    # smooths and shrinks its whole moving image at every level: never the full film)
    corners = [(f_src * c + (f_src - 1) / 2, f_src * r + (f_src - 1) / 2)
               for r in (r0, r1) for c in (c0, c1)]
    landed = np.array([init.TransformPoint(p) for p in corners])  # (x, y) full-res
    span = landed.max(0) - landed.min(0)
    lo = np.floor((landed.min(0) - 0.6 * span) / f_tgt).astype(int)
    hi = np.ceil((landed.max(0) + 0.6 * span) / f_tgt).astype(int) + 1
    tarr = tgt.array(f_tgt)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, (tarr.shape[1], tarr.shape[0]))
    if np.any(hi - lo < 8):
        return None, 0.0, "the patch falls outside the target film"
    tcrop = tarr[lo[1]:hi[1], lo[0]:hi[0]]
    moving = _to_sitk(tcrop, f_tgt, (int(lo[1]), int(lo[0])))
    moving_mask = sitk.GetImageFromArray((tcrop < _SATURATED).astype(np.uint8))
    moving_mask.CopyInformation(moving)
    sampling = 1.0 if patch.size <= 3000 else max(0.25, 3000 / patch.size)
    reg = _registration(iterations=80, shrink=[2, 1], sigmas=[1.0, 0.0], sampling=sampling,
                        seed=opts.seed, weights=weights)
    # saturated (cement-bright) pixels of either film do not drive the fit
    keep = patch < _SATURATED
    if mask is not None:
        keep &= mask
    m = sitk.GetImageFromArray(keep.astype(np.uint8))
    m.CopyInformation(fixed)
    reg.SetMetricFixedMask(m)
    reg.SetMetricMovingMask(moving_mask)
    reg.SetInitialTransform(init, inPlace=False)
    if start_ncc is not None:  # how well the patch matches where the fit starts
        w0 = _resample(moving, fixed, init)
        v0 = np.isfinite(w0) & keep & (np.nan_to_num(w0) < _SATURATED)
        start_ncc.append(max(0.0, _ncc(patch, np.nan_to_num(w0), v0))
                         if v0.sum() >= 0.25 * keep.sum() else 0.0)
    try:
        out = reg.Execute(fixed, moving)
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return None, 0.0, f"registration failed ({msg[:120]})"
    t = sitk.Similarity2DTransform(out.GetNthTransform(0) if hasattr(out, "GetNthTransform")
                                   else out)
    warped = _resample(moving, fixed, t)
    valid = np.isfinite(warped) & keep
    if valid.sum() < 0.5 * keep.sum():
        return None, 0.0, "the patch falls mostly outside the target film"
    valid &= warped < _SATURATED
    if valid.sum() < 0.25 * keep.sum():
        return None, 0.0, "the patch is mostly saturated (cement) on the target film"
    conf = max(0.0, _ncc(patch, np.nan_to_num(warped), valid))
    return t, conf, None


def _xy(p_rc: np.ndarray) -> tuple[float, float]:
    return (float(p_rc[1]), float(p_rc[0]))


def _apply(t: sitk.Transform, pts_rc: np.ndarray) -> np.ndarray:
    out = [t.TransformPoint(_xy(p)) for p in pts_rc]
    return np.array([(y, x) for x, y in out], dtype=float)


def _fail(level: str, reason: str, conf: float = 0.0) -> VertebraProposal:
    return VertebraProposal(level, types.MappingProxyType({}), conf,
                            types.MappingProxyType({}), reason)


def _local_vertebra(v: Vertebra, src: _Pyramid, tgt: _Pyramid, t_glob: sitk.Transform,
                    g_scale: float, shape_change: bool, opts: ProposeOptions,
                    starts: tuple[sitk.Transform, ...] = (), from_global: bool = True
                    ) -> tuple[VertebraProposal, sitk.Transform | None]:
    """Stage 2 for one vertebra, from the global fit (unless ``from_global`` is False: the
    caller has that fit already) and from each of ``starts`` (neighbours' local fits); the
    start whose fit matches best (NCC) is kept."""
    names = list(v.points)
    pts = _body_points(v)
    size = _size(v)
    centre = pts.mean(0)
    f_src = max(1, int(round(size / opts.local_body_px)))
    f_tgt = max(1, int(round(size * g_scale / opts.local_body_px)))
    half = 0.5 * (pts.max(0) - pts.min(0)) + opts.patch_margin * size
    box = _crop_box(centre, half, f_src, src.array(f_src).shape)
    if box is None:
        return _fail(v.level, "the vertebra lies at the edge of the source film"), None
    predicted = _apply(t_glob, centre[None])[0]
    th, tw = tgt.film.shape
    if not (0 <= predicted[0] < th and 0 <= predicted[1] < tw):
        return _fail(v.level, "the global alignment puts this vertebra outside the target "
                              "film"), None
    quad = _quad(v)
    init = _recentred(t_glob, _xy(centre))  # type: ignore[arg-type]
    # the inside of a body whose shape changes is left out, unless both films show it filled
    # with cement (then the cement is the best landmark it has)
    inner = 0.72 if shape_change and not _cement_in_both(v, src, tgt, init, f_src,
                                                          f_tgt) else None
    mask = None if quad is None else _body_mask(quad, box, f_src, outer=opts.body_mask,
                                                inner=inner)
    t, conf, err = (_fit_patch(src, tgt, f_src, f_tgt, box, init, mask, None, opts)
                    if from_global else (None, -1.0, None))
    for other in starts:
        t2, conf2, _ = _fit_patch(src, tgt, f_src, f_tgt, box,
                                  _recentred(other, _xy(centre)),  # type: ignore[arg-type]
                                  mask, None, opts)
        if t2 is not None and conf2 > conf:
            t, conf, err = t2, conf2, None
    if t is None:
        return _fail(v.level, err or "registration failed"), None
    got = _apply(t, centre[None])[0]
    shift = float(np.hypot(*(got - predicted)))
    if shift > opts.max_shift * size * g_scale:
        return _fail(v.level, f"the local fit moved the body {shift:.0f} px from the global "
                              f"alignment (more than {opts.max_shift:.0%} of its size)", conf), None
    rot = abs(math.degrees(t.GetAngle() - init.GetAngle()))
    if rot > opts.max_rotation_deg:
        return _fail(v.level, f"the local fit turned the body {rot:.0f} deg against the global "
                              f"alignment (limit {opts.max_rotation_deg:.0f})", conf), None
    ds = abs(t.GetScale() / init.GetScale() - 1.0)
    if ds > opts.max_scale_change:
        return _fail(v.level, f"the local fit rescaled the body by {ds:.0%} against the global "
                              f"alignment (limit {opts.max_scale_change:.0%})", conf), None
    floor = opts.min_confidence_changed if shape_change else opts.min_confidence
    if conf < floor:
        return _fail(v.level, f"the target does not match the source around this vertebra "
                              f"(confidence {conf:.2f} < {floor:.2f})", conf), None
    return _proposal(v, _apply(t, pts), conf, {n: conf for n in names}, (), (), tgt), t


def _proposal(v: Vertebra, new: np.ndarray, conf: float, point_conf: dict[str, float],
              refined: tuple[str, ...], notes: tuple[str, ...], tgt: _Pyramid
              ) -> VertebraProposal:
    th, tw = tgt.film.shape
    if not (np.all(new[:, 0] >= -0.5) and np.all(new[:, 1] >= -0.5)
            and np.all(new[:, 0] <= th - 0.5) and np.all(new[:, 1] <= tw - 0.5)):
        return _fail(v.level, "a proposed point falls outside the target film", conf)
    points = {n: (round(float(new[i, 0]), 4), round(float(new[i, 1]), 4))
              for i, n in enumerate(v.points)}
    return VertebraProposal(v.level, types.MappingProxyType(points), round(conf, 4),
                            types.MappingProxyType({k: round(c, 4)
                                                    for k, c in point_conf.items()}),
                            None, refined, notes)


def _endplate_mask(ends: np.ndarray, box: tuple[int, int, int, int], f: int, band: float,
                   inside: float, body_centre: np.ndarray, extend: float) -> np.ndarray:
    """Pixels of the box near the endplate segment ``ends[0] -> ends[1]`` (extended by
    ``extend`` of its length at both ends): up to ``band`` (full-res px) from it on the disc's
    side, up to ``inside`` on the body's (whose inside changes: cement, sclerosis)."""
    r0, r1, c0, c1 = box
    rr = (np.arange(r0, r1) * f + (f - 1) / 2)[:, None]
    cc = (np.arange(c0, c1) * f + (f - 1) / 2)[None, :]
    a, b = ends
    d = b - a
    length = float(np.hypot(*d)) or 1.0
    u = d / length
    along = (rr - a[0]) * u[0] + (cc - a[1]) * u[1]
    across = -(rr - a[0]) * u[1] + (cc - a[1]) * u[0]
    if -(body_centre[0] - a[0]) * u[1] + (body_centre[1] - a[1]) * u[0] > 0:
        across = -across  # positive towards the disc
    return ((across <= band) & (across >= -inside) & (along >= -extend * length)
            & (along <= (1 + extend) * length))


def _reshape_vertebra(v: Vertebra, prop: VertebraProposal, t: sitk.Transform, src: _Pyramid,
                      tgt: _Pyramid, g_scale: float, opts: ProposeOptions,
                      carried: Mapping[str, tuple[sitk.Transform, float]]
                      ) -> VertebraProposal:
    """Stage 3 for a vertebra whose shape changes: each endplate (its corners and mid point)
    is fitted as one rigid piece on a band around it (its cortex, the disc next to it, a
    strip of the body), from where the neighbour across the disc carries it and from where
    the body's own fit puts it; the better match wins. Cement (saturated) pixels of either
    film are left out."""
    names = list(v.points)
    pts = _body_points(v)
    size = _size(v)
    conf = prop.confidence
    new = np.array([prop.points[n] for n in names], dtype=float)
    point_conf = dict(prop.point_confidence)
    refined: list[str] = []
    notes: list[str] = []
    f_src = max(1, int(round(size / opts.local_body_px)))
    f_tgt = max(1, int(round(size * g_scale / opts.local_body_px)))
    limit = opts.max_point_shift * size * g_scale
    floor = opts.min_confidence_changed
    band = opts.endplate_band * size
    # the body's inside next to the endplate drives the fit only when both films show the
    # body filled with cement; else it changes (new cement, sclerosis and clefts gone), so
    # only the cortex and the disc count
    inside = band if _cement_in_both(v, src, tgt, t, f_src, f_tgt) else _ENDPLATE_INSIDE * size
    for group in (_SUPERIOR, _INFERIOR):
        idx = [i for i, n in enumerate(names) if n in group]
        ends = _endplate_ends(v, group)
        if not idx or ends is None:
            continue
        gnames = [names[i] for i in idx]
        epts = pts[idx]
        lo = np.minimum(epts.min(0), ends.min(0)) - band
        hi = np.maximum(epts.max(0), ends.max(0)) + band
        box = _crop_box(0.5 * (lo + hi), 0.5 * (hi - lo), f_src, src.array(f_src).shape)
        side = "superior" if group is _SUPERIOR else "inferior"
        if box is None:
            return _fail(v.level, f"its {side} endplate lies at the edge of the source film",
                         conf)
        emask = _endplate_mask(ends, box, f_src, band, inside, pts.mean(0), _ENDPLATE_EXTEND)
        centre = epts.mean(0)
        # candidate starts: the neighbour across the disc (the disc keeps its shape), the
        # body's own fit (the body keeps its shape)
        cands: list[tuple[str, sitk.Transform, float]] = []
        nb = [carried[n] for n in gnames if n in carried]
        if len(nb) == len(gnames):
            cands.append(("neighbour", nb[0][0], nb[0][1]))
        cands.append(("body", t, conf))
        best = None
        err: str | None = None
        for label, start, sconf in cands:
            init = _recentred(start, _xy(centre))  # type: ignore[arg-type]
            at_start: list[float] = []
            tp, pconf, err = _fit_patch(src, tgt, f_src, f_tgt, box, init, emask,
                                        _POINT_WEIGHTS, opts, at_start)
            s0 = at_start[0] if at_start else 0.0
            if tp is None:
                continue
            q = _apply(tp, epts)
            q0 = _apply(start, epts)
            move = float(np.max(np.hypot(*(q - q0).T)))
            if move > limit or pconf < floor or pconf < s0 + _MIN_GAIN:
                # not trusted, or no clearer match than where it starts: kept at the start
                tp, pconf, q = None, s0, q0
            cand = (pconf, label, q, min(sconf, pconf), tp is not None)
            if best is None or cand[0] > best[0] + (_MIN_GAIN if best[1] == "neighbour"
                                                     else 0.0):
                best = cand
        if best is None:  # no fit from any start: the endplate is not placed, not guessed
            return _fail(v.level, f"its {side} endplate could not be fitted "
                                  f"({err or 'registration failed'})", conf)
        pconf, label, q, c, moved = best
        if pconf < opts.min_endplate_confidence:
            return _fail(v.level, f"its {side} endplate is not found on the target film (best "
                                  f"match {pconf:.2f} < {opts.min_endplate_confidence:.2f})",
                         conf)
        for k, i in enumerate(idx):
            new[i] = q[k]
            point_conf[names[i]] = min(point_conf[names[i]], c)
        if label == "neighbour" or moved:
            refined.extend(gnames)
        notes.append(f"{'/'.join(gnames)}: endplate from the {label}'s fit"
                     f"{' refined' if moved else ''} (match {pconf:.2f})")
    return _proposal(v, new, conf, point_conf, tuple(refined), tuple(notes), tgt)


def _cement_in_both(v: Vertebra, src: _Pyramid, tgt: _Pyramid, t: sitk.Transform, f_src: int,
                    f_tgt: int) -> bool:
    """True when the core of the body (its quadrilateral shrunk to 70 %) is at least
    :data:`_CEMENT_FILLED` saturated on the source film and, placed by ``t``, on the target
    film: both films show the vertebra treated (on the synthetic series 34-66 % with cement,
    at most 6 % without)."""
    from skimage.draw import polygon

    quad = _quad(v)
    if quad is None:
        return False
    core = quad.mean(0) + 0.7 * (quad - quad.mean(0))
    for pyr, f, q in ((src, f_src, core), (tgt, f_tgt, _apply(t, core))):
        arr = pyr.array(f)
        rr, cc = polygon((q[:, 0] - (f - 1) / 2) / f, (q[:, 1] - (f - 1) / 2) / f, arr.shape)
        if rr.size < 16 or float(np.mean(arr[rr, cc] >= _SATURATED)) < _CEMENT_FILLED:
            return False
    return True


_CEMENT_FILLED = 0.15
"""Saturated fraction of a body's core from which it counts as filled with cement."""


def _endplate_ends(v: Vertebra, group: tuple[str, ...]) -> np.ndarray | None:
    """The two corners of an endplate, ``(2, 2)``, or None."""
    pair = [n for n in group if n in ("As", "Ps", "Ai", "Pi", "SL", "SR", "IL", "IR")
            and n in v.points]
    if len(pair) != 2:
        return None
    return np.array([v.points[n] for n in pair], dtype=float)


@_deterministic
def propagate_landmarks(source: np.ndarray, landmarks: SpineLandmarks, target: np.ndarray, *,
                        scale_guess: float = 1.0, levels: Iterable[str] | None = None,
                        refine_levels: Iterable[str] | None = None,
                        options: ProposeOptions | None = None) -> Propagation:
    """Propose ``landmarks`` of the ``source`` film on the ``target`` film of the same patient.

    Parameters
    ----------
    source, target : 2-D arrays
        The two films, bright = dense (e.g. ``Radiograph.density``).
    landmarks : SpineLandmarks
        The source film's landmarks (``(row, col)`` pixels of ``source``).
    scale_guess : float
        Expected size ratio target/source in pixels (source spacing / target spacing when
        both are known; 1 otherwise). The search covers 0.9-1.1 times it.
    levels : iterable of str, optional
        Only these vertebrae (default: all).
    refine_levels : iterable of str, optional
        Vertebrae whose endplates get stage 3 (default: those flagged fractured or
        treated on the source).
    options : ProposeOptions

    Returns
    -------
    Propagation
        Never raises for a fit that fails: failed vertebrae carry their reason; when the
        global fit fails every vertebra fails with its reason.

    Examples
    --------
    See ``docs/propagation.md``; the tests recover a known similarity on synthetic films.
    """
    opts = options or ProposeOptions()
    if not isinstance(landmarks, SpineLandmarks):
        raise TypeError(f'Argument "landmarks" must be SpineLandmarks; '
                        f"got {type(landmarks).__name__}")
    if not (math.isfinite(scale_guess) and 0.2 <= scale_guess <= 5.0):
        raise ValueError(f'Argument "scale_guess" must be in [0.2, 5]; got {scale_guess!r}')
    wanted = set(landmarks.levels()) if levels is None else set(levels)
    unknown = wanted - set(landmarks.levels())
    if unknown:
        raise ValueError(f"levels not annotated on the source film: {', '.join(sorted(unknown))}")
    src = _Pyramid(normalise_film(source))
    tgt = _Pyramid(normalise_film(target))
    fit, t_glob = _global(src, tgt, float(scale_guess), opts)
    rset = None if refine_levels is None else set(refine_levels)
    todo = [v for v in landmarks if v.level in wanted]
    if not fit.ok:
        return Propagation(fit, tuple(_fail(v.level, fit.reason or "global alignment failed")
                                      for v in todo), landmarks)
    refine = {v.level: (v.fractured or v.treated) if rset is None else v.level in rset
              for v in todo}
    first = [_local_vertebra(v, src, tgt, t_glob, fit.scale, refine[v.level], opts)
             for v in todo]
    # second pass: a vertebra that matched worse than a neighbour starts again from the
    # neighbour's fit (segments move together; the global fit may be far for this one)
    out: list[VertebraProposal] = []
    fits: list[sitk.Transform | None] = []
    for i, v in enumerate(todo):
        prop, fitted = first[i]
        starts = tuple(first[j][1] for j in (i - 1, i + 1)
                       if 0 <= j < len(todo) and first[j][1] is not None
                       and first[j][0].confidence > max(prop.confidence, 0.0) + 0.05
                       and abs(todo[j].index - v.index) == 1)
        if prop.confidence < _RETRY_BELOW:
            # and from the global fit turned by +-8 deg about the body (kyphosis changes the
            # tilt of whole segments)
            here = _recentred(t_glob, _xy(_body_points(v).mean(0)))  # type: ignore[arg-type]
            starts = starts + tuple(
                _transform_from(here.GetScale(), here.GetAngle() + math.radians(a),
                                tuple(here.GetCenter()),  # type: ignore[arg-type]
                                tuple(here.GetTranslation()))  # type: ignore[arg-type]
                for a in (-8.0, 8.0))
            prop2, fitted2 = _local_vertebra(v, src, tgt, t_glob, fit.scale, refine[v.level],
                                             opts, starts, from_global=False)
            if prop2.ok and (not prop.ok or prop2.confidence > prop.confidence):
                prop, fitted = prop2, fitted2
        out.append(prop)
        fits.append(fitted)
    # third pass: a vertebra whose shape changes gets its endplates fitted on their own,
    # from the neighbours across its discs and from its own fit
    for i, v in enumerate(todo):
        t_i = fits[i]
        if not (refine[v.level] and out[i].ok and opts.refine_points and t_i is not None):
            continue
        carried: dict[str, tuple[sitk.Transform, float]] = {}
        for j, names in ((i - 1, _SUPERIOR), (i + 1, _INFERIOR)):
            if not (0 <= j < len(todo) and abs(todo[j].index - v.index) == 1):
                continue
            nb, t_nb = out[j], fits[j]
            if nb.ok and t_nb is not None and nb.confidence >= _CARRY_ABOVE:
                carried.update({n: (t_nb, nb.confidence) for n in names if n in v.points})
        out[i] = _reshape_vertebra(v, out[i], t_i, src, tgt, fit.scale, opts, carried)
    return Propagation(fit, tuple(out), landmarks)


_SUPERIOR = ("As", "Ms", "Ps", "SL", "SR")
_INFERIOR = ("Ai", "Mi", "Pi", "IL", "IR")
_CARRY_ABOVE = 0.8
_MIN_GAIN = 0.05
"""A carried point moves by its own fit only when that raises its patch's NCC this much."""
"""A neighbour fitted at least this well carries the endplate points next to it."""


_RETRY_BELOW = 0.85
"""A vertebra whose fit has a lower confidence is fitted again from its neighbours' fits."""


_POINT_WEIGHTS = [0.0, 1.0, 1.0, 1.0]
"""Stage 3 fits rotation and translation of an endplate (scale stays the vertebra's)."""

_ENDPLATE_INSIDE = 0.05
"""From a film where the vertebra is not treated yet, stage 3's band reaches this fraction of
the body's size into the body (the cortex of the endplate, not the changing inside)."""

_ENDPLATE_EXTEND = 0.1
"""Stage 3's band around an endplate reaches this fraction of its length beyond each corner."""
