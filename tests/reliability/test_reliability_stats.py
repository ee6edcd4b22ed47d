"""ICC, Bland-Altman, SEM/MDC and kappa against hand computations and independent libraries."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from spine_measure.reliability.stats import (
    anova_two_way,
    bland_altman,
    cohen_kappa,
    icc_agreement,
    icc_consistency,
    mdc95_from_sem,
    relative_differences,
    sem_from_sd_diff,
)

pingouin = pytest.importorskip("pingouin")
# pingouin 0.7 calls a pandas API that pandas deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")
sk_metrics = pytest.importorskip("sklearn.metrics")

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SF = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
               [6, 2, 4, 7]], float)


def _pingouin(x: np.ndarray) -> pd.DataFrame:
    n, k = x.shape
    df = pd.DataFrame([(i, j, x[i, j]) for i in range(n) for j in range(k)],
                      columns=["film", "reader", "value"])
    return pingouin.intraclass_corr(df, targets="film", raters="reader",
                                    ratings="value").set_index("Type")


def _hand_icc(x: np.ndarray) -> dict[str, float]:
    """Shrout & Fleiss mean squares with plain Python loops, then the ICCs and the CIs of
    McGraw & Wong (1996) written out again."""
    n, k = len(x), len(x[0])
    cells = [float(v) for row in x for v in row]
    grand = sum(cells) / (n * k)
    row_means = [sum(row) / k for row in x]
    col_means = [sum(x[i][j] for i in range(n)) / n for j in range(k)]
    ss_total = sum((v - grand) ** 2 for v in cells)
    ss_rows = k * sum((m - grand) ** 2 for m in row_means)
    ss_cols = n * sum((m - grand) ** 2 for m in col_means)
    ss_err = ss_total - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    f = msr / mse
    df1, df2 = n - 1, (n - 1) * (k - 1)
    fl = f / sps.f.ppf(0.975, df1, df2)
    fu = f * sps.f.ppf(0.975, df2, df1)
    a = k * icc2 / (n * (1 - icc2))
    b = 1 + k * icc2 * (n - 1) / (n * (1 - icc2))
    # McGraw & Wong's v in their a, b notation (equivalent to the implementation's form)
    fj = msc / mse
    v = (a * fj + b) ** 2 / ((a * fj) ** 2 / (k - 1) + b ** 2 / ((n - 1) * (k - 1)))
    fs = sps.f.ppf(0.975, n - 1, v)
    fs2 = sps.f.ppf(0.975, v, n - 1)
    low2 = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    high2 = n * (fs2 * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fs2 * msr)
    return {"icc2": icc2, "icc3": icc3, "f": f, "p": sps.f.sf(f, df1, df2),
            "icc3_low": (fl - 1) / (fl + k - 1), "icc3_high": (fu - 1) / (fu + k - 1),
            "icc2_low": low2, "icc2_high": high2, "mse": mse}


@pytest.mark.parametrize("data", ["sf4", "sf2", "random30", "random_biased"])
def test_icc_matches_pingouin_and_hand_formula(data):
    rng = np.random.default_rng(7)
    if data == "sf4":
        x = SF
    elif data == "sf2":
        x = SF[:, :2]
    elif data == "random30":
        truth = rng.normal(20, 4, 30)
        x = np.column_stack([truth + rng.normal(0, 1, 30), truth + rng.normal(0, 1, 30)])
    else:
        truth = rng.normal(10, 3, 25)
        x = np.column_stack([truth + rng.normal(0, 1, 25), truth + 1.5 + rng.normal(0, 1, 25)])
    i2, i3 = icc_agreement(x), icc_consistency(x)
    pg = _pingouin(x)
    assert i2.icc == pytest.approx(pg.loc["ICC(A,1)", "ICC"], abs=1e-10)
    assert i3.icc == pytest.approx(pg.loc["ICC(C,1)", "ICC"], abs=1e-10)
    assert i3.f == pytest.approx(pg.loc["ICC(C,1)", "F"], abs=1e-10)
    assert i3.pval == pytest.approx(pg.loc["ICC(C,1)", "pval"], abs=1e-12)
    # pingouin rounds its CI95 to 2 decimals
    for res, typ in ((i2, "ICC(A,1)"), (i3, "ICC(C,1)")):
        lo, hi = pg.loc[typ, "CI95"]
        assert abs(res.ci_low - lo) <= 0.005 + 1e-12
        assert abs(res.ci_high - hi) <= 0.005 + 1e-12
    hand = _hand_icc(x.tolist())
    assert i2.icc == pytest.approx(hand["icc2"], abs=1e-10)
    assert i3.icc == pytest.approx(hand["icc3"], abs=1e-10)
    assert (i3.ci_low, i3.ci_high) == pytest.approx((hand["icc3_low"], hand["icc3_high"]),
                                                    abs=1e-10)
    assert (i2.ci_low, i2.ci_high) == pytest.approx((hand["icc2_low"], hand["icc2_high"]),
                                                    abs=1e-10)
    assert i2.reason is None and i3.reason is None


def test_icc_shrout_fleiss_published_values():
    # Shrout & Fleiss (1979) Table 4: ICC(2,1) = .29, ICC(3,1) = .71
    assert round(icc_agreement(SF).icc, 2) == 0.29
    assert round(icc_consistency(SF).icc, 2) == 0.71
    a = anova_two_way(SF)
    # their Table 3: BMS 11.24, JMS 32.49, EMS 1.02
    assert (round(a.ms_rows, 2), round(a.ms_cols, 2), round(a.ms_error, 2)) == (11.24, 32.49,
                                                                                 1.02)


def test_bland_altman_hand_computation():
    a = np.array([10.0, 12.0, 15.0, 11.0, 14.0])
    b = np.array([11.0, 12.5, 14.0, 13.0, 15.5])
    # d = 1, 0.5, -1, 2, 1.5; mean 0.8; deviations .2 -.3 -1.8 1.2 .7
    # SS = .04 + .09 + 3.24 + 1.44 + .49 = 5.3; SD = sqrt(5.3 / 4)
    sd = math.sqrt(5.3 / 4)
    t = 2.7764451051977987  # t_{0.975, 4}
    r = bland_altman(a, b)
    assert r.n == 5
    assert r.bias == pytest.approx(0.8, abs=1e-12)
    assert r.sd_diff == pytest.approx(sd, abs=1e-12)
    assert (r.loa_low, r.loa_high) == pytest.approx((0.8 - 1.96 * sd, 0.8 + 1.96 * sd),
                                                    abs=1e-12)
    assert r.bias_ci == pytest.approx((0.8 - t * sd / math.sqrt(5), 0.8 + t * sd / math.sqrt(5)),
                                      abs=1e-9)
    se_loa = sd * math.sqrt(1 / 5 + 1.96 ** 2 / 8)
    assert r.loa_high_ci == pytest.approx((r.loa_high - t * se_loa, r.loa_high + t * se_loa),
                                          abs=1e-9)
    assert r.loa_low_ci == pytest.approx((r.loa_low - t * se_loa, r.loa_low + t * se_loa),
                                         abs=1e-9)
    # SEM = SD_diff / sqrt(2) = sqrt(MS_E) for two readers; MDC95 = 1.96 sqrt(2) SEM
    sem = sem_from_sd_diff(r.sd_diff)
    assert sem == pytest.approx(math.sqrt(anova_two_way(np.column_stack([a, b])).ms_error),
                                abs=1e-12)
    assert mdc95_from_sem(sem) == pytest.approx(1.96 * sd, abs=1e-12)


def test_relative_differences():
    out = relative_differences([10.0, 0.0, 20.0], [12.0, 0.0, 18.0])
    assert out[0] == pytest.approx(100 * 2 / 11)
    assert math.isnan(out[1])
    assert out[2] == pytest.approx(-100 * 2 / 19)


def _fleiss_se(table: np.ndarray, w: np.ndarray) -> float:
    """Large-sample SE of (weighted) kappa, Fleiss, Cohen & Everitt (1969), written out."""
    n = table.sum()
    p = table / n
    pr, pc = p.sum(1), p.sum(0)
    po = (w * p).sum()
    pe = sum(w[i, j] * pr[i] * pc[j] for i in range(len(pr)) for j in range(len(pc)))
    kappa = (po - pe) / (1 - pe)
    wbar_i = [sum(pc[j] * w[i, j] for j in range(len(pc))) for i in range(len(pr))]
    wbar_j = [sum(pr[i] * w[i, j] for i in range(len(pr))) for j in range(len(pc))]
    s = sum(p[i, j] * (w[i, j] - (wbar_i[i] + wbar_j[j]) * (1 - kappa)) ** 2
            for i in range(len(pr)) for j in range(len(pc)))
    var = (s - (kappa - pe * (1 - kappa)) ** 2) / (n * (1 - pe) ** 2)
    return math.sqrt(var)


def test_kappa_2x2_hand():
    # table [[20, 5], [10, 15]]: po = 0.7, pe = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4
    a = [0] * 25 + [1] * 25
    b = [0] * 20 + [1] * 5 + [0] * 10 + [1] * 15
    r = cohen_kappa(a, b)
    assert r.kappa == pytest.approx(0.4, abs=1e-12)
    assert r.pct_agreement == pytest.approx(70.0)
    se = _fleiss_se(np.array([[20.0, 5.0], [10.0, 15.0]]), np.eye(2))
    assert r.se == pytest.approx(se, abs=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.4 - 1.959963984540054 * se,
                                                   0.4 + 1.959963984540054 * se), abs=1e-9)


def test_kappa_3x3_linear_hand():
    # table rows = reader a, cols = reader b, categories 0 1 2
    table = np.array([[10.0, 2.0, 0.0], [3.0, 8.0, 2.0], [1.0, 2.0, 12.0]])
    a, b = [], []
    for i in range(3):
        for j in range(3):
            a += [i] * int(table[i, j])
            b += [j] * int(table[i, j])
    n = 40.0
    # linear agreement weights 1, 0.5, 0
    w = 1 - np.abs(np.subtract.outer(np.arange(3), np.arange(3))) / 2
    po = (10 + 8 + 12 + 0.5 * (2 + 3 + 2 + 2)) / n                 # 34.5 / 40
    pr, pc = np.array([12, 13, 15]) / n, np.array([14, 12, 14]) / n
    pe = float(sum(w[i, j] * pr[i] * pc[j] for i in range(3) for j in range(3)))
    r = cohen_kappa(a, b, categories=(0, 1, 2), weights="linear")
    assert po == pytest.approx(0.8625)
    assert r.kappa == pytest.approx((po - pe) / (1 - pe), abs=1e-12)
    assert r.se == pytest.approx(_fleiss_se(table, w), abs=1e-12)
    assert r.pct_agreement == pytest.approx(75.0)


@pytest.mark.parametrize("weights", ["none", "linear", "quadratic"])
def test_kappa_matches_sklearn(weights):
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 80)
    a = np.clip(truth + rng.integers(-1, 2, 80) * (rng.random(80) < 0.3), 0, 3)
    b = np.clip(truth + rng.integers(-1, 2, 80) * (rng.random(80) < 0.3), 0, 3)
    r = cohen_kappa(a.tolist(), b.tolist(), categories=(0, 1, 2, 3), weights=weights)
    ref = sk_metrics.cohen_kappa_score(a, b, labels=[0, 1, 2, 3],
                                       weights=None if weights == "none" else weights)
    assert r.kappa == pytest.approx(ref, abs=1e-12)


def test_weighted_kappa_counts_an_unobserved_middle_grade():
    # grades 0 and 3 only: with all four categories a 0/3 disagreement is 3 steps apart
    a, b = [0, 0, 3, 3, 0, 3], [0, 3, 3, 3, 0, 0]
    r = cohen_kappa(a, b, categories=(0, 1, 2, 3), weights="linear")
    ref = sk_metrics.cohen_kappa_score(a, b, labels=[0, 1, 2, 3], weights="linear")
    assert r.kappa == pytest.approx(ref, abs=1e-12)


def test_degenerate_inputs_give_nan_with_reason():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x in (np.empty((0, 2)), np.array([[1.0, 2.0]])):
            for r in (icc_agreement(x), icc_consistency(x)):
                assert math.isnan(r.icc) and "at least 2" in r.reason
        flat = np.full((5, 2), 3.0)
        r = icc_agreement(flat)
        assert math.isnan(r.icc) and "zero variance" in r.reason
        # readers differ by a constant: consistency is perfect, no residual: CI undefined
        shifted = np.column_stack([np.arange(5.0), np.arange(5.0) + 1])
        r3 = icc_consistency(shifted)
        assert r3.icc == pytest.approx(1.0) and math.isnan(r3.ci_low)
        assert "residual variance is zero" in r3.reason
        r2 = icc_agreement(shifted)
        assert 0 < r2.icc < 1 and math.isnan(r2.ci_low)
        ba = bland_altman([1.0], [2.0])
        assert ba.bias == 1.0 and math.isnan(ba.sd_diff) and "at least 2" in ba.reason
        ba0 = bland_altman([], [])
        assert ba0.n == 0 and math.isnan(ba0.bias)
        k = cohen_kappa(["wedge"] * 4, ["wedge"] * 4)
        assert math.isnan(k.kappa) and "single" in k.reason and k.pct_agreement == 100.0
        k1 = cohen_kappa([1], [1], categories=(0, 1))
        assert math.isnan(k1.kappa) and "at least 2" in k1.reason


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="ratings"):
        icc_agreement([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        icc_consistency([[1.0, np.nan], [2.0, 3.0]])
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa([0, 1], [0, 1], weights="cubic")
    with pytest.raises(ValueError, match="not in"):
        cohen_kappa([0, 5], [0, 1], categories=(0, 1))
