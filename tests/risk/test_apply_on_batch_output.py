"""The chain: `spine-measure batch` → `risk apply` (every model) and → `risk fit` → `risk apply`.

The feature table is the real output of the command line on the bundled sample studies,
read as the CLI reads it (text). Expected values are written out from the CSV text and the
truth files with an independent coding (``"true"`` → 1), never through the risk module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_measure.cli import main
from spine_measure.risk import model_names
from spine_measure.risk.simulate import simulate_li2021

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"
LI_X = ("ivc,posterior_fascia_oedema,goutallier_grade:0+1|2|3+4,"
        "cement_distribution_postop:spongy|blocky")


@pytest.fixture(scope="module")
def wide_csv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("batch") / "x"
    rc = main(["batch", str(SAMPLES), "--out", str(out), "--clinical",
               str(SAMPLES / "clinical.csv"), "--pseudonym-key", "k", "--no-progress"])
    assert rc == 0
    return out / "features_wide.csv"


@pytest.fixture(scope="module")
def wide(wide_csv) -> pd.DataFrame:
    return pd.read_csv(wide_csv, dtype=str, keep_default_na=False)


def _b(text: str) -> int:
    """The batch's boolean spelling, decoded here independently of the risk module."""
    return {"true": 1, "false": 0}[text]


def _apply(wide_csv: Path, tmp_path: Path, *args: str) -> tuple[int, pd.DataFrame]:
    out = tmp_path / "out.csv"
    rc = main(["risk", "apply", str(wide_csv), *args, "-o", str(out)])
    return rc, pd.read_csv(out, dtype=str, keep_default_na=False)


def test_batch_writes_booleans_as_text(wide):
    # the encodings the models must read (docs/risk_models.md, "Reading the batch output")
    assert set(wide.cement_contacts_both_postop) == {"true", "false"}
    assert set(wide.ivc) == {"true", "false"}
    assert set(wide.procedure) == {"PVP", "PKP"}
    assert set(wide.recompression) == {"true", "false"}


@pytest.mark.parametrize("model", model_names())
def test_every_published_model_scores_every_row_or_names_the_input(wide_csv, wide, tmp_path,
                                                                  model):
    rc, got = _apply(wide_csv, tmp_path, "--model", model)
    assert len(got) == len(wide) == 7
    assert list(got.patient_pseudo_id) == list(wide.patient_pseudo_id)
    if model == "rules":
        flags = got[[c for c in got.columns if c.startswith("flag_")]]
        assert (flags != "").any(axis=1).all()  # every row got flags
        assert rc == 0
        # HU is not measured on radiographs: every row names it, never a silent False
        assert (got.flag_hu_ratio_gt_15_18 == "").all()
        assert got.flags_reason.str.contains("treated_hu is empty").all()
        for i, r in wide.iterrows():
            comp = float(r.compression_pct_preop)
            assert got.flag_compression_ge_38_5[i] == str(comp >= 38.5)
            assert got.flag_level_t11_l2[i] == str(r.level in ("T11", "T12", "L1", "L2"))
            assert got.flag_intradiscal_spike_leak[i] == str(
                bool(_b(r.leak_intradiscal_spike_postop)))
        return
    assert rc == 0, got[f"{model}_reason"].tolist()
    assert (got[f"{model}_reason"] == "").all()
    assert (got[f"{model}_missing_inputs"] == "").all()


def test_li2021_on_batch_output_by_hand(wide_csv, wide, tmp_path):
    rc, got = _apply(wide_csv, tmp_path, "--model", "li2021")
    assert rc == 0
    # the output is pseudonymised: find each row's patient by its procedure date
    clinical = pd.read_csv(SAMPLES / "clinical.csv", dtype=str)
    by_date = dict(zip(clinical.procedure_date, clinical.patient_id, strict=True))
    for i, r in wide.iterrows():
        pid = by_date[r.procedure_date]
        pre = json.loads((SAMPLES / pid / f"{pid}_preop.truth.json").read_text())
        post = json.loads((SAMPLES / pid / f"{pid}_postop.truth.json").read_text())
        f = pre["findings"]
        g = f["goutallier_grade"]
        # Li 2021 Table 4 (B of blocky taken as +0.800), from the truth files:
        lp = (-3.361 + 1.332 * f["ivc"] + 1.337 * f["posterior_fascia_oedema"]
              + 1.758 * (g == 2) + 2.622 * (g >= 3)
              + 0.800 * (post["cement"]["distribution"] == "blocky"))
        assert math.isclose(float(got.li2021_lp[i]), lp, abs_tol=1e-9), pid
        assert math.isclose(float(got.li2021_probability[i]), 1 / (1 + math.exp(-lp)),
                            rel_tol=1e-9), pid


def _an2021_lp(r: pd.Series) -> float:
    # An 2021 Table 2; no contact with both endplates (batch: "false") is the risk factor
    return (-0.539 * float(r.bmd_t_score) + 1.179 * _b(r.ivc)
            - 1.089 * (r.procedure == "PVP") + 0.918 * (1 - _b(r.cement_contacts_both_postop))
            - 0.584 * float(r.cement_volume_ml) - 0.008 * float(r.avhr_recovery_pct))


def test_an2021_and_its_recalibration_on_batch_output(wide_csv, wide, tmp_path):
    lp = np.array([_an2021_lp(r) for _, r in wide.iterrows()])
    rc, got = _apply(wide_csv, tmp_path, "--model", "an2021")
    assert rc == 0
    assert got.an2021_lp_no_intercept.astype(float).to_numpy() == pytest.approx(lp, abs=1e-9)
    rc, got = _apply(wide_csv, tmp_path, "--model", "an2021", "--recalibrate-on",
                     "recompression")
    assert rc == 0
    p = got.an2021_probability_recalibrated.astype(float).to_numpy()
    y = np.array([_b(v) for v in wide.recompression])
    assert 0 < y.sum() < len(y)
    # intercept-only recalibration: score equation, mean predicted = observed rate, and
    # every logit differs from the linear predictor by the same intercept
    assert p.mean() == pytest.approx(y.mean(), abs=1e-7)
    a = np.log(p / (1 - p)) - lp
    assert np.ptp(a) == pytest.approx(0, abs=1e-7)


def test_xiong2021_on_batch_output_by_hand(wide_csv, wide, tmp_path):
    rc, got = _apply(wide_csv, tmp_path, "--model", "xiong2021")
    assert rc == 0
    for i, r in wide.iterrows():
        rel = (27.12 ** _b(r.ivc) * 3.23 ** _b(r.endplate_disruption)
               * 1.99 ** (r.npec_postop != "none"))
        assert float(got.xiong2021_relative_odds_binary[i]) == pytest.approx(rel)


@pytest.mark.parametrize("spelling", ["0/1", "true/false", "True/False"])
def test_model_saved_by_fit_reads_batch_output(wide_csv, wide, tmp_path, spelling):
    """risk fit on a cohort (booleans in three spellings) → coefficients.json → risk apply on
    the batch's features_wide.csv: same probabilities, by hand from the saved B."""
    cohort = simulate_li2021(400, seed=1)
    words = {"0/1": ("0", "1"), "true/false": ("false", "true"),
             "True/False": ("False", "True")}[spelling]
    for c in ("ivc", "posterior_fascia_oedema", "residual_back_pain"):
        cohort[c] = cohort[c].map(dict(enumerate(words)))
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    fitdir = tmp_path / "fit"
    assert main(["risk", "fit", str(tmp_path / "cohort.csv"), "-y", "residual_back_pain",
                 "-x", LI_X, "-o", str(fitdir), "-B", "20"]) == 0
    saved = json.loads((fitdir / "coefficients.json").read_text())
    kinds = {p["column"]: p["kind"] for p in saved["predictors"]}
    assert kinds["ivc"] == kinds["posterior_fascia_oedema"] == "binary"
    b = dict(zip(saved["names"], saved["params"], strict=True))
    rc, got = _apply(wide_csv, tmp_path, "--model", str(fitdir / "coefficients.json"))
    assert rc == 0 and (got.fit_reason == "").all()
    for i, r in wide.iterrows():
        g = int(r.goutallier_grade)
        lp = (b["const"] + b["ivc"] * _b(r.ivc)
              + b["posterior_fascia_oedema"] * _b(r.posterior_fascia_oedema)
              + b["goutallier_grade[2]"] * (g == 2) + b["goutallier_grade[3+4]"] * (g >= 3)
              + b["cement_distribution_postop[blocky]"]
              * (r.cement_distribution_postop == "blocky"))
        assert float(got.fit_lp[i]) == pytest.approx(lp, abs=1e-9)


def test_fit_on_batch_output_then_apply(wide_csv, wide, tmp_path):
    """risk fit directly on features_wide.csv (true/false outcome and predictor), then its
    saved model back on the same file; a missing input is named, never zero."""
    fitdir = tmp_path / "fit"
    rc = main(["risk", "fit", str(wide_csv), "-y", "recompression", "-x",
               "avhr_recovery_pct", "-o", str(fitdir), "-B", "30"])
    assert rc == 0
    saved = json.loads((fitdir / "coefficients.json").read_text())
    assert saved["n"] == 7 and saved["n_events"] == sum(_b(v) for v in wide.recompression)
    broken = wide.copy()
    broken.loc[2, "avhr_recovery_pct"] = ""
    broken.to_csv(tmp_path / "broken.csv", index=False)
    out = tmp_path / "applied.csv"
    rc = main(["risk", "apply", str(tmp_path / "broken.csv"), "--model",
               str(fitdir / "coefficients.json"), "-o", str(out)])
    assert rc == 1  # some rows not scored
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert got.fit_reason[2] == "avhr_recovery_pct is empty" and got.fit_probability[2] == ""
    b0, b1 = saved["params"]
    for i in (0, 1, 3):
        lp = b0 + b1 * float(wide.avhr_recovery_pct[i])
        assert float(got.fit_probability[i]) == pytest.approx(1 / (1 + math.exp(-lp)))


def test_saved_model_with_clinical_names_points_to_the_batch_names(wide_csv, wide, tmp_path,
                                                                   capsys):
    """A model fitted on a clinical table's 'age' / 'bmi' meets the batch's unit-suffixed
    'age_years' / 'bmi_kg_m2': one line naming the --map to use, then the mapped run."""
    rng = np.random.default_rng(0)
    cohort = simulate_li2021(300, seed=1)
    cohort["age"] = rng.normal(70, 8, 300).round()
    cohort["bmi"] = rng.normal(24, 3, 300).round(1)
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    fitdir = tmp_path / "fit"
    assert main(["risk", "fit", str(tmp_path / "cohort.csv"), "-y", "residual_back_pain",
                 "-x", "ivc,age,bmi", "-o", str(fitdir), "-B", "0", "--no-progress"]) == 0
    coef = str(fitdir / "coefficients.json")
    capsys.readouterr()
    assert main(["risk", "apply", str(wide_csv), "--model", coef]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--map age=age_years --map bmi=bmi_kg_m2" in err
    rc, got = _apply(wide_csv, tmp_path, "--model", coef, "--map", "age=age_years",
                     "--map", "bmi=bmi_kg_m2")
    assert rc == 0
    b = dict(zip(*[json.loads((fitdir / "coefficients.json").read_text())[k]
                   for k in ("names", "params")], strict=True))
    for i, r in wide.iterrows():
        lp = (b["const"] + b["ivc"] * _b(r.ivc) + b["age"] * float(r.age_years)
              + b["bmi"] * float(r.bmi_kg_m2))
        assert float(got.fit_lp[i]) == pytest.approx(lp, abs=1e-9)
