"""Automatic, deterministic segmentation of bone cement (PMMA) in and around a treated body.

Part of the pure core: arrays, landmarks and spacing in, a boolean mask out. The method works
on :attr:`Radiograph.density <spine_measure.io.radiograph.Radiograph.density>` (higher =
denser, MONOCHROME1 already flipped), and uses only *relative* intensities, so neither the
photometric interpretation, the bit depth, a linear rescale nor the display window changes
the mask. Its parameters are physical sizes (mm) converted with the film's spacing (a nominal
scale from the body's size on uncalibrated films, :func:`~spine_measure.cement.frame.
working_spacing`).

Algorithm (``docs/cement.md`` has the reasoning and figures)
------------------------------------------------------------
1. **Search region.** The body frame of the treated vertebra (width axis posterior ->
   anterior, caudal axis) gives a rectangle around the body widened by ``margin_disc_mm``
   into both discs and ``margin_wall_mm`` in front of and behind the body. Pixels outside
   it are never cement. If cement reaches the rectangle's edge the rectangle grows by the
   same margins (at most ``max_grow`` times), so cement partly outside the landmarks' box
   is still followed.
2. **Smoothing.** ``g = G_sigma * density`` with ``sigma = smoothing_mm`` (quantum noise).
3. **Initial split.** Otsu's threshold ``t0`` of ``g`` inside the body polygon shrunk by
   1 mm (so landmark imprecision does not mix in disc or soft tissue; cement and
   bone form the two classes when cement is present); the first estimate is ``g > t0``
   over the whole search region, so leaks outside the body start in it too (a leak over
   soft tissue exceeds ``t0`` whenever the cement contrast is more than twice the bone
   contrast, which the presence test below demands anyway).
4. **Local background** (repeated ``iterations`` times). With ``C`` the current cement mask,
   the background is the normalised convolution of ``g`` over pixels farther than
   ``guard_mm`` from ``C``::

       b = G_bg * (g w) / G_bg * w,   w = 1 outside the guarded cement, 0 inside

   (``bg_sigma_mm``; where the weight is too small the sigma is multiplied by 4, which
   fills large cement lumps from their surroundings). The *excess* ``x = g - b`` removes
   the soft-tissue gradients, the bone / disc difference and the unsharp-mask halos of
   processed DX images.
5. **Cement contrast** ``dc = median(x[C])``; **hysteresis**: cement = connected regions of
   ``x > low_fraction * dc`` that contain a pixel with ``x > high_fraction * dc``.
   ``low_fraction = 0.5`` puts the border at the midpoint of the local step (unbiased under
   symmetric blur); ``high_fraction`` rejects noise. Components smaller than
   ``min_component_mm2`` are dropped with it; after the last iteration holes smaller than
   ``max_hole_mm2`` are filled.
6. **Presence test.** Cement is reported only when ``dc >= min_bone_ratio * db`` and
   ``dc >= min_noise_ratio * sigma_noise`` and the mask covers ``>= min_cement_mm2``, with
   ``db`` the bone-over-surroundings contrast (median background inside the body minus
   median density of the search region outside the body) and ``sigma_noise`` the robust
   (MAD) noise of the smoothed image. Otherwise the result is "no cement found".
7. **Working grid.** On films of at most half ``grid_mm`` (0.3 mm) per pixel, steps 2-6 run
   on blocks of ``f x f`` pixels (``f = floor(grid_mm / spacing)``, :func:`grid_factor`)
   and the border is then placed at full resolution: pixels of blocks surrounded by cement
   are cement, pixels of blocks within one block of the cement are cement where the
   full-resolution excess (over the interpolated block background) exceeds
   ``low_fraction * dc`` (:func:`_segment_on_grid`).

Every step is deterministic (no random numbers, no iteration order dependence), so the same
input gives the same mask; :meth:`SegmentationParams.params_hash` identifies the parameters
for the annotation merge rule (``spine_measure.io.annotation.merge_cement_mask``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from spine_measure.cement.frame import BodyFrame, CementError, body_frame, working_spacing
from spine_measure.landmarks import SpineLandmarks, Vertebra

__all__ = [
    "ALGORITHM_VERSION",
    "CementSegmentation",
    "SegmentationParams",
    "segment_cement",
    "treated_vertebra",
]

ALGORITHM_VERSION = "cement-seg/2"
"""Changes whenever the segmentation code changes its output; part of the parameters hash."""


@dataclass(frozen=True)
class SegmentationParams:
    """Parameters of :func:`segment_cement`; sizes in mm (see the module docstring).

    The defaults were chosen from the physics of the problem and checked on the synthetic
    sample studies and the robustness sweep (``docs/cement.md``, ``docs/cement_robustness.md``).
    """

    margin_disc_mm: float = 8.0
    margin_wall_mm: float = 8.0
    max_grow: int = 2
    smoothing_mm: float = 0.08
    bg_sigma_mm: float = 2.5
    guard_mm: float = 0.8
    iterations: int = 2
    low_fraction: float = 0.5
    high_fraction: float = 0.75
    min_component_mm2: float = 0.4
    max_hole_mm2: float = 0.15
    min_cement_mm2: float = 4.0
    min_bone_ratio: float = 4.0
    min_noise_ratio: float = 6.0
    grid_mm: float = 0.3

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
                raise ValueError(f'Argument "{name}" must be a finite number >= 0; got {value!r}')
        if not 0 < self.low_fraction <= self.high_fraction:
            raise ValueError(f'Arguments "low_fraction" ({self.low_fraction}) and '
                             f'"high_fraction" ({self.high_fraction}) must satisfy '
                             f"0 < low <= high")
        if self.iterations < 1:
            raise ValueError(f'Argument "iterations" must be >= 1; got {self.iterations}')

    def params_hash(self) -> str:
        """``sha256`` (16 hex digits) of the algorithm version and every parameter.

        >>> SegmentationParams().params_hash() == SegmentationParams().params_hash()
        True
        >>> SegmentationParams().params_hash() != SegmentationParams(guard_mm=1).params_hash()
        True
        """
        return _params_hash(self)


@functools.lru_cache(maxsize=64)
def _params_hash(params: SegmentationParams) -> str:
    text = json.dumps({"algorithm": ALGORITHM_VERSION, **asdict(params)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def grid_factor(spacing: tuple[float, float], grid_mm: float) -> int:
    """Integer block size ``f`` that brings a film of ``spacing`` (mm) to a working grid of at
    most ``grid_mm``: ``f = max(1, floor(grid_mm / max(spacing)))`` (1 when ``grid_mm`` is 0).

    >>> grid_factor((0.139, 0.139), 0.3), grid_factor((0.25, 0.25), 0.3)
    (2, 1)
    >>> grid_factor((0.1, 0.1), 0.3), grid_factor((0.15, 0.15), 0.3), grid_factor((0.1, 0.1), 0)
    (3, 2, 1)
    """
    if not grid_mm > 0:
        return 1
    return max(1, int(grid_mm / max(float(spacing[0]), float(spacing[1])) + 1e-9))


def to_grid(points: np.ndarray, r0: int, c0: int, f: int) -> np.ndarray:
    """Pixel points ``(row, col)`` in coordinates of the grid of ``f x f`` blocks whose first
    block starts at pixel ``(r0, c0)`` (block ``(i, j)`` is centred on pixel
    ``(r0 + f i + (f - 1) / 2, c0 + f j + (f - 1) / 2)``).

    >>> to_grid(np.array([[10.5, 4.5]]), 10, 4, 2)
    array([[0., 0.]])
    """
    return (np.asarray(points, dtype=float) - (r0 + (f - 1) / 2, c0 + (f - 1) / 2)) / f


def from_grid(points: np.ndarray, r0: int, c0: int, f: int) -> np.ndarray:
    """The inverse of :func:`to_grid`."""
    return np.asarray(points, dtype=float) * f + (r0 + (f - 1) / 2, c0 + (f - 1) / 2)


def block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Means of the ``f x f`` blocks of ``img`` (float32), the last partial blocks padded by
    repeating the edge; block ``(i, j)`` covers rows ``f i .. f i + f - 1``, so its centre
    is at ``f i + (f - 1) / 2``.

    >>> block_mean(np.arange(16, dtype=float).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    a = np.ascontiguousarray(img, dtype=np.float32)
    if f == 1:
        return a
    h, w = a.shape[:2]
    hp, wp = -(-h // f) * f, -(-w // f) * f
    if (hp, wp) != (h, w):
        a = cv2.copyMakeBorder(a, 0, hp - h, 0, wp - w, cv2.BORDER_REPLICATE)
    return cv2.resize(a, (wp // f, hp // f), interpolation=cv2.INTER_AREA)


def block_expand(mask: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Each pixel of ``mask`` (bool or uint8) repeated into an ``f x f`` block, cut to
    ``shape`` (the inverse of :func:`block_mean`'s grid)."""
    if f == 1:
        return mask[: shape[0], : shape[1]]
    h, w = mask.shape
    src = _u8(mask) if mask.dtype == bool else np.ascontiguousarray(mask)
    big = cv2.resize(src, (w * f, h * f), interpolation=cv2.INTER_NEAREST_EXACT)
    big = big[: shape[0], : shape[1]]
    return big.view(bool) if mask.dtype == bool else big


@dataclass(frozen=True)
class CementSegmentation:
    """Result of :func:`segment_cement` for one treated vertebra.

    Attributes
    ----------
    level : str
    image_shape : (rows, cols)
    roi : (r0, r1, c0, c1)
        The search rectangle's bounding box on the image (half-open).
    roi_mask : ndarray of bool
        The cement inside ``roi`` (shape ``(r1 - r0, c1 - c0)``).
    excess : ndarray of float or None
        Density above the local background on ``roi`` (texture features use it); None for a
        mask that did not come from the image (a reader's edit).
    found : bool
        False: "no cement found" (the presence test of the module docstring failed).
    reason : str or None
        Why ``found`` is False.
    contrast, bone_contrast, noise : float
        ``dc``, ``db`` and ``sigma_noise`` of the module docstring (density units).
    spacing_nominal : bool
        True when the film is uncalibrated and a nominal scale sized the operations.
    grown : int
        How many times the search rectangle grew because cement reached its edge.
    params_hash : str
    """

    level: str
    image_shape: tuple[int, int]
    roi: tuple[int, int, int, int]
    roi_mask: np.ndarray = field(repr=False)
    excess: np.ndarray | None = field(repr=False)
    found: bool
    reason: str | None
    contrast: float
    bone_contrast: float
    noise: float
    spacing_nominal: bool
    grown: int
    params_hash: str

    @property
    def mask(self) -> np.ndarray:
        """The cement mask on the whole image (bool, ``image_shape``)."""
        out = np.zeros(self.image_shape, dtype=bool)
        r0, r1, c0, c1 = self.roi
        out[r0:r1, c0:c1] = self.roi_mask
        return out

    @property
    def area_px(self) -> int:
        """Number of cement pixels."""
        return int(self.roi_mask.sum())


def treated_vertebra(landmarks: SpineLandmarks | None, level: str) -> Vertebra:
    """The vertebra at ``level`` or a :class:`CementError` that names it."""
    v = landmarks.get(level) if landmarks is not None else None
    if v is None:
        raise CementError(f"{level}: treated vertebra has no landmarks on this film; its "
                          f"cement cannot be located")
    return v


def density_reader(density: Any) -> tuple[Callable[[slice, slice], np.ndarray],
                                          tuple[int, int]]:
    """A function reading the density of a region, and the image shape.

    ``density`` is a 2-D array (higher = denser) or a
    :class:`~spine_measure.io.radiograph.Radiograph`, whose
    :meth:`~spine_measure.io.radiograph.Radiograph.density_crop` converts only the regions
    read (a 3000 x 3000 film is then never converted to float whole).
    """
    if hasattr(density, "density_crop"):
        rows, cols = density.shape
        return density.density_crop, (int(rows), int(cols))
    dens = np.asarray(density)
    if dens.ndim != 2:
        raise ValueError(f'Argument "density" must have shape (rows, cols); got {dens.shape}')
    return (lambda rows, cols: dens[rows, cols]), (int(dens.shape[0]), int(dens.shape[1]))


def _roi(frame: BodyFrame, shape: tuple[int, int], m_wall: float, m_disc: float
         ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    box = frame.frame_box_px(m_wall, m_wall, m_disc, m_disc)
    r0 = max(int(np.floor(box[:, 0].min())), 0)
    r1 = min(int(np.ceil(box[:, 0].max())) + 1, shape[0])
    c0 = max(int(np.floor(box[:, 1].min())), 0)
    c1 = min(int(np.ceil(box[:, 1].max())) + 1, shape[1])
    mask = frame.rasterize(box, r0, c0, (r1 - r0, c1 - c0))
    return (r0, r1, c0, c1), mask


def _check_inside(frame: BodyFrame, shape: tuple[int, int]) -> None:
    p = frame.polygon_px
    bad = (p[:, 0] < -0.5) | (p[:, 0] > shape[0] - 0.5) | (p[:, 1] < -0.5) | \
        (p[:, 1] > shape[1] - 0.5)
    if bad.any():
        raise CementError(f"{frame.level}: vertebral body lies outside the image "
                          f"({shape[0]}x{shape[1]} px); its cement mask would fall outside "
                          f"the image")


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE = np.ones((3, 3), np.uint8)


def _u8(mask: np.ndarray) -> np.ndarray:
    """A contiguous uint8 view of a boolean mask (what OpenCV takes)."""
    return np.ascontiguousarray(mask, dtype=bool).view(np.uint8)


def components(mask: np.ndarray, *, connectivity: int = 2, with_sizes: bool = False
               ) -> tuple[Any, ...]:
    """Connected components of ``mask`` (8-connectivity, 4 with ``connectivity=1``), with
    OpenCV: ``(n, labels)`` or ``(n, labels, sizes)``, labels ``1..n`` (0 = background) and
    ``sizes[i]`` the pixel count of component ``i + 1``.

    >>> n, lab, sizes = components(np.array([[1, 0, 1], [0, 1, 0]], bool), with_sizes=True)
    >>> n, sizes.tolist()
    (1, [3])
    """
    m = _u8(mask)
    cn = 8 if connectivity == 2 else 4
    n, lab = cv2.connectedComponents(m, connectivity=cn, ltype=cv2.CV_32S)
    if with_sizes:  # bincount is faster than OpenCV's statistics pass
        return n - 1, lab, np.bincount(lab.ravel(), minlength=n)[1:]
    return n - 1, lab


def drop_small_components(mask: np.ndarray, min_pixels: int, *, connectivity: int = 2
                          ) -> np.ndarray:
    """``mask`` without its connected components of fewer than ``min_pixels`` pixels
    (8-connectivity by default, 4 with ``connectivity=1``).

    >>> m = np.zeros((5, 5), bool); m[0, 0] = True; m[2:5, 2:5] = True
    >>> int(drop_small_components(m, 2).sum())
    9
    """
    if min_pixels <= 1 or not mask.any():
        return mask.copy()
    _, lab, sizes = components(mask, connectivity=connectivity, with_sizes=True)
    small = sizes < min_pixels
    if not small.any():
        return mask.copy()
    keep = np.concatenate(([False], ~small))
    return keep.take(lab)


def hysteresis(x: np.ndarray, low: float, high: float, *, min_pixels: int = 1,
               where: np.ndarray | None = None) -> np.ndarray:
    """Connected regions (4-connectivity) of ``x > low`` that hold a pixel ``> high`` and
    at least ``min_pixels`` pixels; with ``min_pixels=1`` the same as
    :func:`skimage.filters.apply_hysteresis_threshold`, through OpenCV (one labelling).
    ``where``: only these pixels can belong to a region (as if ``x`` were -inf elsewhere).

    >>> hysteresis(np.array([[0, 2, 2, 0, 2], [0, 0, 3, 0, 0]]), 1, 2.5).astype(int)
    array([[0, 1, 1, 0, 0],
           [0, 0, 1, 0, 0]])
    >>> int(hysteresis(np.array([[0, 2, 2, 0, 3], [0, 0, 3, 0, 0]]), 1, 2.5,
    ...                min_pixels=2).sum())
    3
    """
    low_mask = x > low
    if where is not None:
        low_mask &= where
    if not low_mask.any():
        return low_mask
    if min_pixels > 1:
        n, lab, sizes = components(low_mask, connectivity=1, with_sizes=True)
    else:
        n, lab = components(low_mask, connectivity=1)
    keep = np.zeros(n + 1, dtype=bool)
    keep[lab[x > high]] = True   # label 0 (outside the low regions) is cleared below
    keep[0] = False
    if min_pixels > 1:
        keep[1:] &= sizes >= min_pixels
    return keep.take(lab)


def otsu(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold of ``values``: :func:`skimage.filters.threshold_otsu` (its
    criterion, 256 bins over ``[min, max]``) on a histogram counted with ``np.bincount``.

    >>> otsu(np.array([1.0, 1.1, 0.9, 5.0, 5.2, 4.8])) < 4.8
    True
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return lo
    idx = np.clip(((v - lo) / (hi - lo) * nbins).astype(np.intp), 0, nbins - 1)
    edges = np.linspace(lo, hi, nbins + 1)
    return float(threshold_otsu(hist=(np.bincount(idx, minlength=nbins),
                                      (edges[:-1] + edges[1:]) / 2)))


def disc_kernel(radius_mm: float, spacing: tuple[float, float]) -> np.ndarray:
    """Offsets within ``radius_mm`` (physical distance, anisotropic pixels allowed) as a
    uint8 kernel: dilating by it marks exactly the pixels whose Euclidean distance to the
    mask (``ndimage.distance_transform_edt(~mask, sampling=spacing)``) is <= the radius."""
    ny, nx = int(radius_mm // spacing[0]), int(radius_mm // spacing[1])
    dy = np.arange(-ny, ny + 1)[:, None] * spacing[0]
    dx = np.arange(-nx, nx + 1)[None, :] * spacing[1]
    return (dy * dy + dx * dx <= radius_mm * radius_mm + 1e-12).astype(np.uint8)


def within(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float]) -> np.ndarray:
    """Pixels at a physical distance <= ``radius_mm`` from ``mask`` (``mask`` included)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    k = disc_kernel(radius_mm, spacing)
    if k.size == 1:
        return mask.copy()
    return cv2.dilate(_u8(mask), k, borderType=cv2.BORDER_CONSTANT,
                      borderValue=0).view(bool)


def _dilate(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float]) -> np.ndarray:
    """``mask`` dilated by an ellipse of ``radius_mm`` (anisotropic pixels allowed)."""
    ry, rx = int(radius_mm // spacing[0]), int(radius_mm // spacing[1])
    if ry == 0 and rx == 0:
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rx + 1, 2 * ry + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _gauss(img: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    """Gaussian filter (OpenCV, replicated border, +-4 sigma kernel), float32."""
    ky = 2 * int(math.ceil(4 * sigma[0])) + 1
    kx = 2 * int(math.ceil(4 * sigma[1])) + 1
    return cv2.GaussianBlur(np.ascontiguousarray(img, dtype=np.float32), (kx, ky),
                            sigmaX=sigma[1], sigmaY=sigma[0], borderType=cv2.BORDER_REPLICATE)


def _upsample(a: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of a grid of ``f x f`` block values back to ``shape`` (block
    centres sit at ``f i + (f - 1) / 2``; ``INTER_LINEAR`` maps them the same way)."""
    if f == 1:
        return a
    big = cv2.resize(a, (a.shape[1] * f, a.shape[0] * f), interpolation=cv2.INTER_LINEAR)
    return big[: shape[0], : shape[1]]


def _ratio(pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    num, den = pair[..., 0], pair[..., 1]
    return num / np.maximum(den, 1e-12), den


def _norm_conv(img: np.ndarray, w: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    """Normalised convolution ``b = G*(img w) / G*w`` (the local mean of ``img`` over the
    pixels of weight ``w``), widened 4x where ``G*w < 1e-3`` (inside large cement lumps).

    ``b`` is smooth at the scale of ``sigma``, so it is computed on a grid decimated by
    ``f = floor(min(sigma) / 3)`` (block means of ``img w`` and ``w``, their ratio there;
    the 4x wider fill on a grid decimated again) and interpolated back bilinearly; this
    changes ``b`` by far less than the noise and is ~f^2 times faster.
    """
    f = max(1, int(min(sigma) // 3))
    small = block_mean(np.dstack((img * w, w)), f)
    sig = (sigma[0] / f, sigma[1] / f)
    b, den = _ratio(_gauss(small, sig))
    weak = den < 1e-3
    if weak.any():
        f2 = max(1, int(4 * min(sig) // 3))
        b2, den2 = _ratio(_gauss(block_mean(small, f2), (4 * sig[0] / f2, 4 * sig[1] / f2)))
        b2, den2 = _upsample(b2, f2, b.shape), _upsample(den2, f2, b.shape)
        if (den2[weak] < 1e-9).any():  # nothing near at all: the global non-cement median
            b2 = np.where(den2 < 1e-9, np.median(img[w > 0]) if (w > 0).any() else 0.0, b2)
        b = np.where(weak, b2, b)
    return _upsample(b, f, img.shape)


def _sample(values: np.ndarray, n: int = 4096) -> np.ndarray:
    """Every k-th value, about ``n`` of them: a deterministic subsample that is plenty for
    the medians of the presence test (their standard error is ~2 % of the spread)."""
    return values[:: max(1, values.size // n)]


def _segment_roi(read: Callable[[slice, slice], np.ndarray], frame: BodyFrame,
                 roi: tuple[int, int, int, int], roi_mask: np.ndarray,
                 p: SegmentationParams, sp: tuple[float, float]):
    r0, r1, c0, c1 = roi
    crop = np.asarray(read(slice(r0, r1), slice(c0, c1)), dtype=np.float32)
    px_area = sp[0] * sp[1]
    sig = (p.smoothing_mm / sp[0], p.smoothing_mm / sp[1])
    g = _gauss(crop, sig) if p.smoothing_mm > 0 else crop
    body = frame.rasterize(frame.polygon_px, r0, c0, crop.shape) & roi_mask
    if body.sum() < 16:
        raise CementError(f"{frame.level}: vertebral body covers fewer than 16 pixels; "
                          f"cannot segment its cement")
    core = ~_dilate(~body, 1.0, sp) if body.sum() > 256 else body  # 1 mm inside the outline
    vals = g[core] if core.sum() >= 16 else g[body]
    t0 = otsu(vals)
    cem = (g > t0) & roi_mask
    bg_sig = (p.bg_sigma_mm / sp[0], p.bg_sigma_mm / sp[1])
    min_obj = max(1, int(round(p.min_component_mm2 / px_area)))
    max_hole = int(round(p.max_hole_mm2 / px_area))
    x = np.zeros_like(g)
    dc = 0.0
    bgr = g
    for _ in range(p.iterations):
        guard = _dilate(cem, p.guard_mm, sp)
        w = (roi_mask & ~guard).astype(np.float32)
        if w.sum() < 16:
            w = (roi_mask & ~cem).astype(np.float32)
        bgr = _norm_conv(g, w, bg_sig)
        x = g - bgr
        if not cem.any():
            break
        dc = float(np.median(x[cem]))
        if not dc > 0:
            cem = np.zeros_like(cem)
            break
        new = hysteresis(x, p.low_fraction * dc, p.high_fraction * dc, min_pixels=min_obj,
                         where=roi_mask)
        if np.array_equal(new, cem):
            break
        cem = new
    if max_hole > 0 and cem.any():
        cem = cem | (~drop_small_components(~cem, max_hole + 1, connectivity=1) & roi_mask)
    # presence test
    outside = roi_mask & ~within(body, 1.5, sp) & ~cem
    bone = body & ~cem
    db = float(np.median(_sample(bgr[bone])) - np.median(_sample(g[outside]))) \
        if bone.any() and outside.any() else 0.0
    resid = g - _gauss(g, (1.0, 1.0))
    r = _sample(resid[roi_mask])
    noise = float(1.4826 * np.median(np.abs(r - np.median(r))))
    area = float(cem.sum() * px_area)
    reason = None
    if not cem.any() or dc <= 0:
        reason = "no cement found: nothing in the body is denser than bone"
    elif dc < p.min_bone_ratio * max(db, 0.0):
        reason = (f"no cement found: the densest region exceeds its surroundings by only "
                  f"{dc / max(db, 1e-12):.2f} x the bone contrast (needs >= "
                  f"{p.min_bone_ratio:g})")
    elif dc < p.min_noise_ratio * noise:
        reason = (f"no cement found: the densest region exceeds its surroundings by only "
                  f"{dc / max(noise, 1e-12):.1f} x the noise (needs >= {p.min_noise_ratio:g})")
    elif area < p.min_cement_mm2:
        reason = (f"no cement found: the dense region covers {area:.2f} mm2 "
                  f"(< {p.min_cement_mm2:g} mm2)")
    if reason is not None:
        cem = np.zeros_like(cem)
    return cem, x, reason, dc, db, noise, bgr


def _segment_on_grid(read: Callable[[slice, slice], np.ndarray], vert: Vertebra,
                     roi: tuple[int, int, int, int], roi_mask: np.ndarray,
                     p: SegmentationParams, sp: tuple[float, float], f: int):
    """Segment on the working grid (blocks of ``f x f`` pixels), then place the border at
    full resolution.

    1. The search region is block-averaged and segmented by :func:`_segment_roi` with the
       landmarks, spacing and search mask expressed on the grid (presence test included).
    2. Full resolution: ``x = G_sigma * density - up(b)``, with ``up(b)`` the grid's local
       background interpolated bilinearly (it is smooth at the 2.5 mm scale). Pixels of
       grid blocks whose 8 neighbours are all cement stay cement; pixels of blocks within one
       block of the cement are cement when ``x > low_fraction * dc``, as on the grid; every
       other pixel is background. Components and holes were decided on the grid; the full
       resolution only places the border within one block of it.
    """
    r0, r1, c0, c1 = roi
    crop = np.asarray(read(slice(r0, r1), slice(c0, c1)), dtype=np.float32)
    h, w = crop.shape
    small = block_mean(crop, f)
    small_roi = block_mean(roi_mask.view(np.uint8), f) >= 0.5
    vc = vert.transformed(lambda q: to_grid(q, r0, c0, f))
    spc = (sp[0] * f, sp[1] * f)
    frame_c = body_frame(vc, spc)
    cem_c, _, reason, dc, db, noise, bgr_c = _segment_roi(
        lambda rows, cols: small[rows, cols], frame_c, (0, small.shape[0], 0, small.shape[1]),
        small_roi, p, spc)
    sig = (p.smoothing_mm / sp[0], p.smoothing_mm / sp[1])
    g = _gauss(crop, sig) if p.smoothing_mm > 0 else crop
    x = g - _upsample(bgr_c, f, (h, w))
    if reason is not None:
        return np.zeros((h, w), dtype=bool), x, reason, dc, db, noise
    cu = _u8(cem_c)
    # 2: the block and its 8 neighbours are cement; 1: within one block of the cement
    state = cv2.erode(cu, _SQUARE, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    state += cv2.dilate(cu, _SQUARE)
    state = block_expand(state, f, (h, w))
    cem = ((state == 2) | ((state == 1) & (x > p.low_fraction * dc))) & roi_mask
    return cem, x, reason, dc, db, noise


def segment_cement(density: Any, landmarks: SpineLandmarks | Vertebra | None,
                   level: str, spacing: tuple[float, float] | None, *,
                   params: SegmentationParams | None = None) -> CementSegmentation:
    """Segment the cement of the treated vertebra ``level``.

    Parameters
    ----------
    density : ndarray (rows, cols) or Radiograph
        Image oriented so that higher = denser (``Radiograph.density``), or the
        :class:`~spine_measure.io.radiograph.Radiograph` itself. Only the search rectangle
        is read (and, from a Radiograph, only it is converted to float).
    landmarks : SpineLandmarks or Vertebra
        The film's landmarks (lateral or AP) or the treated vertebra itself.
    level : str
        The treated level.
    spacing : (row_mm, col_mm) or None
        Pixel spacing; None for an uncalibrated film.
    params : SegmentationParams, optional

    Returns
    -------
    CementSegmentation
        ``found`` is False with a reason ("no cement found: ...") when the body holds no
        cement; that is a value, not an error.

    Raises
    ------
    CementError
        The treated vertebra has no landmarks, is S1, or its body lies outside the image.

    Examples
    --------
    A 30 x 20 mm body at 0.5 mm spacing, with a 10 x 10 mm cement block in it:

    >>> from spine_measure.landmarks import Vertebra
    >>> img = np.zeros((120, 120)); img[20:80, 30:90] = 1.0; img[40:60, 50:70] = 6.0
    >>> v = Vertebra("L1", "lateral", {"As": (20, 89.5), "Ai": (79.5, 89.5),
    ...                               "Ps": (20, 30), "Pi": (79.5, 30)})
    >>> seg = segment_cement(img, v, "L1", (0.5, 0.5))
    >>> seg.found, seg.area_px
    (True, 400)
    """
    p = params or SegmentationParams()
    if isinstance(landmarks, Vertebra):
        if landmarks.level != level:
            raise CementError(f"{level}: the vertebra given is {landmarks.level}")
        vert = landmarks
    else:
        vert = treated_vertebra(landmarks, level)
    read, shape = density_reader(density)
    sp, nominal = working_spacing(vert, spacing)
    frame = body_frame(vert, sp)
    _check_inside(frame, shape)
    grown = 0
    f = grid_factor(sp, p.grid_mm)
    m_wall, m_disc = p.margin_wall_mm, p.margin_disc_mm
    while True:
        roi, roi_mask = _roi(frame, shape, m_wall, m_disc)
        if f == 1:
            cem, x, reason, dc, db, noise, _ = _segment_roi(read, frame, roi, roi_mask, p, sp)
        else:
            cem, x, reason, dc, db, noise = _segment_on_grid(read, vert, roi, roi_mask, p, sp,
                                                             f)
        edge = roi_mask & ~cv2.erode(_u8(roi_mask), _CROSS,
                                     borderType=cv2.BORDER_CONSTANT, borderValue=0).view(bool)
        # the image border is not a search-rectangle edge
        r0, r1, c0, c1 = roi
        img_edge = np.zeros_like(edge)
        if r0 == 0:
            img_edge[0, :] = True
        if c0 == 0:
            img_edge[:, 0] = True
        if r1 == shape[0]:
            img_edge[-1, :] = True
        if c1 == shape[1]:
            img_edge[:, -1] = True
        if grown >= p.max_grow or not (cem & edge & ~img_edge).any():
            break
        grown += 1
        m_wall += p.margin_wall_mm
        m_disc += p.margin_disc_mm
    return CementSegmentation(
        level=level, image_shape=shape, roi=roi, roi_mask=cem, excess=x,
        found=reason is None, reason=reason, contrast=dc, bone_contrast=db, noise=noise,
        spacing_nominal=nominal, grown=grown, params_hash=p.params_hash(),
    )
