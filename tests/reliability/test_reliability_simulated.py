"""Simulated two-reader sets with known landmark noise: the statistics behave as they must."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_measure.reliability import run_reliability, simulate_readers
from spine_measure.reliability.pairing import measure_pairs, pair_annotation_dirs
from spine_measure.reliability.report import _pairs_frame, reliability_table, thresholds_vs_mdc

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"
# 12 lateral films of four patients: fast, and uncalibrated without --images (lengths in px)
FILES = [f"SM00{p}/SM00{p}_{tp}.sm.json" for p in (1, 2, 3, 4)
         for tp in ("preop", "postop", "followup")]

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample_dicoms not present")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for sd in (0.5, 2.0, 6.0):
        base = tmp_path_factory.mktemp(f"sim{sd}")
        sim = simulate_readers(SAMPLES, base / "in", sd_px=sd, files=FILES)
        out[sd] = run_reliability(sim.dir_a, sim.dir_b, base / "out", plots=False)
    return out


def _row(run, column):
    r = run.reliability[run.reliability["column"] == column]
    assert len(r) == 1, column
    return r.iloc[0]


@pytest.mark.parametrize("column", ["ha_px", "hp_px", "wedge_angle_deg",
                                    "regional_kyphotic_angle_deg", "cr_anterior_pct"])
def test_icc_falls_and_mdc_grows_with_reader_noise(runs, column):
    rows = [_row(runs[sd], column) for sd in (0.5, 2.0, 6.0)]
    icc2 = [r["icc2_1"] for r in rows]
    icc3 = [r["icc3_1"] for r in rows]
    mdc = [r["mdc95"] for r in rows]
    assert icc2[0] > icc2[1] > icc2[2], icc2
    assert icc3[0] > icc3[1] > icc3[2], icc3
    assert mdc[0] < mdc[1] < mdc[2], mdc
    for r in rows:
        assert r["icc2_1_ci_low"] < r["icc2_1"] < r["icc2_1_ci_high"]
        # no systematic difference was simulated: the bias stays within its 99 % range
        se = r["sd_diff"] / math.sqrt(r["n_pairs"])
        assert abs(r["bias"]) < 2.6 * se, (column, r["bias"], se)


@pytest.mark.parametrize("sd", [0.5, 2.0, 6.0])
def test_height_error_matches_the_simulated_noise(runs, sd):
    # |As - Ai| read by one reader: error var 2 sd^2; difference of two readers: 4 sd^2
    r = _row(runs[sd], "ha_px")
    assert r["n_pairs"] >= 60
    assert r["sd_diff"] == pytest.approx(2 * sd, rel=0.2)
    assert r["sem"] == pytest.approx(math.sqrt(2) * sd, rel=0.2)
    assert r["mdc95_consistency"] == pytest.approx(1.96 * r["sd_diff"], rel=1e-12)
    # agreement SEM (de Vet 2006) by hand: sqrt(MS_E + max(0, (MS_C - MS_E) / n))
    n, bias, sd = r["n_pairs"], r["bias"], r["sd_diff"]
    mse, msc = sd ** 2 / 2, n * bias ** 2 / 2
    assert r["sem"] == pytest.approx(math.sqrt(mse + max(0.0, (msc - mse) / n)), rel=1e-12)
    assert r["mdc95"] == pytest.approx(1.96 * math.sqrt(2) * r["sem"], rel=1e-12)
    assert r["sem"] >= r["sem_consistency"]


def test_systematic_reader_error_is_found_as_bias(tmp_path):
    sim = simulate_readers(SAMPLES, tmp_path / "in", sd_px=1.0, files=FILES, scale_b=1.05)
    run = run_reliability(sim.dir_a, sim.dir_b, tmp_path / "out", plots=False)
    r = _row(run, "ha_px")
    expected = 0.05 * r["mean_a"]
    assert r["bias_ci_low"] > 0
    assert r["bias_ci_low"] <= expected * 1.1 and r["bias_ci_high"] >= expected * 0.9
    # absolute agreement suffers from the bias, consistency does not
    assert r["icc2_1"] < r["icc3_1"]
    # a scaling leaves angles unbiased
    w = _row(run, "wedge_angle_deg")
    assert abs(w["bias"]) < 2.6 * w["sd_diff"] / math.sqrt(w["n_pairs"])


def test_simulation_is_deterministic(tmp_path):
    one = simulate_readers(SAMPLES, tmp_path / "one", sd_px=2.0, files=FILES[:2])
    two = simulate_readers(SAMPLES, tmp_path / "two", sd_px=2.0, files=FILES[:2])
    for rel in one.files:
        for d1, d2 in ((one.dir_a, two.dir_a), (one.dir_b, two.dir_b)):
            l1 = json.loads((d1 / rel).read_text())["landmarks"]
            l2 = json.loads((d2 / rel).read_text())["landmarks"]
            assert l1 == l2
        la = json.loads((one.dir_a / rel).read_text())["landmarks"]
        lb = json.loads((one.dir_b / rel).read_text())["landmarks"]
        assert la != lb  # the two readers get independent noise
    truth = json.loads((SAMPLES / FILES[0]).read_text())["landmarks"]["vertebrae"][0]["points"]
    got = json.loads((one.dir_a / FILES[0]).read_text())["landmarks"]["vertebrae"][0]["points"]
    moved = np.array([got[k] for k in truth]) - np.array([truth[k] for k in truth])
    assert 0 < np.abs(moved).max() < 10  # 2 px noise: moved, but not far


def test_thresholds_vs_mdc_against_hand_computation(runs):
    run = runs[2.0]
    thr = run.thresholds.set_index("change_measure")
    ka = _row(run, "regional_kyphotic_angle_deg")
    kp = thr.loc["kyphosis_progression"]
    assert kp["mdc95"] == pytest.approx(ka["mdc95"])
    assert kp["ratio_threshold_to_mdc"] == pytest.approx(10.0 / ka["mdc95"])
    assert kp["verdict"] == ("threshold exceeds MDC" if 10.0 > ka["mdc95"]
                             else "threshold within measurement error")
    # false flags: P(N(0, sqrt(2) SEM) >= 10)
    from scipy.stats import norm

    assert kp["false_flag_pct_if_stable"] == pytest.approx(
        100 * norm.sf(10.0 / (math.sqrt(2) * ka["sem"])), rel=1e-9)
    cr = _row(run, "cr_anterior_pct")
    assert thr.loc["compression_rate_increase", "mdc95"] == pytest.approx(cr["mdc95"])
    # height loss: 1.96 sqrt(2) * agreement SEM of the relative differences of ha, by hand
    pairs = run.pairs
    ha = pairs[(pairs["measurement"] == "ha") & pairs["used"].astype(bool)]
    a = ha["value_a"].astype(float).to_numpy()
    b = ha["value_b"].astype(float).to_numpy()
    rel = 100 * (b - a) / ((a + b) / 2)
    n, var, bias = rel.size, np.var(rel, ddof=1), rel.mean()
    sem = math.sqrt(var / 2 + max(0.0, bias ** 2 / 2 - var / (2 * n)))
    assert thr.loc["height_loss_pct", "mdc95"] == pytest.approx(1.96 * math.sqrt(2) * sem)
    assert thr.loc["height_loss_pct", "n_pairs"] == len(ha)


def test_noisier_readers_push_thresholds_into_measurement_error(runs):
    quiet = runs[0.5].thresholds.set_index("change_measure")
    noisy = runs[6.0].thresholds.set_index("change_measure")
    for change in ("kyphosis_progression", "height_loss_pct", "compression_rate_increase"):
        assert quiet.loc[change, "verdict"] == "threshold exceeds MDC"
        assert noisy.loc[change, "ratio_threshold_to_mdc"] < quiet.loc[change,
                                                                         "ratio_threshold_to_mdc"]
        assert noisy.loc[change, "false_flag_pct_if_stable"] > quiet.loc[
            change, "false_flag_pct_if_stable"]
    assert (noisy["verdict"] == "threshold within measurement error").any()


def test_kappa_of_genant_grade_reported(runs):
    k = runs[0.5].kappa.set_index("measurement")
    assert k.loc["genant_grade", "weights"] == "linear"
    assert k.loc["genant_grade", "categories"] == "0 1 2 3"
    assert k.loc["genant_shape", "weights"] == "none"
    assert k.loc["genant_grade", "kappa"] > runs[6.0].kappa.set_index(
        "measurement").loc["genant_grade", "kappa"]


def test_degenerate_sets_give_nan_with_reason(tmp_path):
    # one film: per-vertebra measurements have a handful of pairs; one identical reading
    # (sd 0): zero differences -> ICC(3,1) 1 with an undefined CI, never a crash
    sim = simulate_readers(SAMPLES, tmp_path / "in", sd_px=0.0, files=FILES[:1])
    run = run_reliability(sim.dir_a, sim.dir_b, tmp_path / "out", plots=True)
    r = _row(run, "ha_px")
    assert r["sd_diff"] == 0.0 and r["bias"] == 0.0
    assert "residual variance is zero" in r["reason"]
    thr = run.thresholds
    assert (thr["verdict"] == "unknown (MDC not available)").all()
    # identical readings are named, not silently reported as perfect agreement
    assert any("identical" in w for w in run.warnings)
    assert "identical" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    # a pairs table with a single pair
    pairs = pd.DataFrame([{"measurement": "ha", "kind": "length", "scope": "vertebra",
                           "unit": "px", "value_a": 1.0, "value_b": 2.0, "used": True}])
    rel = reliability_table(pairs)
    assert rel.loc[0, "n_pairs"] == 1 and math.isnan(rel.loc[0, "icc2_1"])
    assert "at least 2" in rel.loc[0, "reason"]
    t = thresholds_vs_mdc(pairs, rel)
    assert t["mdc95"].isna().all()


def test_pairs_are_keyed_by_image_not_file_name(tmp_path):
    sim = simulate_readers(SAMPLES, tmp_path / "in", sd_px=1.0, files=FILES[:2])
    # rename reader b's files: pairing must still work (by SOPInstanceUID)
    for f in sorted(sim.dir_b.rglob("*.sm.json")):
        f.rename(f.with_name("renamed_" + f.name))
    pairing = pair_annotation_dirs(sim.dir_a, sim.dir_b)
    assert len(pairing.films) == 2 and not pairing.unpaired
    pv = measure_pairs(pairing)
    df = _pairs_frame(pv.rows)
    uids = {json.loads((SAMPLES / f).read_text())["image"]["sop_instance_uid"]
            for f in FILES[:2]}
    assert set(df["film"]) == uids
    assert "no patient identity" in pv.longitudinal_status


def test_landmark_error_of_a_run_recovers_the_simulated_noise_and_feeds_uncertainty(tmp_path):
    """reliability -> landmark_error.json -> LandmarkErrorModel -> film uncertainty: the
    chain recovers the 2 px per-coordinate noise the readers were given."""
    from types import SimpleNamespace

    from spine_measure.io.annotation import load_annotation
    from spine_measure.io.scan import scan_folder
    from spine_measure.measurements import measure_annotation
    from spine_measure.measurements.uncertainty import film_uncertainty
    from spine_measure.reliability import load_landmark_error_model

    sim = simulate_readers(SAMPLES, tmp_path / "in", sd_px=2.0)
    run_reliability(sim.dir_a, sim.dir_b, tmp_path / "out", images=SAMPLES, plots=False)
    lm = pd.read_csv(tmp_path / "out" / "landmark_differences.csv")
    assert set(lm["unit"]) == {"mm"} and len(lm) > 500
    # per reader and coordinate: sqrt(mean(d^2) / 2) = 2 px
    for col in ("d_row_px", "d_col_px"):
        assert math.sqrt((lm[col] ** 2).mean() / 2) == pytest.approx(2.0, rel=0.08)
    summary = json.loads((tmp_path / "out" / "landmark_error.json").read_text())
    spacing = 0.27  # the sample films' spacings lie between 0.25 and 0.30 mm
    assert summary["sd_isotropic"] == pytest.approx(2.0 * spacing, rel=0.12)
    assert summary["sd_along"] == pytest.approx(summary["sd_across"], rel=0.15)
    assert set(summary["per_point"]) == {"As", "Ai", "Ms", "Mi", "Ps", "Pi", "SL", "SR",
                                         "IL", "IR"}
    model = load_landmark_error_model(tmp_path / "out")
    assert model.unit == "mm" and "landmark pairs" in model.source
    assert "As" in model.per_point and "SL" not in model.per_point   # 1 AP film: < 20 pairs
    headers = {h.sop_instance_uid: h for h in scan_folder(SAMPLES).images}
    ann = load_annotation(SAMPLES / "SM001" / "SM001_postop.sm.json")
    h = headers[ann.image.sop_instance_uid]
    fm = measure_annotation(SimpleNamespace(calibration=h.calibration, metadata=h.metadata),
                            ann)
    u = film_uncertainty(fm, model).get("L1", "ha").u
    # a height: two points moving across the endplate, 2 px each
    assert u == pytest.approx(math.sqrt(2) * 2.0 * fm.spacing[0], rel=0.12)


def test_uncertainty_from_a_folder_without_a_summary_is_one_clear_error(tmp_path):
    from spine_measure.reliability import load_landmark_error_model

    with pytest.raises(ValueError, match="landmark_error.json: not found"):
        load_landmark_error_model(tmp_path)
    (tmp_path / "landmark_error.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read"):
        load_landmark_error_model(tmp_path)
    (tmp_path / "landmark_error.json").write_text('{"sd_along": null, "reason": "0 pairs"}',
                                                  encoding="utf-8")
    with pytest.raises(ValueError, match="0 pairs"):
        load_landmark_error_model(tmp_path)
