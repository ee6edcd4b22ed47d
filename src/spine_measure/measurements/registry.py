"""The measurement registry: one self-documenting entry per measurement.

Every measurement spine_measure reports is registered here with its name, unit kind, the
landmarks it needs, a definition with its formula, the term(s) the source papers use, its
family and the function that computes it. The data dictionary (``docs/data_dictionary.csv``)
and ``docs/measurements.md`` are generated from this registry
(``python -m spine_measure.measurements.docs_gen``), and a test fails when an entry lacks a
field, so code and documentation cannot drift apart.

Results are small frozen :class:`Result` objects: a value, its unit, the reason when the value
is missing (``NaN`` / ``None``) and provenance (calibration source, neighbours used, end
vertebrae...).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FAMILIES",
    "KINDS",
    "PAPERS",
    "REGISTRY",
    "MeasurementDef",
    "PaperTerm",
    "Result",
    "column_name",
    "entries",
    "get",
    "register",
]

Kind = Literal["length", "angle", "ratio", "grade", "category", "flag"]
Scope = Literal["vertebra", "film", "longitudinal"]

#: Unit kinds and the units they are reported in.
KINDS: dict[str, tuple[str, ...]] = {
    "length": ("mm", "px"),   # px only when the film is uncalibrated
    "angle": ("deg",),
    "ratio": ("pct",),
    "grade": ("grade",),
    "category": ("",),
    "flag": ("",),
}

#: Column-name suffix per unit (``docs/conventions.md``): categorical values have none.
_SUFFIX = {"mm": "_mm", "px": "_px", "deg": "_deg", "pct": "_pct", "grade": "", "": ""}

#: Families, in documentation order, with a one-line description.
FAMILIES: dict[str, str] = {
    "heights": "Vertebral body heights on a lateral film",
    "angles": "Endplate angles on a lateral film (wedge, regional kyphosis, Cobb)",
    "compression": "Compression rates against the neighbouring vertebrae",
    "morphometry": "Quantitative morphometry ratios and the Genant semi-quantitative grade",
    "coronal": "Coronal (AP film) Cobb angles",
    "longitudinal": "Changes across time points (pre-operative, post-operative, follow-up)",
    "events": "Events across time points: recompression, refracture, new fractures",
}

#: Papers a term may cite (short names of ``seeds/README.md`` plus the classic references).
PAPERS: dict[str, str] = {
    "An 2021": "An et al. 2021, recompression after percutaneous vertebral augmentation",
    "Xiong 2021": "Xiong et al. 2021, refracture after percutaneous vertebroplasty",
    "Li 2021": "Li et al. 2021, residual back pain after vertebroplasty (nomogram)",
    "Zeng 2025": "Zeng et al. 2025, review of risk factors after vertebral augmentation",
    "Yassavoly 2025": "Yassavoly et al. 2025, kyphoplasty and intradiscal leakage type",
    "Genant 1993": "Genant et al. 1993, semiquantitative vertebral fracture assessment",
    "SRS": "Scoliosis Research Society terminology (Cobb method)",
    "AASCE 2019": "MICCAI 2019 AASCE challenge (automatic spinal curvature estimation)",
}


def column_name(name: str, unit: str) -> str:
    """Output column for a measurement in a unit: ``column_name("ha", "mm") == "ha_mm"``.

    A name that already ends in its unit keeps it once (``height_loss_pct``).
    """
    suffix = _SUFFIX[unit]
    return name if suffix and name.endswith(suffix) else name + suffix


@dataclass(frozen=True)
class PaperTerm:
    """The term a paper uses for a measurement (``paper`` must be a key of :data:`PAPERS`)."""

    term: str
    paper: str

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f'paper "{self.paper}" is not one of {sorted(PAPERS)}')


@dataclass(frozen=True)
class Result:
    """One measured value with its unit, the reason when missing, and its provenance.

    Attributes
    ----------
    name : str
        Registry name (``"ha"``, ``"wedge_angle"``...).
    value : float, int, str, bool or None
        ``NaN`` (numbers) or ``None`` (grades, categories, flags) when it cannot be computed;
        then ``reason`` says why.
    unit : str
        ``"mm"``, ``"px"``, ``"deg"``, ``"pct"``, ``"grade"`` or ``""``.
    reason : str or None
        Why the value is missing (``None`` when present).
    calibration_source : str or None
        Where the pixel spacing came from (``docs/calibration.md``); ``"uncalibrated"`` for px.
    neighbours : tuple of str
        Levels used as reference (compression rates, crush ratio, Genant grade).
    detail : Mapping
        Further provenance, e.g. ``{"upper": "T11", "lower": "L3"}`` for an end-vertebra pair.
    """

    name: str
    value: float | int | str | bool | None
    unit: str
    reason: str | None = None
    calibration_source: str | None = None
    neighbours: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.unit not in _SUFFIX:
            raise ValueError(f'Result "{self.name}": unknown unit "{self.unit}"')
        object.__setattr__(self, "neighbours", tuple(self.neighbours))
        object.__setattr__(self, "detail", types.MappingProxyType(dict(self.detail)))
        if self.ok and self.reason is not None:
            object.__setattr__(self, "reason", None)

    @property
    def ok(self) -> bool:
        """True when the value is present (not ``None`` and not ``NaN``)."""
        v = self.value
        if v is None:
            return False
        if isinstance(v, float) and math.isnan(v):
            return False
        return True

    @property
    def column(self) -> str:
        """Output column, ``name`` plus the unit suffix (``ha_mm``, ``genant_grade``)."""
        return column_name(self.name, self.unit)

    def __float__(self) -> float:
        return float("nan") if not self.ok else float(self.value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MeasurementDef:
    """A registry entry.

    Attributes
    ----------
    name : str
        Snake-case name; the output column is the name plus the unit suffix.
    family : str
        A key of :data:`FAMILIES`.
    scope : {"vertebra", "film", "longitudinal"}
        Per vertebra of one film, per film, or across the time points of one treated level.
    view : {"lateral", "ap"}
        The film it is measured on (longitudinal ones: lateral films).
    kind : str
        A key of :data:`KINDS` (decides the unit and the column suffix).
    required_landmarks : str
        The points it needs, in words (``"As, Ai of the vertebra"``).
    definition : str
        One-paragraph definition.
    formula : str
        The formula in plain text.
    paper_terms : tuple of PaperTerm
        What the papers call it.
    sign_convention : str
        How the sign is chosen (``"unsigned"`` where not applicable).
    function : callable
        Computes a :class:`Result`; signature by scope (see ``api``).
    values : str
        Possible values for grades, categories and flags ('' for numbers).
    same_as : str
        Columns equal to this one by formula (or under a stated condition), e.g.
        ``crush_ratio_pct`` and ``cr_posterior_pct``; empty when none.
    """

    name: str
    family: str
    scope: Scope
    view: str
    kind: Kind
    required_landmarks: str
    definition: str
    formula: str
    paper_terms: tuple[PaperTerm, ...]
    sign_convention: str
    function: Callable[..., Result]
    values: str = ""
    same_as: str = ""

    @property
    def units(self) -> tuple[str, ...]:
        """Units it may be reported in (lengths: mm, or px when uncalibrated)."""
        return KINDS[self.kind]

    @property
    def columns(self) -> tuple[str, ...]:
        """Output columns, one per unit."""
        return tuple(column_name(self.name, u) for u in self.units)

    def missing_fields(self) -> list[str]:
        """Names of documentation fields that are empty (the docs test fails on any)."""
        missing = [f for f in ("name", "family", "scope", "view", "kind", "required_landmarks",
                               "definition", "formula", "sign_convention")
                   if not str(getattr(self, f)).strip()]
        if not self.paper_terms:
            missing.append("paper_terms")
        if self.family not in FAMILIES:
            missing.append("family (unknown)")
        if self.kind not in KINDS:
            missing.append("kind (unknown)")
        if self.kind in ("grade", "category", "flag") and not self.values.strip():
            missing.append("values")
        if not callable(self.function):
            missing.append("function")
        return missing


REGISTRY: dict[str, MeasurementDef] = {}
"""All registered measurements, in registration (documentation) order."""


def register(
    *,
    name: str,
    family: str,
    scope: Scope,
    view: str,
    kind: Kind,
    required_landmarks: str,
    definition: str,
    formula: str,
    paper_terms: tuple[PaperTerm, ...],
    sign_convention: str = "unsigned",
    values: str = "",
    same_as: str = "",
) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Decorator that registers the decorated function as measurement ``name``."""

    def deco(fn: Callable[..., Result]) -> Callable[..., Result]:
        if name in REGISTRY:
            raise ValueError(f'measurement "{name}" registered twice')
        entry = MeasurementDef(name, family, scope, view, kind, required_landmarks,
                               definition, formula, tuple(paper_terms), sign_convention, fn,
                               values, same_as)
        missing = entry.missing_fields()
        if missing:
            raise ValueError(f'measurement "{name}" lacks {", ".join(missing)}')
        REGISTRY[name] = entry
        return fn

    return deco


def entries() -> list[MeasurementDef]:
    """Registry entries in documentation order: by :data:`FAMILIES`, then registration."""
    order = list(FAMILIES)
    return sorted(REGISTRY.values(), key=lambda d: order.index(d.family))


def get(name: str) -> MeasurementDef:
    """Registry entry ``name``; unknown names suggest the nearest one."""
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise KeyError(f'measurement "{name}" is not registered{hint}') from None
