"""risk fit validation: corrected calibration against an independent bootstrap, robustness on
ordinary cohorts, all-or-nothing outputs, byte-identical reruns, decision-curve claims."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.metrics import roc_auc_score

from spine_measure.cli import main
from spine_measure.risk import RiskInputError, fit_logistic, simulate_li2021, validate
from spine_measure.risk import report as report_mod
from spine_measure.risk.report import run_fit
from spine_measure.risk.validate import (
    calibration_groups,
    calibration_lowess,
    hosmer_lemeshow,
    useful_range,
)

LI_X = ["ivc", "posterior_fascia_oedema", "goutallier_grade:0+1|2|3+4",
        "cement_distribution_postop:spongy|blocky"]
FILES = ("univariate.csv", "coefficients.csv", "coefficients.json", "validation.csv",
         "calibration_groups.csv", "calibration_curve.csv", "decision_curve.csv", "roc.png",
         "calibration.png", "dca.png", "nomogram.png", "report.html")


def _continuous_cohort(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    x3 = (rng.random(n) < 0.5).astype(int)
    lp = -1.0 + 0.8 * x1 - 0.5 * x2 + 0.6 * x3
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "y": y})


def test_corrected_calibration_against_an_independent_bootstrap():
    """Harrell's optimism bootstrap written out with statsmodels (GLM/Logit, not the
    module's Newton solver) on the documented resampling protocol."""
    df = _continuous_cohort(150, seed=5)
    fit = fit_logistic(df, "y", ["x1", "x2", "x3"])
    B, seed = 60, 11
    v = validate(fit, df, n_boot=B, seed=seed)
    X = sm.add_constant(df[["x1", "x2", "x3"]].to_numpy(float))
    y = df.y.to_numpy(float)
    rng = np.random.default_rng(seed)
    opt_slope, opt_int, opt_citl, opt_c, opt_brier = [], [], [], [], []
    for _ in range(B):
        idx = rng.integers(0, len(y), len(y))
        b = sm.Logit(y[idx], X[idx]).fit(disp=0, method="newton", tol=1e-12).params
        lp_b, lp_o = X[idx] @ b, X @ b

        def slope_int(yy, lp):
            r = sm.GLM(yy, sm.add_constant(lp), family=sm.families.Binomial()).fit()
            c = sm.GLM(yy, np.ones(len(yy)), family=sm.families.Binomial(), offset=lp).fit()
            return r.params[1], r.params[0], c.params[0]

        tr, te = slope_int(y[idx], lp_b), slope_int(y, lp_o)
        opt_slope.append(tr[0] - te[0])
        opt_int.append(tr[1] - te[1])
        opt_citl.append(tr[2] - te[2])
        opt_c.append(roc_auc_score(y[idx], lp_b) - roc_auc_score(y, lp_o))
        pb, po = 1 / (1 + np.exp(-lp_b)), 1 / (1 + np.exp(-lp_o))
        opt_brier.append(np.mean((pb - y[idx]) ** 2) - np.mean((po - y) ** 2))
    s = v.calibration_stats
    assert v.n_boot_ok == B
    assert s["slope_apparent"] == pytest.approx(1.0, abs=1e-8)  # by construction
    assert s["slope_corrected"] == pytest.approx(1.0 - np.mean(opt_slope), abs=1e-6)
    assert s["intercept_corrected"] == pytest.approx(0.0 - np.mean(opt_int), abs=1e-6)
    assert s["citl_corrected"] == pytest.approx(0.0 - np.mean(opt_citl), abs=1e-6)
    assert v.c_corrected == pytest.approx(roc_auc_score(y, X @ fit.params) - np.mean(opt_c))
    assert s["brier_corrected"] == pytest.approx(
        np.mean((1 / (1 + np.exp(-X @ fit.params)) - y) ** 2) - np.mean(opt_brier))
    # shrinkage at n = 150 with 3 predictors: the corrected slope is below 1
    assert 0.7 < s["slope_corrected"] < 0.98


def test_hosmer_lemeshow_by_hand():
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.5, 0.55, 0.6, 0.8, 0.85, 0.9])
    # 2 groups of 5: E1 = 1.45, O1 = 2, mean p 0.29; E2 = 3.7, O2 = 4, mean p 0.74
    h = (2 - 1.45) ** 2 / (5 * 0.29 * 0.71) + (4 - 3.7) ** 2 / (5 * 0.74 * 0.26)
    got = hosmer_lemeshow(y, p, n_groups=2)
    assert h == pytest.approx(0.38739, abs=1e-5)
    assert got["hl_statistic"] == pytest.approx(h)
    assert got["hl_df"] == 0 and math.isnan(got["hl_p"])
    got5 = hosmer_lemeshow(y, p, n_groups=5)
    assert got5["hl_p"] == pytest.approx(stats.chi2.sf(got5["hl_statistic"], 3))


@pytest.mark.parametrize("decimals", [2, None])
def test_lowess_on_grid_matches_brute_force(decimals):
    """Both code paths: few distinct risks (grouped; a model with categorical predictors)
    and continuous risks (a sliding window over the sorted predictions)."""
    rng = np.random.default_rng(0)
    p = rng.random(300) * 0.7
    if decimals is not None:
        p = np.round(p, decimals)
        assert len(np.unique(p)) <= 75
    y = (rng.random(300) < p).astype(float)
    grid = np.linspace(0.02, 0.68, 25)
    got = calibration_lowess(y, p, grid)
    k = math.ceil(2 / 3 * 300)
    for g, v in zip(grid, got, strict=True):
        d = np.abs(p - g)
        h = np.sort(d)[k - 1] * (1 + 1e-9)
        w = np.clip(1 - (d / h) ** 3, 0, None) ** 3
        X = np.column_stack([np.ones_like(p), p - g])
        beta = np.linalg.solve(X.T @ (X * w[:, None]), X.T @ (w * y))
        assert v == pytest.approx(min(max(beta[0], 0), 1), abs=1e-10)


def test_calibration_groups_never_negative_error_bars():
    """The 14.4 crash: a group with 0 events had a Wilson lower bound of 6.9e-18 > 0."""
    y = np.r_[np.zeros(50), np.ones(5)]
    p = np.r_[np.full(50, 0.01), np.full(5, 0.5)]
    g = calibration_groups(y, p, 10)
    assert (g.observed - g.observed_low >= 0).all()
    assert (g.observed_high - g.observed >= 0).all()
    assert (g.observed_low[g.events == 0] == 0).all()


RISK_WARNINGS = "ignore::spine_measure.risk.errors.RiskWarning"  # expected, reported


@pytest.mark.slow
@pytest.mark.filterwarnings(RISK_WARNINGS)
@pytest.mark.parametrize("seed", range(7))
def test_fit_never_crashes_on_li2021_500(tmp_path, seed):
    """simulate_li2021(500) crashed risk fit in plots.py for 5 of these 7 seeds."""
    simulate_li2021(500, seed=seed).to_csv(tmp_path / "c.csv", index=False)
    rc = main(["risk", "fit", str(tmp_path / "c.csv"), "-y", "residual_back_pain", "-x",
               ",".join(LI_X), "-o", str(tmp_path / "fit"), "-B", "15", "--seed", "3"])
    assert rc == 0
    assert all((tmp_path / "fit" / f).stat().st_size > 0 for f in FILES)


@pytest.mark.slow
@pytest.mark.filterwarnings(RISK_WARNINGS)
@pytest.mark.parametrize("n", [60, 150, 500, 3000])
@pytest.mark.parametrize("rare", [False, True])
def test_fit_on_ordinary_and_rare_cohorts(tmp_path, n, rare):
    """Several seeds per size, common (~23 %) and rare (~5 %) outcomes: either every file
    is written, or (a predictor level absent from a tiny cohort) one clear error and no
    output at all."""
    done = 0
    for seed in range(3):
        df = simulate_li2021(n, seed=seed, intercept=-5.4 if rare else None)
        out = tmp_path / f"fit{seed}"
        try:
            rep = run_fit(df, "residual_back_pain", LI_X, out, n_boot=8, seed=seed)
        except RiskInputError as exc:
            assert n <= 150, exc  # only tiny cohorts can lack a level or an outcome
            assert "constant" in str(exc) or "both outcomes" in str(exc)
            assert not out.exists()
            continue
        done += 1
        assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
        assert rep.validation.n_boot == 8
    assert list(tmp_path.glob(".*partial*")) == []
    if n >= 500:
        assert done == 3


def test_failure_leaves_no_half_written_output(tmp_path, monkeypatch):
    df = simulate_li2021(300, seed=1)
    out = tmp_path / "fit"
    out.mkdir()
    (out / "coefficients.json").write_text("previous run\n")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "plot_nomogram", boom)
    with pytest.raises(RuntimeError):
        run_fit(df, "residual_back_pain", LI_X, out, n_boot=5)
    assert [p.name for p in out.iterdir()] == ["coefficients.json"]
    assert (out / "coefficients.json").read_text() == "previous run\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]  # no temporary folder left


def test_same_seed_byte_identical_outputs(tmp_path):
    df = simulate_li2021(400, seed=2)
    df.to_csv(tmp_path / "c.csv", index=False)
    digests = []
    for run in ("a", "b"):
        assert main(["risk", "fit", str(tmp_path / "c.csv"), "-y", "residual_back_pain",
                     "-x", ",".join(LI_X), "--univariate",
                     "ivc,goutallier_grade,cement_distribution_postop", "-o",
                     str(tmp_path / run), "-B", "25", "--seed", "7"]) == 0
        digests.append({f: hashlib.sha256((tmp_path / run / f).read_bytes()).hexdigest()
                        for f in FILES})
    assert digests[0] == digests[1]


def test_useful_range_needs_patients_above_the_threshold():
    t = np.round(np.arange(0.01, 1.0, 0.01), 2)
    n_above = np.maximum(400 - (t * 420).astype(int), 1)  # one patient above 0.95
    dca = pd.DataFrame({"threshold": t, "n_at_or_above": n_above,
                        "net_benefit_model": 0.2 * (1 - t) + 0.01,
                        "net_benefit_all": 0.2 - 0.8 * t / (1 - t), "net_benefit_none": 0.0})
    lo, hi = useful_range(dca, min_at_risk=10)
    assert lo == 0.01
    assert dca.n_at_or_above[dca.threshold == hi].iloc[0] >= 10
    assert dca.n_at_or_above[np.isclose(dca.threshold, hi + 0.01)].iloc[0] < 10
    assert useful_range(dca, min_at_risk=1) == (0.01, 0.99)
