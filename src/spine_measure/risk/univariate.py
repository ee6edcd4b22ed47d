"""Univariate comparison of two outcome groups, with the test chosen and reported.

Continuous variables (numeric with more than 5 distinct values, or any non-integer):
Shapiro–Wilk in each group (3 <= n <= 5000); both P > 0.05 → t-test, Student's pooled when
Levene's P > 0.05, Welch's otherwise; else the Mann–Whitney U test (two-sided, asymptotic
with tie correction). Summaries: mean ± SD, and median [IQR] when Mann–Whitney is used.

Categorical variables (text, or numeric with at most 5 integer levels): Pearson's
chi-square without continuity correction (as SPSS's "Pearson Chi-Square"); Fisher's exact
test instead when any expected count is below 5 (2 x 2), or more than 20 % of the expected
counts are below 5 (larger tables: the Fisher–Freeman–Halton test, exact by complete
enumeration when feasible, otherwise a seeded Monte Carlo labelled with its seed, resample
count and Monte Carlo standard error; :mod:`spine_measure.risk.exact`).

Category labels are shown as written in the input (the most frequent spelling of each
level; levels are matched case-insensitively), with ``F``/``M`` of a ``sex`` column shown as
``female``/``male`` and boolean spellings as ``no``/``yes``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from spine_measure.risk.apply import _norm_text, bool_code
from spine_measure.risk.errors import RiskInputError
from spine_measure.risk.exact import fisher_exact_rxc
from spine_measure.risk.fit import outcome_vector

__all__ = ["univariate_table", "choose_kind"]


def choose_kind(values: pd.Series) -> str:
    """``"continuous"`` or ``"categorical"`` for a column (see the module docstring)."""
    v = values[values.astype(str).str.strip() != ""].dropna()
    num = pd.to_numeric(v, errors="coerce")
    if len(v) == 0 or num.isna().any():
        return "categorical"
    if (num == np.round(num)).all() and num.nunique() <= 5:
        return "categorical"
    return "continuous"


def _continuous(name: str, a: np.ndarray, b: np.ndarray) -> dict:
    normal = True
    shapiro = []
    for g in (a, b):
        if 3 <= len(g) <= 5000 and np.ptp(g) > 0:
            pv = float(stats.shapiro(g).pvalue)
            shapiro.append(pv)
            normal &= pv > 0.05
        else:
            shapiro.append(math.nan)
    row = {"variable": name, "kind": "continuous",
           "group0": f"{np.mean(a):.2f} ± {np.std(a, ddof=1):.2f}",
           "group1": f"{np.mean(b):.2f} ± {np.std(b, ddof=1):.2f}"}
    if normal:
        lev = float(stats.levene(a, b, center="mean").pvalue)
        equal = lev > 0.05
        res = stats.ttest_ind(b, a, equal_var=equal)
        row.update(test="Student t-test" if equal else "Welch t-test", statistic=res.statistic,
                   p=res.pvalue, reason=f"Shapiro-Wilk P {shapiro[0]:.3f} / {shapiro[1]:.3f} "
                   f"> 0.05; Levene P {lev:.3f}")
    else:
        res = stats.mannwhitneyu(b, a, alternative="two-sided", method="asymptotic")
        q = [np.percentile(g, [25, 50, 75]) for g in (a, b)]
        row["group0"] += f"; {q[0][1]:.2f} [{q[0][0]:.2f}, {q[0][2]:.2f}]"
        row["group1"] += f"; {q[1][1]:.2f} [{q[1][0]:.2f}, {q[1][2]:.2f}]"
        row.update(test="Mann-Whitney U", statistic=res.statistic, p=res.pvalue,
                   reason=f"Shapiro-Wilk P {shapiro[0]:.3g} / {shapiro[1]:.3g}: not normal")
    return row


_SEX = {"f": "female", "m": "male", "w": "female"}


def _labels(name: str, raw: list) -> dict[str, str]:
    """Display label per normalised level: the input's most frequent spelling."""
    spellings: dict[str, dict[str, int]] = {}
    for r in raw:
        k = _norm_text(r)
        spellings.setdefault(k, {}).setdefault(str(r).strip(), 0)
        spellings[k][str(r).strip()] += 1
    if spellings and all(bool_code(k) is not None for k in spellings):
        return {k: ("yes" if bool_code(k) == "1" else "no") for k in spellings}
    out = {k: max(sorted(v), key=v.get) for k, v in spellings.items()}
    if "sex" in name.lower() and set(out) <= set(_SEX):
        out = {k: _SEX[k] for k in out}
    return out


def _categorical(name: str, x: list[str], y: np.ndarray, *, seed: int = 0,
                 labels: dict[str, str] | None = None) -> dict:
    levels = sorted(set(x))
    lab = labels or {}
    table = np.array([[sum(1 for xi, yi in zip(x, y, strict=True) if xi == lv and yi == g)
                       for g in (0, 1)] for lv in levels])
    n0, n1 = table.sum(axis=0)
    def cells(col: np.ndarray, tot: int) -> str:
        return "; ".join(f"{lab.get(lv, lv)}: {c} ({100 * c / tot:.1f}%)" if tot else
                         f"{lab.get(lv, lv)}: {c}" for lv, c in zip(levels, col, strict=True))
    cells0, cells1 = cells(table[:, 0], n0), cells(table[:, 1], n1)
    row = {"variable": name, "kind": "categorical", "group0": cells0, "group1": cells1}
    if len(levels) < 2:
        row.update(test="none", statistic=math.nan, p=math.nan, reason="one level only")
        return row
    expected = stats.contingency.expected_freq(table)
    small = (expected < 5).mean()
    if (table.shape == (2, 2) and (expected < 5).any()) or (table.shape != (2, 2) and small > 0.2):
        if table.shape == (2, 2):
            res = stats.fisher_exact(table)
            row.update(test="Fisher exact", statistic=res.statistic, p=res.pvalue,
                       reason=f"{100 * small:.0f} % of expected counts < 5")
        else:
            fr = fisher_exact_rxc(table, seed=seed)
            name_ = ("Fisher-Freeman-Halton exact" if fr.method == "exact"
                     else "Fisher-Freeman-Halton, Monte Carlo")
            row.update(test=name_, statistic=math.nan, p=fr.pvalue,
                       reason=f"{100 * small:.0f} % of expected counts < 5; P {fr.label}")
    else:
        chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
        row.update(test=f"Pearson chi-square ({dof} df)", statistic=chi2, p=p,
                   reason="all expected counts >= 5" if small == 0
                   else f"{100 * small:.0f} % of expected counts < 5 (<= 20 %)")
    return row


def univariate_table(df: pd.DataFrame, outcome: str, columns: Sequence[str], *,
                     seed: int = 0) -> pd.DataFrame:
    """Compare outcome 0 (``group0``) and 1 (``group1``) on each column.

    Returns
    -------
    DataFrame
        ``variable, kind, n_missing, group0, group1, test, statistic, p, reason``; the
        statistic is group 1 vs group 0 (t > 0 when the mean is higher with the outcome).
        ``seed`` seeds the Monte Carlo of an r x c Fisher test too large to enumerate.
    """
    y = outcome_vector(df, outcome)
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise RiskInputError(f"univariate column(s) not in the input: {', '.join(absent)}")
    rows = []
    for col in columns:
        s = df[col]
        present = (s.astype(str).str.strip() != "") & s.notna() & np.isfinite(y)
        kind = choose_kind(s[present])
        if kind == "continuous":
            v = pd.to_numeric(s, errors="coerce").to_numpy(float)
            ok = present.to_numpy() & np.isfinite(v)
            row = _continuous(col, v[ok & (y == 0)], v[ok & (y == 1)])
        else:
            ok = present.to_numpy()
            row = _categorical(col, [_norm_text(t) for t in s[ok]], y[ok].astype(int),
                               seed=seed, labels=_labels(col, list(s[ok])))
        row["n_missing"] = int((~ok).sum())
        rows.append(row)
    cols = ["variable", "kind", "n_missing", "group0", "group1", "test", "statistic", "p",
            "reason"]
    return pd.DataFrame(rows)[cols]
