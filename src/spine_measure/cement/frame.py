"""The treated vertebral body as seen by the cement code: polygon, endplates, walls, axes.

Part of the pure core (numpy, scikit-image). Every point is ``(row, col)`` in pixels of the
stored image; computations happen in *physical* coordinates ``(row * row_mm, col * col_mm)``
with the working spacing (:func:`working_spacing`), so anisotropic pixels give correct
distances.

Body frame
----------
Directions come from the landmarks, never from the image axes (``docs/conventions.md``):

* lateral film: the *width axis* ``e`` points from the middle of the posterior wall
  (``(Ps + Pi) / 2``) to the middle of the anterior wall (``(As + Ai) / 2``); the *caudal
  axis* ``n`` is perpendicular to ``e``, on the side of the inferior endplate;
* AP film: ``e`` points from the middle of the image-left side (``(SL + IL) / 2``) to the
  middle of the image-right side (``(SR + IR) / 2``), ``n`` again towards the inferior
  endplate.

A point ``q`` has frame coordinates ``s = (q - o) . e`` (mm along the width axis from the
posterior / left wall middle ``o``) and ``t = (q - o) . n`` (mm caudal). The endplates are
functions ``t_sup(s)``, ``t_inf(s)`` interpolated along their polylines (constant beyond the
corners), the walls functions ``s_first(t)`` (posterior / left) and ``s_last(t)``
(anterior / right).

The body polygon is ``As, Ai, (Mi), Pi, Ps, (Ms)`` on lateral films (docs/annotation_format.md) and
``SL, SR, IR, IL`` on AP films.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spine_measure.errors import SpineMeasureError
from spine_measure.landmarks import SpineLandmarks, Vertebra

__all__ = [
    "NOMINAL_LATERAL_DEPTH_MM",
    "NOMINAL_AP_WIDTH_MM",
    "BodyFrame",
    "CementError",
    "body_frame",
    "polyline_distance",
    "working_spacing",
]

#: Typical AP depth of a thoracolumbar body (mm); sets the working scale of uncalibrated films.
NOMINAL_LATERAL_DEPTH_MM = 33.0
#: Typical width of a thoracolumbar body on an AP film (mm); same purpose on AP films.
NOMINAL_AP_WIDTH_MM = 42.0


class CementError(SpineMeasureError, ValueError):
    """A treated vertebra whose cement cannot be analysed; the message names the level."""


def polyline_distance(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point ``(N, 2)`` to a polyline ``(K, 2)`` (same units).

    The distance to a segment ``a b`` is ``|p - (a + clip(((p - a).(b - a)) / |b - a|^2, 0, 1)
    (b - a))|``; the polyline distance is the minimum over its segments.

    Examples
    --------
    >>> polyline_distance(np.array([[0.0, 5.0], [3.0, 8.0]]), np.array([[0, 0], [0, 10.0]]))
    array([0., 3.])
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    line = np.asarray(polyline, dtype=float).reshape(-1, 2)
    best = np.full(len(p), np.inf)
    for a, b in zip(line[:-1], line[1:], strict=True):
        ab = b - a
        den = float(ab @ ab)
        t = np.zeros(len(p)) if den == 0 else np.clip((p - a) @ ab / den, 0.0, 1.0)
        foot = a + t[:, None] * ab
        best = np.minimum(best, np.hypot(*(p - foot).T))
    return best


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 0 else v


def working_spacing(vertebra: Vertebra, spacing: tuple[float, float] | None
                    ) -> tuple[tuple[float, float], bool]:
    """The spacing segmentation parameters are converted with, and whether it is nominal.

    A calibrated film uses its own spacing. An uncalibrated film has no mm, so its
    parameters (search margins, smoothing, minimum areas) use a *nominal* isotropic spacing
    that makes the vertebra's depth (lateral, ``|mid(As, Ai) - mid(Ps, Pi)|``) equal to
    :data:`NOMINAL_LATERAL_DEPTH_MM` or its width (AP) equal to :data:`NOMINAL_AP_WIDTH_MM`.
    Reported lengths stay in px; the nominal scale only sizes the image operations.
    """
    if spacing is not None:
        return (float(spacing[0]), float(spacing[1])), False
    if vertebra.view == "ap":
        a = (vertebra.point("SL") + vertebra.point("IL")) / 2
        b = (vertebra.point("SR") + vertebra.point("IR")) / 2
        nominal = NOMINAL_AP_WIDTH_MM
    else:
        a = (vertebra.point("Ps") + vertebra.point("Pi")) / 2
        b = (vertebra.point("As") + vertebra.point("Ai")) / 2
        nominal = NOMINAL_LATERAL_DEPTH_MM
    size_px = float(np.hypot(*(b - a)))
    if not size_px > 1.0:
        raise CementError(f"{vertebra.level}: body landmarks coincide; cannot size the cement "
                          f"search on an uncalibrated film")
    mm = nominal / size_px
    return (mm, mm), True


@dataclass(frozen=True)
class BodyFrame:
    """Geometry of one vertebral body in physical coordinates (see the module docstring).

    Attributes
    ----------
    level, view : str
    spacing : (row_mm, col_mm)
        Spacing used for the physical coordinates (the working spacing).
    polygon_px : ndarray (K, 2)
        Body polygon in pixels.
    superior_px, inferior_px : ndarray
        Endplate polylines in pixels, from the posterior (left) to the anterior (right) end.
    first_wall_px, last_wall_px : ndarray (2, 2)
        Posterior (AP: left) and anterior (AP: right) wall, superior end first.
    origin, e, n : ndarray (2,)
        Frame origin (mm) and unit width / caudal axes.
    """

    level: str
    view: str
    spacing: tuple[float, float]
    polygon_px: np.ndarray
    superior_px: np.ndarray
    inferior_px: np.ndarray
    first_wall_px: np.ndarray
    last_wall_px: np.ndarray
    origin: np.ndarray
    e: np.ndarray
    n: np.ndarray

    # -- coordinates -------------------------------------------------------------------
    def to_mm(self, pts_px: np.ndarray) -> np.ndarray:
        """Pixels ``(row, col)`` -> physical ``(row * row_mm, col * col_mm)``."""
        return np.asarray(pts_px, dtype=float) * np.asarray(self.spacing)

    def st(self, pts_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame coordinates ``(s, t)`` in mm of pixel points ``(N, 2)``."""
        rel = self.to_mm(np.asarray(pts_px, dtype=float).reshape(-1, 2)) - self.origin
        return rel @ self.e, rel @ self.n

    def _curve(self, poly_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, t = self.st(poly_px)
        order = np.argsort(s)
        return s[order], t[order]

    def t_superior(self, s: np.ndarray) -> np.ndarray:
        """Caudal coordinate of the superior endplate at width coordinate ``s`` (mm)."""
        cs, ct = self._curve(self.superior_px)
        return np.interp(s, cs, ct)

    def t_inferior(self, s: np.ndarray) -> np.ndarray:
        """Caudal coordinate of the inferior endplate at width coordinate ``s`` (mm)."""
        cs, ct = self._curve(self.inferior_px)
        return np.interp(s, cs, ct)

    def _wall(self, wall_px: np.ndarray, t: np.ndarray) -> np.ndarray:
        ws, wt = self.st(wall_px)
        order = np.argsort(wt)
        return np.interp(t, wt[order], ws[order])

    def s_first(self, t: np.ndarray) -> np.ndarray:
        """Width coordinate of the posterior (AP: left) wall at caudal coordinate ``t``."""
        return self._wall(self.first_wall_px, t)

    def s_last(self, t: np.ndarray) -> np.ndarray:
        """Width coordinate of the anterior (AP: right) wall at caudal coordinate ``t``."""
        return self._wall(self.last_wall_px, t)

    def local_height(self, s: np.ndarray) -> np.ndarray:
        """Body height along the caudal axis at width coordinate ``s``: ``t_inf - t_sup``."""
        return self.t_inferior(s) - self.t_superior(s)

    def outside_depths(self, pts_px: np.ndarray) -> np.ndarray:
        """How far (mm) each point lies beyond each side, shape ``(N, 4)``.

        Columns: superior (``t_sup(s) - t``), inferior (``t - t_inf(s)``), first wall
        (posterior / left, ``s_first(t) - s``) and last wall (anterior / right,
        ``s - s_last(t)``). Positive means outside that side.
        """
        s, t = self.st(pts_px)
        return np.stack([self.t_superior(s) - t, t - self.t_inferior(s),
                         self.s_first(t) - s, s - self.s_last(t)], 1)

    # -- extents -----------------------------------------------------------------------
    def extent(self) -> tuple[float, float, float, float]:
        """``(s_min, s_max, t_min, t_max)`` of the body polygon in mm."""
        s, t = self.st(self.polygon_px)
        return float(s.min()), float(s.max()), float(t.min()), float(t.max())

    def frame_box_px(self, ds0: float, ds1: float, dt0: float, dt1: float) -> np.ndarray:
        """Corners (px) of the frame rectangle around the body widened by the margins (mm):
        ``ds0`` behind the first wall, ``ds1`` beyond the last, ``dt0`` cranial, ``dt1``
        caudal."""
        s0, s1, t0, t1 = self.extent()
        corners = [(s0 - ds0, t0 - dt0), (s1 + ds1, t0 - dt0), (s1 + ds1, t1 + dt1),
                   (s0 - ds0, t1 + dt1)]
        mm = np.array([self.origin + s * self.e + t * self.n for s, t in corners])
        return mm / np.asarray(self.spacing)

    def rasterize(self, poly_px: np.ndarray, r0: int, c0: int, shape: tuple[int, int]
                  ) -> np.ndarray:
        """Boolean mask of a polygon on the crop starting at ``(r0, c0)``: a pixel is inside
        when its centre is inside or on the edge (OpenCV ``fillPoly`` with 1/256 px vertex
        precision)."""
        return fill_polygon(np.asarray(poly_px, dtype=float) - (r0, c0), shape)


def fill_polygon(poly_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon ``(K, 2)`` of ``(row, col)`` pixel coordinates on ``shape``."""
    out = np.zeros(shape, dtype=np.uint8)
    pts = np.rint(np.asarray(poly_px, dtype=float)[:, ::-1] * 256).astype(np.int32)
    cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=8)
    return out.astype(bool)


def body_frame(vertebra: Vertebra, spacing: tuple[float, float]) -> BodyFrame:
    """Build the :class:`BodyFrame` of a lateral or AP vertebra under ``spacing`` (mm).

    Raises
    ------
    CementError
        S1 (no body outline), or landmarks that do not span a body (coincident walls or
        endplates).
    """
    lv = vertebra.level
    if vertebra.view == "ap":
        sup = np.stack([vertebra.point("SL"), vertebra.point("SR")])
        inf = np.stack([vertebra.point("IL"), vertebra.point("IR")])
        first = np.stack([vertebra.point("SL"), vertebra.point("IL")])
        last = np.stack([vertebra.point("SR"), vertebra.point("IR")])
        poly = np.stack([sup[0], sup[1], inf[1], inf[0]])
    else:
        if lv == "S1":
            raise CementError("S1: the sacrum has no body outline (only As, Ps); cement is "
                              "analysed in vertebrae with As, Ai, Ps, Pi")
        P = vertebra.point
        sup = np.stack([P("Ps"), P("Ms"), P("As")]) if vertebra.has("Ms") \
            else np.stack([P("Ps"), P("As")])
        inf = np.stack([P("Pi"), P("Mi"), P("Ai")]) if vertebra.has("Mi") \
            else np.stack([P("Pi"), P("Ai")])
        first = np.stack([P("Ps"), P("Pi")])
        last = np.stack([P("As"), P("Ai")])
        poly = np.concatenate([[P("As"), P("Ai")], inf[::-1][1:], [P("Ps")], sup[1:-1]])
    sp = np.asarray(spacing, dtype=float)
    o = first.mean(0) * sp
    e_vec = last.mean(0) * sp - o
    if np.hypot(*e_vec) <= 1e-6:
        raise CementError(f"{lv}: the two walls of the body coincide; cannot build its frame")
    e = _unit(e_vec)
    n = np.array([-e[1], e[0]])
    caud = (inf.mean(0) - sup.mean(0)) * sp
    if abs(float(caud @ n)) <= 1e-6:
        raise CementError(f"{lv}: superior and inferior endplates coincide; cannot build its "
                          f"frame")
    if caud @ n < 0:
        n = -n
    return BodyFrame(lv, vertebra.view, (float(sp[0]), float(sp[1])), poly, sup, inf,
                     first, last, o, e, n)


def neighbour_endplates(landmarks: SpineLandmarks, level: str
                        ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Facing endplates of the adjacent vertebrae in px: the inferior endplate of the one
    above and the superior endplate of the one below (None when not annotated)."""
    above, below = landmarks.neighbours(level)
    up = down = None
    if above is not None:
        if above.view == "ap":
            up = np.stack([above.point("IL"), above.point("IR")])
        elif above.level != "S1":
            up = np.stack([above.point(p) for p in ("Pi", "Mi", "Ai") if above.has(p)])
    if below is not None:
        if below.view == "ap":
            down = np.stack([below.point("SL"), below.point("SR")])
        else:
            down = np.stack([below.point(p) for p in ("Ps", "Ms", "As") if below.has(p)])
    return up, down
