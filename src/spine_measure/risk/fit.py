"""Fit a multivariable logistic model on the user's cohort, as the papers do.

statsmodels does the maximum-likelihood arithmetic; this module encodes the predictors,
detects separation, non-convergence and too few events per variable, and returns an
immutable :class:`LogisticFit` whose :meth:`LogisticFit.summary` prints the table the
papers print (B, SE, Wald, df, P, OR, 95 % CI).

Predictor specifications
------------------------
``col``
    numeric 0/1 → binary; other numeric → continuous (per unit of the column);
    text → categorical with the levels sorted, the first the reference.
``col:A|B|C``
    categorical with groups of levels, the first group the reference; a group of several
    levels joins them with ``+``: ``goutallier_grade:0+1|2|3+4`` gives Li 2021's coding.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    HessianInversionWarning,
    PerfectSeparationWarning,
)

from spine_measure.risk.apply import _norm_text, bool_code, expit
from spine_measure.risk.errors import (
    FewEventsWarning,
    NonConvergenceWarning,
    RiskInputError,
    SeparationWarning,
)

__all__ = ["PredictorSpec", "parse_predictors", "encode", "LogisticFit", "fit_logistic",
           "outcome_vector", "EPV_MIN"]

#: Events per variable below which :class:`FewEventsWarning` is raised.
EPV_MIN = 10.0
Z975 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class PredictorSpec:
    """How one input column enters the model.

    Attributes
    ----------
    column : str
    kind : {"binary", "continuous", "categorical"}
    groups : tuple of tuple of str
        Categorical only: level groups (normalised text), the first is the reference.
    """

    column: str
    kind: str
    groups: tuple[tuple[str, ...], ...] = ()

    @property
    def terms(self) -> tuple[str, ...]:
        """Names of the design columns this predictor produces."""
        if self.kind != "categorical":
            return (self.column,)
        return tuple(f"{self.column}[{'+'.join(g)}]" for g in self.groups[1:])

    def label(self) -> str:
        if self.kind == "categorical":
            return f"{self.column} (ref. {'+'.join(self.groups[0])})"
        return self.column


def _level(raw) -> str:
    """Normalised level text; boolean spellings (true/false, yes/no, 0/1) become 1/0, so a
    model fitted on 0/1 reads ``spine-measure batch``'s true/false and vice versa."""
    return bool_code(raw) or _norm_text(raw)


def _is_boolean(series: pd.Series) -> bool:
    vals = series[series.astype(str).str.strip() != ""]
    return bool(len(vals)) and all(bool_code(v) is not None for v in vals)


def _is_numeric(series: pd.Series) -> bool:
    vals = series[series.astype(str).str.strip() != ""]
    return bool(len(vals)) and pd.to_numeric(vals, errors="coerce").notna().all()


def parse_predictors(tokens: Sequence[str], df: pd.DataFrame) -> tuple[PredictorSpec, ...]:
    """Turn predictor tokens into :class:`PredictorSpec` (see the module docstring)."""
    specs = []
    for tok in tokens:
        tok = tok.strip()
        if not tok:
            continue
        col, _, lv = tok.partition(":")
        if col not in df.columns:
            raise RiskInputError(f"predictor column {col!r} not in the input")
        s = df[col]
        present = s[s.astype(str).str.strip() != ""].dropna()
        if lv:
            groups = tuple(tuple(_norm_text(x) for x in g.split("+")) for g in lv.split("|"))
            if len(groups) < 2:
                raise RiskInputError(f"predictor {tok!r}: give at least two level groups")
            specs.append(PredictorSpec(col, "categorical", groups))
        elif _is_boolean(present):
            specs.append(PredictorSpec(col, "binary"))
        elif _is_numeric(present):
            vals = set(pd.to_numeric(present).unique())
            kind = "binary" if vals <= {0, 1} else "continuous"
            specs.append(PredictorSpec(col, kind))
        else:
            levels = sorted({_norm_text(x) for x in present})
            if len(levels) < 2:
                raise RiskInputError(f"predictor {col!r} has fewer than two levels")
            specs.append(PredictorSpec(col, "categorical", tuple((lv_,) for lv_ in levels)))
    if not specs:
        raise RiskInputError("no predictors given")
    return tuple(specs)


def encode(specs: Sequence[PredictorSpec], df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Design matrix (no constant) and per-row reasons for missing or invalid inputs."""
    cols: dict[str, np.ndarray] = {}
    reasons = [[] for _ in range(len(df))]
    for sp in specs:
        if sp.column not in df.columns:
            raise RiskInputError(f"predictor column {sp.column!r} not in the input")
        raw = df[sp.column].tolist()
        if sp.kind == "categorical":
            groups = [{_level(lv) for lv in g} for g in sp.groups]
            known = set().union(*groups)
            mats = {t: np.full(len(df), np.nan) for t in sp.terms}
            for i, r in enumerate(raw):
                if r is None or (isinstance(r, float) and math.isnan(r)) or str(r).strip() == "":
                    reasons[i].append(f"{sp.column} is empty")
                    continue
                t = _level(r)
                if t not in known:
                    reasons[i].append(f"{sp.column} = {r!r} is in no level group")
                    continue
                for g, name in zip(groups[1:], sp.terms, strict=True):
                    mats[name][i] = 1.0 if t in g else 0.0
            cols.update(mats)
        else:
            coded = [bool_code(r) or r for r in raw] if sp.kind == "binary" else raw
            v = pd.to_numeric(pd.Series(coded, dtype=object), errors="coerce").to_numpy(
                dtype=float)
            for i in np.flatnonzero(~np.isfinite(v)):
                r = raw[i]
                empty = r is None or str(r).strip() in ("", "nan")
                reasons[i].append(f"{sp.column} is empty" if empty
                                  else f"{sp.column} = {r!r} is not a number")
            if sp.kind == "binary":
                bad = np.isfinite(v) & ~np.isin(v, (0.0, 1.0))
                for i in np.flatnonzero(bad):
                    reasons[i].append(f"{sp.column} = {raw[i]!r} is not 0/1")
                v = np.where(bad, np.nan, v)
            cols[sp.column] = v
    X = pd.DataFrame(cols, index=df.index)
    return X, pd.Series(["; ".join(r) for r in reasons], index=df.index, dtype=object)


def outcome_vector(df: pd.DataFrame, outcome: str) -> np.ndarray:
    """The outcome column as 0/1 floats (NaN when empty); raise on other values."""
    if outcome not in df.columns:
        raise RiskInputError(f"outcome column {outcome!r} not in the input")
    out = np.full(len(df), np.nan)
    for i, r in enumerate(df[outcome].tolist()):
        t = "" if r is None else _norm_text(r)
        if t in ("", "nan"):
            continue
        if t in ("1", "yes", "true"):
            out[i] = 1.0
        elif t in ("0", "no", "false"):
            out[i] = 0.0
        else:
            raise RiskInputError(f"outcome column {outcome!r}: row {i + 1} value {r!r} is not 0/1")
    return out


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class LogisticFit:
    """An immutable fitted logistic regression.

    Attributes
    ----------
    outcome : str
    predictors : tuple of PredictorSpec
    names : tuple of str
        ``("const", *terms)``.
    params, bse : ndarray
        Coefficients B and their standard errors, in ``names`` order.
    cov : ndarray
        Covariance matrix of ``params``.
    n, n_events, n_dropped : int
        Complete cases used, events among them, rows dropped for missing inputs.
    converged : bool
    llf, llnull : float
        Log-likelihoods of the model and of the intercept-only model.
    warnings : tuple of str
        Messages of the separation / convergence / events-per-variable warnings raised.
    """

    outcome: str
    predictors: tuple[PredictorSpec, ...]
    names: tuple[str, ...]
    params: np.ndarray
    bse: np.ndarray
    cov: np.ndarray
    n: int
    n_events: int
    n_dropped: int
    converged: bool
    llf: float
    llnull: float
    warnings: tuple[str, ...] = field(default_factory=tuple)

    # --- derived quantities -------------------------------------------------------------
    @property
    def wald(self) -> np.ndarray:
        """Wald chi-square :math:`(B/SE)^2` per coefficient (1 df)."""
        return (self.params / self.bse) ** 2

    @property
    def pvalues(self) -> np.ndarray:
        return stats.chi2.sf(self.wald, 1)

    @property
    def odds_ratios(self) -> np.ndarray:
        return np.exp(self.params)

    @property
    def conf_int(self) -> np.ndarray:
        """95 % Wald intervals of B, shape (k, 2): :math:`B \\pm 1.96\\,SE`."""
        return np.column_stack([self.params - Z975 * self.bse, self.params + Z975 * self.bse])

    @property
    def events_per_variable(self) -> float:
        """min(events, non-events) / number of coefficients (excluding the constant)."""
        k = max(len(self.names) - 1, 1)
        return min(self.n_events, self.n - self.n_events) / k

    def joint_wald(self, spec: PredictorSpec) -> tuple[float, int, float]:
        """Joint Wald test of all terms of one predictor: :math:`B' V^{-1} B`, df, P."""
        idx = [self.names.index(t) for t in spec.terms]
        b = self.params[idx]
        v = self.cov[np.ix_(idx, idx)]
        w = float(b @ np.linalg.solve(v, b))
        return w, len(idx), float(stats.chi2.sf(w, len(idx)))

    def table(self) -> pd.DataFrame:
        """The coefficient table as the papers print it, with joint rows for groups.

        Columns: ``B, SE, Wald, df, P, OR, CI_low, CI_high``; the constant is last.
        """
        rows = []
        with np.errstate(over="ignore"):  # separation: exp of a huge B is inf, shown as such
            ci = np.exp(self.conf_int)
            ors = self.odds_ratios
        def row(i: int, label: str) -> dict:
            return {"term": label, "B": self.params[i], "SE": self.bse[i],
                    "Wald": self.wald[i], "df": 1, "P": self.pvalues[i],
                    "OR": ors[i], "CI_low": ci[i, 0], "CI_high": ci[i, 1]}
        for sp in self.predictors:
            if sp.kind == "categorical" and len(sp.terms) > 1:
                w, d, p = self.joint_wald(sp)
                rows.append({"term": sp.label(), "B": np.nan, "SE": np.nan, "Wald": w,
                             "df": d, "P": p, "OR": np.nan, "CI_low": np.nan,
                             "CI_high": np.nan})
            for t in sp.terms:
                rows.append(row(self.names.index(t), t))
        c = row(0, "Constant")
        c["CI_low"] = c["CI_high"] = np.nan
        rows.append(c)
        return pd.DataFrame(rows).set_index("term")

    def summary(self, *, with_warnings: bool = True) -> str:
        """Plain-text table (B, SE, Wald, df, P, OR (95 % CI)) plus sample and warnings.

        Columns are separated by at least two spaces; values too large for a fixed
        format (separation) are printed in exponent form, so numbers never run together.
        """
        t = self.table()
        def fmt_p(p: float) -> str:
            return "" if np.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"
        def num(x: float) -> str:
            if not np.isfinite(x):
                return "" if np.isnan(x) else ("inf" if x > 0 else "-inf")
            return f"{x:.3f}" if abs(x) < 1e4 else f"{x:.3g}"
        rows = [("", "B", "SE", "Wald", "df", "P", "OR (95% CI)")]
        for name, r in t.iterrows():
            orr = num(r.OR)
            if not np.isnan(r.CI_low):
                orr += f" ({num(r.CI_low)} to {num(r.CI_high)})"
            rows.append((str(name), num(r.B), num(r.SE), num(r.Wald), str(int(r.df)),
                         fmt_p(r.P), orr))
        widths = [max(len(r[j]) for r in rows) for j in range(6)]
        lines = [f"Logistic regression of {self.outcome}: n = {self.n} "
                 f"({self.n_events} events; {self.n_dropped} rows dropped for missing "
                 f"inputs), converged = {self.converged}"]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:6], widths[1:],
                                                                       strict=True)]
            lines.append("  ".join(cells) + "  " + r[6])
        if with_warnings:
            lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)

    # --- prediction ---------------------------------------------------------------------
    def linear_predictor(self, df: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
        """:math:`\\eta = B_0 + \\sum B_j x_j` per row (NaN with a reason when incomplete)."""
        X, reasons = encode(self.predictors, df)
        lp = self.params[0] + X[list(self.names[1:])].to_numpy(dtype=float) @ self.params[1:]
        return lp, reasons

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted probability :math:`1/(1+e^{-\\eta})` per row (NaN when incomplete)."""
        return expit(self.linear_predictor(df)[0])

    # --- persistence --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "kind": "spine_measure.risk.LogisticFit",
            "outcome": self.outcome,
            "predictors": [{"column": p.column, "kind": p.kind, "groups": [list(g) for g in
                                                                         p.groups]}
                           for p in self.predictors],
            "names": list(self.names),
            "params": self.params.tolist(),
            "bse": self.bse.tolist(),
            "cov": self.cov.tolist(),
            "n": self.n, "n_events": self.n_events, "n_dropped": self.n_dropped,
            "converged": self.converged, "llf": self.llf, "llnull": self.llnull,
            "warnings": list(self.warnings),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise the coefficients (never pickle); write to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> LogisticFit:
        """Rebuild a fit saved with :meth:`to_json` (path or JSON text)."""
        text = Path(source).read_text(encoding="utf-8") if Path(str(source)).exists() \
            else str(source)
        d = json.loads(text)
        if d.get("kind") != "spine_measure.risk.LogisticFit":
            raise RiskInputError(f"{source}: not a saved spine_measure logistic fit")
        preds = tuple(PredictorSpec(p["column"], p["kind"], tuple(tuple(g) for g in p["groups"]))
                      for p in d["predictors"])
        return cls(d["outcome"], preds, tuple(d["names"]), _frozen(d["params"]),
                   _frozen(d["bse"]), _frozen(d["cov"]), d["n"], d["n_events"],
                   d["n_dropped"], d["converged"], d["llf"], d["llnull"],
                   tuple(d["warnings"]))


def _fit_arrays(X: np.ndarray, y: np.ndarray):
    """statsmodels Logit fit; returns (result, caught warnings, separation error text)."""
    model = sm.Logit(y, X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = model.fit(disp=0, maxiter=200, method="newton")
        except np.linalg.LinAlgError as exc:
            return None, caught, f"singular information matrix ({exc})"
        except Exception as exc:  # statsmodels' PerfectSeparationError in old versions
            if "separation" in str(exc).lower():
                return None, caught, str(exc)
            raise
    return res, caught, None


def fit_logistic(
    df: pd.DataFrame,
    outcome: str,
    predictors: Sequence[str] | Sequence[PredictorSpec],
) -> LogisticFit:
    """Fit :math:`\\operatorname{logit} P(y=1) = B_0 + \\sum_j B_j x_j` on complete cases.

    Warnings (also stored in :attr:`LogisticFit.warnings`): :class:`SeparationWarning`
    when the likelihood has no finite maximum or fitted probabilities reach 0 or 1,
    :class:`NonConvergenceWarning` when Newton's method does not converge,
    :class:`FewEventsWarning` when events per variable < :data:`EPV_MIN`.
    """
    specs = (tuple(predictors) if predictors and isinstance(predictors[0], PredictorSpec)
             else parse_predictors(list(predictors), df))  # type: ignore[arg-type]
    X, reasons = encode(specs, df)
    y = outcome_vector(df, outcome)
    keep = (reasons == "").to_numpy() & np.isfinite(y)
    Xc = sm.add_constant(X[keep].to_numpy(dtype=float), has_constant="add")
    yc = y[keep]
    names = ("const", *X.columns)
    n, events = int(keep.sum()), int(yc.sum()) if keep.any() else 0
    if n == 0 or events == 0 or events == n:
        raise RiskInputError(
            f"cannot fit {outcome!r}: {n} complete rows with {events} events "
            "(both outcomes are needed)"
        )
    const_cols = [names[j] for j in range(1, Xc.shape[1]) if np.ptp(Xc[:, j]) == 0]
    if const_cols:
        raise RiskInputError(f"predictor term(s) constant among complete rows: "
                             f"{', '.join(const_cols)}")
    res, caught, sep_error = _fit_arrays(Xc, yc)
    msgs: list[tuple[type[Warning], str]] = []
    if sep_error is not None or any(issubclass(w.category, PerfectSeparationWarning)
                                    for w in caught):
        msgs.append((SeparationWarning, "complete or quasi-complete separation: "
                     "some coefficients have no finite maximum-likelihood estimate"))
    if res is None:
        k = Xc.shape[1]
        params = np.full(k, np.nan)
        bse = np.full(k, np.nan)
        cov = np.full((k, k), np.nan)
        converged, llf, llnull = False, math.nan, math.nan
    else:
        params, bse = np.asarray(res.params), np.asarray(res.bse)
        cov = np.asarray(res.cov_params())
        converged = bool(res.mle_retvals.get("converged", False))
        llf, llnull = float(res.llf), float(res.llnull)
        p = res.predict()
        if not msgs and (np.min(p) < 1e-8 or np.max(p) > 1 - 1e-8):
            msgs.append((SeparationWarning, "quasi-complete separation: fitted probabilities "
                         "of 0 or 1 occur; the affected B and SE are not reliable"))
        if not converged or any(issubclass(w.category, (ConvergenceWarning,
                                                        HessianInversionWarning))
                                for w in caught):
            msgs.append((NonConvergenceWarning, "the maximum-likelihood fit did not converge"))
    k = len(names) - 1
    epv = min(events, n - events) / max(k, 1)
    if epv < EPV_MIN:
        msgs.append((FewEventsWarning, f"{epv:.1f} events per variable "
                     f"({min(events, n - events)} in the rarer class, {k} coefficients); "
                     f"at least {EPV_MIN:g} are recommended"))
    for cls, msg in msgs:
        warnings.warn(msg, cls, stacklevel=2)
    return LogisticFit(outcome, specs, names, _frozen(params), _frozen(bse), _frozen(cov), n,
                       events, int(len(df) - n), converged, llf, llnull,
                       tuple(m for _, m in msgs))
