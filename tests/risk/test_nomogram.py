"""Nomogram: two patients read off the scales by hand; round, non-overlapping ticks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spine_measure.risk.fit import LogisticFit, PredictorSpec
from spine_measure.risk.plots import (
    _CHAR,
    nomogram_scales,
    plot_nomogram,
    pretty_name,
    total_points_ticks,
)


def _fixed_fit() -> LogisticFit:
    """logit p = -3 + 1.2 ivc - 0.05 age + 1.0 [grade 2] + 2.0 [grade 3-4] (chosen numbers)."""
    preds = (PredictorSpec("ivc", "binary"), PredictorSpec("age_years", "continuous"),
             PredictorSpec("goutallier_grade", "categorical", (("0", "1"), ("2",), ("3", "4"))))
    names = ("const", "ivc", "age_years", "goutallier_grade[2]", "goutallier_grade[3+4]")
    k = len(names)
    return LogisticFit("residual_back_pain", preds, names, np.array([-3.0, 1.2, -0.05, 1.0, 2.0]),
                       np.full(k, 0.1), np.eye(k) * 0.01, 300, 60, 0, True, -100.0, -120.0)


@pytest.fixture
def cohort():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"ivc": rng.integers(0, 2, 300), "age_years": rng.uniform(60, 90, 300),
                         "goutallier_grade": rng.integers(0, 5, 300)})


def _read_points(scale: dict, value) -> float:
    """What a reader does: find the value on the predictor's axis, read the points above."""
    if scale["kind"] == "continuous":
        vals = np.array([v for _, v, _ in scale["ticks"]])
        pts = np.array([p for _, p in scale["points"]])
        order = np.argsort(vals)
        return float(np.interp(value, vals[order], pts[order]))
    for (_, level, _), (_, pts) in zip(scale["ticks"], scale["points"], strict=True):
        if (scale["kind"] == "binary" and level == value) or (
                scale["kind"] == "categorical" and str(value) in level):
            return pts
    raise AssertionError(value)


def test_two_patients_by_hand(cohort):
    fit = _fixed_fit()
    ns = nomogram_scales(fit, cohort)
    sc = {s["column"]: s for s in ns["scales"]}
    # The widest predictor is the Goutallier grade (range 2.0 > 1.2 > 0.05 x age span), so
    # R_max = 2.0 and 100 points = 2.0 on the logit scale.
    assert ns["rmax"] == pytest.approx(2.0)
    assert _read_points(sc["ivc"], 1) == pytest.approx(60.0)            # 100 * 1.2 / 2
    assert _read_points(sc["goutallier_grade"], 3) == pytest.approx(100.0)
    assert _read_points(sc["goutallier_grade"], 2) == pytest.approx(50.0)
    age_max = max(v for _, v, _ in sc["age_years"]["ticks"])
    # age: 100 * 0.05 * (oldest tick - age) / 2 = 2.5 points per year younger
    assert _read_points(sc["age_years"], 70) == pytest.approx(2.5 * (age_max - 70))
    # Patient A: IVC, 70 years, grade 3: lp = -3 + 1.2 - 3.5 + 2.0 = -3.3,
    #   p = 1 / (1 + e^3.3) = 1 / (1 + 27.1126) = 0.035571
    # Patient B: no IVC, 85 years, grade 1: lp = -3 - 4.25 = -7.25,
    #   p = 1 / (1 + e^7.25) = 1 / (1 + 1408.10) = 0.000710
    for (ivc, age, grade), p_hand in (((1, 70, 3), 0.035571), ((0, 85, 1), 0.000710)):
        total = (_read_points(sc["ivc"], ivc) + _read_points(sc["age_years"], age)
                 + _read_points(sc["goutallier_grade"], grade))
        lp = ns["offset"] + total * ns["rmax"] / 100      # the total-points → risk axes
        assert 1 / (1 + math.exp(-lp)) == pytest.approx(p_hand, abs=5e-7)
        row = pd.DataFrame({"ivc": [ivc], "age_years": [age], "goutallier_grade": [grade]})
        assert 1 / (1 + math.exp(-lp)) == pytest.approx(fit.predict_proba(row)[0], rel=1e-12)


def test_ticks_round_labelled_and_not_overlapping(cohort, tmp_path):
    fit = _fixed_fit()
    ns = nomogram_scales(fit, cohort)
    sc = {s["column"]: s for s in ns["scales"]}
    assert sc["ivc"]["label"] == "IVC (intravertebral cleft): no / yes"
    assert [lab for lab, _ in sc["ivc"]["points"]] == ["no", "yes"]
    assert sc["goutallier_grade"]["label"] == "Goutallier grade: 0–1 / 2 / 3–4"
    assert sc["age_years"]["label"] == "Age (years)"
    vals = sorted(v for _, v, _ in sc["age_years"]["ticks"])
    step = vals[1] - vals[0]
    mant = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mant - m) for m in (1, 2, 2.5, 5)) < 1e-9          # a round step
    assert all(abs(v / step - round(v / step)) < 1e-9 for v in vals)  # at round values
    pts = sorted(p for _, p in sc["age_years"]["points"])
    labels = [lab for lab, _ in sc["age_years"]["points"]]
    width = (max(map(len, labels)) + 1) * _CHAR
    assert min(np.diff(pts)) >= width
    ticks = total_points_ticks(263.5)
    assert ticks[-1] >= 263.5 and ticks[0] == 0  # never cut short (was 250 for 263.5)
    assert total_points_ticks(ns["max_total"])[-1] >= ns["max_total"]
    assert plot_nomogram(fit, cohort, tmp_path / "n.png").stat().st_size > 10_000


def test_pretty_names():
    assert pretty_name("cement_distribution_postop") == "Cement distribution (post-op)"
    assert pretty_name("compression_pct_preop") == "Compression (%, pre-op)"
    assert pretty_name("bmd_t_score") == "BMD (T-score)"
