"""Coronal (AP film) Cobb angles: the SRS endplate method and the AASCE 2019 mid-line method.

AP films carry four points per vertebra: ``SL``, ``SR`` (superior endplate, image left and
right) and ``IL``, ``IR`` (inferior endplate). Every line is oriented image-left ->
image-right, so the angle between two lines is ``|atan2(u x v, u . v)|`` in physical space,
in [0, 180). Coronal Cobb angles are reported unsigned, with their end vertebrae.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from spine_measure.geometry import DegenerateGeometryError, Seg, segment
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
    if ctx.refused:
        raise DegenerateGeometryError("; ".join(ctx.refused_reason(lv) or ""
                                                for lv in ctx.refused))
    if len(verts) < 2:
        raise DegenerateGeometryError("coronal Cobb angle needs at least two annotated "
                                      "vertebrae")
    return verts


def _largest(lines: list[tuple[str, str, Seg]]) -> tuple[float, str, str]:
    """Largest ``|atan2(u x v, u . v)|`` over pairs of lines of different vertebrae.

    ``lines`` holds ``(level, label, segment)``; pairs are visited in
    ``itertools.combinations`` order and a later pair wins only when larger by > 1e-12, so
    the first of (numerically) tied pairs is reported.
    """
    best, up, low = -1.0, "", ""
    degrees, atan2 = math.degrees, math.atan2
    n = len(lines)
    for i in range(n):
        l1, lab1, a = lines[i]
        ur, uc = a[4], a[5]
        for j in range(i + 1, n):
            l2, lab2, b = lines[j]
            if l1 == l2:
                continue
            vr, vc = b[4], b[5]
            ang = abs(degrees(atan2(ur * vc - uc * vr, ur * vr + uc * vc)))
            if ang > best + 1e-12:
                best, up, low = ang, lab1, lab2
    return best, up, low


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
def coronal_cobb_angle(ctx: FilmContext) -> Result:
    """Largest angle between two endplates of different vertebrae (deg)."""
    # memoised per film: degenerative_scoliosis reuses it
    r = ctx.memo("coronal_cobb_angle")
    return r if r is not None else ctx.remember("coronal_cobb_angle", _coronal_cobb_angle(ctx))


@_guard("coronal_cobb_angle", float("nan"), "deg")
def _coronal_cobb_angle(ctx: FilmContext) -> Result:
    verts = _ap_vertebrae(ctx)
    sr, sc = ctx.pixel_scale
    lines = []
    for v in verts:
        pts = v.points
        for which, left, right in (("superior", "SL", "SR"), ("inferior", "IL", "IR")):
            (r0, c0), (r1, c1) = pts[left], pts[right]
            lines.append((v.level, f"{v.level}:{which}", segment(
                r0 * sr, c0 * sc, r1 * sr, c1 * sc, f"{v.level} {which} endplate")))
    angle, up, low = _largest(lines)
    return ctx.result("coronal_cobb_angle", angle, "deg",
                      detail={"upper": up, "lower": low,
                              "upper_level": up.split(":")[0],
                              "lower_level": low.split(":")[0]})


def _midline(ctx: FilmContext, v: Any) -> Seg:
    """Mid-line of an AP vertebra: ``(SL + IL)/2 -> (SR + IR)/2``, in physical space."""
    pts = v.points
    (a0, a1), (b0, b1) = pts["SL"], pts["IL"]
    (c0, c1), (d0, d1) = pts["SR"], pts["IR"]
    sr, sc = ctx.pixel_scale
    return segment((a0 + b0) / 2.0 * sr, (a1 + b1) / 2.0 * sc,
                   (c0 + d0) / 2.0 * sr, (c1 + d1) / 2.0 * sc, f"{v.level} mid-line")


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
    angle, up, low = _largest([(v.level, v.level, _midline(ctx, v)) for v in verts])
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
