"""Plausibility of a film's landmarks: geometry no reader can have meant.

A point set can be valid (every required point, finite numbers) and still describe no spine:
a vertebra placed upside down (superior and inferior corners swapped) or front to back
(anterior and posterior swapped), a body whose endplates or walls cross, level names in the
wrong order along the spine, points outside the image. Measured as they are, such landmarks
give numbers that look like findings (a wedge angle of the wrong sign, an AP Cobb angle of
178 deg and "degenerative scoliosis"). :func:`check_landmarks` finds them:

* **refused vertebrae** (:attr:`Plausibility.refused`): a vertebra whose own endplates or
  walls cross, or whose cranio-caudal or anterior-posterior (AP film: left-right) direction
  is opposite to that of the majority of the film's vertebrae (three or more needed to
  decide). Every measurement of such a vertebra, and every angle using one of its endplates,
  is NaN with the problem as reason, and it never serves as a neighbour reference;
* **warnings** (:attr:`Plausibility.warnings`): two vertebrae that disagree with no
  majority to decide, level names out of order along the spine, points outside the image.
  The batch writes each as a ``plausibility`` row in ``errors.csv``; the values are kept.

Only the landmarks are used (pixel coordinates, no spacing: directions and crossings do not
depend on it). ``docs/measurements.md`` documents the rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from spine_measure.landmarks import SpineLandmarks, Vertebra

__all__ = ["Plausibility", "check_landmarks"]

Vec = tuple[float, float]

#: A point may lie this many pixels beyond the image border before it is reported.
OUTSIDE_TOLERANCE_PX = 0.5


@dataclass(frozen=True)
class Plausibility:
    """Result of :func:`check_landmarks`.

    Attributes
    ----------
    refused : dict
        level -> why its landmarks cannot describe that vertebra (measurements refused).
    warnings : tuple of str
        Film-level problems reported but not refused.
    """

    refused: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.refused and not self.warnings

    def messages(self) -> list[str]:
        """Every problem as one line (refused vertebrae first, cranial to caudal)."""
        return [f"{lv}: {why}; its measurements are refused" for lv, why in
                self.refused.items()] + list(self.warnings)


def _sub(p: Vec, q: Vec) -> Vec:
    return (p[0] - q[0], p[1] - q[1])


def _add(p: Vec, q: Vec) -> Vec:
    return (p[0] + q[0], p[1] + q[1])


def _dot(u: Vec, v: Vec) -> float:
    return u[0] * v[0] + u[1] * v[1]


def _cross(u: Vec, v: Vec) -> float:
    return u[0] * v[1] - u[1] * v[0]


def _unit(u: Vec) -> Vec | None:
    n = math.hypot(*u)
    return (u[0] / n, u[1] / n) if n > 0 else None


def segments_cross(p1: Vec, p2: Vec, q1: Vec, q2: Vec) -> bool:
    """True when segments ``p1-p2`` and ``q1-q2`` properly cross (touching ends do not).

    >>> segments_cross((0, 0), (2, 2), (0, 2), (2, 0))
    True
    >>> segments_cross((0, 0), (0, 2), (1, 0), (1, 2))
    False
    """
    (a0, a1), (b0, b1), (c0, c1), (e0, e1) = p1, p2, q1, q2
    u0, u1, w0, w1 = b0 - a0, b1 - a1, e0 - c0, e1 - c1   # inline 2-D crosses: hot path
    d1 = u0 * (c1 - a1) - u1 * (c0 - a0)
    d2 = u0 * (e1 - a1) - u1 * (e0 - a0)
    if d1 * d2 >= 0:
        return False
    d3 = w0 * (a1 - c1) - w1 * (a0 - c0)
    d4 = w0 * (b1 - c1) - w1 * (b0 - c0)
    return d3 * d4 < 0


# names of the points: (cranial-left/posterior, cranial-right/anterior, caudal-..., caudal-...)
_CORNERS = {"lateral": ("Ps", "As", "Pi", "Ai"), "ap": ("SL", "SR", "IL", "IR")}
_SIDE_WORDS = {"lateral": ("anterior and posterior", "front to back", "walls"),
               "ap": ("left and right", "mirrored left to right", "sides")}


def _axes(v: Vertebra, view: str) -> tuple[Vec | None, Vec | None]:
    """(caudal, across) unit directions of a vertebra from its corners; None if unknown.

    Lateral: caudal = mean of Ps->Pi and As->Ai, across = mean of Ps->As and Pi->Ai
    (anterior). AP: caudal = mean of SL->IL and SR->IR, across = mean of SL->SR and IL->IR.
    S1 (As, Ps only): across = Ps->As, no caudal direction.
    """
    pts = v.points
    a, b, c, d = _CORNERS[view]
    if a in pts and b in pts and c in pts and d in pts:
        caudal = _add(_sub(pts[c], pts[a]), _sub(pts[d], pts[b]))
        across = _add(_sub(pts[b], pts[a]), _sub(pts[d], pts[c]))
        return _unit(caudal), _unit(across)
    if a in pts and b in pts:
        return None, _unit(_sub(pts[b], pts[a]))
    return None, None


def _majority(dirs: dict[str, Vec | None]) -> tuple[Vec | None, int]:
    """The film's direction (normalised sum of the unit directions) and how many vectors."""
    known = [u for u in dirs.values() if u is not None]
    total = (sum(u[0] for u in known), sum(u[1] for u in known))
    return _unit(total), len(known)


def check_landmarks(landmarks: SpineLandmarks,
                    image_shape: Sequence[int] | None = None) -> Plausibility:
    """Plausibility of ``landmarks`` (see the module docstring for the rules).

    Parameters
    ----------
    landmarks : SpineLandmarks
    image_shape : (rows, cols), optional
        When given, points more than :data:`OUTSIDE_TOLERANCE_PX` outside the image are
        reported (pixel centres run from 0 to rows - 1 and cols - 1).
    """
    view = landmarks.view
    verts = list(landmarks)
    refused: dict[str, str] = {}
    warnings: list[str] = []
    sides, flipped, walls = _SIDE_WORDS[view]
    a_, b_, c_, d_ = _CORNERS[view]
    # 1. a body whose endplates or walls cross
    for v in verts:
        p = v.points
        if all(k in p for k in (a_, b_, c_, d_)):
            if segments_cross(p[a_], p[b_], p[c_], p[d_]):
                refused[v.level] = "its superior and inferior endplates cross"
            elif segments_cross(p[a_], p[c_], p[b_], p[d_]):
                refused[v.level] = (f"its {walls} cross ({sides} corners of one endplate "
                                    "swapped?)")
    # 2. directions against the film's majority
    axes = {v.level: _axes(v, view) for v in verts if v.level not in refused}
    for k, (what, word) in enumerate((("caudal", "upside down (superior and inferior "
                                                 "corners swapped?)"),
                                      ("across", f"{flipped} ({sides} corners swapped?)"))):
        dirs = {lv: ax[k] for lv, ax in axes.items()}
        ref, n = _majority(dirs)
        known = [u for u in dirs.values() if u is not None]
        if ref is None or n < 3:  # no majority: any two opposite directions are reported
            against = [lv for lv, u in dirs.items() if u is not None
                       and any(_dot(u, w) < 0 for w in known)]
        else:
            against = [lv for lv, u in dirs.items() if u is not None and _dot(u, ref) < 0]
        if not against:
            continue
        if n >= 3 and ref is not None and len(against) * 2 < n:
            for lv in against:
                refused.setdefault(lv, f"placed {word}: its {what} direction is opposite to "
                                       "the other vertebrae's")
        else:
            warnings.append(f"vertebrae {', '.join(against)} do not agree on the {what} "
                            f"direction (one placed {word}); too few to tell which")
    # 3. level order along the spine: consecutive centres step caudally
    caudal, _n = _majority({lv: ax[0] for lv, ax in axes.items()})
    if caudal is not None:
        centres = []
        for v in verts:
            if v.level in refused:
                continue
            r = c = 0.0
            for q in v.points.values():
                r += q[0]
                c += q[1]
            n_pts = len(v.points)
            centres.append((v.level, (r / n_pts, c / n_pts)))
        for (l1, c1), (l2, c2) in zip(centres, centres[1:], strict=False):
            if _dot(_sub(c2, c1), caudal) <= 0:
                warnings.append(f"{l1} does not lie above {l2} along the spine (level names "
                                "in the wrong order?)")
    # 4. points outside the image
    if image_shape is not None:
        rows, cols = int(image_shape[0]), int(image_shape[1])
        t = OUTSIDE_TOLERANCE_PX
        for v in verts:
            for name, (r, c) in v.points.items():
                if not (-t <= r <= rows - 1 + t and -t <= c <= cols - 1 + t):
                    warnings.append(f"{v.level} {name} ({r:g}, {c:g}) lies outside the "
                                    f"{rows} x {cols} image (row, col)")
    order = {v.level: i for i, v in enumerate(verts)}
    return Plausibility(dict(sorted(refused.items(), key=lambda kv: order[kv[0]])),
                        tuple(warnings))
