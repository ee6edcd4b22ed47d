"""Measurements across time points of one treated vertebra (docs/measurements.md).

A series is the pre-operative film, the immediate post-operative film and the follow-up
films (chronological; the last one is "last follow-up") of one study, each already measured
with :func:`spine_measure.measurements.api.measure_film`. Every function takes a
:class:`SeriesContext` and returns a :class:`~spine_measure.measurements.registry.Result`;
a missing film or value gives ``NaN`` / ``None`` with the reason.

Flags are three-valued: ``True``, ``False`` or ``None`` (unknown, with a reason).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spine_measure.geometry import DegenerateGeometryError
from spine_measure.landmarks import LEVELS, LandmarkError
from spine_measure.measurements.context import SITES
from spine_measure.measurements.registry import PaperTerm, Result, register

if TYPE_CHECKING:  # pragma: no cover
    from spine_measure.measurements.api import FilmMeasurements

__all__ = ["LongitudinalOptions", "SeriesContext", "new_fractures"]

NAN = float("nan")
_HEIGHT = {"anterior": "ha", "middle": "hm", "posterior": "hp"}
_CR = {"anterior": "cr_anterior", "middle": "cr_middle", "posterior": "cr_posterior"}


@dataclass(frozen=True)
class LongitudinalOptions:
    """Options of the longitudinal measurements.

    Attributes
    ----------
    site : {"anterior", "middle", "posterior"}
        Site of ``reduction_rate``, ``compression_rate_increase`` and ``height_loss_pct``.
    height_loss_threshold_pct : float
        ``recompression`` when ``height_loss_pct`` reaches it (An 2021: 15).
    kyphosis_threshold_deg : float
        ``recompression`` when ``kyphosis_progression`` reaches it (An 2021: 10).
    refracture_cri_threshold_pct : float
        ``refracture`` needs ``compression_rate_increase`` at or above it (Xiong 2021: 15).
    """

    site: str = "anterior"
    height_loss_threshold_pct: float = 15.0
    kyphosis_threshold_deg: float = 10.0
    refracture_cri_threshold_pct: float = 15.0

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ValueError(f'Argument "site" must be one of {", ".join(SITES)}; '
                             f"got {self.site!r}")
        for name in ("height_loss_threshold_pct", "kyphosis_threshold_deg",
                     "refracture_cri_threshold_pct"):
            val = getattr(self, name)
            if not (isinstance(val, int | float) and math.isfinite(val)):
                raise ValueError(f'Argument "{name}" must be a finite number; got {val!r}')


@dataclass(frozen=True)
class SeriesContext:
    """The measured films of one treated level across time points."""

    level: str
    preop: FilmMeasurements | None = None
    postop: FilmMeasurements | None = None
    followups: tuple[FilmMeasurements, ...] = ()
    bone_marrow_oedema: bool | None = None
    options: LongitudinalOptions = field(default_factory=LongitudinalOptions)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise LandmarkError(f'treated level "{self.level}" is not a vertebral level')
        object.__setattr__(self, "followups", tuple(self.followups))
        if self.bone_marrow_oedema not in (None, True, False):
            raise ValueError('Argument "bone_marrow_oedema" must be true, false or None; '
                             f"got {self.bone_marrow_oedema!r}")

    @property
    def last(self) -> FilmMeasurements | None:
        """The last follow-up film (None without follow-up)."""
        return self.followups[-1] if self.followups else None

    def film(self, tp: str) -> FilmMeasurements:
        f = {"preop": self.preop, "postop": self.postop, "last follow-up": self.last}[tp]
        if f is None:
            raise DegenerateGeometryError(f"no {tp} film")
        return f

    def value(self, tp: str, name: str) -> Result:
        """Result ``name`` of the treated level on the film of time point ``tp``."""
        r = self.film(tp).get(self.level, name)
        if not r.ok:
            raise DegenerateGeometryError(f"{tp} {name}: {r.reason}")
        return r

    def source(self, *tps: str) -> str:
        """Calibration source(s) of the films used, one name when they agree."""
        srcs = []
        for tp in tps:
            try:
                srcs.append(f"{tp}:{self.film(tp).calibration_source}")
            except DegenerateGeometryError:
                continue
        plain = {s.split(":", 1)[1] for s in srcs}
        return plain.pop() if len(plain) == 1 else ";".join(srcs)


def _length_unit(sc: SeriesContext) -> str:
    films = [f for f in (sc.preop, sc.postop, *sc.followups) if f is not None]
    return films[0].length_unit if films else "mm"


def _guard(name: str, kind: str) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    def deco(fn: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(fn)
        def wrapper(sc: SeriesContext) -> Result:
            try:
                return fn(sc)
            except (DegenerateGeometryError, LandmarkError) as exc:
                missing = NAN if kind in ("length", "angle", "ratio") else None
                unit = {"length": _length_unit(sc), "angle": "deg", "ratio": "pct"}.get(kind, "")
                return Result(name, missing, unit, str(exc), sc.source("preop", "postop",
                                                                      "last follow-up"))

        return wrapper

    return deco


def _difference(sc: SeriesContext, name: str, out: str, a: str, b: str) -> Result:
    """``value(a) - value(b)`` of measurement ``name``; units must agree."""
    ra, rb = sc.value(a, name), sc.value(b, name)
    if ra.unit != rb.unit:
        raise DegenerateGeometryError(f"{name}: {a} is in {ra.unit} but {b} in {rb.unit} "
                                      "(calibrate both films)")
    return Result(out, float(ra.value) - float(rb.value), ra.unit,  # type: ignore[arg-type]
                  calibration_source=sc.source(a, b),
                  detail={"site": sc.options.site} if name in _CR.values() else {})


@register(
    name="avh_change", family="longitudinal", scope="longitudinal", view="lateral",
    kind="length",
    required_landmarks="As, Ai of the treated vertebra on the preop and postop films",
    definition="Change of the anterior vertebral height by the procedure (post-operative "
               "minus pre-operative); both films must share a unit (mm or both px).",
    formula="avh_change = ha(postop) - ha(preop)",
    paper_terms=(PaperTerm("AVH change", "Li 2021"),),
    sign_convention="positive when the anterior height was restored (increased)",
)
@_guard("avh_change", "length")
def avh_change(sc: SeriesContext) -> Result:
    """ha(postop) - ha(preop)."""
    return _difference(sc, "ha", "avh_change", "postop", "preop")


@register(
    name="avhr_recovery", family="longitudinal", scope="longitudinal", view="lateral",
    kind="ratio",
    required_landmarks="As, Ai of the treated vertebra and its neighbours, preop and postop",
    definition="Recovery of the anterior vertebral height ratio, in percentage points.",
    formula="avhr_recovery = cr_anterior(postop) - cr_anterior(preop)",
    paper_terms=(PaperTerm("AVHRR, anterior vertebral height ratio recovery", "Li 2021"),
                 PaperTerm("recovery of anterior column height (%)", "An 2021")),
    sign_convention="positive when the height ratio was restored",
    same_as="reduction_rate_pct when the batch's site is anterior (the default)",
)
@_guard("avhr_recovery", "ratio")
def avhr_recovery(sc: SeriesContext) -> Result:
    """cr_anterior(postop) - cr_anterior(preop), percentage points."""
    return _difference(sc, "cr_anterior", "avhr_recovery", "postop", "preop")


@register(
    name="reduction_rate", family="longitudinal", scope="longitudinal", view="lateral",
    kind="ratio",
    required_landmarks="the site's points of the treated vertebra and its neighbours, "
                       "preop and postop",
    definition="Reduction rate: compression rate after minus before the procedure at the "
               "chosen site (option site, anterior by default), in percentage points.",
    formula="RR = CR_site(postop) - CR_site(preop)",
    paper_terms=(PaperTerm("RR, reduction rate", "Xiong 2021"),),
    sign_convention="positive when the procedure restored height",
    same_as="avhr_recovery_pct at the anterior site (the default)",
)
@_guard("reduction_rate", "ratio")
def reduction_rate(sc: SeriesContext) -> Result:
    """CR(postop) - CR(preop) at ``options.site``."""
    return _difference(sc, _CR[sc.options.site], "reduction_rate", "postop", "preop")


@register(
    name="compression_rate_increase", family="longitudinal", scope="longitudinal",
    view="lateral", kind="ratio",
    required_landmarks="the site's points of the treated vertebra and its neighbours, "
                       "postop and last follow-up",
    definition="Compression rate increase: compression rate immediately after the procedure "
               "minus at the last follow-up, at the chosen site (anterior by default), in "
               "percentage points.",
    formula="CRI = CR_site(postop) - CR_site(last follow-up)",
    paper_terms=(PaperTerm("CRI, compression rate increase", "Xiong 2021"),),
    sign_convention="positive when height was lost during follow-up",
)
@_guard("compression_rate_increase", "ratio")
def compression_rate_increase(sc: SeriesContext) -> Result:
    """CR(postop) - CR(last follow-up) at ``options.site``."""
    return _difference(sc, _CR[sc.options.site], "compression_rate_increase", "postop",
                       "last follow-up")


@register(
    name="height_loss_pct", family="longitudinal", scope="longitudinal", view="lateral",
    kind="ratio",
    required_landmarks="the site's points of the treated vertebra, postop and last follow-up",
    definition="Height lost between the post-operative film and the last follow-up, relative "
               "to the post-operative height, at the chosen site (anterior by default); both "
               "films must share a unit.",
    formula="height_loss_pct = (H(postop) - H(last follow-up)) / H(postop) * 100",
    paper_terms=(PaperTerm("vertebral height loss (%)", "An 2021"),),
    sign_convention="positive when height was lost",
)
@_guard("height_loss_pct", "ratio")
def height_loss_pct(sc: SeriesContext) -> Result:
    """(H(postop) - H(last)) / H(postop) * 100 at ``options.site``."""
    name = _HEIGHT[sc.options.site]
    post, last = sc.value("postop", name), sc.value("last follow-up", name)
    if post.unit != last.unit:
        raise DegenerateGeometryError(f"{name}: postop is in {post.unit} but last follow-up "
                                      f"in {last.unit} (calibrate both films)")
    if float(post.value) <= 0:  # type: ignore[arg-type]
        raise DegenerateGeometryError(f"{name}(postop) is zero")
    value = (float(post.value) - float(last.value)) / float(post.value) * 100.0  # type: ignore[arg-type]
    return Result("height_loss_pct", value, "pct",
                  calibration_source=sc.source("postop", "last follow-up"),
                  detail={"site": sc.options.site})


@register(
    name="reduction_angle", family="longitudinal", scope="longitudinal", view="lateral",
    kind="angle",
    required_landmarks="regional kyphotic angle landmarks, preop and postop",
    definition="Kyphosis corrected by the procedure: regional kyphotic angle before minus "
               "after.",
    formula="RA = KA(preop) - KA(postop)",
    paper_terms=(PaperTerm("RA, reduction angle", "Xiong 2021"),),
    sign_convention="positive when kyphosis was reduced",
)
@_guard("reduction_angle", "angle")
def reduction_angle(sc: SeriesContext) -> Result:
    """KA(preop) - KA(postop)."""
    return _difference(sc, "regional_kyphotic_angle", "reduction_angle", "preop", "postop")


@register(
    name="wedge_angle_change", family="longitudinal", scope="longitudinal", view="lateral",
    kind="angle",
    required_landmarks="As, Ai, Ps, Pi of the treated vertebra, preop and postop",
    definition="Correction of the wedge angle of the treated vertebra: before minus after.",
    formula="wedge_angle_change = WA(preop) - WA(postop)",
    paper_terms=(PaperTerm("Cobb angle change", "Li 2021"),),
    sign_convention="positive when the anterior wedging was reduced",
)
@_guard("wedge_angle_change", "angle")
def wedge_angle_change(sc: SeriesContext) -> Result:
    """WA(preop) - WA(postop)."""
    return _difference(sc, "wedge_angle", "wedge_angle_change", "preop", "postop")


@register(
    name="kyphosis_progression", family="longitudinal", scope="longitudinal", view="lateral",
    kind="angle",
    required_landmarks="regional kyphotic angle landmarks, postop and last follow-up",
    definition="Increase of the regional kyphotic angle during follow-up.",
    formula="kyphosis_progression = KA(last follow-up) - KA(postop)",
    paper_terms=(PaperTerm("local kyphosis angle increase", "An 2021"),),
    sign_convention="positive when kyphosis increased",
)
@_guard("kyphosis_progression", "angle")
def kyphosis_progression(sc: SeriesContext) -> Result:
    """KA(last follow-up) - KA(postop)."""
    return _difference(sc, "regional_kyphotic_angle", "kyphosis_progression",
                       "last follow-up", "postop")


def _kleene_or(values: Sequence[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    if all(v is False for v in values):
        return False
    return None


@register(
    name="recompression", family="events", scope="longitudinal", view="lateral", kind="flag",
    required_landmarks="as height_loss_pct and kyphosis_progression",
    definition="Augmented vertebra recompression: height loss at or above 15 % or kyphosis "
               "progression at or above 10 deg at the last follow-up (thresholds: options "
               "height_loss_threshold_pct, kyphosis_threshold_deg). True when either criterion "
               "is met; false when both are known and unmet; otherwise unknown (empty).",
    formula="height_loss_pct >= 15 or kyphosis_progression >= 10",
    paper_terms=(PaperTerm("augmented vertebra recompression", "An 2021"),),
    values="true, false, empty = unknown",
)
@_guard("recompression", "flag")
def recompression(sc: SeriesContext) -> Result:
    """Three-valued recompression flag."""
    o = sc.options
    hl, kp = height_loss_pct(sc), kyphosis_progression(sc)
    crit = [None if not hl.ok else float(hl.value) >= o.height_loss_threshold_pct,  # type: ignore[arg-type]
            None if not kp.ok else float(kp.value) >= o.kyphosis_threshold_deg]  # type: ignore[arg-type]
    value = _kleene_or(crit)
    reason = None
    if value is None:
        reason = "; ".join(r.reason for r in (hl, kp) if r.reason)
    return Result("recompression", value, "", reason, sc.source("postop", "last follow-up"),
                  detail={"height_loss_pct": hl.value, "kyphosis_progression_deg": kp.value,
                          "height_loss_threshold_pct": o.height_loss_threshold_pct,
                          "kyphosis_threshold_deg": o.kyphosis_threshold_deg})


@register(
    name="refracture", family="events", scope="longitudinal", view="lateral", kind="flag",
    required_landmarks="as compression_rate_increase, plus the reader's bone marrow oedema "
                       "finding at follow-up",
    definition="Refracture of the treated vertebra: compression rate increase at or above "
               "15 % (option refracture_cri_threshold_pct) together with bone marrow oedema "
               "at follow-up. Oedema comes from the reader; without it the flag is unknown "
               "(empty), never false.",
    formula="compression_rate_increase >= 15 and bone_marrow_oedema",
    paper_terms=(PaperTerm("refracture of the cemented vertebra", "Xiong 2021"),),
    values="true, false, empty = unknown",
)
@_guard("refracture", "flag")
def refracture(sc: SeriesContext) -> Result:
    """Three-valued refracture flag (unknown without the oedema finding)."""
    src = sc.source("postop", "last follow-up")
    if sc.bone_marrow_oedema is None:
        return Result("refracture", None, "", "bone marrow oedema at follow-up not recorded",
                      src)
    cri = compression_rate_increase(sc)
    if not cri.ok:
        return Result("refracture", None, "", cri.reason, src)
    thr = sc.options.refracture_cri_threshold_pct
    value = bool(float(cri.value) >= thr and sc.bone_marrow_oedema)  # type: ignore[arg-type]
    return Result("refracture", value, "", None, src,
                  detail={"compression_rate_increase_pct": cri.value, "threshold_pct": thr,
                          "bone_marrow_oedema": sc.bone_marrow_oedema})


def _is_fractured(film: FilmMeasurements, level: str) -> bool | None:
    v = film.landmarks.get(level)
    if v is None:
        return None
    if v.fractured:
        return True
    g = film.get(level, "genant_grade")
    if not g.ok:
        return None
    return int(g.value) >= 1  # type: ignore[arg-type]


def new_fractures(sc: SeriesContext) -> dict[str, bool | None]:
    """Levels (other than the treated one) fractured at a follow-up but not at baseline.

    Baseline is the post-operative film (the pre-operative one without it). A level counts as
    fractured when the reader flagged it or its ``genant_grade`` is >= 1. Returns
    ``{level: True (new) | None (unknown baseline)}``; levels not newly fractured are
    absent.
    """
    if not sc.followups:
        raise DegenerateGeometryError("no follow-up film")
    base = sc.postop if sc.postop is not None else sc.preop
    if base is None:
        raise DegenerateGeometryError("no postop or preop film as baseline")
    out: dict[str, bool | None] = {}
    for film in sc.followups:
        for v in film.landmarks:
            lv = v.level
            if lv in (sc.level, "S1") or out.get(lv) is True:
                continue
            if _is_fractured(film, lv) is not True:
                continue
            before = _is_fractured(base, lv)
            if before is False:
                out[lv] = True
            elif before is None:
                out[lv] = None
    return out


def _fracture_flag(sc: SeriesContext, name: str, adjacent: bool) -> Result:
    found = new_fractures(sc)
    ti = LEVELS.index(sc.level)
    sel = {lv: s for lv, s in found.items()
           if (abs(LEVELS.index(lv) - ti) == 1) == adjacent}
    new = sorted((lv for lv, s in sel.items() if s is True), key=LEVELS.index)
    unknown = sorted((lv for lv, s in sel.items() if s is None), key=LEVELS.index)
    if new:
        value: bool | None = True
        reason = None
    elif unknown:
        value, reason = None, (f"fractured at follow-up, baseline unknown: "
                               f"{', '.join(unknown)}")
    else:
        value, reason = False, None
    return Result(name, value, "", reason, sc.source("postop", "last follow-up"),
                  detail={"levels": ",".join(new), "unknown_levels": ",".join(unknown)})


_NEW_FRACTURE = ("A new fracture is a level fractured at a follow-up (reader flag, or "
                 "genant_grade >= 1) that was not fractured on the baseline film (postop, "
                 "else preop). Unknown when such a level is missing on the baseline film and "
                 "no certain new fracture exists.")


@register(
    name="adjacent_fracture", family="events", scope="longitudinal", view="lateral",
    kind="flag",
    required_landmarks="landmarks (or fractured flags) of the levels next to the treated one, "
                       "baseline and follow-up",
    definition="New fracture directly above or below the treated level. " + _NEW_FRACTURE,
    formula="exists new fracture at level L with |index(L) - index(treated)| == 1",
    paper_terms=(PaperTerm("AVF, adjacent vertebral fracture", "Yassavoly 2025"),
                 PaperTerm("adjacent vertebral fracture", "Xiong 2021")),
    values="true, false, empty = unknown; levels in the provenance",
)
@_guard("adjacent_fracture", "flag")
def adjacent_fracture(sc: SeriesContext) -> Result:
    """New fracture at a level adjacent to the treated one."""
    return _fracture_flag(sc, "adjacent_fracture", adjacent=True)


@register(
    name="remote_fracture", family="events", scope="longitudinal", view="lateral",
    kind="flag",
    required_landmarks="landmarks (or fractured flags) of the other levels, baseline and "
                       "follow-up",
    definition="New fracture at least one normal level away from the treated one (two or more "
               "levels apart). " + _NEW_FRACTURE,
    formula="exists new fracture at level L with |index(L) - index(treated)| >= 2",
    paper_terms=(PaperTerm("RVF, remote vertebral fracture", "Yassavoly 2025"),
                 PaperTerm("non-adjacent vertebral fracture", "Xiong 2021")),
    values="true, false, empty = unknown; levels in the provenance",
)
@_guard("remote_fracture", "flag")
def remote_fracture(sc: SeriesContext) -> Result:
    """New fracture at a level two or more levels from the treated one."""
    return _fracture_flag(sc, "remote_fracture", adjacent=False)

