"""Cement features of docs/cement.md from a cement mask and the treated vertebra's landmarks.

Part of the pure core. Lengths are in mm on calibrated films and in px otherwise (the
*report* spacing is the film's spacing, or ``(1, 1)``); areas in mm² / px²; ratios in
percent. Every feature and threshold is defined in ``docs/cement.md``; the short version:

* **contact** — the smallest distance from a cement pixel centre to the endplate polyline
  (superior ``Ps-Ms-As``, inferior ``Pi-Mi-Ai``; AP ``SL-SR`` / ``IL-IR``) is the *gap*;
  the cement contacts the endplate when ``gap <= tolerance`` (1 mm by default; on
  uncalibrated films 1 mm at the nominal scale, reported in px).
* **NPEC** (Xiong 2021) — ``none`` (touches both), ``superior`` / ``inferior`` (does not touch
  that one), ``both`` (touches neither).
* **gap %** — ``100 * gap / h_local`` with ``h_local`` the body height (between the two
  endplate polylines, along the caudal axis) at the width position of the endplate point
  nearest to the cement.
* **fill** — ``100 * (cement pixels inside the body polygon) / (body polygon pixels)``.
* **distribution** — lateral: ``blocky`` when the intravertebral cement is solid and smooth
  (``solidity >= blocky_min_solidity`` and ``roughness <= blocky_max_roughness``), else
  ``spongy`` (Li 2021); AP: ``H`` when the cement forms two columns, one on each side of
  the midline, else ``O`` (An 2021).
* **leaks** — connected components of the cement farther than the tolerance outside the body
  polygon, at least ``min_leak_mm2`` large; each gets a location from the side of the body
  most of its pixels lie beyond, an area, whether it reaches the facing endplate of the
  adjacent vertebra, and for intradiscal leaks ``spike`` (``elongation >=
  spike_min_elongation``) or ``round`` (Yassavoly 2025).
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from spine_measure.cement.frame import (
    BodyFrame,
    CementError,
    body_frame,
    fill_polygon,
    neighbour_endplates,
    polyline_distance,
    working_spacing,
)
from spine_measure.cement.segment import (
    _CROSS,
    CementSegmentation,
    block_mean,
    components,
    from_grid,
    grid_factor,
    to_grid,
    treated_vertebra,
    within,
)
from spine_measure.landmarks import SpineLandmarks, Vertebra

__all__ = [
    "NO_CEMENT",
    "CementFeatures",
    "FeatureParams",
    "Leak",
    "cement_features",
    "distribution_features",
    "shape_features",
]

NO_CEMENT = "no cement found"
"""The status (a value, not an error) of a treated vertebra without visible cement."""

_LAT_SIDES = ("superior_disc", "inferior_disc", "posterior", "anterior")
_AP_SIDES = ("superior_disc", "inferior_disc", "lateral", "lateral")


@dataclass(frozen=True)
class FeatureParams:
    """Tolerances and decision thresholds of the cement features (``docs/cement.md``).

    Attributes
    ----------
    contact_tolerance_mm : float
        Endplate contact and leak tolerance (docs/cement.md default 1 mm).
    contact_tolerance_px : float or None
        Tolerance on uncalibrated films, in px; None = ``contact_tolerance_mm`` at the
        nominal scale (:func:`~spine_measure.cement.frame.working_spacing`).
    min_leak_mm2 : float
        Smallest leak reported (smaller specks outside the polygon are landmark noise).
    blocky_min_solidity, blocky_max_roughness : float
        Lateral distribution rule: blocky iff solidity >= and roughness <= these.
    spike_min_elongation : float
        Intradiscal leak type rule: spike iff elongation (major / minor axis of the
        equal-moment ellipse) >= this.
    h_min_side_fraction, h_max_midline_ratio : float
        AP rule (see :func:`distribution_features`).
    grid_mm : float
        Working grid of the shape features on calibrated films finer than it: gaps,
        distribution and leaks are computed on the mask block-averaged over ``f x f`` pixels
        (``f = floor(grid_mm / spacing)``, a block is cement when at least half of it is),
        like the segmentation (:func:`~spine_measure.cement.segment.grid_factor`); area and
        fill always count the pixels of the mask itself. 0 = always the full resolution.
    """

    contact_tolerance_mm: float = 1.0
    contact_tolerance_px: float | None = None
    min_leak_mm2: float = 0.5
    blocky_min_solidity: float = 0.85
    blocky_max_roughness: float = 1.5
    spike_min_elongation: float = 1.75
    h_min_side_fraction: float = 0.25
    h_max_midline_ratio: float = 0.6
    grid_mm: float = 0.3

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is None and name == "contact_tolerance_px":
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f'Argument "{name}" must be a finite number >= 0; got {value!r}')


@dataclass(frozen=True)
class Leak:
    """One cement leak (a component of the mask outside the body polygon).

    Attributes
    ----------
    location : str
        ``superior_disc``, ``inferior_disc``, ``anterior``, ``posterior`` (lateral films)
        or ``lateral`` (AP films).
    area : float
        In mm² (px² when uncalibrated).
    touches_adjacent_endplate : bool or None
        The leak reaches the facing endplate of the adjacent vertebra within the tolerance;
        None when that vertebra is not annotated (``reason`` says so).
    type : str or None
        ``spike`` or ``round`` for intradiscal leaks, None otherwise.
    shape : Mapping
        :func:`shape_features` of the leak (elongation, eccentricity, solidity, max width,
        length...).
    centroid_px : (row, col)
    n_pixels : int
        Size in pixels of the stored image (on a working grid: its blocks x f²).
    reason : str or None
    """

    location: str
    area: float
    touches_adjacent_endplate: bool | None
    type: str | None
    shape: Mapping[str, float]
    centroid_px: tuple[float, float]
    n_pixels: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {"location": self.location, "area": self.area,
                "touches_adjacent_endplate": self.touches_adjacent_endplate,
                "type": self.type, "shape": dict(self.shape),
                "centroid_px": list(self.centroid_px), "n_pixels": self.n_pixels,
                "reason": self.reason}


@dataclass(frozen=True)
class CementFeatures:
    """Every docs/cement.md cement feature of one treated vertebra on one film.

    Missing values are ``NaN`` (numbers) or ``None`` (flags, categories) with an entry in
    ``reasons``. ``found`` False means "no cement found" (``status``), a value, not an error.
    """

    level: str
    view: str
    found: bool
    status: str
    length_unit: str
    tolerance: float
    contacts_superior: bool | None
    contacts_inferior: bool | None
    contacts_both: bool | None
    npec: str | None
    gap_superior: float
    gap_inferior: float
    gap_superior_pct: float
    gap_inferior_pct: float
    fill_pct: float
    cement_area: float
    distribution: str | None
    distribution_features: Mapping[str, float]
    leaks: tuple[Leak, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)
    params_hash: str | None = None

    @property
    def area_unit(self) -> str:
        """``mm2`` or ``px2``."""
        return self.length_unit + "2"

    @property
    def has_leak(self) -> bool | None:
        """True when at least one leak was found (None without cement)."""
        return bool(self.leaks) if self.found else None

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict (lengths carry their unit in the key)."""
        u = self.length_unit
        out: dict[str, Any] = {
            "level": self.level, "view": self.view, "cement_found": self.found,
            "cement_status": self.status, f"cement_contact_tolerance_{u}": self.tolerance,
            "cement_contacts_superior": self.contacts_superior,
            "cement_contacts_inferior": self.contacts_inferior,
            "cement_contacts_both": self.contacts_both, "npec": self.npec,
            f"cement_gap_superior_{u}": self.gap_superior,
            f"cement_gap_inferior_{u}": self.gap_inferior,
            "cement_gap_superior_pct": self.gap_superior_pct,
            "cement_gap_inferior_pct": self.gap_inferior_pct,
            "cement_fill_pct": self.fill_pct, f"cement_area_{u}2": self.cement_area,
            "cement_distribution": self.distribution,
            "cement_leak": self.has_leak, "cement_leak_count": len(self.leaks)
            if self.found else None,
            "params_hash": self.params_hash,
        }
        for k, v in self.distribution_features.items():
            out[f"cement_{k}"] = v
        out["leaks"] = [lk.to_dict() for lk in self.leaks]
        out["reasons"] = dict(self.reasons)
        return out


# ----------------------------------------------------------------------------------------
# shape descriptors


_PERIMETER_KERNEL = np.array([[10, 2, 10], [2, 1, 2], [10, 2, 10]], dtype=np.float32)
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


def perimeter(mask: np.ndarray) -> float:
    """Perimeter of a binary region, Benkrid & Crookes' weighted border-pixel count: the
    definition (and value) of ``skimage.measure.perimeter(mask, neighborhood=8)``, computed
    with OpenCV on the region's bounding box.

    >>> perimeter(np.pad(np.ones((4, 4), bool), 1))
    12.0
    """
    m = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    if w == 0:
        return 0.0
    sub = np.pad(m[y:y + h, x:x + w], 1)
    border = sub - cv2.erode(sub, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                             borderValue=0)
    codes = cv2.filter2D(border.astype(np.float32), -1, _PERIMETER_KERNEL,
                         borderType=cv2.BORDER_CONSTANT)
    hist = np.bincount(codes.astype(np.int64).ravel(), minlength=50)[:50]
    return float(hist @ _PERIMETER_WEIGHTS)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: background not 4-connected to the image border
    (``scipy.ndimage.binary_fill_holes``' definition).

    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True; m[2, 2] = False
    >>> int(fill_holes(m).sum())
    9
    """
    bg = np.pad(~mask, 1, constant_values=True)
    n, lab = components(bg, connectivity=1)
    return (lab[1:-1, 1:-1] != lab[0, 0]) | mask


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie in the convex hull of the centres of ``mask``'s pixels."""
    rr, cc = np.nonzero(inner_boundary(mask))   # the hull's vertices are boundary pixels
    if rr.size < 3:
        return mask.copy()
    hull = cv2.convexHull(np.stack([rr, cc], 1).astype(np.float32))[:, 0, :]
    return fill_polygon(hull.astype(float), mask.shape) | mask


def shape_features(mask: np.ndarray, spacing: tuple[float, float]) -> dict[str, float]:
    """Shape descriptors of a binary region (one leak) in physical units.

    With the pixel centres ``x_i`` in physical coordinates and ``l1 >= l2`` the eigenvalues
    of their covariance (plus ``1/12`` of a pixel per axis, the variance of a uniform
    pixel), the equal-moment ellipse has axes ``major = 4 sqrt(l1)``, ``minor = 4 sqrt(l2)``:

    * ``elongation = major / minor``; ``eccentricity = sqrt(1 - l2 / l1)``;
    * ``solidity = area / convex hull area`` (pixel counts, hull of the pixel centres;
      unchanged by the spacing);
    * ``max_width = 2 max EDT`` (twice the largest distance from a pixel centre to the
      background, i.e. the widest inscribed disc);
    * ``length`` = extent of the pixel centres along the major axis plus one pixel;
    * ``area`` = pixel count x pixel area.

    Examples
    --------
    A 2 x 8 px bar at 1 mm spacing: variances ``(4/12)`` and ``(64/12)``, so the axes are
    ``4 sqrt(1/3)`` and ``4 sqrt(16/3)`` and the elongation is 4.

    >>> m = np.zeros((6, 12), bool); m[2:4, 2:10] = True
    >>> f = shape_features(m, (1.0, 1.0))
    >>> round(f["elongation"], 6), f["area"], f["length"]
    (4.0, 16.0, 8.0)
    """
    rr, cc = np.nonzero(mask)
    sp = np.asarray(spacing, dtype=float)
    n = rr.size
    if n == 0:
        nan = float("nan")
        return {"area": 0.0, "elongation": nan, "eccentricity": nan, "solidity": nan,
                "max_width": nan, "length": nan, "major_axis": nan, "minor_axis": nan}
    pts = np.stack([rr, cc], 1) * sp
    cov = np.cov(pts.T, bias=True) if n > 1 else np.zeros((2, 2))
    cov = cov + np.diag(sp**2 / 12.0)
    w, vec = np.linalg.eigh(cov)
    l2, l1 = float(max(w[0], 0.0)), float(w[1])
    major, minor = 4 * math.sqrt(l1), 4 * math.sqrt(l2)
    proj = pts @ vec[:, 1]
    pix_along = float(np.hypot(*(vec[:, 1] * sp)))
    r0, r1 = rr.min(), rr.max() + 1
    c0, c1 = cc.min(), cc.max() + 1
    sub = np.pad(mask[r0:r1, c0:c1], 1)
    hull = convex_hull_mask(sub) if n >= 3 else sub
    edt = ndimage.distance_transform_edt(sub, sampling=spacing)
    return {
        "area": float(n * sp[0] * sp[1]),
        "elongation": major / minor if minor > 0 else float("inf"),
        "eccentricity": math.sqrt(max(0.0, 1.0 - l2 / l1)) if l1 > 0 else 0.0,
        "solidity": float(n / max(int(hull.sum()), n)),
        "max_width": float(2 * edt.max()),
        "length": float(proj.max() - proj.min() + pix_along),
        "major_axis": major,
        "minor_axis": minor,
    }


def distribution_features(inside: np.ndarray, frame: BodyFrame, r0: int, c0: int,
                          excess: np.ndarray | None, min_component_px: int
                          ) -> dict[str, float]:
    """Shape and texture features of the intravertebral cement (``inside``, a crop at
    ``(r0, c0)``), used to decide the distribution.

    * ``solidity`` = cement pixels / convex hull pixels (1 for a convex lump);
    * ``roughness`` = perimeter / convex hull perimeter (scikit-image ``perimeter``; 1 for a
      smooth convex border, larger when the border interdigitates with trabeculae);
    * ``components`` = connected components of at least ``min_component_px`` pixels;
    * ``hole_fraction`` = holes / (cement + holes);
    * ``texture_cv`` = standard deviation / mean of the density excess over the cement's
      interior (eroded by 2 px), NaN without an image (a reader-drawn mask);
    * AP films also: ``left_fraction`` (share of the cement left of the body's midline,
      from the image-left wall), ``midline_ratio`` (cement per unit width in the central
      fifth of the body divided by the smaller of the two sides' peak, from a 10-bin
      profile across the body) and ``major_components`` (components holding >= 10 % of
      the cement).
    """
    n = int(inside.sum())
    k, lab, sizes = components(inside, connectivity=2, with_sizes=True)
    hull = convex_hull_mask(inside) if n >= 3 else inside
    filled = fill_holes(inside)
    per = perimeter(inside)
    per_h = perimeter(hull)
    feats: dict[str, float] = {
        "solidity": float(n / max(int(hull.sum()), 1)),
        "roughness": float(per / per_h) if per_h > 0 else float("nan"),
        "components": float(int((sizes >= max(min_component_px, 1)).sum())),
        "hole_fraction": float((filled.sum() - n) / max(int(filled.sum()), 1)),
        "texture_cv": float("nan"),
    }
    if excess is not None:
        core = cv2.erode(inside.astype(np.uint8), _CROSS, iterations=2,
                         borderType=cv2.BORDER_CONSTANT, borderValue=0).view(bool)
        if core.sum() >= 16:
            vals = excess[core]
            m = float(vals.mean())
            feats["texture_cv"] = float(vals.std() / m) if m > 0 else float("nan")
    if frame.view == "ap":
        rr, cc = np.nonzero(inside)
        s, t = frame.st(np.stack([rr + r0, cc + c0], 1))
        s_a, s_b = frame.s_first(t), frame.s_last(t)
        u = np.clip((s - s_a) / np.maximum(s_b - s_a, 1e-9), 0, 1)
        hist = np.bincount(np.minimum((u * 10).astype(int), 9), minlength=10).astype(float)
        peak = min(hist[:5].max(), hist[5:].max())
        feats["left_fraction"] = float((u < 0.5).mean()) if n else float("nan")
        feats["midline_ratio"] = float(hist[4:6].mean() / peak) if peak > 0 else float("inf")
        feats["major_components"] = float(int((sizes >= 0.1 * max(n, 1)).sum()))
    return feats


def _decide_distribution(view: str, f: Mapping[str, float], p: FeatureParams) -> str:
    if view == "ap":
        left = f["left_fraction"]
        two_sides = min(left, 1 - left) >= p.h_min_side_fraction
        return "H" if two_sides and (f["major_components"] >= 2
                                     or f["midline_ratio"] <= p.h_max_midline_ratio) else "O"
    solid = f["solidity"] >= p.blocky_min_solidity
    smooth = f["roughness"] <= p.blocky_max_roughness
    return "blocky" if solid and smooth else "spongy"


# ----------------------------------------------------------------------------------------
# the features


def _nan_features(level: str, view: str, status: str, unit: str, tol: float,
                  why: str, params_hash: str | None) -> CementFeatures:
    nan = float("nan")
    names = ("cement_contacts_superior", "cement_contacts_inferior", "cement_contacts_both",
             "npec", "cement_gap_superior", "cement_gap_inferior", "cement_fill_pct",
             "cement_distribution")
    return CementFeatures(level, view, False, status, unit, tol, None, None, None, None, nan,
                          nan, nan, nan, nan, 0.0, None, types.MappingProxyType({}), (),
                          types.MappingProxyType(dict.fromkeys(names, why)), params_hash)


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a background pixel (or the array edge) among their 8
    neighbours."""
    m = mask.astype(np.uint8)
    return mask & ~cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                             borderValue=0).view(bool)


def _gap_candidates(cem: np.ndarray, poly_px: np.ndarray, r0: int, c0: int,
                    spacing: tuple[float, float], boundary: np.ndarray | None = None
                    ) -> np.ndarray:
    """Centres ``(N, 2)`` (image px) of the cement pixels that can be nearest to the
    polyline: the inner boundary and every pixel within 2 px of the polyline.

    Exact for square pixels: an interior pixel ``p`` at distance ``d > 0.77`` px from its
    nearest polyline point ``q`` has a neighbour in the mask (one of the 8 steps within
    22.5 deg of ``q - p``) that is strictly closer, since
    ``|p + s - q|^2 - d^2 = |s| (|s| - 2 d cos(theta)) < 0`` for ``|s| <= sqrt(2)``,
    ``theta <= 22.5 deg``; so the minimum lies on the boundary or within 0.77 px of the
    line. Non-square pixels use every cement pixel.
    """
    if not math.isclose(spacing[0], spacing[1], rel_tol=1e-9):
        cand = cem
    else:
        band = np.zeros(cem.shape, np.uint8)
        pts = np.round((np.asarray(poly_px)[:, ::-1] - (c0, r0)) * 16).astype(np.int32)
        cv2.polylines(band, [pts], False, 1, thickness=5, lineType=cv2.LINE_8, shift=4)
        cand = (inner_boundary(cem) if boundary is None else boundary) | (cem & band.view(bool))
    rr, cc = np.nonzero(cand)
    return np.stack([rr + r0, cc + c0], 1).astype(float)


def _nearest(pts: np.ndarray, poly: np.ndarray) -> tuple[int, float]:
    """``(i, d)``: the first of ``pts`` nearest to the polyline ``poly`` and its distance
    (:func:`polyline_distance`'s argmin and min).

    Exact with fewer distance evaluations: every polyline point lies within ``dmax`` of the
    line through its ends (normal ``nrm``), so ``|nrm.(q - a)| - dmax`` is a lower bound of
    the distance of ``q``; only points whose bound does not exceed the distance of the point
    with the smallest bound can be nearest.
    """
    a = poly[0]
    chord = poly[-1] - a
    length = float(np.hypot(*chord))
    if length == 0 or len(pts) < 64:
        d = polyline_distance(pts, poly)
        i = int(np.argmin(d))
        return i, float(d[i])
    nrm = np.array([-chord[1], chord[0]]) / length
    dmax = float(np.abs((poly - a) @ nrm).max())
    lb = np.abs((pts - a) @ nrm) - dmax
    j = int(np.argmin(lb))
    ub = float(polyline_distance(pts[j:j + 1], poly)[0])
    idx = np.flatnonzero(lb <= ub + 1e-9)
    d = polyline_distance(pts[idx], poly)
    k = int(np.argmin(d))
    return int(idx[k]), float(d[k])


def _gap(mask_pts: np.ndarray, frame: BodyFrame, which: str) -> tuple[float, float, str | None]:
    poly = frame.superior_px if which == "superior" else frame.inferior_px
    poly_mm = frame.to_mm(poly)
    pts_mm = frame.to_mm(mask_pts)
    i, gap = _nearest(pts_mm, poly_mm)
    # the endplate point nearest to that cement pixel, and the body height there
    dense = np.concatenate([np.linspace(a, b, 64) for a, b in zip(poly_mm[:-1], poly_mm[1:],
                                                                   strict=True)])
    j = int(np.argmin(np.hypot(*(dense - pts_mm[i]).T)))
    s = (dense[j] - frame.origin) @ frame.e
    h = float(frame.local_height(np.array([s]))[0])
    if not h > 0:
        return gap, float("nan"), f"local body height at the {which} gap is not positive"
    return gap, 100.0 * gap / h, None


def cement_features(mask: np.ndarray | CementSegmentation,
                    landmarks: SpineLandmarks | Vertebra | None, level: str,
                    spacing: tuple[float, float] | None, *,
                    params: FeatureParams | None = None,
                    excess: np.ndarray | None = None) -> CementFeatures:
    """Compute every docs/cement.md feature of the cement of ``level``.

    Parameters
    ----------
    mask : ndarray of bool (rows, cols) or CementSegmentation
        The cement mask on the whole image (an automatic result or a reader's edit). A
        :class:`CementSegmentation` also supplies the density excess (texture feature) and
        the "no cement found" status.
    landmarks : SpineLandmarks or Vertebra
        The film's landmarks (neighbours are needed for "touches the adjacent endplate").
    level : str
    spacing : (row_mm, col_mm) or None
    params : FeatureParams, optional
    excess : ndarray, optional
        Density excess on the whole image (only with a plain mask; rarely needed).

    Raises
    ------
    CementError
        No landmarks for ``level``, S1, or a mask whose shape does not fit the landmarks
        (cement outside the image).

    Examples
    --------
    A 30 x 20 mm body (0.5 mm pixels) with cement from the superior endplate to 5 mm above
    the inferior one:

    >>> from spine_measure.landmarks import Vertebra
    >>> v = Vertebra("L1", "lateral", {"As": (20, 80), "Ai": (60, 80),
    ...                               "Ps": (20, 20), "Pi": (60, 20)})
    >>> m = np.zeros((100, 100), bool); m[20:51, 30:71] = True
    >>> f = cement_features(m, v, "L1", (0.5, 0.5))
    >>> f.npec, f.gap_inferior, f.gap_inferior_pct, f.distribution
    ('inferior', 5.0, 25.0, 'blocky')
    """
    p = params or FeatureParams()
    if isinstance(landmarks, Vertebra):
        vert = landmarks
        lms = None
    else:
        vert = treated_vertebra(landmarks, level)
        lms = landmarks
    seg = mask if isinstance(mask, CementSegmentation) else None
    ws, nominal = working_spacing(vert, spacing)
    rs = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    unit = "px" if spacing is None else "mm"
    if spacing is None:
        tol = p.contact_tolerance_px if p.contact_tolerance_px is not None \
            else p.contact_tolerance_mm / math.sqrt(ws[0] * ws[1])
    else:
        tol = p.contact_tolerance_mm
    phash = seg.params_hash if seg is not None else None
    if seg is not None:
        if not seg.found:
            return _nan_features(level, vert.view, seg.reason or NO_CEMENT, unit, tol,
                                 seg.reason or NO_CEMENT, phash)
        r0, r1, c0, c1 = seg.roi
        crop = seg.roi_mask
        exc = seg.excess
        shape = seg.image_shape
    else:
        full = np.asarray(mask, dtype=bool)
        if full.ndim != 2:
            raise CementError(f"{level}: cement mask must be 2-D (rows, cols); got "
                              f"shape {full.shape}")
        shape = full.shape
        if not full.any():
            return _nan_features(level, vert.view, NO_CEMENT, unit, tol,
                                 f"{NO_CEMENT}: the mask is empty", phash)
        rr, cc = np.nonzero(full)
        r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
        crop = full[r0:r1, c0:c1]
        exc = excess[r0:r1, c0:c1] if excess is not None else None
    frame = body_frame(vert, rs)
    poly = frame.polygon_px
    if (poly[:, 0] < -0.5).any() or (poly[:, 0] > shape[0] - 0.5).any() or \
            (poly[:, 1] < -0.5).any() or (poly[:, 1] > shape[1] - 0.5).any():
        raise CementError(f"{level}: vertebral body lies outside the {shape[0]}x{shape[1]} "
                          f"cement mask; the mask does not belong to these landmarks")
    # work on a crop covering both the mask and the body
    br0 = int(min(r0, np.floor(poly[:, 0].min()))) - 2
    bc0 = int(min(c0, np.floor(poly[:, 1].min()))) - 2
    br1 = int(max(r1, np.ceil(poly[:, 0].max()) + 1)) + 2
    bc1 = int(max(c1, np.ceil(poly[:, 1].max()) + 1)) + 2
    br0, bc0 = max(br0, 0), max(bc0, 0)
    br1, bc1 = min(br1, shape[0]), min(bc1, shape[1])
    hw = (br1 - br0, bc1 - bc0)
    cem = np.zeros(hw, dtype=bool)
    cem[r0 - br0:r1 - br0, c0 - bc0:c1 - bc0] = crop
    ex = None
    if exc is not None:
        ex = np.zeros(hw, dtype=np.float32)
        ex[r0 - br0:r1 - br0, c0 - bc0:c1 - bc0] = exc[: r1 - r0, : c1 - c0]
    body = frame.rasterize(poly, br0, bc0, hw)
    reasons: dict[str, str] = {}
    up, down = neighbour_endplates(lms, level) if lms is not None else (None, None)
    # area and fill count the pixels of the mask itself
    area = float(np.count_nonzero(cem) * rs[0] * rs[1])
    fill = 100.0 * float(np.count_nonzero(cem & body)) / max(int(np.count_nonzero(body)), 1)
    f = grid_factor(rs, p.grid_mm) if spacing is not None else 1
    grid_origin = (br0, bc0)
    if f > 1:   # the rest on the working grid of f x f blocks starting at (br0, bc0)
        cem = block_mean(cem.view(np.uint8), f) >= 0.5
        ex = block_mean(ex, f) if ex is not None else None
        rs, ws = (rs[0] * f, rs[1] * f), (ws[0] * f, ws[1] * f)
        vert = vert.transformed(lambda q: to_grid(q, *grid_origin, f))
        up, down = (None if e is None else to_grid(e, *grid_origin, f) for e in (up, down))
        frame = body_frame(vert, rs)
        br0 = bc0 = 0
        body = frame.rasterize(frame.polygon_px, 0, 0, cem.shape)

    rim = inner_boundary(cem)
    g_sup, g_sup_pct, why_s = _gap(_gap_candidates(cem, frame.superior_px, br0, bc0, rs, rim),
                                   frame, "superior")
    g_inf, g_inf_pct, why_i = _gap(_gap_candidates(cem, frame.inferior_px, br0, bc0, rs, rim),
                                   frame, "inferior")
    for name, why in (("cement_gap_superior_pct", why_s), ("cement_gap_inferior_pct", why_i)):
        if why:
            reasons[name] = why
    cs, ci = g_sup <= tol, g_inf <= tol
    npec = {(True, True): "none", (False, True): "superior", (True, False): "inferior",
            (False, False): "both"}[(cs, ci)]
    inside = cem & body
    min_comp_px = max(1, int(round(p.min_leak_mm2 / (ws[0] * ws[1]))))
    dist: str | None
    if inside.sum() >= 3:
        dfeat = distribution_features(inside, frame, br0, bc0, ex, min_comp_px)
        dist = _decide_distribution(vert.view, dfeat, p)
    else:
        dfeat, dist = {}, None
        reasons["cement_distribution"] = "no cement inside the body polygon"
    # leaks
    out = cem & ~within(body, tol, rs)   # farther than the tolerance from the body
    leaks = _leaks(out, frame, br0, bc0, rs, ws, tol, p, (up, down) if lms is not None
                   else None, vert.view)
    if f > 1:
        leaks = [replace(lk, centroid_px=tuple(from_grid(lk.centroid_px, *grid_origin, f)
                                               .ravel().tolist()),
                         n_pixels=lk.n_pixels * f * f) for lk in leaks]
    return CementFeatures(
        level=level, view=vert.view, found=True, status="cement found", length_unit=unit,
        tolerance=float(tol), contacts_superior=bool(cs), contacts_inferior=bool(ci),
        contacts_both=bool(cs and ci), npec=npec, gap_superior=g_sup, gap_inferior=g_inf,
        gap_superior_pct=g_sup_pct, gap_inferior_pct=g_inf_pct, fill_pct=fill,
        cement_area=area, distribution=dist,
        distribution_features=types.MappingProxyType(dfeat), leaks=tuple(leaks),
        reasons=types.MappingProxyType(reasons), params_hash=phash,
    )


def _leaks(out: np.ndarray, frame: BodyFrame, r0: int, c0: int, rs: tuple[float, float],
           ws: tuple[float, float], tol: float, p: FeatureParams,
           neighbours: tuple[np.ndarray | None, np.ndarray | None] | None,
           view: str) -> list[Leak]:
    """The leaks of ``out`` (cement beyond the tolerance); ``neighbours``: the facing
    endplates of the adjacent vertebrae (px), None when only the treated one is known."""
    if not out.any():
        return []
    lab, k = ndimage.label(out, structure=np.ones((3, 3)))
    min_px = max(1, int(round(p.min_leak_mm2 / (ws[0] * ws[1]))))
    up, down = neighbours if neighbours is not None else (None, None)
    sides = _AP_SIDES if view == "ap" else _LAT_SIDES
    leaks = []
    objs = ndimage.find_objects(lab)
    for i, sl in enumerate(objs, start=1):
        comp = lab[sl] == i
        npx = int(comp.sum())
        if npx < min_px:
            continue
        rr, cc = np.nonzero(comp)
        pts = np.stack([rr + sl[0].start + r0, cc + sl[1].start + c0], 1).astype(float)
        depth = frame.outside_depths(pts)
        votes = np.bincount(np.argmax(depth, 1), minlength=4)
        if view == "ap":
            votes = np.array([votes[0], votes[1], votes[2] + votes[3], 0])
        loc = sides[int(np.argmax(votes))]
        # the adjacent endplate it could reach
        targets = {"superior_disc": [up], "inferior_disc": [down]}.get(loc, [up, down])
        targets = [t for t in targets if t is not None]
        reason = None
        if targets:
            dmin = min(float(polyline_distance(pts * np.asarray(rs), t * np.asarray(rs)).min())
                       for t in targets)
            touches: bool | None = dmin <= tol
        else:
            touches = None
            reason = "the adjacent vertebra is not annotated"
        shp = shape_features(comp, rs)
        typ = None
        if loc in ("superior_disc", "inferior_disc"):
            typ = "spike" if shp["elongation"] >= p.spike_min_elongation else "round"
        leaks.append(Leak(loc, shp["area"], touches, typ, types.MappingProxyType(shp),
                          (float(pts[:, 0].mean()), float(pts[:, 1].mean())), npx, reason))
    leaks.sort(key=lambda lk: (-lk.area, lk.centroid_px))
    return leaks
