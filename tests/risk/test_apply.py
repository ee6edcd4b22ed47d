"""Published models applied row by row; hand-computed values written out."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from spine_measure.cli import main
from spine_measure.risk import apply_model, get_model, recalibrate
from spine_measure.risk.errors import RiskInputError, RiskModelError

FEATURES = """\
patient_pseudo_id,level,ivc,posterior_fascia_oedema,goutallier_grade,cement_distribution_postop
P001,L1,1,0,3,blocky
P002,T12,0,1,2,spongy
P003,L2,0,0,1,spongy
P004,L3,,1,4,blocky
P005,L4,1,1,5,spongy
"""


def test_li2021_cli_hand_computed(tmp_path):
    f = tmp_path / "features.csv"
    f.write_text(FEATURES)
    out = tmp_path / "risk.csv"
    rc = main(["risk", "apply", str(f), "--model", "li2021", "-o", str(out)])
    assert rc == 1  # two rows could not be scored
    r = pd.read_csv(out)
    r[["li2021_missing_inputs", "li2021_reason"]] = r[["li2021_missing_inputs",
                                                       "li2021_reason"]].fillna("")
    # P001: -3.361 + 1.332 (IVC) + 2.622 (Goutallier 3) + 0.800 (blocky) = 1.393
    #       p = 1 / (1 + e^-1.393) = 1 / (1 + 0.24833) = 0.80107
    # P002: -3.361 + 1.337 (fascia) + 1.758 (Goutallier 2) = -0.266
    #       p = 1 / (1 + e^0.266) = 1 / (1 + 1.30472) = 0.43389
    # P003: -3.361 (all reference)  p = 1 / (1 + e^3.361) = 1 / (1 + 28.8182) = 0.033537
    assert r.li2021_lp[0] == pytest.approx(1.393, abs=1e-12)
    assert r.li2021_probability[0] == pytest.approx(0.80107, abs=1e-5)
    assert r.li2021_lp[1] == pytest.approx(-0.266, abs=1e-12)
    assert r.li2021_probability[1] == pytest.approx(0.43389, abs=1e-5)
    assert r.li2021_probability[2] == pytest.approx(0.033537, abs=1e-6)
    # P004: IVC unknown -> no probability (never a silent zero), with the reason
    assert pd.isna(r.li2021_probability[3]) and r.li2021_missing_inputs[3] == "ivc"
    assert r.li2021_reason[3] == "ivc is empty"
    # P005: grade 5 is not a Goutallier grade
    assert pd.isna(r.li2021_probability[4]) and r.li2021_reason[:3].eq("").all()
    assert "goutallier_grade = '5'" in r.li2021_reason[4]
    assert list(r.patient_pseudo_id) == ["P001", "P002", "P003", "P004", "P005"]


def test_map_override_and_absent_column(tmp_path):
    df = pd.read_csv(pd.io.common.StringIO(FEATURES), dtype=str, keep_default_na=False)
    df = df.rename(columns={"ivc": "cleft_mri"})
    out, meta = apply_model("li2021", df)
    assert out.li2021_probability.isna().all()
    assert (out.li2021_reason.str.contains("column 'ivc' not in the input")).all()
    assert meta["absent_columns"] == ["ivc"]
    out, _ = apply_model("li2021", df, column_map={"ivc": "cleft_mri"})
    assert out.li2021_probability[0] == pytest.approx(0.80107, abs=1e-5)
    assert out.li2021_reason[3] == "cleft_mri is empty"


AN_ROW = {"bmd_t_score": "-2.5", "ivc": "1", "procedure": "PKP",
          "cement_contacts_both_postop": "0", "cement_volume_ml": "3.0",
          "avhr_recovery_pct": "10"}


def test_an2021_linear_predictor_hand_computed():
    df = pd.DataFrame([AN_ROW, {**AN_ROW, "ivc": "0", "procedure": "PVP",
                                "cement_contacts_both_postop": "1"}])
    out, _ = apply_model("an2021", df)
    # row 0: -0.539*-2.5 + 1.179 + 0 + 0.918 - 0.584*3 - 0.008*10
    #      = 1.3475 + 1.179 + 0.918 - 1.752 - 0.080 = 1.6125
    # row 1: 1.3475 - 1.089 - 1.752 - 0.080 = -1.5735
    assert out.an2021_lp_no_intercept.tolist() == pytest.approx([1.6125, -1.5735])
    # odds ratio between the two patients: e^(1.6125 + 1.5735) = e^3.186 = 24.19
    ratio = out.an2021_or_vs_median[0] / out.an2021_or_vs_median[1]
    assert ratio == pytest.approx(math.exp(3.186))
    assert "an2021_probability" not in " ".join(out.columns).replace("recalibrated", "")


def test_an2021_recalibration_solves_the_score_equation():
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({
        "bmd_t_score": rng.normal(-2.2, 0.7, n).round(1), "ivc": rng.integers(0, 2, n),
        "procedure": rng.choice(["PVP", "PKP"], n), "cement_contacts_both_postop":
        rng.integers(0, 2, n), "cement_volume_ml": rng.normal(4, 1.3, n).round(1),
        "avhr_recovery_pct": rng.normal(15, 10, n).round(1)})
    out, _ = apply_model("an2021", df.astype(str))
    lp = out.an2021_lp_no_intercept.to_numpy()
    y = (rng.random(n) < 1 / (1 + np.exp(-(lp - 0.7)))).astype(int)
    df["recompression"] = y
    out, meta = apply_model("an2021", df.astype(str), recalibration_outcome="recompression")
    a = meta["recalibration"]["intercept"]
    p = out.an2021_probability_recalibrated.to_numpy()
    # intercept-only recalibration: the mean predicted risk equals the observed rate
    assert p.mean() == pytest.approx(y.mean(), abs=1e-8)
    assert p[0] == pytest.approx(1 / (1 + math.exp(-(a + lp[0]))))
    # independent: statsmodels Logit with lp as offset via GLM on the same data
    ref = sm.GLM(y, np.ones(n), family=sm.families.Binomial(), offset=lp).fit()
    assert a == pytest.approx(float(ref.params[0]), abs=1e-6)
    rc = recalibrate(lp, y, slope=True)
    ref2 = sm.Logit(y, sm.add_constant(lp)).fit(disp=0)
    assert (rc.intercept, rc.slope) == pytest.approx(tuple(ref2.params), abs=1e-6)
    with pytest.raises(RiskModelError, match="linear-predictor"):
        apply_model("li2021", df.astype(str), recalibration_outcome="recompression")
    with pytest.raises(RiskInputError):
        recalibrate(lp, np.zeros(n))


def test_xiong2021_flags_and_relative_odds():
    df = pd.DataFrame({"ivc": ["1", "0", ""], "endplate_disruption": ["1", "0", "1"],
                       "npec_postop": ["inferior", "none", "both"],
                       "reduction_rate_pct": ["12", "", "3"]})
    out, meta = apply_model("xiong2021", df)
    # row 0: 27.12 * 3.23 * 1.99 = 174.319...; row 1: reference patient = 1
    assert out.xiong2021_relative_odds_binary[0] == pytest.approx(27.12 * 3.23 * 1.99)
    assert out.xiong2021_relative_odds_binary[1] == 1.0
    assert math.isnan(out.xiong2021_relative_odds_binary[2])
    assert out.xiong2021_n_factors_present.tolist()[:2] == [3, 0]
    assert out.xiong2021_reason[1] == "reduction_rate_pct is empty"
    assert not any("probability" in c for c in out.columns)


def test_rule_flags_hand_computed():
    df = pd.DataFrame({
        "cement_volume_ratio_pct": ["15", "10", ""], "treated_hu": ["1200", "900", "800"],
        "adjacent_hu": ["60", "80", "0"], "compression_pct_preop": ["38.5", "20", "50"],
        "level": ["T11", "L3", "l2"], "leak_intradiscal_spike_postop": ["1", "0", ""],
        "leak_touches_adjacent_endplate_postop": ["0", "1", "yes"]})
    out, _ = apply_model("rules", df)
    # 1200/60 = 20 > 15.18 and 60 < 66.9; 900/80 = 11.25
    assert out.flag_hu_ratio_gt_15_18.tolist()[:2] == [True, False]
    assert out.flag_hu_ratio_high_and_adjacent_low.tolist()[:2] == [True, False]
    assert out.flag_compression_ge_38_5.tolist() == [True, False, True]  # >= is inclusive
    assert out.flag_level_t11_l2.tolist() == [True, False, True]
    assert out.flag_cement_volume_ratio_gt_13_82.tolist()[:2] == [True, False]
    assert pd.isna(out.flag_cement_volume_ratio_gt_13_82[2])
    assert pd.isna(out.flag_hu_ratio_gt_15_18[2])  # division by a zero HU
    assert "adjacent_hu is 0" in out.flags_reason[2]
    assert out.flags_true[0].split("; ")[:2] == ["cement_volume_ratio_gt_13_82",
                                                 "hu_ratio_gt_15_18"]


def test_models_are_data_with_provenance():
    li = get_model("li2021")
    assert li.intercept == -3.361 and li.capability == "probability"
    blocky = next(t for t in li.terms if t.name == "cement_blocky")
    assert (blocky.b_printed, blocky.b_used) == (-0.800, 0.800)
    assert any("1.377" in s for s in li.inconsistencies)
    an = get_model("an2021")
    assert an.intercept is None and an.capability == "linear_predictor"
    assert get_model("xiong2021").capability == "odds_ratios"
    for m in ("li2021", "an2021", "xiong2021", "rules"):
        d = json.loads(get_model(m).to_json())
        assert d["name"] == m
    with pytest.raises(RiskModelError, match="unknown risk model"):
        get_model("nope")
