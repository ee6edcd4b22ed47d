"""The published risk models and rule flags, as data with provenance.

Each model records its paper, table, outcome, and for every term the input column it reads
(names of the batch feature table, ``docs/conventions.md``), the unit and coding, the
coefficient as printed and the coefficient used, and what the model can give:

``probability``
    a complete logistic model (intercept published): :math:`p = 1/(1+e^{-\\eta})`,
    :math:`\\eta = \\beta_0 + \\sum_j \\beta_j x_j` (Li 2021).
``linear_predictor``
    no intercept published: :math:`\\eta' = \\sum_j \\beta_j x_j` and odds ratios between
    patients :math:`e^{\\eta'_a - \\eta'_b}`; probabilities only after the intercept is
    re-estimated on the user's own cohort (logistic recalibration, An 2021).
``odds_ratios``
    adjusted odds ratios only: risk-factor flags and the relative odds of the binary
    factors present, no probabilities (Xiong 2021).
``flags``
    threshold rules (Zeng 2025, Yassavoly 2025).

The coefficients are the papers' printed ones; printed numbers that disagree with each other
are kept in :attr:`PublishedModel.inconsistencies` (``docs/risk_models.md`` lists them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from spine_measure.risk.errors import RiskModelError

__all__ = [
    "Coding",
    "ModelTerm",
    "PublishedModel",
    "RuleFlag",
    "RuleSet",
    "MODELS",
    "RULES",
    "get_model",
    "model_names",
]

Capability = Literal["probability", "linear_predictor", "odds_ratios", "flags"]


@dataclass(frozen=True)
class Coding:
    """How one model term is computed from one input column.

    Parameters
    ----------
    column : str
        Input column (batch feature-table name).
    kind : {"binary", "indicator", "continuous"}
        ``binary``: the column is 0/1 (also yes/no, true/false); the term is the value.
        ``indicator``: the term is 1 when the value is one of ``levels``, 0 when it is one of
        the other ``allowed`` values. ``continuous``: the term is the number itself.
    unit : str
        Unit of the column as read.
    levels : tuple of str
        Values coded 1 (``indicator`` only), compared as lower-case text.
    allowed : tuple of str
        Every valid value (``indicator`` only); anything else is an error for that row.
    """

    column: str
    kind: Literal["binary", "indicator", "continuous"]
    unit: str
    levels: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    def describe(self) -> str:
        """One-line human description of the coding."""
        if self.kind == "binary":
            return f"{self.column} (1 = present, 0 = absent)"
        if self.kind == "indicator":
            return f"1 if {self.column} in {{{', '.join(self.levels)}}} else 0 " \
                   f"(valid: {', '.join(self.allowed)})"
        return f"{self.column} in {self.unit}"


@dataclass(frozen=True)
class ModelTerm:
    """One term of a published logistic model.

    Parameters
    ----------
    name : str
        Term name used in outputs.
    label : str
        The paper's wording.
    coding : Coding
        How the term is computed from the input.
    b_used : float or None
        Coefficient used (per unit of ``coding.unit``); ``None`` when only an OR is known.
    b_printed, se_printed, or_printed, ci_printed, p_printed : optional
        The numbers as printed in the paper.
    """

    name: str
    label: str
    coding: Coding
    b_used: float | None
    b_printed: float | None = None
    se_printed: float | None = None
    or_printed: float | None = None
    ci_printed: tuple[float, float] | None = None
    p_printed: str | None = None

    @property
    def odds_ratio(self) -> float | None:
        """``exp(b_used)``, or the printed OR when no coefficient is available."""
        if self.b_used is not None:
            return math.exp(self.b_used)
        return self.or_printed


@dataclass(frozen=True)
class PublishedModel:
    """A published logistic model with provenance (immutable).

    Attributes
    ----------
    name, paper, table, outcome, population : str
        Identification and provenance.
    capability : {"probability", "linear_predictor", "odds_ratios"}
        What the model can give (see the module docstring).
    intercept : float or None
        Published constant (``None`` when not published).
    terms : tuple of ModelTerm
    inconsistencies : tuple of str
        Printed numbers that disagree with each other and the choice made.
    notes : tuple of str
        Other caveats (coding ambiguities, units not stated).
    """

    name: str
    paper: str
    table: str
    outcome: str
    population: str
    capability: Capability
    intercept: float | None
    terms: tuple[ModelTerm, ...]
    inconsistencies: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Input columns the model reads (each once, in term order)."""
        return tuple(dict.fromkeys(t.coding.column for t in self.terms))

    def to_dict(self) -> dict:
        """JSON-serialisable description (used by ``risk apply --show`` and the docs)."""
        d = asdict(self)
        for t in d["terms"]:
            if t["ci_printed"] is not None:
                t["ci_printed"] = list(t["ci_printed"])
        return d

    def to_json(self, **kw) -> str:
        """The model as a JSON document."""
        return json.dumps(self.to_dict(), indent=2, **kw)


@dataclass(frozen=True)
class RuleFlag:
    """A threshold rule from the literature.

    The flag is true when ``op(value, threshold)`` holds, where ``value`` is the input
    column (or the ratio ``column / denominator``); it is missing when an input is missing.
    """

    name: str
    description: str
    source: str
    column: str
    op: Literal[">", ">=", "<", "<=", "==", "in"]
    threshold: float | str | tuple[str, ...]
    unit: str
    outcome: str
    denominator: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,) + ((self.denominator,) if self.denominator else ())


@dataclass(frozen=True)
class RuleSet:
    """A named collection of rule flags (``capability == "flags"``)."""

    name: str
    paper: str
    rules: tuple[RuleFlag, ...]
    combined: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    capability: Capability = "flags"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for r in self.rules for c in r.columns))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["combined"] = {k: list(v) for k, v in self.combined.items()}
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), indent=2, default=list, **kw)


_BIN = ("0", "1")

LI2021 = PublishedModel(
    name="li2021",
    paper="Li et al. 2021, nomogram for residual back pain after PVP (Research Square "
    "rs-468850)",
    table="Table 4",
    outcome="residual back pain (VAS >= 4) after percutaneous vertebroplasty",
    population="268 patients, single-segment OVCF, bilateral PVP; 37 events (13.8 %)",
    capability="probability",
    intercept=-3.361,
    terms=(
        ModelTerm("ivc", "intravertebral vacuum cleft (yes)", Coding("ivc", "binary", "0/1"),
                  1.332, 1.332, 0.598, 3.790, (1.175, 12.227), "0.026"),
        ModelTerm("posterior_fascia_oedema", "posterior fascia oedema (yes)",
                  Coding("posterior_fascia_oedema", "binary", "0/1"),
                  1.337, 1.337, 0.602, 3.965, (1.218, 12.907), "0.022"),
        ModelTerm("goutallier_2", "paraspinal muscle degeneration, Goutallier grade 2 "
                  "(vs 0-1)", Coding("goutallier_grade", "indicator", "Goutallier grade 0-4",
                                     ("2",), ("0", "1", "2", "3", "4")),
                  1.758, 1.758, 0.681, 5.804, (1.527, 22.064), "0.010"),
        ModelTerm("goutallier_3_4", "paraspinal muscle degeneration, Goutallier grade 3-4 "
                  "(vs 0-1)", Coding("goutallier_grade", "indicator", "Goutallier grade 0-4",
                                     ("3", "4"), ("0", "1", "2", "3", "4")),
                  2.622, 2.622, 0.674, 13.767, (3.671, 51.638), "0.000"),
        ModelTerm("cement_blocky", "blocky (vs spongy) cement distribution",
                  Coding("cement_distribution_postop", "indicator", "category",
                         ("blocky",), ("blocky", "spongy")),
                  0.800, -0.800, 0.392, 2.225, (1.032, 4.797), "0.041"),
    ),
    inconsistencies=(
        "Blocky distribution: B is printed -0.800 next to OR 2.225 and CI 1.032-4.797; "
        "exp(+0.800) = 2.226 and exp(0.800 -/+ 1.96*0.392) = 1.032-4.797 reproduce the OR and "
        "CI, and the text calls blocky a risk factor, so B = +0.800 is used.",
        "Posterior fascia oedema: B = 1.337 gives OR exp(1.337) = 3.81, not the printed 3.965; "
        "the printed OR, CI (1.218-12.907) and Wald 5.232 all agree with B = 1.377 (SE 0.602), "
        "so 1.337 looks like a transposition of 1.377. The printed B = 1.337 is kept.",
        "The abstract and Figure 8 give AUC 0.780 (0.7799) while the c-index is 0.774; for a "
        "binary outcome Harrell's c equals the AUC, so the two should be identical.",
    ),
    notes=(
        "Goutallier grade is read at L4/5 on T1 axial MRI in the paper; grades 0-1 are the "
        "reference.",
        "Absolute probabilities are valid for a population like the paper's (13.8 % "
        "prevalence); check calibration before using them elsewhere.",
    ),
)

AN2021 = PublishedModel(
    name="an2021",
    paper="An et al. 2021, logistic regression of augmented vertebra recompression after "
    "PVA (Research Square rs-390833)",
    table="Table 2",
    outcome="augmented vertebra recompression (height loss >= 15 % or local kyphosis "
    "increase >= 10 deg at last follow-up)",
    population="257 patients, single-segment OVCF, PVP or PKP; 82 events (31.9 %)",
    capability="linear_predictor",
    intercept=None,
    terms=(
        ModelTerm("bmd_t_score", "BMD (T-score)", Coding("bmd_t_score", "continuous",
                                                         "T-score (SD units)"),
                  -0.539, -0.539, 0.245, 0.583, (0.361, 0.942), "0.028"),
        ModelTerm("ivc", "preoperative intravertebral cleft", Coding("ivc", "binary", "0/1"),
                  1.179, 1.179, 0.331, 3.252, (1.701, 6.217), "0.000"),
        ModelTerm("procedure_pvp", "surgical method PVP (vs PKP)",
                  Coding("procedure", "indicator", "category", ("pvp",), ("pvp", "pkp")),
                  -1.089, -1.089, 0.407, 0.337, (0.152, 0.747), "0.007"),
        ModelTerm("cement_no_endplate_contact", "cement not in contact with the upper or "
                  "lower endplates", Coding("cement_contacts_both_postop", "indicator",
                                             "0/1 (1 = touches both endplates)", ("0",), _BIN),
                  0.918, 0.918, 0.335, 2.504, (1.299, 4.827), "0.006"),
        ModelTerm("cement_volume_ml", "volume of bone cement injected",
                  Coding("cement_volume_ml", "continuous", "ml"),
                  -0.584, -0.584, 0.142, 0.558, (0.422, 0.737), "0.000"),
        ModelTerm("avhr_recovery_pct", "recovery of anterior column height",
                  Coding("avhr_recovery_pct", "continuous", "percentage points"),
                  -0.008, -0.008, 0.016, 0.992, (0.961, 1.024), "0.615"),
    ),
    inconsistencies=(
        "No constant is printed, so absolute probabilities cannot be computed from the "
        "paper alone.",
        "Table 1 labels the contact row 'in contact with the upper or lower endplates: Yes "
        "53 / 64' (recompression / none), which would make contact a risk factor, while "
        "Table 2 and the text call *no* contact the risk factor (OR 2.504); the Table 2 "
        "reading (no contact = 1) is used.",
        "Table 1 compares cement volume with Welch's t (-6.951 reproduces only without "
        "pooling), the other continuous rows with Student's pooled t, although the methods "
        "name only 't-test'.",
    ),
    notes=(
        "'Not in contact with the endplates' is read as 'not touching both endplates' "
        "(cement_contacts_both_postop == 0), i.e. any NPEC pattern.",
        "Recovery of anterior column height is taken as AVHR(postop) - AVHR(preop) in "
        "percentage points (avhr_recovery_pct, docs/data_dictionary.csv).",
        "Odds ratios between patients: exp(lp_a - lp_b). Probabilities after logistic "
        "recalibration on the user's cohort: logit p = a + lp (intercept only) or a + b*lp.",
    ),
)

XIONG2021 = PublishedModel(
    name="xiong2021",
    paper="Xiong et al. 2021, refracture of the cemented vertebrae after PVP (BMC "
    "Musculoskelet Disord 22:459)",
    table="Table 2",
    outcome="refracture of the cemented vertebra (compression rate increase >= 15 % with "
    "bone marrow oedema)",
    population="93 patients (48 refracture, 45 controls; case-control selection)",
    capability="odds_ratios",
    intercept=None,
    terms=(
        ModelTerm("ivc", "intravertebral cleft", Coding("ivc", "binary", "0/1"), None,
                  or_printed=27.12, ci_printed=(2.67, 275.38), p_printed="0.005"),
        ModelTerm("endplate_disruption", "endplate cortical disruption",
                  Coding("endplate_disruption", "binary", "0/1"), None,
                  or_printed=3.23, ci_printed=(1.07, 9.75), p_printed="0.037"),
        ModelTerm("npec", "non-PMMA-endplate contact (any pattern)",
                  Coding("npec_postop", "indicator", "category",
                         ("superior", "inferior", "both"),
                         ("none", "superior", "inferior", "both")), None,
                  or_printed=1.99, ci_printed=(1.23, 3.24), p_printed="0.006"),
        ModelTerm("reduction_rate", "reduction rate (RR), per unit not stated",
                  Coding("reduction_rate_pct", "continuous", "percentage points"), None,
                  or_printed=2.94, ci_printed=(1.33, 6.47), p_printed="0.007"),
    ),
    inconsistencies=(
        "RR is given as OR 2.94 'RR (%)' without the unit of change; an OR of 2.94 per "
        "percentage point is implausible next to group means 11.9 vs 4.4 %, so RR enters no "
        "combined quantity.",
        "NPEC has four patterns in Table 1 but one OR in Table 2; whether it was coded "
        "present/absent or ordinally is not stated. Present (any pattern) is used.",
    ),
    notes=(
        "Adjusted ORs only (no B, SE or constant): the model gives risk-factor flags and the "
        "relative odds of the binary factors present (product of their ORs, i.e. relative "
        "to a patient with none of them at the same RR), never probabilities.",
        "Case-control sampling (48 vs 45): absolute risks from this sample would be wrong.",
    ),
)

_THORACOLUMBAR = ("t11", "t12", "l1", "l2")

RULES = RuleSet(
    name="rules",
    paper="Zeng et al. 2025 (review of refracture risk factors); Yassavoly et al. 2025 "
    "(kyphoplasty, intradiscal leak type)",
    rules=(
        RuleFlag("cement_volume_ratio_gt_13_82",
                 "cement volume / vertebral body volume above 13.82 %", "Zeng 2025 (ref. 29)",
                 "cement_volume_ratio_pct", ">", 13.82, "%", "adjacent vertebral fracture"),
        RuleFlag("hu_ratio_gt_15_18",
                 "augmented / adjacent vertebra HU ratio above 15.18", "Zeng 2025 (ref. 12)",
                 "treated_hu", ">", 15.18, "ratio", "adjacent vertebral fracture",
                 denominator="adjacent_hu"),
        RuleFlag("adjacent_hu_lt_66_9", "adjacent vertebra HU below 66.9",
                 "Zeng 2025 (ref. 12)", "adjacent_hu", "<", 66.9, "HU",
                 "adjacent vertebral fracture"),
        RuleFlag("compression_ge_38_5", "preoperative vertebral compression >= 38.5 %",
                 "Zeng 2025 (ref. 33)", "compression_pct_preop", ">=", 38.5, "%",
                 "loss of height restoration / refracture"),
        RuleFlag("level_t11_l2", "treated level in the thoracolumbar junction T11-L2",
                 "Zeng 2025 (ref. 37)", "level", "in", _THORACOLUMBAR, "level",
                 "adjacent vertebral fracture"),
        RuleFlag("intradiscal_spike_leak", "intradiscal cement leak of the spike type",
                 "Yassavoly 2025", "leak_intradiscal_spike_postop", "==", "1", "0/1",
                 "adjacent vertebral fracture"),
        RuleFlag("leak_touches_adjacent_endplate",
                 "leaked cement touches the adjacent vertebra's endplate",
                 "Zeng 2025 (ref. 34)", "leak_touches_adjacent_endplate_postop", "==", "1",
                 "0/1", "adjacent vertebral fracture"),
    ),
    combined={"hu_ratio_high_and_adjacent_low": ("hu_ratio_gt_15_18", "adjacent_hu_lt_66_9")},
    notes=(
        "Zeng 2025 reports the HU finding as the combination of a high augmented/adjacent HU "
        "ratio (> 15.18) and a low adjacent HU (< 66.9); it is sometimes worded "
        "'adjacent/augmented'. "
        "A threshold of 15.18 only makes sense for the augmented (cemented) vertebra over the "
        "adjacent one, so treated_hu / adjacent_hu is used; the combined flag is "
        "hu_ratio_high_and_adjacent_low.",
        "Flags are relative risk markers from single studies or a review, not probabilities.",
    ),
)

MODELS: dict[str, PublishedModel | RuleSet] = {
    m.name: m for m in (LI2021, AN2021, XIONG2021, RULES)
}


def model_names() -> tuple[str, ...]:
    """Names accepted by :func:`get_model` and ``risk apply --model``."""
    return tuple(MODELS)


def get_model(name: str) -> PublishedModel | RuleSet:
    """Look up a published model or the rule set by name (case-insensitive)."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise RiskModelError(
            f"unknown risk model {name!r}; known: {', '.join(MODELS)}"
        ) from None
