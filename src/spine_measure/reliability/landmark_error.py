"""Landmark placement error from two readings of the same films.

The two readers' coordinates of the same point on the same film differ by ``d = b - a``. With
each reader placing the point with independent error of SD ``sigma`` per direction, ``d`` has
variance ``2 sigma^2``, so

    sigma_along  = sqrt(mean(d_along^2) / 2)      sigma_across = sqrt(mean(d_across^2) / 2)

where ``d_along`` / ``d_across`` are the components of ``d`` along and across the point's
endplate (``Ps -> As`` for the superior points, ``Pi -> Ai`` for the inferior ones, as reader a
placed them). The mean of ``d^2`` — not the variance about the mean — keeps a systematic
difference between the readers in the error (the agreement form). Calibrated films give mm,
uncalibrated ones px; the two are never pooled (mm wins when both exist).

:func:`landmark_differences` gives one row per (film, level, point);
:func:`landmark_error_summary` the SDs (overall and per point) that
:func:`spine_measure.measurements.uncertainty.LandmarkErrorModel` takes, written by the
reliability run as ``landmark_error.json`` and read back by :func:`model_from_summary`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from spine_measure.landmarks import SpineLandmarks

__all__ = [
    "MIN_PAIRS_PER_POINT",
    "landmark_differences",
    "landmark_error_summary",
    "model_from_summary",
]

#: Points with fewer pairs than this use the overall SDs (a per-point SD from a handful of
#: pairs is noisier than the pooled one).
MIN_PAIRS_PER_POINT = 20

_ENDPLATE = {"As": ("Ps", "As"), "Ms": ("Ps", "As"), "Ps": ("Ps", "As"),
             "Ai": ("Pi", "Ai"), "Mi": ("Pi", "Ai"), "Pi": ("Pi", "Ai"),
             "SL": ("SL", "SR"), "SR": ("SL", "SR"), "IL": ("IL", "IR"), "IR": ("IL", "IR")}


def landmark_differences(a: SpineLandmarks, b: SpineLandmarks,
                         spacing: tuple[float, float] | None) -> list[dict[str, Any]]:
    """One dict per point both readings placed: ``level``, ``point``, ``d_row_px``,
    ``d_col_px`` (``b - a``), ``d_along``, ``d_across`` and their ``unit`` (mm with a
    spacing, else px)."""
    scale = np.array(spacing if spacing is not None else (1.0, 1.0), float)
    unit = "mm" if spacing is not None else "px"
    rows = []
    for va in a:
        vb = b.get(va.level)
        if vb is None:
            continue
        for name in va.points:
            if not vb.has(name):
                continue
            d_px = vb.point(name) - va.point(name)
            p, q = _ENDPLATE[name]
            e = (va.point(q) - va.point(p)) * scale if va.has(p) and va.has(q) and p != q \
                else np.array([0.0, 1.0])
            norm = float(np.hypot(*e))
            e = e / norm if norm > 0 else np.array([0.0, 1.0])
            d = d_px * scale
            rows.append({"level": va.level, "point": name, "d_row_px": float(d_px[0]),
                         "d_col_px": float(d_px[1]), "d_along": float(d @ e),
                         "d_across": float(d[1] * e[0] - d[0] * e[1]), "unit": unit})
    return rows


def _sd(values: np.ndarray) -> float:
    return math.sqrt(float(np.mean(values ** 2)) / 2.0) if values.size else math.nan


def landmark_error_summary(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-reader landmark SDs from :func:`landmark_differences` rows (see the module).

    Returns a JSON-ready dict: ``unit``, ``n_pairs``, ``n_films``, ``sd_along``,
    ``sd_across``, ``sd_isotropic`` (``sqrt((sd_along^2 + sd_across^2) / 2)``), ``per_point``
    (``{point: {"sd_along", "sd_across", "n_pairs"}}``), ``min_pairs_per_point``,
    ``formula`` and ``reason`` (non-empty when nothing could be estimated).
    """
    rows = list(rows)
    units = {r["unit"] for r in rows}
    unit = "mm" if "mm" in units else "px"
    use = [r for r in rows if r["unit"] == unit]
    out: dict[str, Any] = {
        "unit": unit, "n_pairs": len(use), "n_films": len({r.get("film", "") for r in use}),
        "formula": "sd = sqrt(mean(d^2) / 2), d = reader b - reader a, along / across the "
                   "point's endplate",
        "min_pairs_per_point": MIN_PAIRS_PER_POINT, "per_point": {}, "reason": "",
        "left_out_px_pairs": len(rows) - len(use) if unit == "mm" else 0,
    }
    if len(use) < 2:
        out.update(sd_along=None, sd_across=None, sd_isotropic=None,
                   reason=f"{len(use)} landmark pair(s): need at least 2")
        return out
    al = np.array([r["d_along"] for r in use])
    ac = np.array([r["d_across"] for r in use])
    sa, sc = _sd(al), _sd(ac)
    out.update(sd_along=sa, sd_across=sc, sd_isotropic=math.sqrt((sa ** 2 + sc ** 2) / 2))
    for name in sorted({r["point"] for r in use}):
        sel = [r for r in use if r["point"] == name]
        out["per_point"][name] = {
            "sd_along": _sd(np.array([r["d_along"] for r in sel])),
            "sd_across": _sd(np.array([r["d_across"] for r in sel])),
            "n_pairs": len(sel)}
    return out


def model_from_summary(summary: Mapping[str, Any], *, source: str = "") -> Any:
    """The :class:`~spine_measure.measurements.uncertainty.LandmarkErrorModel` of a summary.

    Points with at least ``min_pairs_per_point`` pairs keep their own SDs.

    Raises
    ------
    ValueError
        The summary has no SDs (its ``reason`` is quoted).
    """
    from spine_measure.measurements.uncertainty import LandmarkErrorModel

    if summary.get("sd_along") is None or summary.get("sd_across") is None:
        raise ValueError(f"no landmark SD: {summary.get('reason') or 'missing sd_along'}")
    min_n = int(summary.get("min_pairs_per_point", MIN_PAIRS_PER_POINT))
    per = {p: (float(v["sd_along"]), float(v["sd_across"]))
           for p, v in dict(summary.get("per_point", {})).items()
           if int(v.get("n_pairs", 0)) >= min_n}
    n = summary.get("n_pairs")
    what = f"{n} landmark pairs of {summary.get('n_films')} films"
    return LandmarkErrorModel(float(summary["sd_along"]), float(summary["sd_across"]),
                              str(summary.get("unit", "mm")), per,
                              f"{source}: {what}" if source else what)
