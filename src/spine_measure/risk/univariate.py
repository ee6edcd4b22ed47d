"""Univariate comparison of two outcome groups, with the test chosen and reported.

Continuous variables (numeric with more than 5 distinct values, or any non-integer):
Shapiro–Wilk in each group (3 <= n <= 5000); both P > 0.05 → t-test, Student's pooled when
Levene's P > 0.05, Welch's otherwise; else the Mann–Whitney U test (two-sided, asymptotic
with tie correction). Summaries: mean ± SD, and median [IQR] when Mann–Whitney is used.

Categorical variables (text, or numeric with at most 5 integer levels): Pearson's
chi-square without continuity correction (as SPSS's "Pearson Chi-Square"); Fisher's exact
test instead when any expected count is below 5 (2 x 2), or more than 20 % of the expected
counts are below 5 (larger tables; scipy's r x c Fisher test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from spine_measure.risk.apply import _norm_text
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


def _categorical(name: str, x: list[str], y: np.ndarray) -> dict:
    levels = sorted(set(x))
    table = np.array([[sum(1 for xi, yi in zip(x, y, strict=True) if xi == lv and yi == g)
                       for g in (0, 1)] for lv in levels])
    n0, n1 = table.sum(axis=0)
    cells0 = "; ".join(f"{lv}: {c} ({100 * c / n0:.1f}%)" for lv, c in zip(levels, table[:, 0],
                                                                          strict=True))
    cells1 = "; ".join(f"{lv}: {c} ({100 * c / n1:.1f}%)" for lv, c in zip(levels, table[:, 1],
                                                                          strict=True))
    row = {"variable": name, "kind": "categorical", "group0": cells0, "group1": cells1}
    if len(levels) < 2:
        row.update(test="none", statistic=math.nan, p=math.nan, reason="one level only")
        return row
    expected = stats.contingency.expected_freq(table)
    small = (expected < 5).mean()
    if (table.shape == (2, 2) and (expected < 5).any()) or (table.shape != (2, 2) and small > 0.2):
        if table.shape == (2, 2):
            res = stats.fisher_exact(table)
            stat = res.statistic
        else:
            res = stats.fisher_exact(table)
            stat = math.nan
        row.update(test="Fisher exact", statistic=stat, p=res.pvalue,
                   reason=f"{100 * small:.0f} % of expected counts < 5")
    else:
        chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
        row.update(test=f"Pearson chi-square ({dof} df)", statistic=chi2, p=p,
                   reason="all expected counts >= 5" if small == 0
                   else f"{100 * small:.0f} % of expected counts < 5 (<= 20 %)")
    return row


def univariate_table(df: pd.DataFrame, outcome: str, columns: Sequence[str]) -> pd.DataFrame:
    """Compare outcome 0 (``group0``) and 1 (``group1``) on each column.

    Returns
    -------
    DataFrame
        ``variable, kind, n_missing, group0, group1, test, statistic, p, reason``; the
        statistic is group 1 vs group 0 (t > 0 when the mean is higher with the outcome).
    """
    y = outcome_vector(df, outcome)
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
            row = _categorical(col, [_norm_text(t) for t in s[ok]], y[ok].astype(int))
        row["n_missing"] = int((~ok).sum())
        rows.append(row)
    cols = ["variable", "kind", "n_missing", "group0", "group1", "test", "statistic", "p",
            "reason"]
    return pd.DataFrame(rows)[cols]
