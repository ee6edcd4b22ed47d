"""Where the next landmark probably goes: a preview for guided placement (no Qt, no napari).

The preview is a hint drawn as a hollow ring; the reader always clicks the real position.
It comes from a *template* vertebra fitted to the points already placed on the current one:

* the template is the nearest annotated vertebra with its four corners (its shape is the
  best guess of the neighbour's shape), else a generic body (depth 1, height 0.8, anterior at
  column 0, caudal toward increasing rows) in both handednesses;
* with two or more points placed, a similarity transform (rotation, uniform scale,
  translation; Umeyama 1991 least squares) maps the template's points onto the placed ones
  and carries the wanted point along. Of the two generic handednesses the one with the
  smaller residual wins, ties (collinear points) broken by "caudal is down the image";
* with one point placed, the template is translated onto it;
* with none placed, the template vertebra is shifted by one vertebral step: the vector
  between the two nearest annotated vertebrae when there are two, else the template's own
  superior-to-inferior extent times 1.25 (body plus disc), toward the current level.

All points are ``(row, col)`` pixels of the stored image.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from spine_measure.landmarks import LEVELS

Point = tuple[float, float]

_GENERIC: dict[str, Point] = {
    "As": (0.0, 0.0), "Ms": (0.0, 0.5), "Ps": (0.0, 1.0),
    "Ai": (0.8, 0.0), "Mi": (0.8, 0.5), "Pi": (0.8, 1.0),
}
_CORNERS = ("As", "Ai", "Ps", "Pi")
_INDEX = {name: i for i, name in enumerate(LEVELS)}


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares similarity ``dst ~ s R src + t`` without reflection (Umeyama 1991).

    Returns ``(R, s, t)``. With ``n`` point pairs, ``mu`` the means and ``S`` the cross
    covariance ``(dst - mu_d)^T (src - mu_s) / n = U D V^T``: ``R = U diag(1, det(U V^T)) V^T``,
    ``s = trace(D diag(1, det)) / var(src)``, ``t = mu_d - s R mu_s``.
    """
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.diag([1.0, sign])
    rot = u @ fix @ vt
    var = float((a**2).sum() / len(src))
    scale = float(np.trace(np.diag(d) @ fix) / var) if var > 0 else 1.0
    return rot, scale, mu_d - scale * rot @ mu_s


def _fit(template: Mapping[str, Point], placed: Mapping[str, Point],
         name: str) -> tuple[np.ndarray, float, np.ndarray] | None:
    common = [n for n in placed if n in template]
    if name not in template or not common:
        return None
    src = np.array([template[n] for n in common], dtype=float)
    dst = np.array([placed[n] for n in common], dtype=float)
    want = np.asarray(template[name], dtype=float)
    if len(common) == 1:
        return dst[0] + (want - src[0]), 0.0, np.zeros(2)
    rot, scale, t = _similarity(src, dst)
    fitted = (scale * (rot @ src.T)).T + t
    residual = float(((fitted - dst) ** 2).sum())
    # caudal direction of the fitted template, for the generic tie-break
    down = scale * rot @ (np.array([1.0, 0.0]))
    return scale * rot @ want + t, residual, down


def _template(others: Mapping[str, Mapping[str, Point]], level: str) -> str | None:
    """The nearest annotated level with its four corners (cranial one first on ties)."""
    i = _INDEX[level]
    full = [lv for lv, pts in others.items() if lv != level and all(c in pts for c in _CORNERS)]
    if not full:
        return None
    return min(full, key=lambda lv: (abs(_INDEX[lv] - i), _INDEX[lv]))


def predict_point(level: str, name: str, placed: Mapping[str, Point],
                  others: Mapping[str, Mapping[str, Point]]) -> Point | None:
    """Predict ``(row, col)`` of point ``name`` of vertebra ``level``.

    Parameters
    ----------
    level : str
        The vertebra being annotated.
    name : str
        The point wanted (``"As"`` ... ``"Pi"``).
    placed : Mapping[str, (row, col)]
        Points of ``level`` placed so far.
    others : Mapping[str, Mapping[str, (row, col)]]
        Points of the other annotated vertebrae.

    Returns
    -------
    (row, col) or None
        None when there is nothing to go on (first point of the first vertebra).

    Examples
    --------
    >>> placed = {"As": (100.0, 50.0), "Ms": (100.0, 75.0)}
    >>> [round(v, 3) for v in predict_point("L1", "Ps", placed, {})]
    [100.0, 100.0]
    """
    ref = _template(others, level)
    if ref is not None:
        tpl = others[ref]
        if placed:
            fit = _fit(tpl, placed, name)
            return None if fit is None else (float(fit[0][0]), float(fit[0][1]))
        if name not in tpl:
            return None
        step = _vertebral_step(others, ref, level)
        p = np.asarray(tpl[name], dtype=float) + step
        return (float(p[0]), float(p[1]))
    if len(placed) < 2:  # no neighbour and one point: no scale known, nothing to show
        return None
    best: tuple[float, float, np.ndarray] | None = None
    for mirror in (False, True):
        tpl = {n: (r, -c) if mirror else (r, c) for n, (r, c) in _GENERIC.items()}
        fit = _fit(tpl, placed, name)
        if fit is None:
            continue
        p, residual, down = fit
        key = (round(residual, 6), 0.0 if down[0] > 0 else 1.0)
        if best is None or key < (best[0], best[1]):
            best = (key[0], key[1], p)
    if best is None:
        return None
    return (float(best[2][0]), float(best[2][1]))


def _centroid(points: Mapping[str, Point]) -> np.ndarray:
    return np.mean([points[c] for c in _CORNERS], axis=0)


def _vertebral_step(others: Mapping[str, Mapping[str, Point]], ref: str,
                    level: str) -> np.ndarray:
    """Vector from the template vertebra ``ref`` to where ``level`` should sit."""
    direction = 1 if _INDEX[level] > _INDEX[ref] else -1
    n_levels = abs(_INDEX[level] - _INDEX[ref])
    beyond = LEVELS[_INDEX[ref] - direction] if 0 <= _INDEX[ref] - direction < len(LEVELS) \
        else None
    pts = others[ref]
    if beyond is not None and beyond in others and all(c in others[beyond] for c in _CORNERS):
        step = _centroid(pts) - _centroid(others[beyond])
    else:
        sup = (np.asarray(pts["As"]) + np.asarray(pts["Ps"])) / 2.0
        inf = (np.asarray(pts["Ai"]) + np.asarray(pts["Pi"])) / 2.0
        step = direction * 1.25 * (inf - sup)
    return step * n_levels
