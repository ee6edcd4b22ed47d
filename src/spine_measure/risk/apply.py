"""Apply a published model or the rule flags to a feature table, row by row.

A missing or invalid input never becomes a zero: the row's output is missing and the
``<model>_reason`` column says which input and why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from spine_measure.risk.errors import RiskInputError, RiskModelError
from spine_measure.risk.published import (
    Coding,
    PublishedModel,
    RuleFlag,
    RuleSet,
    get_model,
)

__all__ = [
    "ID_COLUMNS",
    "code_value",
    "design_for_model",
    "apply_model",
    "Recalibration",
    "recalibrate",
    "expit",
]

log = logging.getLogger(__name__)

#: Identifier columns copied to the output when present.
ID_COLUMNS = ("patient_pseudo_id", "level")

_TRUE = {"1", "1.0", "yes", "y", "true", "t", "present"}
_FALSE = {"0", "0.0", "no", "n", "false", "f", "absent"}
#: Unambiguous boolean spellings (``spine-measure batch`` writes ``true``/``false``; pandas
#: writes ``True``/``False``; clinical tables often hold ``yes``/``no`` or 0/1).
BOOL_TRUE = frozenset({"1", "true", "yes"})
BOOL_FALSE = frozenset({"0", "false", "no"})


def bool_code(raw) -> str | None:
    """``"1"``/``"0"`` for a boolean spelling (0/1, true/false, True/False, yes/no), else
    ``None``.

    >>> bool_code("True"), bool_code("false"), bool_code(1.0), bool_code("blocky")
    ('1', '0', '1', None)
    """
    if isinstance(raw, (bool, np.bool_)):
        return "1" if raw else "0"
    t = _norm_text(raw)
    if t in BOOL_TRUE:
        return "1"
    if t in BOOL_FALSE:
        return "0"
    return None


def expit(x):
    """Logistic function :math:`1/(1+e^{-x})` (NaN stays NaN)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _is_missing(raw) -> bool:
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return isinstance(raw, str) and raw.strip() == ""


def _norm_text(raw) -> str:
    t = str(raw).strip().lower()
    try:  # "2.0" -> "2" so integer grades read from a float column match
        f = float(t)
        if f.is_integer():
            return str(int(f))
    except ValueError:
        pass
    return t


def code_value(coding: Coding, raw) -> tuple[float, str | None]:
    """Code one input value; return ``(value, None)`` or ``(nan, reason)``.

    >>> code_value(Coding("ivc", "binary", "0/1"), "yes")
    (1.0, None)
    >>> code_value(Coding("ivc", "binary", "0/1"), "")
    (nan, 'ivc is empty')
    """
    col = coding.column
    if _is_missing(raw):
        return math.nan, f"{col} is empty"
    if coding.kind == "binary":
        t = _norm_text(raw)
        if t in _TRUE:
            return 1.0, None
        if t in _FALSE:
            return 0.0, None
        return math.nan, f"{col} = {raw!r} is not 0/1"
    if coding.kind == "indicator":
        t = _norm_text(raw)
        allowed = {a.lower() for a in coding.allowed}
        if allowed and allowed <= {"0", "1"} and t not in allowed:
            t = bool_code(raw) or t  # batch writes 0/1 indicators as true/false
        if allowed and t not in allowed:
            return math.nan, f"{col} = {raw!r} is not one of {', '.join(coding.allowed)}"
        return (1.0 if t in {lv.lower() for lv in coding.levels} else 0.0), None
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return math.nan, f"{col} = {raw!r} is not a number"
    if not math.isfinite(v):
        return math.nan, f"{col} is not finite"
    return v, None


def _resolve(df: pd.DataFrame, column: str, column_map: Mapping[str, str]) -> str:
    return column_map.get(column, column)


def design_for_model(
    model: PublishedModel,
    df: pd.DataFrame,
    column_map: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Code every term of ``model`` for every row.

    Returns
    -------
    design : DataFrame
        One column per term (NaN where the input is missing or invalid).
    reasons : Series of str
        Per row, the reasons joined by ``"; "`` (empty when the row is complete).
    missing : Series of str
        Per row, the input columns that were missing or invalid, joined by ``"; "``.
    """
    column_map = dict(column_map or {})
    design = pd.DataFrame(index=df.index)
    reasons: list[list[str]] = [[] for _ in range(len(df))]
    missing: list[list[str]] = [[] for _ in range(len(df))]
    for term in model.terms:
        col = _resolve(df, term.coding.column, column_map)
        if col not in df.columns:
            design[term.name] = np.nan
            msg = f"column {col!r} not in the input"
            for r, m in zip(reasons, missing, strict=True):
                if msg not in r:
                    r.append(msg)
                    m.append(col)
            continue
        vals = []
        for i, raw in enumerate(df[col].tolist()):
            v, why = code_value(term.coding, raw)
            if why and why.startswith(term.coding.column) and col != term.coding.column:
                why = col + why[len(term.coding.column):]
            if why and why not in reasons[i]:
                reasons[i].append(why)
                missing[i].append(col)
            vals.append(v)
        design[term.name] = vals
    return (
        design,
        pd.Series(["; ".join(r) for r in reasons], index=df.index, dtype=object),
        pd.Series(["; ".join(m) for m in missing], index=df.index, dtype=object),
    )


@dataclass(frozen=True)
class Recalibration:
    """Logistic recalibration of a linear predictor on a cohort.

    :math:`\\operatorname{logit} p = a + b\\,\\eta'`, with ``b`` fixed at 1 for
    intercept-only recalibration (the linear predictor enters as an offset).
    """

    intercept: float
    slope: float
    intercept_se: float
    n: int
    n_events: int
    slope_estimated: bool

    def probability(self, lp) -> np.ndarray:
        """Recalibrated probability for linear predictor(s) ``lp``."""
        return expit(self.intercept + self.slope * np.asarray(lp, dtype=float))


def recalibrate(lp, y, *, slope: bool = False) -> Recalibration:
    """Re-estimate the intercept (and optionally the slope) of a linear predictor.

    Parameters
    ----------
    lp : array-like
        Linear predictor without intercept, one per patient.
    y : array-like of 0/1
        Observed outcome. Rows where either is missing are dropped.
    slope : bool
        Also estimate a calibration slope (full logistic recalibration).
    """
    lp = np.asarray(lp, dtype=float)
    yv = []
    for i, v in enumerate(list(y)):
        if _is_missing(v):
            yv.append(np.nan)
            continue
        code = bool_code(v)
        if code is None:
            raise RiskInputError(f"recalibration outcome: row {i + 1} value {v!r} is not 0/1 "
                                 "(or true/false, yes/no)")
        yv.append(float(code))
    y = np.array(yv, dtype=float)
    ok = np.isfinite(lp) & np.isfinite(y)
    lp, y = lp[ok], y[ok]
    if len(y) < 2 or y.min() == y.max():
        raise RiskInputError(
            f"recalibration needs both outcomes among complete rows; got {len(y)} rows, "
            f"{int(y.sum())} events"
        )
    if slope:
        res = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
        a, b = float(res.params[0]), float(res.params[1])
    else:
        res = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
        a, b = float(res.params[0]), 1.0
    return Recalibration(a, b, float(res.bse[0]), int(len(y)), int(y.sum()), slope)


def _apply_logistic(
    model: PublishedModel,
    df: pd.DataFrame,
    column_map: Mapping[str, str],
    recalibration_outcome: str | None,
    recalibrate_slope: bool,
) -> tuple[pd.DataFrame, dict]:
    design, reasons, missing = design_for_model(model, df, column_map)
    p = model.name
    out = pd.DataFrame(index=df.index)
    meta: dict = {"model": p, "capability": model.capability}
    complete = reasons == ""
    if model.capability in ("probability", "linear_predictor"):
        b = np.array([t.b_used for t in model.terms], dtype=float)
        lp = design.to_numpy(dtype=float) @ b
        lp[~complete.to_numpy()] = np.nan
        if model.capability == "probability":
            assert model.intercept is not None
            out[f"{p}_lp"] = model.intercept + lp
            out[f"{p}_probability"] = expit(model.intercept + lp)
        else:
            out[f"{p}_lp_no_intercept"] = lp
            med = float(np.nanmedian(lp)) if np.isfinite(lp).any() else math.nan
            out[f"{p}_or_vs_median"] = np.exp(lp - med)
            meta["median_lp_no_intercept"] = med
            if recalibration_outcome:
                col = column_map.get(recalibration_outcome, recalibration_outcome)
                if col not in df.columns:
                    raise RiskInputError(f"recalibration outcome column {col!r} not in the input")
                rc = recalibrate(lp, df[col], slope=recalibrate_slope)
                out[f"{p}_probability_recalibrated"] = rc.probability(lp)
                meta["recalibration"] = rc.__dict__
    else:  # odds ratios only
        binary = [t for t in model.terms if t.coding.kind != "continuous"]
        for t in model.terms:
            dtype = "Int64" if t in binary else "Float64"
            out[f"{p}_{t.name}"] = design[t.name].astype("Float64").astype(dtype)
        n_factors = design[[t.name for t in binary]].sum(axis=1, min_count=len(binary))
        rel = np.ones(len(df))
        bad = np.zeros(len(df), dtype=bool)
        for t in binary:
            x = design[t.name].to_numpy(dtype=float)
            bad |= ~np.isfinite(x)
            rel = rel * np.where(x == 1, t.or_printed, 1.0)
        rel[bad] = np.nan
        out[f"{p}_n_factors_present"] = n_factors.astype("Float64").astype("Int64")
        out[f"{p}_relative_odds_binary"] = rel
        meta["relative_odds_terms"] = [t.name for t in binary]
    out[f"{p}_missing_inputs"] = missing
    out[f"{p}_reason"] = reasons
    return out, meta


def _compare(op: str, value, threshold) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return _norm_text(value) == _norm_text(threshold)
    if op == "in":
        return _norm_text(value) in {t.lower() for t in threshold}
    raise RiskModelError(f"unknown rule operator {op!r}")


def _rule_value(rule: RuleFlag, row: pd.Series, column_map: Mapping[str, str]):
    cols = [column_map.get(c, c) for c in rule.columns]
    for c in cols:
        if c not in row.index:
            return None, f"column {c!r} not in the input"
        if _is_missing(row[c]):
            return None, f"{c} is empty"
    if rule.op in ("==", "in"):
        if rule.op == "==":
            v, why = code_value(Coding(cols[0], "binary", rule.unit), row[cols[0]])
            return (None, why) if why else (str(int(v)), None)
        return str(row[cols[0]]).strip(), None
    try:
        v = float(row[cols[0]])
        if rule.denominator:
            d = float(row[cols[1]])
            if d == 0 or not math.isfinite(d):
                return None, f"{cols[1]} is 0 or not finite (ratio undefined)"
            v = v / d
    except (TypeError, ValueError):
        return None, f"{', '.join(cols)}: not a number"
    if not math.isfinite(v):
        return None, f"{cols[0]} is not finite"
    return v, None


def _apply_rules(rules: RuleSet, df: pd.DataFrame, column_map: Mapping[str, str]):
    out = pd.DataFrame(index=df.index)
    reasons: list[list[str]] = [[] for _ in range(len(df))]
    for rule in rules.rules:
        vals = []
        for i, (_, row) in enumerate(df.iterrows()):
            v, why = _rule_value(rule, row, column_map)
            if why:
                reasons[i].append(f"{rule.name}: {why}")
                vals.append(pd.NA)
            else:
                vals.append(bool(_compare(rule.op, v, rule.threshold)))
        out[f"flag_{rule.name}"] = pd.array(vals, dtype="boolean")
    for name, parts in rules.combined.items():
        out[f"flag_{name}"] = out[f"flag_{parts[0]}"]
        for part in parts[1:]:
            out[f"flag_{name}"] = out[f"flag_{name}"] & out[f"flag_{part}"]  # Kleene logic
    flag_cols = [f"flag_{r.name}" for r in rules.rules]
    out["flags_true"] = [
        "; ".join(c[5:] for c in flag_cols if bool(out.at[idx, c] is not pd.NA and out.at[idx, c]))
        for idx in out.index
    ]
    out["flags_reason"] = ["; ".join(r) for r in reasons]
    return out, {"model": rules.name, "capability": "flags"}


def apply_model(
    model: str | PublishedModel | RuleSet,
    df: pd.DataFrame,
    *,
    column_map: Mapping[str, str] | None = None,
    recalibration_outcome: str | None = None,
    recalibrate_slope: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """Apply a model to every row of a feature table.

    Parameters
    ----------
    model : str or model
        ``li2021``, ``an2021``, ``xiong2021``, ``rules`` or a model object.
    df : DataFrame
        Feature table (batch output names; see ``docs/risk_models.md``).
    column_map : mapping, optional
        ``{model column: input column}`` overrides (CLI ``--map VAR=COLUMN``).
    recalibration_outcome : str, optional
        For a ``linear_predictor`` model: 0/1 outcome column on which to re-estimate the
        intercept; adds ``<model>_probability_recalibrated``.
    recalibrate_slope : bool
        Also re-estimate the slope.

    Returns
    -------
    table : DataFrame
        Identifier columns, the model outputs, ``<model>_missing_inputs`` and
        ``<model>_reason`` (for rules: ``flag_*``, ``flags_true``, ``flags_reason``).
    meta : dict
        Model name, capability and recalibration details.
    """
    m = get_model(model) if isinstance(model, str) else model
    column_map = dict(column_map or {})
    ids = df[[c for c in ID_COLUMNS if c in df.columns]].copy()
    if isinstance(m, RuleSet):
        out, meta = _apply_rules(m, df, column_map)
    else:
        if recalibration_outcome and m.capability != "linear_predictor":
            raise RiskModelError(
                f"model {m.name!r} gives {m.capability}; recalibration applies to "
                "linear-predictor models (an2021) only"
            )
        out, meta = _apply_logistic(m, df, column_map, recalibration_outcome,
                                    recalibrate_slope)
    absent = [c for c in m.columns if column_map.get(c, c) not in df.columns]
    if absent:
        log.warning("model %s: input column(s) missing: %s", m.name, ", ".join(absent))
    meta["absent_columns"] = absent
    return pd.concat([ids, out], axis=1), meta
