"""A whole study, end to end, through the command line only.

What a research group does, in order, each step consuming the previous step's real output:

1. a cohort of 12 synthetic patients (pre-op, post-op, follow-up; AP films; a clinical table),
   written by ``python -m spine_measure.synthetic.cohort``; reader A's landmarks are the
   sidecars ``X.sm.json``, reader B's (``--reader-b``) are reader A's plus seeded Gaussian
   noise of 2 px per coordinate, in a separate annotations folder;
2. ``batch`` for reader A, ``batch --annotations readerB`` for reader B;
3. ``reliability`` of A against B (and A against itself, which must warn);
4. ``risk apply`` with every published model on A's ``features_wide.csv``, an2021 also with
   recalibration on the cohort's own outcome, and a model saved by ``risk fit``;
5. ``risk fit`` on simulated cohorts of 60 to 3000 patients and with rare outcomes;
6. ``export-sr`` of reader A and of reader B, read back with ``read_sr``.

Every command runs as a subprocess, as a user would; no output (stdout, stderr, errors.csv)
may hold a traceback, and every exit code is the one docs/cli.md documents. Values are
checked against numbers computed here independently: reader B's heights from reader B's
landmark files, the size of the planted noise in the reliability tables, the score equation
of a logistic fit, the SR's values against the batch's ``measurements_long.csv``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_measure.io.annotation import load_annotation
from spine_measure.risk.simulate import simulate_li2021

pytestmark = pytest.mark.slow

N_PATIENTS = 12
READER_B_SD_PX = 2.0
KEY = "study-test-key"
PY = sys.executable
CLI = [PY, "-c", "import sys; from spine_measure.cli import main; sys.exit(main())"]
LI2021_PREDICTORS = ("ivc,posterior_fascia_oedema,goutallier_grade:0+1|2|3+4,"
                     "cement_distribution_postop:spongy|blocky")
# every file `risk fit` writes (docs/risk_models.md): all of them, or none
FIT_FILES = {"univariate.csv", "coefficients.csv", "coefficients.json", "validation.csv",
             "calibration_groups.csv", "calibration_curve.csv", "decision_curve.csv",
             "roc.png", "calibration.png", "dca.png", "nomogram.png", "report.html"}


def _env(tmp: Path) -> dict[str, str]:
    # a generated pseudonym key would go to the user's config folder: keep it in tmp
    return {**os.environ, "COLUMNS": "100", "NO_COLOR": "1",
            "XDG_CONFIG_HOME": str(tmp / "config")}


def _check(proc: subprocess.CompletedProcess[str], argv: list[str],
           expect: int | tuple[int, ...]) -> subprocess.CompletedProcess[str]:
    expected = (expect,) if isinstance(expect, int) else expect
    where = (f"{' '.join(argv)}\n--- stdout\n{proc.stdout[-3000:]}"
             f"\n--- stderr\n{proc.stderr[-3000:]}")
    assert proc.returncode in expected, f"exit {proc.returncode}, expected {expect}: {where}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, where
    return proc


def run(*args: str | os.PathLike[str], expect: int | tuple[int, ...] = 0,
        cwd: Path | None = None, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run ``spine-measure ARGS`` in a subprocess; check its exit code and that no traceback
    was printed."""
    argv = [*CLI, *map(str, args)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(tmp), cwd=cwd,
                          timeout=900)
    return _check(proc, ["spine-measure", *map(str, args)], expect)


def _no_traceback_in(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.suffix in {".csv", ".json", ".md", ".html", ".txt"}:
            assert "Traceback" not in f.read_text(errors="replace"), f


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("study")
    films, reader_b = root / "films", root / "readerB"
    argv = [PY, "-m", "spine_measure.synthetic.cohort", str(films), "--patients",
            str(N_PATIENTS), "--reader-b", str(reader_b), "--reader-b-sd-px",
            str(READER_B_SD_PX)]
    _check(subprocess.run(argv, capture_output=True, text=True, env=_env(root), timeout=900),
           argv, 0)
    common = ["--clinical", films / "clinical.csv", "--pseudonym-key", KEY, "--no-progress",
              "--jobs", "2", "--no-overlays"]
    a = run("batch", films, "--out", root / "outA", *common, tmp=root)
    b = run("batch", films, "--annotations", reader_b, "--out", root / "outB", *common,
            tmp=root)
    return {"root": root, "films": films, "readerB": reader_b, "outA": root / "outA",
            "outB": root / "outB", "batchA": a, "batchB": b}


def _long(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "measurements_long.csv")


def _n_films(films: Path) -> int:
    return len(list(films.rglob("*.dcm")))


def test_the_cohort_is_a_study(study):
    films = study["films"]
    patients = sorted(p.name for p in films.iterdir() if p.is_dir())
    assert len(patients) == N_PATIENTS
    for p in patients:
        names = {f.name for f in (films / p).glob("*.dcm")}
        assert {f"{p}_preop.dcm", f"{p}_postop.dcm", f"{p}_followup.dcm"} <= names, names
    assert any("_ap" in f.name for f in films.rglob("*.dcm"))
    clinical = pd.read_csv(films / "clinical.csv", dtype=str)
    assert len(clinical) == N_PATIENTS
    # reader B covers every film reader A annotated, nothing else
    side = sorted(f.relative_to(films) for f in films.rglob("*.sm.json"))
    assert side == sorted(f.relative_to(study["readerB"])
                          for f in study["readerB"].rglob("*.sm.json"))
    assert {load_annotation(study["readerB"] / f).reader for f in side} == {"reader-b"}


def test_batch_outputs_cover_every_film_and_patient(study):
    n_films = _n_films(study["films"])
    for out, proc in ((study["outA"], study["batchA"]), (study["outB"], study["batchB"])):
        assert f"films: {n_films}  done: {n_films}  failed: 0" in proc.stderr + proc.stdout
        wide = pd.read_csv(out / "features_wide.csv")
        assert len(wide) == N_PATIENTS
        assert wide["patient_pseudo_id"].is_unique
        long = _long(out)
        assert long["sop_instance_uid"].nunique() == n_films
        assert long["patient_pseudo_id"].nunique() == N_PATIENTS
        assert set(long["time_point"]) == {"preop", "postop", "followup"}
        errors = pd.read_csv(out / "errors.csv", dtype=str)
        assert errors.empty, errors.to_string()
        # pseudonymised: no real PatientID, no key in the folder shared with statisticians
        text = (out / "features_wide.csv").read_text() + (out / "measurements_long.csv") \
            .read_text()
        assert "SM001" not in text
        assert not list(out.rglob("*.key"))
        _no_traceback_in(out)
    # the same key gives the same pseudonyms in both runs
    assert set(_long(study["outA"])["patient_pseudo_id"]) == \
        set(_long(study["outB"])["patient_pseudo_id"])


def test_reader_b_folder_wins_over_the_sidecars(study):
    a, b = _long(study["outA"]), _long(study["outB"])
    key = ["sop_instance_uid", "level"]
    m = a.merge(b, on=key, suffixes=("_a", "_b"))
    assert len(m) == len(a) == len(b)
    lat = m[m["ha_mm_a"].notna()]
    # the noise was planted in pixels; the synthetic films have square pixels
    assert (lat["spacing_row_mm_a"] == lat["spacing_col_mm_a"]).all()
    assert len(lat) > 150
    # the run records which annotation file each film used
    assert set(b["annotation_source"]) == {"annotations_folder"}
    assert set(a["annotation_source"]) == {"sidecar"}
    assert (m["annotation_sha256_a"] != m["annotation_sha256_b"]).all()
    assert "readerB" in (study["outB"] / "run_manifest.json").read_text()
    # every height moved, by the planted noise: a height |As - Ai| of reader B differs from
    # reader A's (the noise-free sidecar) by N(0, 2 sd^2) px -- both end points move
    for h in ("ha", "hm", "hp"):
        diff_px = ((lat[f"{h}_mm_b"] - lat[f"{h}_mm_a"]) / lat["spacing_row_mm_a"]).to_numpy()
        assert (np.abs(diff_px) > 1e-6).mean() > 0.95, h
        sd, expected = float(np.std(diff_px)), math.sqrt(2) * READER_B_SD_PX
        assert 0.8 * expected < sd < 1.25 * expected, (h, sd, expected)
        assert abs(float(np.mean(diff_px))) < 4 * expected / math.sqrt(len(diff_px)), h


def test_reader_b_heights_are_reader_b_landmarks(study):
    """Independently of the measurement code: reader B's anterior height on every film is
    the distance of As and Ai in reader B's own annotation file, times the spacing."""
    b = _long(study["outB"])
    by_uid = {}
    for f in study["readerB"].rglob("*.sm.json"):
        ann = load_annotation(f)
        by_uid[ann.image.sop_instance_uid] = ann
    checked = 0
    for row in b[b["ha_mm"].notna()].itertuples():
        v = by_uid[row.sop_instance_uid].landmarks.get(row.level)
        (r0, c0), (r1, c1) = v.points["As"], v.points["Ai"]
        expected = math.hypot((r1 - r0) * row.spacing_row_mm, (c1 - c0) * row.spacing_col_mm)
        assert row.ha_mm == pytest.approx(expected, rel=1e-9), (row.sop_instance_uid, row.level)
        checked += 1
    assert checked > 150


def test_reliability_of_the_two_readers(study):
    out = study["root"] / "rel"
    proc = run("reliability", study["films"], study["readerB"], "--images", study["films"],
               "--out", out, "--no-plots", "--bootstrap", "200", tmp=study["root"])
    n_films = _n_films(study["films"])
    assert f"{n_films} paired film(s), 0 unpaired, 0 error(s)" in proc.stdout + proc.stderr
    rel = pd.read_csv(out / "reliability.csv")
    icc = rel["icc2_1"].dropna()
    assert len(icc) >= 15
    # two readers who differ are never in perfect agreement
    assert (icc < 1.0).all(), rel[["measurement", "icc2_1"]]
    heights = rel.set_index("column").loc[["ha_mm", "hm_mm", "hp_mm"]]
    assert (heights["icc2_1"] > 0.9).all(), heights["icc2_1"]
    # SEM = SD(b - a) / sqrt 2 = sqrt(2) sd / sqrt(2) = sd px (reader A is noise-free), in mm
    # with the films' spacings (root mean square over the vertebrae)
    long = _long(study["outA"])
    spacing = float(np.sqrt((long.loc[long["ha_mm"].notna(), "spacing_row_mm"] ** 2).mean()))
    expected_sem = READER_B_SD_PX * spacing
    for col, sem in heights["sem"].items():
        assert 0.8 * expected_sem < sem < 1.25 * expected_sem, (col, sem, expected_sem)
    assert (heights["n_pairs"] > 150).all()
    # the landmark error recovered from the two readers: sqrt(mean(d^2) / 2) = sd / sqrt 2
    import json
    lm = json.loads((out / "landmark_error.json").read_text())
    assert lm["unit"] == "mm"
    expected_sd = READER_B_SD_PX * spacing / math.sqrt(2)
    assert 0.85 * expected_sd < lm["sd_isotropic"] < 1.15 * expected_sd, lm["sd_isotropic"]
    assert pd.read_csv(out / "errors.csv").empty
    _no_traceback_in(out)


def test_reliability_of_a_folder_against_itself_warns(study):
    out = study["root"] / "rel_same"
    proc = run("reliability", study["films"], study["films"], "--images", study["films"],
               "--out", out, "--no-plots", "--bootstrap", "100", expect=(0, 1),
               tmp=study["root"])
    text = (proc.stderr + proc.stdout).lower()
    assert "same" in text and "warn" in text, text[-2000:]


def _expected_apply_code(scored: pd.Series) -> int:
    """docs/risk_models.md: 0 when every row was scored, 1 when some were not, 3 when none."""
    return 0 if scored.all() else (3 if not scored.any() else 1)


MODEL_VALUES = {"li2021": ["li2021_lp", "li2021_probability"],
                "an2021": ["an2021_lp_no_intercept", "an2021_or_vs_median"],
                "xiong2021": ["xiong2021_n_factors_present", "xiong2021_relative_odds_binary"]}


@pytest.mark.parametrize("model", ["li2021", "an2021", "xiong2021", "rules"])
def test_every_published_model_reads_the_batch_output(study, model):
    features = study["outA"] / "features_wide.csv"
    out = study["root"] / f"risk_{model}.csv"
    wide = pd.read_csv(features, dtype=str, keep_default_na=False)
    proc = run("risk", "apply", features, "--model", model, "-o", out, expect=(0, 1, 3),
               tmp=study["root"])
    res = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(res) == N_PATIENTS
    assert list(res["patient_pseudo_id"]) == list(wide["patient_pseudo_id"])
    if model == "rules":
        flags = [c for c in res.columns if c.startswith("flag_")]
        scored = (res[flags] != "").any(axis=1)
        reason = res["flags_reason"]
        # an empty flag is named in flags_reason -- or, for a flag combining others
        # (hu_ratio_high_and_adjacent_low), the flags it combines are
        for _, row in res.iterrows():
            empty = [f.removeprefix("flag_") for f in flags if row[f] == ""]
            for f in empty:
                parts = [g for g in empty if g != f and g.split("_")[0] in f]
                assert f in row["flags_reason"] or (
                    parts and all(g in row["flags_reason"] for g in parts)), (f, row.to_dict())
    else:
        values = res[MODEL_VALUES[model]]
        scored = (values != "").all(axis=1)
        reason = res[f"{model}_reason"]
        # a row is scored, or its output is empty and it names the missing input
        for i, row in res.iterrows():
            if scored[i]:
                assert row[f"{model}_missing_inputs"] == "", row.to_dict()
            else:
                assert (values.loc[i] == "").all(), row.to_dict()
                assert row[f"{model}_missing_inputs"] or reason[i], row.to_dict()
    if model == "li2021":
        s = res[scored]
        lp = s["li2021_lp"].astype(float)
        np.testing.assert_allclose(s["li2021_probability"].astype(float),
                                   1 / (1 + np.exp(-lp)), rtol=1e-9)
    # the synthetic clinical table has every model input: every row is scored
    assert scored.all(), res[~scored].to_string()
    assert proc.returncode == _expected_apply_code(scored), (proc.returncode, reason)


def test_an2021_recalibrated_on_the_cohort(study):
    features = study["outA"] / "features_wide.csv"
    out = study["root"] / "an2021_recal.csv"
    proc = run("risk", "apply", features, "--model", "an2021", "--recalibrate-on",
               "recompression", "-o", out, tmp=study["root"])
    res = pd.read_csv(out)
    wide = pd.read_csv(features, dtype=str, keep_default_na=False)
    assert len(res) == N_PATIENTS
    p = res["an2021_probability_recalibrated"]
    assert p.notna().all() and ((p > 0) & (p < 1)).all()
    # recalibration-in-the-large solves the score equation: mean predicted = observed rate
    y = wide["recompression"].str.lower().map({"true": 1, "false": 0, "1": 1, "0": 0})
    assert y.notna().all(), wide["recompression"]
    assert 0 < y.sum() < N_PATIENTS
    assert float(p.mean()) == pytest.approx(float(y.mean()), abs=1e-6)
    # only the intercept moved: the logit shift is the same for every row
    shift = np.log(p / (1 - p)) - res["an2021_lp_no_intercept"]
    assert float(np.ptp(shift)) < 1e-9
    events = int(y.sum())
    assert f"recalibrated on {N_PATIENTS} rows ({events} events)" in proc.stderr + proc.stdout


def _cohort(tmp: Path, n: int, seed: int, rare: bool) -> tuple[Path, pd.DataFrame]:
    # rare: the events down to ~5 % (intercept -5.4, docs/risk_models.md)
    df = simulate_li2021(n, seed=seed, intercept=-5.4 if rare else None)
    path = tmp / "cohort.csv"
    df.drop(columns=["true_lp", "true_probability"]).to_csv(path, index=False)
    return path, df


@pytest.mark.parametrize(("n", "seed", "rare"), [
    (60, 1, False), (60, 2, False), (150, 3, False), (150, 4, False), (500, 1, False),
    (500, 2, False), (500, 4, False), (3000, 5, False), (500, 6, True), (500, 8, True),
    (3000, 7, True),
])
def test_risk_fit_on_simulated_cohorts_then_apply(tmp_path, n, seed, rare):
    cohort, df = _cohort(tmp_path, n, seed, rare)
    if rare:
        assert 0.02 < df["residual_back_pain"].mean() < 0.09
    outdir = tmp_path / "fit"
    proc = run("risk", "fit", cohort, "--outcome", "residual_back_pain", "--predictors",
               LI2021_PREDICTORS, "--outdir", outdir, "--bootstrap", "40", "--seed", "11",
               "--no-progress", expect=(0, 2), tmp=tmp_path)
    if proc.returncode != 0:
        # refused (e.g. a predictor level absent in a tiny cohort): one line saying why,
        # nothing written -- never half the outputs
        assert not outdir.exists() or not list(outdir.iterdir()), list(outdir.iterdir())
        assert [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if ln.strip()]
        assert not list(tmp_path.glob("*tmp*")), list(tmp_path.iterdir())
        assert n <= 150, "a cohort of 500 or more must always be fitted"
        return
    assert {f.name for f in outdir.iterdir()} == FIT_FILES
    out = proc.stdout
    assert f"n = {n}" in out and "apparent" in out and "corrected" in out
    assert "seed 11" in out
    val = pd.read_csv(outdir / "validation.csv")
    assert not val.empty
    _no_traceback_in(outdir)
    pred = tmp_path / "pred.csv"
    run("risk", "apply", cohort, "--model", outdir / "coefficients.json", "-o", pred,
        tmp=tmp_path)
    res = pd.read_csv(pred)
    assert len(res) == len(df)
    p = res["fit_probability"]
    assert p.notna().all()
    # maximum likelihood with an intercept: the fitted probabilities sum to the events
    assert float(p.mean()) == pytest.approx(float(df["residual_back_pain"].mean()), abs=1e-4)


def test_risk_fit_reruns_byte_identical(tmp_path):
    cohort, _ = _cohort(tmp_path, 150, 3, False)
    outs = []
    for k in (1, 2):
        outs.append(tmp_path / f"fit{k}")
        run("risk", "fit", cohort, "--outcome", "residual_back_pain", "--predictors",
            LI2021_PREDICTORS, "--outdir", outs[-1], "--bootstrap", "30", "--seed", "5",
            "--no-progress", tmp=tmp_path)
    for name in sorted(FIT_FILES):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_a_failing_risk_fit_writes_nothing(tmp_path):
    """A fit that cannot be made leaves --outdir as it was: new folder absent, an existing
    folder's files untouched."""
    cohort, df = _cohort(tmp_path, 150, 3, False)
    # a predictor level that does not occur: refused before anything is written
    preds = "ivc,goutallier_grade:0+1|2|3+4|9"
    outdir = tmp_path / "fit"
    proc = run("risk", "fit", cohort, "--outcome", "residual_back_pain", "--predictors",
               preds, "--outdir", outdir, "--bootstrap", "20", "--no-progress", expect=2,
               tmp=tmp_path)
    assert not outdir.exists()
    assert "goutallier_grade" in proc.stderr + proc.stdout
    # an outcome that is not 0/1
    bad = tmp_path / "bad.csv"
    df.assign(residual_back_pain=df["residual_back_pain"] * 2).drop(
        columns=["true_lp", "true_probability"]).to_csv(bad, index=False)
    outdir.mkdir()
    (outdir / "notes.txt").write_text("mine\n")
    proc = run("risk", "fit", bad, "--outcome", "residual_back_pain", "--predictors",
               LI2021_PREDICTORS, "--outdir", outdir, "--bootstrap", "20", "--no-progress",
               expect=2, tmp=tmp_path)
    assert "residual_back_pain" in proc.stderr + proc.stdout
    assert [f.name for f in outdir.iterdir()] == ["notes.txt"]
    assert (outdir / "notes.txt").read_text() == "mine\n"
    # and no temporary folder left next to it
    assert {f.name for f in tmp_path.iterdir()} - {"config"} == {"bad.csv", "cohort.csv", "fit"}


def test_saved_model_applies_to_the_batch_output(study, tmp_path):
    cohort, _ = _cohort(tmp_path, 400, 3, False)
    run("risk", "fit", cohort, "--outcome", "residual_back_pain", "--predictors",
        "ivc,posterior_fascia_oedema,cement_distribution_postop:spongy|blocky",
        "--outdir", tmp_path / "fit", "--bootstrap", "20", "--seed", "1", "--no-progress",
        tmp=tmp_path)
    out = tmp_path / "applied.csv"
    run("risk", "apply", study["outA"] / "features_wide.csv", "--model",
        tmp_path / "fit" / "coefficients.json", "-o", out, tmp=tmp_path)
    res = pd.read_csv(out)
    assert len(res) == N_PATIENTS
    assert res["fit_probability"].notna().all()
    np.testing.assert_allclose(res["fit_probability"], 1 / (1 + np.exp(-res["fit_lp"])),
                               rtol=1e-9)
    # the same model on a 0/1 copy of the batch's booleans gives the same numbers
    wide = pd.read_csv(study["outA"] / "features_wide.csv", dtype=str, keep_default_na=False)
    for col in ("ivc", "posterior_fascia_oedema"):
        wide[col] = wide[col].str.lower().map({"true": "1", "false": "0"}).fillna(wide[col])
    w01 = tmp_path / "wide01.csv"
    wide.to_csv(w01, index=False)
    out01 = tmp_path / "applied01.csv"
    run("risk", "apply", w01, "--model", tmp_path / "fit" / "coefficients.json", "-o", out01,
        tmp=tmp_path)
    np.testing.assert_allclose(pd.read_csv(out01)["fit_lp"], res["fit_lp"], rtol=1e-12)


UNIT_SUFFIX = {"mm": "_mm", "deg": "_deg", "pct": "_pct", "px": "_px"}


def _long_column(name: str, unit: str) -> str:
    suffix = UNIT_SUFFIX.get(unit, "")
    return name if not suffix or name.endswith(suffix) else name + suffix


@pytest.mark.parametrize("reader", ["A", "B"])
def test_export_sr_and_read_back(study, tmp_path, reader):
    """The SR of a film holds the batch's numbers for that film and level, read back."""
    from spine_measure.sr.read import read_sr

    patient = study["films"] / "SM005"          # the AP design: lateral and AP films
    extra = [] if reader == "A" else ["--annotations", study["readerB"]]
    proc = run("export-sr", patient, "--out", tmp_path / "sr", *extra, tmp=tmp_path)
    n = len(list(patient.glob("*.dcm")))
    assert n == 4
    assert f"{n} SR written, 0 failed" in proc.stdout + proc.stderr
    srs = sorted((tmp_path / "sr").glob("*.sr.dcm"))
    assert len(srs) == n
    long = _long(study["out" + reader]).set_index(["sop_instance_uid", "level"])
    checked = 0
    views = set()
    for sr in srs:
        back = read_sr(sr)
        assert sr.name == f"{back.source_sop_instance_uid}.sr.dcm"
        if back.landmarks.view == "ap":
            # AP: film-level values (coronal Cobb), the film's row without a level
            row = long.loc[back.source_sop_instance_uid]
            row = row[row.index.isna()].iloc[0]
            views.add(row["view"])
            assert back.film
            for fv in back.film:
                col = _long_column(fv.name, fv.unit)
                if isinstance(fv.value, bool):
                    assert str(row[col]).lower() == str(fv.value).lower(), (col, fv)
                else:
                    assert float(fv.value) == pytest.approx(float(row[col]), rel=1e-6), \
                        (col, fv, row[col])
                checked += 1
            continue
        assert back.vertebrae
        for level, values in back.vertebrae.items():
            row = long.loc[(back.source_sop_instance_uid, level)]
            views.add(row["view"])
            for name, value in values.items():
                col = _long_column(name, back.units[level].get(name, ""))
                if col not in row.index or isinstance(value, str):
                    continue
                assert not pd.isna(row[col]), (sr.name, level, col)
                assert float(value) == pytest.approx(float(row[col]), rel=1e-6, abs=1e-9), \
                    (sr.name, level, col, value, row[col])
                checked += 1
    assert views == {"lateral", "ap"}
    assert checked > 100


def test_exit_codes_of_ordinary_failures(study, tmp_path):
    """docs/cli.md, through the study's own files."""
    t = tmp_path
    film = next(study["films"].rglob("*_postop.dcm"))
    run("info", t / "nope.dcm", expect=2, tmp=t)
    run("measure", t / "nope.dcm", expect=2, tmp=t)
    run("batch", t / "nope", "--out", t / "o", expect=2, tmp=t)
    run("batch", film, "--out", t / "o1", expect=2, tmp=t)
    run("reliability", t / "nope", study["readerB"], "--out", t / "r", expect=2, tmp=t)
    run("export-sr", t / "nope.dcm", "--out", t / "sr", expect=2, tmp=t)
    run("risk", "apply", study["outA"] / "features_wide.csv", "--model", "nomodel",
        "-o", t / "x.csv", expect=2, tmp=t)
    empty = t / "empty"
    empty.mkdir()
    proc = run("batch", empty, "--out", t / "o2", expect=3, tmp=t)
    assert "no DICOM" in proc.stderr + proc.stdout
    # a film whose annotation belongs to another image: it fails, the others are measured
    part = t / "part"
    shutil.copytree(film.parent, part, ignore=shutil.ignore_patterns("*.png", "*.truth.json"))
    pre, post = part / film.name.replace("_postop", "_preop"), part / film.name
    shutil.copy(pre.with_name(pre.name.replace(".dcm", ".sm.json")),
                post.with_name(post.name.replace(".dcm", ".sm.json")))
    proc = run("batch", part, "--out", t / "o3", "--pseudonym-key", KEY, "--no-progress",
               "--no-overlays", expect=1, tmp=t)
    errors = pd.read_csv(t / "o3" / "errors.csv", dtype=str, keep_default_na=False)
    failed = errors[~errors["status"].isin(["warning", "skipped"])]
    assert len(failed) == 1, errors.to_string()
    assert film.stem in failed.to_string()
    assert _long(t / "o3")["sop_instance_uid"].nunique() == len(list(part.glob("*.dcm"))) - 1
    # measure on films without annotation: nothing could be processed
    bare = t / "bare"
    bare.mkdir()
    shutil.copy(film, bare / film.name)
    run("measure", bare / film.name, expect=3, tmp=t)
