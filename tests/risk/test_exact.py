"""Fisher–Freeman–Halton r x c test: exact against hand enumeration, seeded Monte Carlo."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spine_measure.risk import univariate_table
from spine_measure.risk.exact import fisher_exact_rxc


def _brute_force(table) -> float:
    """Every table with the observed margins, by itertools over all cells."""
    t = np.asarray(table)
    rows, cols, n = t.sum(axis=1), t.sum(axis=0), int(t.sum())

    def prob(x):
        num = math.prod(math.factorial(int(v)) for v in (*rows, *cols))
        return num / (math.factorial(n) * math.prod(math.factorial(int(v)) for v in x.ravel()))

    p_obs, total, tables = prob(t), 0.0, 0
    free = [range(int(min(rows[i], cols[j])) + 1) for i in range(t.shape[0] - 1)
            for j in range(t.shape[1] - 1)]
    for cells in itertools.product(*free):
        x = np.zeros_like(t)
        x[:-1, :-1] = np.array(cells).reshape(t.shape[0] - 1, t.shape[1] - 1)
        x[:-1, -1] = rows[:-1] - x[:-1, :-1].sum(axis=1)
        x[-1, :] = cols - x[:-1, :].sum(axis=0)
        if (x < 0).any():
            continue
        tables += 1
        if prob(x) <= p_obs * (1 + 1e-7):
            total += prob(x)
    return total, tables


def test_3x2_by_hand():
    # rows 2, 3, 2; column totals 3, 4; P(x) = C(2,a) C(3,b) C(2,c) / C(7,3), a+b+c = 3.
    # The 8 tables have numerators 3, 6, 1, 2, 12, 6, 2, 3 (sum 35 = C(7,3)); the observed
    # (2, 1, 0) has 3; those <= 3: 3 + 1 + 2 + 2 + 3 = 11 -> P = 11/35.
    r = fisher_exact_rxc([[2, 0], [1, 2], [0, 2]])
    assert r.method == "exact" and r.n_tables == 8
    assert r.pvalue == pytest.approx(11 / 35, rel=1e-12)
    assert "exact" in r.label


@pytest.mark.parametrize("table", [
    [[3, 1, 0], [1, 2, 2], [0, 1, 3]],
    [[2, 0, 1, 1], [0, 3, 1, 0]],
    [[4, 0], [1, 3], [0, 2], [2, 2]],
    [[1, 2, 0], [0, 1, 3], [2, 0, 1]],
])
def test_against_brute_force_enumeration(table):
    want, n_tables = _brute_force(table)
    r = fisher_exact_rxc(table)
    assert r.method == "exact" and r.n_tables == n_tables
    assert r.pvalue == pytest.approx(want, rel=1e-10)


def test_2x2_equals_scipy_fisher():
    assert fisher_exact_rxc([[3, 1], [1, 4]]).pvalue == pytest.approx(
        stats.fisher_exact([[3, 1], [1, 4]]).pvalue, rel=1e-12)


def test_monte_carlo_is_seeded_labelled_and_close_to_exact():
    t = [[30, 10], [20, 9], [15, 4], [5, 3], [2, 0]]
    exact = fisher_exact_rxc(t)
    assert exact.method == "exact"
    a = fisher_exact_rxc(t, max_tables=10, n_resamples=4000, seed=5)
    b = fisher_exact_rxc(t, max_tables=10, n_resamples=4000, seed=5)
    assert a == b  # same seed, same result, always
    assert a.method == "monte_carlo"
    assert a.label == f"Monte Carlo (seed 5, 4000 resamples, MC SE {a.mc_se:.4f})"
    assert abs(a.pvalue - exact.pvalue) < 4 * a.mc_se


def test_univariate_rxc_row_is_exact_and_reproducible():
    rng = np.random.default_rng(4)
    n = 60
    df = pd.DataFrame({"y": (rng.random(n) < 0.3).astype(int),
                       "grade": rng.choice(["0", "1", "2", "3", "4"], n,
                                           p=[0.4, 0.3, 0.2, 0.07, 0.03]),
                       "sex": rng.choice(["F", "M"], n)})
    runs = [univariate_table(df, "y", ["grade", "sex"]) for _ in range(3)]
    assert all(r.equals(runs[0]) for r in runs)
    row = runs[0].set_index("variable").loc["grade"]
    assert row.test == "Fisher-Freeman-Halton exact"
    assert "complete enumeration" in row.reason
    y = df.y.to_numpy()
    tab = np.array([[np.sum((df.grade == g) & (y == k)) for k in (0, 1)]
                    for g in sorted(df.grade.unique())])
    assert row.p == pytest.approx(fisher_exact_rxc(tab).pvalue)
    assert "female:" in runs[0].set_index("variable").loc["sex", "group0"]
