"""Pure plane geometry in physical space: distances, endplate lines, signed angles.

Part of the pure core (numpy only). Every function takes points as ``(row, col)`` pixels of
the stored image plus the pixel ``spacing = (row_mm, col_mm)`` (or ``None`` for an
uncalibrated film, which means ``(1.0, 1.0)`` and lengths in px), converts to physical
coordinates ``(row * row_mm, col * col_mm)`` and computes there, so anisotropic pixels give
correct lengths *and* angles.

Degenerate input (coincident points, zero-length lines, endplates in an impossible
arrangement) raises :class:`DegenerateGeometryError` with a one-line reason; the measurement
layer turns that into ``NaN`` plus the reason, so a batch never crashes on one bad vertebra.

Endplate lines
--------------
A lateral endplate is drawn by the reader as ``Ps–Ms–As`` (superior) or ``Pi–Mi–Ai``
(inferior). Its *line* is the line through the two corners, ``Ps -> As`` and ``Pi -> Ai``,
oriented from posterior to anterior: this is how readers draw endplate lines for Cobb and wedge
angles on a collapsed body whose middle point sinks into the cleft. ``Ms``/``Mi`` serve the
middle height only (``hm = |Ms - Mi|``). S1 has only its superior endplate ``Ps -> As``.

Fast path
---------
The measurement layer calls these once per endplate and angle for every film of a batch, so
besides the numpy-facing functions there are plain-float kernels on 2-vectors
(:func:`segment`, :func:`signed_segment_angle`, :func:`unsigned_segment_angle`): small
numpy arrays cost microseconds per call, ``math.hypot``/``math.atan2`` on floats a fraction
of that. The public functions delegate to the kernels, so both paths give the same numbers.

Sign convention
---------------
:func:`signed_endplate_angle` is positive when the two lines converge anteriorly (kyphosis,
anterior wedging) and negative when they converge posteriorly (lordosis). Anterior is the
direction from the posterior to the anterior corners, cranial the direction from the caudal to
the cranial line; neither depends on the image axes, so the angle is unchanged by mirroring,
rotating, translating and scaling the film together with its landmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spine_measure.errors import SpineMeasureError

__all__ = [
    "DegenerateGeometryError",
    "Line",
    "angle_between_directions",
    "distance",
    "endplate_line",
    "line_through",
    "midpoint",
    "polygon_area",
    "segment",
    "signed_endplate_angle",
    "signed_segment_angle",
    "to_physical",
    "unsigned_line_angle",
    "unsigned_segment_angle",
]

Spacing = tuple[float, float] | None

#: Relative tolerance below which a segment counts as zero length.
_EPS = 1e-9


class DegenerateGeometryError(SpineMeasureError, ValueError):
    """The points do not define the requested quantity (zero-length line, coincident points)."""


def _spacing(spacing: Spacing) -> np.ndarray:
    if spacing is None:
        return np.ones(2)
    arr = np.asarray(spacing, dtype=float)
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f'Argument "spacing" must be two positive finite numbers '
                         f"(row_mm, col_mm) or None; got {spacing!r}")
    return arr


def to_physical(points: np.ndarray | Sequence[float], spacing: Spacing) -> np.ndarray:
    """Convert ``(row, col)`` pixel coordinates to physical ``(row*row_mm, col*col_mm)``.

    Parameters
    ----------
    points : array_like, shape (2,) or (N, 2)
    spacing : (row_mm, col_mm) or None
        ``None`` keeps pixel units.

    Examples
    --------
    >>> to_physical([10, 20], (0.5, 0.25)).tolist()
    [5.0, 5.0]
    """
    arr = np.asarray(points, dtype=float)
    if arr.shape[-1] != 2:
        raise ValueError(f'Argument "points" must have shape (2,) or (N, 2); got {arr.shape}')
    return arr * _spacing(spacing)


def _spacing_pair(spacing: Spacing) -> tuple[float, float]:
    """``(row_mm, col_mm)`` as Python floats (``(1.0, 1.0)`` for None), validated."""
    if spacing is None:
        return (1.0, 1.0)
    try:
        r, c = spacing  # type: ignore[misc]
        r, c = float(r), float(c)
    except (TypeError, ValueError):
        _spacing(spacing)  # raises the documented message
        raise
    if not (math.isfinite(r) and math.isfinite(c) and r > 0.0 and c > 0.0):
        _spacing(spacing)
    return (r, c)


def _xy(p: np.ndarray | Sequence[float]) -> tuple[float, float]:
    """A ``(row, col)`` point as two Python floats (ValueError/TypeError when not a pair)."""
    a, b = p  # type: ignore[misc]
    return float(a), float(b)


def distance(p: np.ndarray | Sequence[float], q: np.ndarray | Sequence[float],
             spacing: Spacing = None) -> float:
    """Physical distance ``hypot((r1 - r0) * row_mm, (c1 - c0) * col_mm)``.

    Examples
    --------
    >>> distance((0, 0), (3, 4))
    5.0
    >>> distance((0, 0), (3, 4), (2.0, 1.0))  # hypot(6, 4)
    7.211102550927978
    """
    sr, sc = _spacing_pair(spacing)
    try:
        p0, p1 = _xy(p)
        q0, q1 = _xy(q)
    except (TypeError, ValueError):  # not a pair: the array path raises the clear message
        d = to_physical(np.asarray(q, dtype=float) - np.asarray(p, dtype=float), spacing)
        return float(math.hypot(d[0], d[1]))
    return math.hypot((q0 - p0) * sr, (q1 - p1) * sc)


def midpoint(p: np.ndarray | Sequence[float], q: np.ndarray | Sequence[float]) -> np.ndarray:
    """Midpoint ``(p + q) / 2`` (valid in pixel or physical space alike: the map is affine)."""
    return (np.asarray(p, dtype=float) + np.asarray(q, dtype=float)) / 2.0


@dataclass(frozen=True)
class Line:
    """An oriented line in physical space: ``start``, ``end`` and the unit ``direction``."""

    start: np.ndarray
    end: np.ndarray

    @property
    def vector(self) -> np.ndarray:
        """``end - start``."""
        return self.end - self.start

    @property
    def length(self) -> float:
        """``|end - start|``."""
        return _length(self)

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from ``start`` to ``end``."""
        return self.vector / self.length

    @property
    def midpoint(self) -> np.ndarray:
        """``(start + end) / 2``."""
        return (self.start + self.end) / 2.0


#: A line on the hot path, in plain floats: ``(r0, c0, r1, c1, ur, uc)`` = physical start,
#: physical end and the unit direction ``(end - start) / |end - start|``.
Seg = tuple[float, float, float, float, float, float]


def _length(line: Line) -> float:
    r0, c0 = _xy(line.start)
    r1, c1 = _xy(line.end)
    return math.hypot(r1 - r0, c1 - c0)


def _seg_of(line: Line) -> Seg:
    """The plain-float form of a :class:`Line` (a zero-length line gets a NaN direction)."""
    r0, c0 = _xy(line.start)
    r1, c1 = _xy(line.end)
    dr, dc = r1 - r0, c1 - c0
    n = math.hypot(dr, dc)
    if n == 0.0:
        return (r0, c0, r1, c1, math.nan, math.nan)
    return (r0, c0, r1, c1, dr / n, dc / n)


def segment(r0: float, c0: float, r1: float, c1: float, what: str = "line") -> Seg:
    """Plain-float oriented line from physical ``(r0, c0)`` to ``(r1, c1)``.

    The fast form of :func:`line_through` used by the measurement layer: same zero-length
    test (``|end - start| <= 1e-9 * max(1, |coordinates|)``), same error message.

    Raises
    ------
    DegenerateGeometryError
        When the two points coincide.
    """
    dr, dc = r1 - r0, c1 - c0
    n = math.hypot(dr, dc)
    if n <= _EPS * max(1.0, abs(r0), abs(c0), abs(r1), abs(c1)):
        raise DegenerateGeometryError(f"{what}: its two points coincide (zero-length line)")
    return (r0, c0, r1, c1, dr / n, dc / n)


def line_through(p: np.ndarray | Sequence[float], q: np.ndarray | Sequence[float],
                 spacing: Spacing = None, *, what: str = "line") -> Line:
    """Oriented physical line from ``p`` to ``q`` (pixels ``(row, col)``).

    Raises
    ------
    DegenerateGeometryError
        When ``p`` and ``q`` coincide (relative tolerance 1e-9).
    """
    a = to_physical(p, spacing)
    b = to_physical(q, spacing)
    segment(float(a[0]), float(a[1]), float(b[0]), float(b[1]), what)
    return Line(a, b)


def endplate_line(points: dict[str, np.ndarray] | object, which: str,
                  spacing: Spacing = None, *, level: str = "?") -> Line:
    """The endplate line of a lateral vertebra, oriented posterior -> anterior.

    Superior: ``Ps -> As``; inferior: ``Pi -> Ai`` (the line through the two corners; ``Ms``
    and ``Mi`` do not move the line, see the module docstring).

    Parameters
    ----------
    points : Vertebra or mapping name -> (row, col)
    which : {"superior", "inferior"}
    spacing : (row_mm, col_mm) or None
    level : str
        Used in error messages only.
    """
    names = {"superior": ("Ps", "As"), "inferior": ("Pi", "Ai")}
    if which not in names:
        raise ValueError(f'Argument "which" must be "superior" or "inferior"; got {which!r}')
    post, ant = names[which]
    pts = getattr(points, "points", points)
    if post not in pts or ant not in pts:
        raise DegenerateGeometryError(f"{level}: {which} endplate needs {post} and {ant}")
    return line_through(pts[post], pts[ant], spacing, what=f"{level} {which} endplate")


def angle_between_directions(u: np.ndarray, v: np.ndarray) -> float:
    """Signed angle in degrees from direction ``u`` to direction ``v`` in (row, col) axes.

    ``atan2(u x v, u . v)``; the sign depends on the handedness of the axes, so callers that
    need an anatomical sign multiply by an orientation (see :func:`signed_endplate_angle`).
    """
    u0, u1 = _xy(u)
    v0, v1 = _xy(v)
    return math.degrees(math.atan2(u0 * v1 - u1 * v0, u0 * v0 + u1 * v1))


def signed_segment_angle(cranial: Seg, caudal: Seg) -> float:
    """:func:`signed_endplate_angle` on plain-float lines (see :func:`segment`)."""
    r0, c0, r1, c1, ur, uc = cranial
    s0, d0, s1, d1, wr, wc = caudal
    ar, ac = ur + wr, uc + wc
    na = math.hypot(ar, ac)
    if na <= 1e-9:
        raise DegenerateGeometryError("endplate lines point in opposite directions "
                                      "(posterior and anterior points swapped?)")
    dr = (r0 + r1) / 2.0 - (s0 + s1) / 2.0
    dc = (c0 + c1) / 2.0 - (d0 + d1) / 2.0
    orient = (ar / na) * dc - (ac / na) * dr
    scale = max(1.0, abs(r0), abs(c0), abs(r1), abs(c1), abs(s0), abs(d0), abs(s1), abs(d1))
    if abs(orient) <= _EPS * scale:
        raise DegenerateGeometryError("cannot tell cranial from caudal: the endplate midpoints "
                                      "lie along the anterior direction")
    s = 1.0 if orient > 0 else -1.0
    return s * math.degrees(math.atan2(ur * wc - uc * wr, ur * wr + uc * wc))


def signed_endplate_angle(cranial: Line, caudal: Line) -> float:
    """Signed angle (degrees) between two posterior->anterior endplate lines.

    Let ``u``, ``w`` be the unit directions of the cranial and caudal line, ``a = u + w`` the
    mean anterior direction and ``d`` the vector from the caudal line's midpoint to the cranial
    line's midpoint (the cranial direction). With ``s = sign(a x d)`` (the handedness of the
    anatomical frame in image axes)::

        angle = s * atan2(u x w, u . w)

    which is positive when the lines converge anteriorly (the cranial line tilts towards the
    caudal one going anteriorly: kyphosis, anterior wedging) and negative when they converge
    posteriorly (lordosis). Mirroring flips both ``s`` and ``u x w``; rotation, translation
    and scaling change neither, so the result is independent of the image axes.

    Raises
    ------
    DegenerateGeometryError
        When the lines point in opposite directions (not both posterior -> anterior) or the
        cranial line does not lie on the cranial side of the caudal one (``a x d == 0``).

    Examples
    --------
    A body 20 mm high posteriorly and 10 mm anteriorly, 20 mm deep, facing +col, cranial up
    (-row): the superior endplate drops 10 mm over 20 mm, so the angle is atan(10/20).

    >>> sup = Line(np.array([0.0, 0.0]), np.array([10.0, 20.0]))     # Ps -> As
    >>> inf = Line(np.array([20.0, 0.0]), np.array([20.0, 20.0]))    # Pi -> Ai
    >>> round(signed_endplate_angle(sup, inf), 6) == round(math.degrees(math.atan(0.5)), 6)
    True
    """
    return signed_segment_angle(_seg_of(cranial), _seg_of(caudal))


def unsigned_segment_angle(u: Seg, v: Seg) -> float:
    """:func:`unsigned_line_angle` on plain-float lines: ``|atan2(u x v, u . v)|`` (deg)."""
    ur, uc = u[4], u[5]
    vr, vc = v[4], v[5]
    return abs(math.degrees(math.atan2(ur * vc - uc * vr, ur * vr + uc * vc)))


def unsigned_line_angle(u: Line, v: Line) -> float:
    """Angle in degrees, in [0, 180], between two oriented lines: ``|atan2(u x v, u . v)|``.

    Used for coronal Cobb angles, whose lines are all oriented image-left -> image-right.
    """
    return unsigned_segment_angle(_seg_of(u), _seg_of(v))


def polygon_area(points: np.ndarray | Sequence[Sequence[float]], spacing: Spacing = None) -> float:
    """Area of a simple polygon (shoelace formula) in physical units squared.

    Examples
    --------
    >>> polygon_area([(0, 0), (0, 4), (3, 4), (3, 0)])
    12.0
    """
    p = to_physical(np.asarray(points, dtype=float).reshape(-1, 2), spacing)
    x, y = p[:, 1], p[:, 0]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)
