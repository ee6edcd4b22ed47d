"""Single-film measurements on a lateral radiograph, per vertebra (docs/measurements.md).

Every function here takes a :class:`~spine_measure.measurements.context.FilmContext` and a
level and returns a :class:`~spine_measure.measurements.registry.Result`; degenerate geometry
gives ``NaN`` (or ``None``) plus a reason, never an exception. Lengths are in mm when the film
is calibrated, in px otherwise; angles in degrees; ratios in percent.

Speed: the per-vertebra measurements of a level are evaluated together, once per film
(:func:`vertebra_results`), on heights, endplate lines and neighbour references the
:class:`~spine_measure.measurements.context.FilmContext` computes once, with plain-float
2-vector math; each registered function returns its result from that batch.
``benchmarks/bench_measure.py`` checks that measuring a film costs less than reading its
DICOM header.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from spine_measure.geometry import DegenerateGeometryError, signed_segment_angle
from spine_measure.landmarks import LEVELS, LandmarkError
from spine_measure.measurements.context import Endplate, FilmContext
from spine_measure.measurements.context import endplate as _endplate
from spine_measure.measurements.registry import PaperTerm, Result, register

__all__ = ["cobb_angle", "endplate_angle", "genant_from_heights", "shape_deficits",
           "shape_from_deficits"]

NAN = float("nan")
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}

KYPHOSIS_SIGN = ("positive when the lines converge anteriorly (kyphosis, anterior wedging), "
                 "negative when they converge posteriorly (lordosis); anterior and cranial "
                 "come from the landmarks, not the image axes")

#: Genant grade thresholds on the height reduction, percent (docs/measurements.md).
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
    v = ctx.vertebra(level)
    if ctx.landmarks.view != "lateral":
        raise DegenerateGeometryError(f"{level}: needs a lateral film")
    return v


# ------------------------------------------------------------------ per-vertebra batch
# Every per-vertebra measurement of a level is computed in one pass, the first time any of
# them is asked for, and memoised in the film context (``ctx.vertebra_cache``): the heights,
# endplate lines and neighbour references they share are computed once per film, and each
# registered function below just returns its result from the batch. The batch evaluates
# every measurement exactly as its registry entry defines it, with the same checks in the
# same order, so each NaN (None) carries the same reason as a separate computation would.
_FIXED_UNITS = {"angle": "deg", "ratio": "pct", "grade": "grade", "category": "", "flag": ""}
_NUMERIC = ("length", "angle", "ratio")
_HEIGHTS = (("ha", "anterior"), ("hm", "middle"), ("hp", "posterior"))
_RATES = (("cr_anterior", "anterior"), ("cr_middle", "middle"), ("cr_posterior", "posterior"))
#: Name and kind of every per-vertebra measurement of this module.
_BATCH_KINDS = (("ha", "length"), ("hm", "length"), ("hp", "length"),
                ("wedge_angle", "angle"), ("regional_kyphotic_angle", "angle"),
                ("cr_anterior", "ratio"), ("cr_middle", "ratio"), ("cr_posterior", "ratio"),
                ("compression_pct", "ratio"), ("wedge_ratio", "ratio"),
                ("biconcavity_ratio", "ratio"), ("crush_ratio", "ratio"),
                ("genant_grade", "grade"), ("genant_shape", "category"))
_RATE_WHAT = {site: f"{site} compression rate" for site in ("anterior", "middle", "posterior")}
_INF = math.inf


def vertebra_results(ctx: FilmContext, level: str) -> dict[str, Result]:
    """Every per-vertebra measurement of this module at ``level`` (memoised per film).

    A level that is not annotated, or a film that is not lateral, gives every measurement
    NaN (None) with that reason; otherwise each value is computed on its own, a degenerate
    one giving NaN (None) plus its reason.
    """
    per = ctx.vertebra_cache.get(level)
    if per is None:
        try:
            v = _lateral(ctx, level)
            refused = ctx.refused_reason(level)
            if refused is not None:
                raise DegenerateGeometryError(refused)
        except (DegenerateGeometryError, LandmarkError) as exc:
            reason, unit = str(exc), ctx.length_unit
            per = {name: ctx.result(name, NAN if kind in _NUMERIC else None,
                                    unit if kind == "length" else _FIXED_UNITS[kind], reason)
                   for name, kind in _BATCH_KINDS}
        else:
            per = _measure_vertebra(ctx, v, level)
        ctx.vertebra_cache[level] = per
    return per


def _ratio_or_reason(num: float, den: float, level: str, what: str
                     ) -> tuple[float, str | None]:
    """``(100 * num / den, None)``, or ``(NaN, reason)`` as :func:`_ratio` would raise for
    ``f"{level} {what}"``."""
    if 0.0 < den < _INF and -_INF < num < _INF:
        return 100.0 * num / den, None
    try:
        return _ratio(num, den, f"{level} {what}"), None
    except DegenerateGeometryError as exc:
        return NAN, str(exc)


def _measure_vertebra(ctx: FilmContext, v: Any, level: str) -> dict[str, Result]:
    result = ctx.result
    lu = ctx.length_unit
    out: dict[str, Result] = {}

    # heights: h[site] when annotated, else why[site]
    h = ctx.site_heights(v)
    why: dict[str, str] = {}
    for name, site in _HEIGHTS:
        if site in h:
            out[name] = result(name, h[site], lu)
        else:
            why[site] = ctx.height_reason(v, site)
            out[name] = result(name, NAN, lu, why[site])

    # wedge angle: superior against inferior endplate of the same vertebra (endplate_angle
    # with the cranial endplate known to come first)
    segment = ctx.endplate_segment
    try:
        if level == "S1":
            raise DegenerateGeometryError("S1 has only its superior endplate")
        value = signed_segment_angle(segment(level, "superior"), segment(level, "inferior"))
    except (DegenerateGeometryError, LandmarkError) as exc:
        out["wedge_angle"] = result("wedge_angle", NAN, "deg", str(exc))
    else:
        out["wedge_angle"] = result("wedge_angle", value, "deg")

    # regional kyphotic angle: superior endplate above against inferior endplate below
    try:
        top, lower = _regional_endplates(level)
        value = signed_segment_angle(segment(top.level, top.which),
                                     segment(lower.level, lower.which))
    except (DegenerateGeometryError, LandmarkError) as exc:
        out["regional_kyphotic_angle"] = result("regional_kyphotic_angle", NAN, "deg", str(exc))
    else:
        out["regional_kyphotic_angle"] = result("regional_kyphotic_angle", value, "deg",
                                                detail=_REGIONAL_DETAIL[level])

    # compression rates: own height over the neighbours' mean height, per site
    rates: dict[str, tuple[float, tuple[str, ...]]] = {}
    refs = ctx.neighbour_references(level)
    for name, site in _RATES:
        if site in h:
            ref, used, reason = refs[site]
            if used:
                value, reason = _ratio_or_reason(h[site], ref, level, _RATE_WHAT[site])
                if reason is None:
                    rates[site] = (value, used)
                    out[name] = result(name, value, "pct", None, used)
                    continue
        else:
            reason = why[site]
        out[name] = result(name, NAN, "pct", reason)

    # compression_pct = 100 - cr_anterior
    if "anterior" in rates:
        value, used = rates["anterior"]
        out["compression_pct"] = result("compression_pct", 100.0 - value, "pct", None, used)
    else:
        out["compression_pct"] = result("compression_pct", NAN, "pct",
                                        out["cr_anterior"].reason or "cr_anterior missing")

    # morphometric ratios of the vertebra's own heights (first missing height named)
    for name, num, what in (("wedge_ratio", "anterior", "ha/hp"),
                            ("biconcavity_ratio", "middle", "hm/hp")):
        if num not in h:
            out[name] = result(name, NAN, "pct", why[num])
        elif "posterior" not in h:
            out[name] = result(name, NAN, "pct", why["posterior"])
        else:
            value, reason = _ratio_or_reason(h[num], h["posterior"], level, what)
            out[name] = result(name, value, "pct", reason)

    # crush ratio = cr_posterior
    if "posterior" in rates:
        value, used = rates["posterior"]
        out["crush_ratio"] = result("crush_ratio", value, "pct", None, used)
    else:
        out["crush_ratio"] = result("crush_ratio", NAN, "pct", out["cr_posterior"].reason
                                    or "posterior reference missing")

    # Genant grade and shape (one computation, two results)
    try:
        grade, shape, reduction, used, deficits = _genant(ctx, v, level)
    except (DegenerateGeometryError, LandmarkError) as exc:
        out["genant_grade"] = result("genant_grade", None, "grade", str(exc))
        out["genant_shape"] = result("genant_shape", None, "", str(exc))
    else:
        detail = {"height_reduction_pct": reduction, **deficits}
        out["genant_grade"] = result("genant_grade", grade, "grade", None, used, detail)
        out["genant_shape"] = result("genant_shape", shape, "", None, used, detail)
    return out


def _batch(ctx: FilmContext, level: str) -> dict[str, Result]:
    per = ctx.vertebra_cache.get(level)
    return per if per is not None else vertebra_results(ctx, level)


def _from_batch(name: str, doc: str) -> Callable[[FilmContext, str], Result]:
    """The registered function of a per-vertebra measurement: its result from the batch."""

    def fn(ctx: FilmContext, level: str) -> Result:
        per = ctx.vertebra_cache.get(level)
        return (per if per is not None else vertebra_results(ctx, level))[name]

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


# ----------------------------------------------------------------------------- heights
def _height_result(name: str, site: str) -> Callable[[FilmContext, str], Result]:
    return _from_batch(name, f"{site.capitalize()} height of the vertebral body "
                             "(see registry entry).")

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
    ka, kb = a._key, b._key  # == a.key, b.key
    if ka == kb:
        raise DegenerateGeometryError(f"{a}: an endplate against itself has no angle")
    cranial, caudal = (a, b) if ka < kb else (b, a)
    # memoised per film: endplate lines in physical space, checked in this order
    top = ctx.endplate_segment(cranial.level, cranial.which)
    bottom = ctx.endplate_segment(caudal.level, caudal.which)
    return signed_segment_angle(top, bottom)


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
def wedge_angle(ctx: FilmContext, level: str) -> Result:
    """Wedge angle of ``level`` (deg), positive for anterior wedging."""
    return _batch(ctx, level)["wedge_angle"]


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
def regional_kyphotic_angle(ctx: FilmContext, level: str) -> Result:
    """Regional kyphotic angle around ``level`` (deg), positive for kyphosis."""
    return _batch(ctx, level)["regional_kyphotic_angle"]


def _regional_endplates(level: str) -> tuple[Endplate, Endplate]:
    """Superior endplate of the level above, inferior endplate of the level below (L5: S1
    superior); the cranial one first."""
    i = _LEVEL_INDEX[level]
    if i == 0 or level == "S1":
        raise DegenerateGeometryError(f"{level}: no vertebra above/below on the chart of levels")
    upper = LEVELS[i - 1]
    if level == "L5":
        lower = _endplate("S1", "superior")
    else:
        lower = _endplate(LEVELS[i + 1], "inferior")
    return _endplate(upper, "superior"), lower


#: The ``detail`` of regional_kyphotic_angle per index level (the two endplates used).
_REGIONAL_DETAIL = {lv: {"upper": str(a), "lower": str(b)}
                    for lv in LEVELS[1:-1] for a, b in [_regional_endplates(lv)]}


@register(
    name="cobb_angle", family="angles", scope="film", view="lateral", kind="angle",
    required_landmarks="the two corners of each chosen endplate (Ps, As or Pi, Ai)",
    definition="Angle between any two chosen endplates of one film, e.g. the superior endplate "
               "of T10 and the inferior endplate of L2 (API option cobb=, CLI --cobb "
               "T10:superior,L2:inferior or T10s-L2i), or the endplates a keyword names from "
               "the film's flags: treated (the treated segment's end endplates), treated+1 "
               "(one vertebra beyond it on each side); the endplates used are reported.",
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
    return _from_batch(name, f"Compression rate at the {site} site (percent).")

_CR_NEIGHBOURS = ("Reference: the nearest annotated normal vertebra above and below (one "
                  "not flagged fractured, treated or excluded; mean of the two); with only "
                  "one usable neighbour (always the upper one at L5, since S1 has no body "
                  "heights) that one alone; the levels used are reported "
                  "(reference_neighbours).")

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
    same_as="crush_ratio_pct (identical: the same ratio under its Genant 1993 name)",
)(_cr("cr_posterior", "posterior"))


@register(
    name="compression_pct", family="compression", scope="vertebra", view="lateral",
    kind="ratio",
    required_landmarks="As, Ai of the vertebra and of its reference neighbours",
    definition="Vertebral compression: the anterior height lost relative to the neighbours, "
               "in percent (Zeng 2025 flags >= 38.5 %).",
    formula="compression_pct = 100 - cr_anterior",
    paper_terms=(PaperTerm("vertebral compression degree", "Zeng 2025"),),
    same_as="equals 100 - cr_anterior_pct",
)
def compression_pct(ctx: FilmContext, level: str) -> Result:
    """100 - cr_anterior (percent)."""
    return _batch(ctx, level)["compression_pct"]


# ------------------------------------------------------------------------ morphometry
@register(
    name="wedge_ratio", family="morphometry", scope="vertebra", view="lateral", kind="ratio",
    required_landmarks="As, Ai, Ps, Pi",
    definition="Anterior over posterior height of the same vertebra, in percent "
               "(below 100 for an anterior wedge).",
    formula="wedge_ratio = ha / hp * 100",
    paper_terms=(PaperTerm("wedge index Ha/Hp (quantitative morphometry)", "Genant 1993"),),
)
def wedge_ratio(ctx: FilmContext, level: str) -> Result:
    """ha / hp * 100."""
    return _batch(ctx, level)["wedge_ratio"]


@register(
    name="biconcavity_ratio", family="morphometry", scope="vertebra", view="lateral",
    kind="ratio",
    required_landmarks="Ms, Mi, Ps, Pi",
    definition="Middle over posterior height of the same vertebra, in percent "
               "(below 100 for a biconcave body).",
    formula="biconcavity_ratio = hm / hp * 100",
    paper_terms=(PaperTerm("mid-wedge / biconcavity index Hm/Hp", "Genant 1993"),),
)
def biconcavity_ratio(ctx: FilmContext, level: str) -> Result:
    """hm / hp * 100."""
    return _batch(ctx, level)["biconcavity_ratio"]


@register(
    name="crush_ratio", family="morphometry", scope="vertebra", view="lateral", kind="ratio",
    required_landmarks="Ps, Pi of the vertebra and of its reference neighbours",
    definition="Posterior height over the mean posterior height of the reference neighbours, "
               "in percent (below 100 for a crush deformity). " + _CR_NEIGHBOURS,
    formula="crush_ratio = hp / mean(hp of neighbours) * 100",
    paper_terms=(PaperTerm("crush index Hp / neighbouring Hp", "Genant 1993"),),
    same_as="cr_posterior_pct (identical: the same ratio under its Xiong 2021 name)",
)
def crush_ratio(ctx: FilmContext, level: str) -> Result:
    """hp / mean neighbour hp * 100."""
    return _batch(ctx, level)["crush_ratio"]


#: Margin (percentage points) by which a shape's deficit must exceed the wedge deficit (and
#: crush the biconcave one) to win over it; see :func:`genant_shape_from_heights`.
SHAPE_MARGIN_PP = 5.0
#: Shapes in the order that wins a near-tie (wedge is by far the most common type).
SHAPE_PRIORITY = ("wedge", "biconcave", "crush")


def shape_deficits(ha: float, hm: float, hp: float, reference: float) -> dict[str, float]:
    """Height deficit (percent) behind each Genant shape; NaN when it cannot be computed.

    * ``wedge``: the anterior height against the posterior one, ``100 (1 - ha / hp)``;
    * ``biconcave``: the middle height against the middle height the body would have with
      straight endplates, ``100 (1 - hm / ((ha + hp) / 2))`` (NaN without ``hm``). A pure
      wedge has ``hm = (ha + hp) / 2``, so its biconcave deficit is 0 however strong the
      wedge: unlike ``hm / hp``, this index does not confuse a wedge with a biconcave body;
    * ``crush``: the posterior height against the neighbours' mean posterior height,
      ``100 (1 - hp / reference)`` (NaN without a reference).

    >>> {k: round(v, 1) for k, v in shape_deficits(15.0, 20.0, 25.0, 25.0).items()}
    {'wedge': 40.0, 'biconcave': 0.0, 'crush': 0.0}
    """
    isfinite = math.isfinite
    wedge = 100.0 * (1.0 - ha / hp) if hp > 0 else NAN
    mid = (ha + hp) / 2.0
    biconcave = 100.0 * (1.0 - hm / mid) if isfinite(hm) and mid > 0 else NAN
    crush = 100.0 * (1.0 - hp / reference) if isfinite(reference) and reference > 0 else NAN
    return {"wedge": wedge, "biconcave": biconcave, "crush": crush}


def shape_from_deficits(deficits: dict[str, float],
                        margin_pp: float = SHAPE_MARGIN_PP) -> tuple[str, float]:
    """The dominant shape and its lead (percentage points) over the runner-up.

    The shape with the largest deficit wins when it leads every shape earlier in
    :data:`SHAPE_PRIORITY` by more than ``margin_pp``; otherwise the earliest shape within
    ``margin_pp`` of the largest deficit wins (near-ties go to wedge, then biconcave). The
    boundary between two shapes thus sits ``margin_pp`` away from the exact tie, so a few
    pixels of click noise cannot flip a body whose deficits are clearly apart. The lead
    (largest deficit minus the second largest; ``inf`` with a single shape) is reported so a
    near-tie is visible.

    >>> shape_from_deficits({"wedge": 17.3, "biconcave": 10.4, "crush": 2.3})
    ('wedge', 6.899999999999999)
    >>> shape_from_deficits({"wedge": 10.0, "biconcave": 13.0, "crush": 0.0})[0]
    'wedge'
    >>> shape_from_deficits({"wedge": 10.0, "biconcave": 30.0, "crush": 0.0})[0]
    'biconcave'
    """
    finite = {k: v for k, v in deficits.items() if math.isfinite(v)}
    if not finite:
        raise DegenerateGeometryError("Genant shape: no height deficit can be computed")
    top = max(finite.values())
    ranked = sorted(finite.values(), reverse=True)
    lead = ranked[0] - ranked[1] if len(ranked) > 1 else math.inf
    for name in SHAPE_PRIORITY:
        if name in finite and finite[name] >= top - margin_pp:
            return name, lead
    raise AssertionError("unreachable: the largest deficit is within the margin of itself")


def genant_from_heights(ha: float, hm: float, hp: float, reference: float
                        ) -> tuple[int, str, float]:
    """Genant grade, shape and height reduction (percent) from the three heights.

    ``reduction = (D - min(ha, hm, hp)) / D * 100`` with ``D = max(hp, reference)``, where
    ``hm`` may be NaN (ignored) and ``reference`` is the neighbours' mean posterior height
    (NaN: ignored).
    Grade: ``< 20`` -> 0, ``20 <= r < 25`` -> 1, ``25 <= r <= 40`` -> 2, ``> 40`` -> 3.
    Shape (grade >= 1; ``"none"`` at grade 0): the dominant height deficit
    (:func:`shape_deficits`, :func:`shape_from_deficits`).

    Examples
    --------
    >>> genant_from_heights(14.0, float("nan"), 20.0, float("nan"))  # 30 % anterior loss
    (2, 'wedge', 30.0)
    """
    grade, shape, reduction, _ = _genant_detail(ha, hm, hp, reference)
    return grade, shape, reduction


def _genant_detail(ha: float, hm: float, hp: float, reference: float
                   ) -> tuple[int, str, float, dict[str, float]]:
    isfinite = math.isfinite
    if not (isfinite(ha) and isfinite(hp)):
        raise DegenerateGeometryError("Genant grade needs ha and hp")
    has_hm = isfinite(hm)
    denom = max(hp, reference) if isfinite(reference) else hp
    if denom <= 0:
        raise DegenerateGeometryError("Genant grade: reference height is zero")
    low = min(ha, hm, hp) if has_hm else min(ha, hp)
    reduction = (denom - low) / denom * 100.0
    t20, t25, t40 = GENANT_THRESHOLDS
    lo20, lo25, hi40 = t20 - _BOUNDARY_TOL, t25 - _BOUNDARY_TOL, t40 + _BOUNDARY_TOL
    grade = 0 if reduction < lo20 else 1 if reduction < lo25 else 2 if reduction <= hi40 else 3
    deficits = shape_deficits(ha, hm, hp, reference)
    detail = {f"{k}_deficit_pct": v for k, v in deficits.items()}
    if grade == 0:
        shape = "none"
    else:
        shape, lead = shape_from_deficits(deficits)
        detail["shape_lead_pp"] = lead
    return grade, shape, reduction, detail


def _genant(ctx: FilmContext, v: Any, level: str
            ) -> tuple[int, str, float, tuple[str, ...], dict[str, float]]:
    """Genant grade, shape, reduction and the neighbours used for the reference."""
    ha_ = ctx.height(v, "anterior")
    hp_ = ctx.height(v, "posterior")
    hm_ = ctx.try_height(v, "middle")
    ref, used, _ = ctx.neighbour_reference(level, "posterior")
    grade, shape, reduction, detail = _genant_detail(ha_, hm_, hp_, ref)
    return grade, shape, reduction, used, detail


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
def genant_grade(ctx: FilmContext, level: str) -> Result:
    """Genant grade 0-3 with the reduction (percent) in ``detail``."""
    return _batch(ctx, level)["genant_grade"]


@register(
    name="genant_shape", family="morphometry", scope="vertebra", view="lateral",
    kind="category",
    required_landmarks="As, Ai, Ps, Pi (Ms, Mi when given) and the neighbours' Ps, Pi",
    definition="Shape of the deformity graded by genant_grade (Genant 1993: wedge = anterior "
               "height reduced, biconcave = middle height reduced, crush = posterior height "
               "reduced), decided by the dominant height deficit: wedge 1 - ha/hp; biconcave "
               "1 - hm/((ha + hp)/2), the middle height against a straight-endplate body's; "
               "crush 1 - hp/(neighbours' mean hp). A shape wins over an earlier one of the "
               "order wedge, biconcave, crush only when its deficit is more than 5 percentage "
               "points larger, so click noise does not flip near-ties; 'none' at grade 0. "
               "The deficits and the lead over the runner-up are in the result's detail.",
    formula="d_w = 100(1 - ha/hp), d_b = 100(1 - 2 hm/(ha + hp)), d_c = 100(1 - hp/ref); "
            "shape = first of (wedge, biconcave, crush) with d >= max(d) - 5",
    paper_terms=(PaperTerm("deformity type: wedge, biconcave, crush", "Genant 1993"),),
    values="none, wedge, biconcave, crush",
)
def genant_shape(ctx: FilmContext, level: str) -> Result:
    """Genant deformity shape."""
    return _batch(ctx, level)["genant_shape"]
