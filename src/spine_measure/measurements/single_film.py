"""Single-film measurements on a lateral radiograph, per vertebra (SPEC §2).

Every function here takes a :class:`~spine_measure.measurements.context.FilmContext` and a
level and returns a :class:`~spine_measure.measurements.registry.Result`; degenerate geometry
gives ``NaN`` (or ``None``) plus a reason, never an exception. Lengths are in mm when the film
is calibrated, in px otherwise; angles in degrees; ratios in percent.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from spine_measure.geometry import (
    DegenerateGeometryError,
    endplate_line,
    signed_endplate_angle,
)
from spine_measure.landmarks import LEVELS, LandmarkError
from spine_measure.measurements.context import Endplate, FilmContext
from spine_measure.measurements.registry import PaperTerm, Result, register

__all__ = ["cobb_angle", "endplate_angle", "genant_from_heights"]

NAN = float("nan")

KYPHOSIS_SIGN = ("positive when the lines converge anteriorly (kyphosis, anterior wedging), "
                 "negative when they converge posteriorly (lordosis); anterior and cranial "
                 "come from the landmarks, not the image axes")

#: Genant grade thresholds on the height reduction, percent (SPEC §2).
GENANT_THRESHOLDS = (20.0, 25.0, 40.0)
#: A reduction within this many percentage points of a boundary counts as on it (floating
#: point: 1 - 80/100 is 19.999999999999996).
_BOUNDARY_TOL = 1e-9


def _unit(ctx: FilmContext, kind: str) -> str:
    return {"length": ctx.length_unit, "angle": "deg", "ratio": "pct", "grade": "grade",
            "category": "", "flag": ""}[kind]


def _guard(name: str, kind: str) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Turn DegenerateGeometryError / LandmarkError into a NaN (None) Result with the reason."""

    def deco(fn: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(fn)
        def wrapper(ctx: FilmContext, *args: Any, **kw: Any) -> Result:
            try:
                return fn(ctx, *args, **kw)
            except (DegenerateGeometryError, LandmarkError) as exc:
                missing = NAN if kind in ("length", "angle", "ratio") else None
                return ctx.result(name, missing, _unit(ctx, kind), str(exc))

        return wrapper

    return deco


def _ratio(num: float, den: float, what: str) -> float:
    if not math.isfinite(num) or not math.isfinite(den):
        raise DegenerateGeometryError(f"{what}: a height is missing")
    if den <= 0.0:
        raise DegenerateGeometryError(f"{what}: reference height is zero")
    return 100.0 * num / den


def _lateral(ctx: FilmContext, level: str) -> Any:
    v = ctx.landmarks[level]
    if ctx.landmarks.view != "lateral":
        raise DegenerateGeometryError(f"{level}: needs a lateral film")
    return v


# ----------------------------------------------------------------------------- heights
def _height_result(name: str, site: str) -> Callable[[FilmContext, str], Result]:
    @_guard(name, "length")
    def fn(ctx: FilmContext, level: str) -> Result:
        return ctx.result(name, ctx.height(_lateral(ctx, level), site), ctx.length_unit)

    fn.__name__ = name
    fn.__doc__ = f"{site.capitalize()} height of the vertebral body (see registry entry)."
    return fn


ha = register(
    name="ha", family="heights", scope="vertebra", view="lateral", kind="length",
    required_landmarks="As, Ai",
    definition="Anterior height of the vertebral body: distance between the anterior-superior "
               "and anterior-inferior corners.",
    formula="ha = |As - Ai|, in physical space: hypot(drow*row_mm, dcol*col_mm)",
    paper_terms=(PaperTerm("AVH, anterior vertebral height", "Li 2021"),
                 PaperTerm("anterior height Ha", "Genant 1993")),
)(_height_result("ha", "anterior"))

hm = register(
    name="hm", family="heights", scope="vertebra", view="lateral", kind="length",
    required_landmarks="Ms, Mi (optional points; NaN when absent)",
    definition="Middle height of the vertebral body: distance between the middle points of "
               "the superior and inferior endplates.",
    formula="hm = |Ms - Mi|",
    paper_terms=(PaperTerm("middle height Hm", "Genant 1993"),
                 PaperTerm("vertebral height at the middle site", "Xiong 2021")),
)(_height_result("hm", "middle"))

hp = register(
    name="hp", family="heights", scope="vertebra", view="lateral", kind="length",
    required_landmarks="Ps, Pi",
    definition="Posterior height of the vertebral body: distance between the "
               "posterior-superior and posterior-inferior corners.",
    formula="hp = |Ps - Pi|",
    paper_terms=(PaperTerm("posterior height Hp", "Genant 1993"),
                 PaperTerm("vertebral height at the posterior site", "Xiong 2021")),
)(_height_result("hp", "posterior"))


# ----------------------------------------------------------------------------- angles
def endplate_angle(ctx: FilmContext, a: Endplate, b: Endplate) -> float:
    """Signed angle (deg) between two endplates of one lateral film, cranial one first.

    Raises DegenerateGeometryError for a missing level, S1 inferior, or identical endplates.
    """
    if a.key == b.key:
        raise DegenerateGeometryError(f"{a}: an endplate against itself has no angle")
    cranial, caudal = (a, b) if a.key < b.key else (b, a)
    lines = []
    for ep in (cranial, caudal):
        if ep.level not in ctx.landmarks:
            raise DegenerateGeometryError(f"{ep.level} not annotated (needed for its "
                                          f"{ep.which} endplate)")
        if ep.level == "S1" and ep.which == "inferior":
            raise DegenerateGeometryError("S1 has only its superior endplate")
        lines.append(endplate_line(ctx.landmarks[ep.level], ep.which, ctx.spacing,
                                   level=ep.level))
    return signed_endplate_angle(lines[0], lines[1])


@register(
    name="wedge_angle", family="angles", scope="vertebra", view="lateral", kind="angle",
    required_landmarks="As, Ps (superior endplate), Ai, Pi (inferior endplate)",
    definition="Angle between the superior and the inferior endplate lines of the same "
               "vertebra. An endplate line passes through its two corners (Ps-As, Pi-Ai).",
    formula="WA = s * atan2(u x w, u . w), u = unit(As - Ps), w = unit(Ai - Pi), "
            "s = orientation of the (anterior, cranial) frame",
    paper_terms=(PaperTerm("WA, wedge angle", "Xiong 2021"),
                 PaperTerm('"Cobb angle" (LKA) of the fractured vertebra', "Li 2021")),
    sign_convention=KYPHOSIS_SIGN,
)
@_guard("wedge_angle", "angle")
def wedge_angle(ctx: FilmContext, level: str) -> Result:
    """Wedge angle of ``level`` (deg), positive for anterior wedging."""
    _lateral(ctx, level)
    if level == "S1":
        raise DegenerateGeometryError("S1 has only its superior endplate")
    value = endplate_angle(ctx, Endplate(level, "superior"), Endplate(level, "inferior"))
    return ctx.result("wedge_angle", value, "deg")


@register(
    name="regional_kyphotic_angle", family="angles", scope="vertebra", view="lateral",
    kind="angle",
    required_landmarks="As, Ps of the vertebra above; Ai, Pi of the vertebra below "
                       "(index L5: As, Ps of L4 and of S1)",
    definition="Angle between the superior endplate of the vertebra above the index vertebra "
               "and the inferior endplate of the vertebra below it (the directly adjacent "
               "levels). For an L5 index the superior endplates of L4 and of S1 are used.",
    formula="KA = angle(superior endplate of level-1, inferior endplate of level+1); "
            "L5: angle(L4 superior, S1 superior)",
    paper_terms=(PaperTerm("KA, kyphotic angle (Cobb's angle)", "Xiong 2021"),
                 PaperTerm("local kyphosis angle", "An 2021")),
    sign_convention=KYPHOSIS_SIGN,
)
@_guard("regional_kyphotic_angle", "angle")
def regional_kyphotic_angle(ctx: FilmContext, level: str) -> Result:
    """Regional kyphotic angle around ``level`` (deg), positive for kyphosis."""
    _lateral(ctx, level)
    i = LEVELS.index(level)
    if i == 0 or level == "S1":
        raise DegenerateGeometryError(f"{level}: no vertebra above/below on the chart of levels")
    upper = LEVELS[i - 1]
    if level == "L5":
        lower = Endplate("S1", "superior")
    else:
        lower = Endplate(LEVELS[i + 1], "inferior")
    top = Endplate(upper, "superior")
    value = endplate_angle(ctx, top, lower)
    return ctx.result("regional_kyphotic_angle", value, "deg",
                      detail={"upper": str(top), "lower": str(lower)})


@register(
    name="cobb_angle", family="angles", scope="film", view="lateral", kind="angle",
    required_landmarks="the two corners of each chosen endplate (Ps, As or Pi, Ai)",
    definition="Angle between any two chosen endplates of one film, e.g. the superior endplate "
               "of T10 and the inferior endplate of L2 (API option cobb=, CLI --cobb "
               "T10:superior,L2:inferior).",
    formula="Cobb = s * atan2(u x w, u . w) for the chosen cranial (u) and caudal (w) lines",
    paper_terms=(PaperTerm("Cobb angle (sagittal, between chosen end plates)", "SRS"),
                 PaperTerm("Cobb angle / kyphosis correction", "Zeng 2025")),
    sign_convention=KYPHOSIS_SIGN,
)
@_guard("cobb_angle", "angle")
def cobb_angle(ctx: FilmContext, a: Endplate, b: Endplate) -> Result:
    """Sagittal Cobb angle between endplates ``a`` and ``b`` (deg), positive for kyphosis."""
    cranial, caudal = (a, b) if a.key <= b.key else (b, a)
    if ctx.landmarks.view != "lateral":
        raise DegenerateGeometryError("sagittal Cobb angle needs a lateral film")
    value = endplate_angle(ctx, cranial, caudal)
    return ctx.result("cobb_angle", value, "deg",
                      detail={"upper": str(cranial), "lower": str(caudal)})


# ------------------------------------------------------------------------ compression
def _cr(name: str, site: str) -> Callable[[FilmContext, str], Result]:
    @_guard(name, "ratio")
    def fn(ctx: FilmContext, level: str) -> Result:
        v = _lateral(ctx, level)
        h = ctx.height(v, site)
        ref, used, reason = ctx.neighbour_reference(level, site)
        if not used:
            raise DegenerateGeometryError(reason)
        value = _ratio(h, ref, f"{level} {site} compression rate")
        return ctx.result(name, value, "pct", neighbours=used)

    fn.__name__ = name
    fn.__doc__ = f"Compression rate at the {site} site (percent)."
    return fn


_CR_NEIGHBOURS = ("Reference: the nearest annotated, non-excluded vertebra above and below "
                  "(mean of the two); with only one usable neighbour (always the upper one "
                  "at L5, since S1 has no body heights) that one alone; the levels used are "
                  "reported.")

cr_anterior = register(
    name="cr_anterior", family="compression", scope="vertebra", view="lateral", kind="ratio",
    required_landmarks="As, Ai of the vertebra and of its reference neighbours",
    definition="Anterior height of the index vertebra relative to the mean anterior height of "
               "its neighbours, in percent. " + _CR_NEIGHBOURS,
    formula="cr_anterior = ha / mean(ha of neighbours) * 100",
    paper_terms=(PaperTerm("CR, compression rate (anterior site)", "Xiong 2021"),
                 PaperTerm("AVHR, anterior vertebral height ratio", "Li 2021")),
)(_cr("cr_anterior", "anterior"))

cr_middle = register(
    name="cr_middle", family="compression", scope="vertebra", view="lateral", kind="ratio",
    required_landmarks="Ms, Mi of the vertebra and of its reference neighbours",
    definition="Middle height relative to the mean middle height of the neighbours, in "
               "percent. " + _CR_NEIGHBOURS,
    formula="cr_middle = hm / mean(hm of neighbours) * 100",
    paper_terms=(PaperTerm("CR, compression rate (middle site)", "Xiong 2021"),),
)(_cr("cr_middle", "middle"))

cr_posterior = register(
    name="cr_posterior", family="compression", scope="vertebra", view="lateral", kind="ratio",
    required_landmarks="Ps, Pi of the vertebra and of its reference neighbours",
    definition="Posterior height relative to the mean posterior height of the neighbours, in "
               "percent. " + _CR_NEIGHBOURS,
    formula="cr_posterior = hp / mean(hp of neighbours) * 100",
    paper_terms=(PaperTerm("CR, compression rate (posterior site)", "Xiong 2021"),),
)(_cr("cr_posterior", "posterior"))


@register(
    name="compression_pct", family="compression", scope="vertebra", view="lateral",
    kind="ratio",
    required_landmarks="As, Ai of the vertebra and of its reference neighbours",
    definition="Vertebral compression: the anterior height lost relative to the neighbours, "
               "in percent (Zeng 2025 flags >= 38.5 %).",
    formula="compression_pct = 100 - cr_anterior",
    paper_terms=(PaperTerm("vertebral compression degree", "Zeng 2025"),),
)
@_guard("compression_pct", "ratio")
def compression_pct(ctx: FilmContext, level: str) -> Result:
    """100 - cr_anterior (percent)."""
    cr = cr_anterior(ctx, level)
    if not cr.ok:
        raise DegenerateGeometryError(cr.reason or "cr_anterior missing")
    return ctx.result("compression_pct", 100.0 - float(cr.value), "pct",  # type: ignore[arg-type]
                      neighbours=cr.neighbours)


# ------------------------------------------------------------------------ morphometry
@register(
    name="wedge_ratio", family="morphometry", scope="vertebra", view="lateral", kind="ratio",
    required_landmarks="As, Ai, Ps, Pi",
    definition="Anterior over posterior height of the same vertebra, in percent "
               "(below 100 for an anterior wedge).",
    formula="wedge_ratio = ha / hp * 100",
    paper_terms=(PaperTerm("wedge index Ha/Hp (quantitative morphometry)", "Genant 1993"),),
)
@_guard("wedge_ratio", "ratio")
def wedge_ratio(ctx: FilmContext, level: str) -> Result:
    """ha / hp * 100."""
    v = _lateral(ctx, level)
    value = _ratio(ctx.height(v, "anterior"), ctx.height(v, "posterior"), f"{level} ha/hp")
    return ctx.result("wedge_ratio", value, "pct")


@register(
    name="biconcavity_ratio", family="morphometry", scope="vertebra", view="lateral",
    kind="ratio",
    required_landmarks="Ms, Mi, Ps, Pi",
    definition="Middle over posterior height of the same vertebra, in percent "
               "(below 100 for a biconcave body).",
    formula="biconcavity_ratio = hm / hp * 100",
    paper_terms=(PaperTerm("mid-wedge / biconcavity index Hm/Hp", "Genant 1993"),),
)
@_guard("biconcavity_ratio", "ratio")
def biconcavity_ratio(ctx: FilmContext, level: str) -> Result:
    """hm / hp * 100."""
    v = _lateral(ctx, level)
    value = _ratio(ctx.height(v, "middle"), ctx.height(v, "posterior"), f"{level} hm/hp")
    return ctx.result("biconcavity_ratio", value, "pct")


@register(
    name="crush_ratio", family="morphometry", scope="vertebra", view="lateral", kind="ratio",
    required_landmarks="Ps, Pi of the vertebra and of its reference neighbours",
    definition="Posterior height over the mean posterior height of the reference neighbours, "
               "in percent (below 100 for a crush deformity). " + _CR_NEIGHBOURS,
    formula="crush_ratio = hp / mean(hp of neighbours) * 100",
    paper_terms=(PaperTerm("crush index Hp / neighbouring Hp", "Genant 1993"),),
)
@_guard("crush_ratio", "ratio")
def crush_ratio(ctx: FilmContext, level: str) -> Result:
    """hp / mean neighbour hp * 100."""
    r = cr_posterior(ctx, level)
    if not r.ok:
        raise DegenerateGeometryError(r.reason or "posterior reference missing")
    return ctx.result("crush_ratio", r.value, "pct", neighbours=r.neighbours)


def genant_from_heights(ha: float, hm: float, hp: float, reference: float
                        ) -> tuple[int, str, float]:
    """Genant grade, shape and height reduction (percent) from the three heights.

    ``reduction = (D - min(ha, hm, hp)) / D * 100`` with ``D = max(hp, reference)``, where
    ``hm`` may be NaN (ignored) and ``reference`` is the neighbours' mean posterior height
    (NaN: ignored).
    Grade: ``< 20`` -> 0, ``20 <= r < 25`` -> 1, ``25 <= r <= 40`` -> 2, ``> 40`` -> 3.
    Shape (grade >= 1; ``"none"`` at grade 0) from the smallest height: ``hp`` -> ``"crush"``,
    else ``hm`` -> ``"biconcave"``, else ``ha`` -> ``"wedge"`` (ties resolved in that order).

    Examples
    --------
    >>> genant_from_heights(14.0, float("nan"), 20.0, float("nan"))  # 30 % anterior loss
    (2, 'wedge', 30.0)
    """
    heights = {"ha": ha, "hm": hm, "hp": hp}
    finite = {k: h for k, h in heights.items() if math.isfinite(h)}
    if "ha" not in finite or "hp" not in finite:
        raise DegenerateGeometryError("Genant grade needs ha and hp")
    denom = max(hp, reference) if math.isfinite(reference) else hp
    if denom <= 0:
        raise DegenerateGeometryError("Genant grade: reference height is zero")
    low = min(finite.values())
    reduction = (denom - low) / denom * 100.0
    t20, t25, t40 = GENANT_THRESHOLDS
    lo20, lo25, hi40 = t20 - _BOUNDARY_TOL, t25 - _BOUNDARY_TOL, t40 + _BOUNDARY_TOL
    grade = 0 if reduction < lo20 else 1 if reduction < lo25 else 2 if reduction <= hi40 else 3
    if grade == 0:
        shape = "none"
    else:
        tol = 1e-9 * max(finite.values())
        if finite["hp"] - low <= tol:
            shape = "crush"
        elif "hm" in finite and finite["hm"] - low <= tol:
            shape = "biconcave"
        else:
            shape = "wedge"
    return grade, shape, reduction


def _genant(ctx: FilmContext, level: str) -> tuple[int, str, float, tuple[str, ...]]:
    v = _lateral(ctx, level)
    ha_ = ctx.height(v, "anterior")
    hp_ = ctx.height(v, "posterior")
    hm_ = ctx.try_height(v, "middle")
    ref, used, _ = ctx.neighbour_reference(level, "posterior")
    grade, shape, reduction = genant_from_heights(ha_, hm_, hp_, ref)
    return grade, shape, reduction, used


_GENANT_DEF = ("Genant semi-quantitative grade from the largest height reduction: "
               "reduction = 1 - min(ha, hm, hp) / max(hp, neighbour reference), the neighbour "
               "reference being the mean posterior height of the reference neighbours "
               "(own hp alone when there is none); hm is skipped when Ms/Mi are absent. "
               "Grade 0 below 20 %, 1 for 20-25 %, 2 for 25-40 %, 3 above 40 % "
               "(boundaries: 20 and 25 belong to the higher grade, 40 to grade 2).")


@register(
    name="genant_grade", family="morphometry", scope="vertebra", view="lateral", kind="grade",
    required_landmarks="As, Ai, Ps, Pi (Ms, Mi when given) and the neighbours' Ps, Pi",
    definition=_GENANT_DEF,
    formula="r = (1 - min(ha, hm, hp) / max(hp, mean neighbour hp)) * 100; "
            "grade = 0 if r < 20, 1 if r < 25, 2 if r <= 40, else 3",
    paper_terms=(PaperTerm("semiquantitative grade 0-3 (normal, mild, moderate, severe)",
                           "Genant 1993"),),
    values="0, 1, 2, 3",
)
@_guard("genant_grade", "grade")
def genant_grade(ctx: FilmContext, level: str) -> Result:
    """Genant grade 0-3 with the reduction (percent) in ``detail``."""
    grade, _, reduction, used = _genant(ctx, level)
    return ctx.result("genant_grade", grade, "grade", neighbours=used,
                      detail={"height_reduction_pct": reduction})


@register(
    name="genant_shape", family="morphometry", scope="vertebra", view="lateral",
    kind="category",
    required_landmarks="As, Ai, Ps, Pi (Ms, Mi when given) and the neighbours' Ps, Pi",
    definition="Shape of the deformity graded by genant_grade, from the smallest height: "
               "posterior -> crush, middle -> biconcave, anterior -> wedge (ties resolved in "
               "that order); 'none' at grade 0.",
    formula="argmin(ha, hm, hp) -> wedge / biconcave / crush",
    paper_terms=(PaperTerm("deformity type: wedge, biconcave, crush", "Genant 1993"),),
    values="none, wedge, biconcave, crush",
)
@_guard("genant_shape", "category")
def genant_shape(ctx: FilmContext, level: str) -> Result:
    """Genant deformity shape."""
    _, shape, reduction, used = _genant(ctx, level)
    return ctx.result("genant_shape", shape, "", neighbours=used,
                      detail={"height_reduction_pct": reduction})
