"""Refine a click: move a corner or mid-endplate point to the edge the image shows.

Method (``docs/propagation.md``, "Refining a click"):

1. Gaussian-derivative gradient (``sigma_px``) of a window around the click.
2. The **endplate**: profiles across the endplate direction (the direction to the other
   corner of the same endplate, e.g. ``As -> Ps``) at several distances along it from the
   click; on each profile, the strongest rise of brightness *into the body* (the body lies
   towards the other corner of the same wall, e.g. ``As -> Ai``) within ``radius_px`` of the
   click's line, located to a fraction of a pixel by the centroid of the peak. A straight
   line is fitted to these edge points (least squares, one round of outlier removal).
3. The **wall** (corners only): the same across the wall direction.
4. The refined corner is the intersection of the two lines; a mid-endplate point is the
   click projected onto the endplate line.

It answers only when the image gives a clear answer: a strong edge point on at least
:data:`MIN_EDGE_PROFILES` of the nine profiles of each line (the peak at least
:data:`MIN_CONTRAST` times the window's median gradient), a straight fit
(RMS residual <= 1 px + sigma/2), a line within 25 deg of the expected direction, endplate
and wall at least 30 deg apart, and the result within ``radius_px`` of the click. Otherwise
the click stays where it is and the result says why.

Pure numpy/scipy: no file, no GUI. Points are ``(row, col)`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "MIN_CONTRAST",
    "MIN_EDGE_PROFILES",
    "N_PROFILES",
    "Refinement",
    "refine_landmark",
    "refine_point",
    "refinement_directions",
]

MIN_CONTRAST = 2.5
"""An edge point counts when its gradient is at least this many times the window's median."""

N_PROFILES = 9
"""Profiles sampled across each line (endplate, wall)."""

MIN_EDGE_PROFILES = 7
"""A line is fitted only when at least this many of its :data:`N_PROFILES` profiles show an
edge point (outlier removal never leaves fewer): the edge must run along most of its length. A
short strong edge (on AP films, the ring of a pedicle or a rib crossing the corner) does not
count; with 4 of 9, most answers on real AP films were such edges (``docs/propagation.md``)."""

# point -> (other corner of its endplate, other corner of its wall); mid points use the
# endplate's two corners
_LATERAL = {"As": ("Ps", "Ai"), "Ai": ("Pi", "As"), "Ps": ("As", "Pi"), "Pi": ("Ai", "Ps")}
_AP = {"SL": ("SR", "IL"), "SR": ("SL", "IR"), "IL": ("IR", "SL"), "IR": ("IL", "SR")}
_MID = {"Ms": ("As", "Ps", "Ai"), "Mi": ("Ai", "Pi", "As")}


@dataclass(frozen=True)
class Refinement:
    """Outcome of a refinement: ``point`` is the refined point, or the click when ``ok`` is
    False (``reason`` says why). ``distance`` is how far it moved (px)."""

    point: tuple[float, float]
    ok: bool
    reason: str | None
    distance: float

    def __bool__(self) -> bool:
        return self.ok


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    if not n > 0:
        raise ValueError("direction of zero length")
    return v / n


def refinement_directions(points: Mapping[str, tuple[float, float]], name: str
                          ) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """``(endplate_dir, wall_dir or None, anchor)`` for point ``name`` of a vertebra.

    ``endplate_dir`` points along the endplate, ``wall_dir`` into the body along the wall
    (for a mid-endplate point: the unit normal towards the body, and None as second value).
    Raises ValueError when the needed neighbours are missing.
    """
    table = {**_LATERAL, **_AP}
    if name in table:
        ep, wall = table[name]
        if ep not in points or wall not in points or name not in points:
            raise ValueError(f'point "{name}" needs "{ep}" and "{wall}" to be refined')
        p = np.asarray(points[name], float)
        return (_unit(np.asarray(points[ep], float) - p),
                _unit(np.asarray(points[wall], float) - p), tuple(p))  # type: ignore[return-value]
    if name in _MID:
        a, b, body = _MID[name]
        if not all(k in points for k in (a, b, body)):
            raise ValueError(f'point "{name}" needs "{a}", "{b}" and "{body}" to be refined')
        pa, pb, pc = (np.asarray(points[k], float) for k in (a, b, body))
        d = _unit(pb - pa)
        n = np.array([-d[1], d[0]])
        if float(n @ (pc - pa)) < 0:
            n = -n
        return d, n, tuple(pa)  # type: ignore[return-value]
    raise ValueError(f'point "{name}" cannot be refined (corners and Ms/Mi only)')


def _edge_points(grad_r: np.ndarray, grad_c: np.ndarray, origin: np.ndarray,
                 click: np.ndarray, along: np.ndarray, into: np.ndarray,
                 offsets: np.ndarray, radius: float, floor: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Edge points on profiles across ``along`` (through ``click + t along``), searching
    ``+-radius`` in direction ``into`` for the largest gradient component along ``into``."""
    steps = np.arange(-radius, radius + 0.25, 0.5)
    base = click[None, :] + offsets[:, None] * along[None, :]          # (K, 2)
    pts = base[:, None, :] + steps[None, :, None] * into[None, None, :]  # (K, S, 2)
    coords = (pts - origin).reshape(-1, 2).T
    gr = ndimage.map_coordinates(grad_r, coords, order=1, mode="nearest")
    gc = ndimage.map_coordinates(grad_c, coords, order=1, mode="nearest")
    prof = (gr * into[0] + gc * into[1]).reshape(len(offsets), len(steps))
    found, strength = [], []
    for k in range(len(offsets)):
        j = int(np.argmax(prof[k]))
        val = float(prof[k, j])
        if val < floor or j == 0 or j == len(steps) - 1:
            continue
        # centroid of the peak above half its height, within +-1.5 px
        lo, hi = max(0, j - 3), min(len(steps), j + 4)
        wgt = np.clip(prof[k, lo:hi] - 0.5 * val, 0.0, None)
        s = float((wgt * steps[lo:hi]).sum() / wgt.sum())
        found.append(base[k] + s * into)
        strength.append(val)
    return np.array(found).reshape(-1, 2), np.array(strength)


def _fit_line(pts: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(point on line, unit direction, RMS residual) by total least squares with one round of
    outlier removal (residual > max(1.5 px, 2.5 RMS))."""
    if len(pts) < MIN_EDGE_PROFILES:
        return None
    for _ in range(2):
        c = pts.mean(0)
        _, _, vt = np.linalg.svd(pts - c)
        d = vt[0]
        n = np.array([-d[1], d[0]])
        res = (pts - c) @ n
        rms = float(np.sqrt(np.mean(res ** 2)))
        keep = np.abs(res) <= max(1.5, 2.5 * rms)
        if keep.all() or keep.sum() < MIN_EDGE_PROFILES:
            break
        pts = pts[keep]
    if len(pts) < MIN_EDGE_PROFILES:
        return None
    return c, d, rms


def _intersect(p: np.ndarray, d: np.ndarray, q: np.ndarray, e: np.ndarray) -> np.ndarray:
    a = np.array([d, -e]).T
    t = np.linalg.solve(a, q - p)
    return p + t[0] * d


def refine_point(image: np.ndarray, click: tuple[float, float], *, endplate_dir: np.ndarray,
                 wall_dir: np.ndarray | None = None, corner: bool = True,
                 radius_px: float = 8.0, sigma_px: float = 1.5,
                 reach_px: float | None = None) -> Refinement:
    """Move ``click`` to the corner (or onto the endplate) the image shows nearby.

    Parameters
    ----------
    image : 2-D array
        The film, bright = dense.
    click : (row, col)
    endplate_dir : (2,) array
        Direction along the endplate, pointing towards the body's other corner.
    wall_dir : (2,) array
        Corner: direction along the wall into the body. Mid-endplate point: the normal to the
        endplate pointing into the body.
    corner : bool
        True for a corner (intersect endplate and wall), False for a mid-endplate point.
    radius_px : float
        The point never moves further than this; the edge search spans +-radius.
    sigma_px : float
        Scale of the Gaussian derivative.
    reach_px : float, optional
        How far along each line edge points are sampled (default ``3 * radius_px``).

    Returns
    -------
    Refinement
        Never raises for an unclear image: ``ok`` False and the click kept.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((80, 80)); img[30:, 30:] = 1.0     # a body whose corner is (30, 30)
    >>> r = refine_point(img, (33.0, 27.5), endplate_dir=np.array([0.0, 1.0]),
    ...                  wall_dir=np.array([1.0, 0.0]), radius_px=8)
    >>> r.ok, [abs(x - 29.5) < 0.2 for x in r.point]   # the step lies between 29 and 30
    (True, [True, True])
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f'Argument "image" must be 2-D; got shape {img.shape}')
    if not (radius_px > 0 and sigma_px > 0):
        raise ValueError('Arguments "radius_px" and "sigma_px" must be > 0')
    c = np.asarray(click, float)
    if wall_dir is None:
        raise ValueError('Argument "wall_dir" is needed (wall direction or endplate normal)')
    d = _unit(np.asarray(endplate_dir, float))
    w = _unit(np.asarray(wall_dir, float))
    reach = 3.0 * radius_px if reach_px is None else float(reach_px)
    half = int(math.ceil(reach + 2 * radius_px + 4 * sigma_px)) + 2
    r0, c0 = max(0, int(c[0]) - half), max(0, int(c[1]) - half)
    r1, c1 = min(img.shape[0], int(c[0]) + half + 1), min(img.shape[1], int(c[1]) + half + 1)
    if r1 - r0 < 8 or c1 - c0 < 8:
        return Refinement(tuple(c), False, "the click is outside the image", 0.0)
    win = img[r0:r1, c0:c1].astype(np.float32)
    gr = ndimage.gaussian_filter(win, sigma_px, order=(1, 0))
    gc = ndimage.gaussian_filter(win, sigma_px, order=(0, 1))
    mag = np.hypot(gr, gc)
    floor = MIN_CONTRAST * float(np.median(mag)) + 1e-12
    origin = np.array([r0, c0], float)
    if corner:
        offs = np.linspace(0.5 * radius_px, reach, N_PROFILES)
    else:
        offs = np.linspace(-reach / 2, reach / 2, N_PROFILES)
    max_rms = 1.0 + 0.5 * sigma_px

    def side(name: str, along: np.ndarray, inward: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, float] | str:
        """The edge line of one side (endplate or wall), or the reason there is none."""
        pts, _ = _edge_points(gr, gc, origin, c, along, inward, offs, radius_px, floor)
        line = _fit_line(pts, sigma_px)
        if line is None:
            return f"no clear {name} edge near the click"
        if line[2] > max_rms:
            return f"the {name} edge is not straight (RMS {line[2]:.1f} px)"
        if _angle(line[1], along) > 25.0:
            return f"the edge found does not run along the {name}"
        return line

    # endplate: profiles across the endplate, rising into the body along the wall / normal
    ep = side("endplate", d, w if not corner else _towards(np.array([-d[1], d[0]]), w))
    if isinstance(ep, str):
        return Refinement(tuple(c), False, ep, 0.0)
    if corner:
        wl = side("wall", w, _towards(np.array([-w[1], w[0]]), d))
        if isinstance(wl, str):
            return Refinement(tuple(c), False, wl, 0.0)
        if _angle(ep[1], wl[1]) < 30.0:
            return Refinement(tuple(c), False, "endplate and wall edges are nearly parallel",
                              0.0)
        p = _intersect(ep[0], ep[1], wl[0], wl[1])
    else:
        p = ep[0] + float((c - ep[0]) @ ep[1]) * ep[1]
    dist = float(np.hypot(*(p - c)))
    if dist > radius_px:
        return Refinement(tuple(c), False, f"the edge is {dist:.1f} px away, beyond the "
                                           f"{radius_px:g} px radius", 0.0)
    return Refinement((float(p[0]), float(p[1])), True, None, dist)


def _towards(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return v if float(v @ ref) >= 0 else -v


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two undirected lines, degrees in [0, 90]."""
    cosv = abs(float(a @ b)) / (float(np.hypot(*a)) * float(np.hypot(*b)))
    return math.degrees(math.acos(min(1.0, cosv)))


def refine_landmark(image: np.ndarray, points: Mapping[str, tuple[float, float]], name: str,
                    *, click: tuple[float, float] | None = None, radius_px: float = 8.0,
                    sigma_px: float = 1.5) -> Refinement:
    """Refine point ``name`` of one vertebra, using its other points for the directions.

    ``points`` are the vertebra's current points (``(row, col)``); ``click`` defaults to
    ``points[name]``. Raises ValueError when ``name`` cannot be refined (S1 points, a corner
    whose neighbours are missing).
    """
    if click is None:
        if name not in points:
            raise ValueError(f'point "{name}" is not placed and no click was given')
        click = points[name]
    pts = dict(points)
    pts[name] = tuple(click)  # type: ignore[assignment]
    d, w, _ = refinement_directions(pts, name)
    return refine_point(image, click, endplate_dir=d, wall_dir=w, corner=name not in _MID,
                        radius_px=radius_px, sigma_px=sigma_px)
