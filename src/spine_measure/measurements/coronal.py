"""Coronal (AP film) Cobb angles: the SRS endplate method and the AASCE 2019 mid-line method.

AP films carry four points per vertebra: ``SL``, ``SR`` (superior endplate, image left and
right) and ``IL``, ``IR`` (inferior endplate). Every line is oriented image-left ->
image-right, so the angle between two lines is ``|atan2(u x v, u . v)|`` in physical space,
in [0, 180). Coronal Cobb angles are reported unsigned, with their end vertebrae.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

from spine_measure.geometry import (
    DegenerateGeometryError,
    Line,
    line_through,
    midpoint,
    unsigned_line_angle,
)
from spine_measure.landmarks import LandmarkError
from spine_measure.measurements.context import FilmContext
from spine_measure.measurements.registry import PaperTerm, Result, register

__all__ = ["coronal_cobb_angle", "coronal_cobb_angle_midline", "degenerative_scoliosis"]

_UNSIGNED = ("unsigned (magnitude of the curve, 0-180 deg); the end vertebrae are reported "
             "in the provenance")


def _guard(name: str, missing: Any, unit: str) -> Callable[[Callable[..., Result]],
                                                           Callable[..., Result]]:
    def deco(fn: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(fn)
        def wrapper(ctx: FilmContext, *args: Any, **kw: Any) -> Result:
            try:
                return fn(ctx, *args, **kw)
            except (DegenerateGeometryError, LandmarkError) as exc:
                return ctx.result(name, missing, unit, str(exc))

        return wrapper

    return deco


def _ap_vertebrae(ctx: FilmContext) -> list[Any]:
    if ctx.landmarks.view != "ap":
        raise DegenerateGeometryError("coronal Cobb angle needs an AP film")
    verts = list(ctx.landmarks)
    if len(verts) < 2:
        raise DegenerateGeometryError("coronal Cobb angle needs at least two annotated "
                                      "vertebrae")
    return verts


def _largest(candidates: list[tuple[str, str, Line, Line]]) -> tuple[float, str, str]:
    best = (-1.0, "", "")
    for up, low, a, b in candidates:
        ang = unsigned_line_angle(a, b)
        if ang > best[0] + 1e-12:
            best = (ang, up, low)
    return best


@register(
    name="coronal_cobb_angle", family="coronal", scope="film", view="ap", kind="angle",
    required_landmarks="SL, SR, IL, IR of every vertebra on the AP film",
    definition="Endplate method (SRS): the largest angle between an endplate of one vertebra "
               "and an endplate of another (any superior or inferior endplate, the endplate "
               "line joining its left and right ends). The two end endplates are reported.",
    formula="max over endplates e1 of vertebra i, e2 of vertebra j (i < j) of "
            "|atan2(u1 x u2, u1 . u2)|, u = unit(right end - left end)",
    paper_terms=(PaperTerm("Cobb angle (coronal, endplate method)", "SRS"),
                 PaperTerm("degenerative scoliosis Cobb angle >= 10 deg", "Zeng 2025")),
    sign_convention=_UNSIGNED,
)
@_guard("coronal_cobb_angle", float("nan"), "deg")
def coronal_cobb_angle(ctx: FilmContext) -> Result:
    """Largest angle between two endplates of different vertebrae (deg)."""
    verts = _ap_vertebrae(ctx)
    lines = []
    for v in verts:
        for which, (left, right) in (("superior", ("SL", "SR")), ("inferior", ("IL", "IR"))):
            lines.append((v.level, which, line_through(
                v.points[left], v.points[right], ctx.spacing,
                what=f"{v.level} {which} endplate")))
    cands = [(f"{l1}:{w1}", f"{l2}:{w2}", a, b)
             for (l1, w1, a), (l2, w2, b) in itertools.combinations(lines, 2) if l1 != l2]
    angle, up, low = _largest(cands)
    return ctx.result("coronal_cobb_angle", angle, "deg",
                      detail={"upper": up, "lower": low,
                              "upper_level": up.split(":")[0],
                              "lower_level": low.split(":")[0]})


def _midline(ctx: FilmContext, v: Any) -> Line:
    left = midpoint(v.points["SL"], v.points["IL"])
    right = midpoint(v.points["SR"], v.points["IR"])
    return line_through(left, right, ctx.spacing, what=f"{v.level} mid-line")


@register(
    name="coronal_cobb_angle_midline", family="coronal", scope="film", view="ap",
    kind="angle",
    required_landmarks="SL, SR, IL, IR of every vertebra on the AP film",
    definition="AASCE 2019 challenge method: the largest angle between the mid-lines of any "
               "two vertebrae, a vertebra's mid-line joining the midpoint of its left side "
               "(SL-IL) to the midpoint of its right side (SR-IR). The two end vertebrae are "
               "reported.",
    formula="max over vertebrae i < j of |atan2(m_i x m_j, m_i . m_j)|, "
            "m = unit((SR + IR)/2 - (SL + IL)/2)",
    paper_terms=(PaperTerm("Cobb angle from vertebral mid-lines (challenge metric)",
                           "AASCE 2019"),),
    sign_convention=_UNSIGNED,
)
@_guard("coronal_cobb_angle_midline", float("nan"), "deg")
def coronal_cobb_angle_midline(ctx: FilmContext) -> Result:
    """Largest angle between two vertebral mid-lines (deg)."""
    verts = _ap_vertebrae(ctx)
    mids = [(v.level, _midline(ctx, v)) for v in verts]
    cands = [(l1, l2, a, b) for (l1, a), (l2, b) in itertools.combinations(mids, 2)]
    angle, up, low = _largest(cands)
    return ctx.result("coronal_cobb_angle_midline", angle, "deg",
                      detail={"upper": up, "lower": low, "upper_level": up, "lower_level": low})


@register(
    name="degenerative_scoliosis", family="coronal", scope="film", view="ap", kind="flag",
    required_landmarks="as coronal_cobb_angle",
    definition="Degenerative scoliosis flag: the endplate-method coronal Cobb angle is at "
               "least the threshold (default 10 deg, option scoliosis_threshold_deg); a risk "
               "factor for adjacent fracture. Unknown (empty) when the angle is missing.",
    formula="coronal_cobb_angle >= 10 deg",
    paper_terms=(PaperTerm("degenerative scoliosis (Cobb >= 10 deg) as a risk factor",
                           "Zeng 2025"),),
    values="true, false, empty = unknown",
)
def degenerative_scoliosis(ctx: FilmContext) -> Result:
    """True when coronal_cobb_angle >= the threshold; None (with reason) when unknown."""
    cobb = coronal_cobb_angle(ctx)
    thr = ctx.options.scoliosis_threshold_deg
    if not cobb.ok:
        return ctx.result("degenerative_scoliosis", None, "", cobb.reason)
    return ctx.result("degenerative_scoliosis", bool(float(cobb.value) >= thr), "",  # type: ignore[arg-type]
                      detail={"threshold_deg": thr, "coronal_cobb_angle_deg": cobb.value,
                              **dict(cobb.detail)})
