"""A whole study, end to end, through the command line only.

What a research group does, in order, each step consuming the previous step's real output:

1. a cohort of 12 synthetic patients (pre-op, post-op, follow-up; AP films; a clinical table);
   reader A's landmarks are the sidecars ``X.sm.json``, reader B's are reader A's plus seeded
   Gaussian noise, in a separate annotations folder;
2. ``batch`` for reader A, ``batch --annotations readerB`` for reader B;
3. ``reliability`` of A against B (and A against itself, which must warn);
4. ``risk apply`` with every published model on A's ``features_wide.csv``, an2021 also with
   recalibration on the cohort's own outcome, and a model saved by ``risk fit``;
5. ``risk fit`` on simulated cohorts of 60 to 3000 patients and with rare outcomes;
6. ``export-sr`` and reading the SR back.

Every command runs as a subprocess, as a user would; no stderr may hold a traceback, and every
exit code is the documented one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_measure.io.annotation import load_annotation, save_annotation
from spine_measure.reliability.simulate import noisy_annotation
from spine_measure.risk.simulate import simulate_li2021
from spine_measure.synthetic.cohort import generate_cohort

pytestmark = pytest.mark.slow

N_PATIENTS = 12
READER_B_SD_PX = 2.0
KEY = "study-test-key"
CLI = [sys.executable, "-c", "import sys; from spine_measure.cli import main; sys.exit(main())"]


def run(*args: str | os.PathLike[str], expect: int | tuple[int, ...] = 0,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``spine-measure ARGS`` in a subprocess; check its exit code and its stderr."""
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
    expected = (expect,) if isinstance(expect, int) else expect
    where = f"spine-measure {' '.join(map(str, args))}\n--- stdout\n{proc.stdout[-3000:]}" \
            f"\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode in expected, f"exit {proc.returncode}, expected {expect}: {where}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, where
    return proc


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("study")
    films = root / "films"
    generate_cohort(films, N_PATIENTS)
    reader_b = root / "readerB"
    for side in sorted(films.rglob("*.sm.json")):
        rel = side.relative_to(films)
        rng = np.random.default_rng([2024, *rel.as_posix().encode()])
        ann = noisy_annotation(load_annotation(side), rng, sd_px=READER_B_SD_PX,
                               reader="reader-b")
        (reader_b / rel).parent.mkdir(parents=True, exist_ok=True)
        save_annotation(ann, reader_b / rel, overwrite=True)
    common = ["--clinical", films / "clinical.csv", "--pseudonym-key", KEY, "--no-progress",
              "--jobs", "2", "--no-overlays"]
    run("batch", films, "--out", root / "outA", *common)
    run("batch", films, "--annotations", reader_b, "--out", root / "outB", *common)
    return {"root": root, "films": films, "readerB": reader_b,
            "outA": root / "outA", "outB": root / "outB"}


def _long(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "measurements_long.csv")


def test_batch_outputs_cover_every_patient(study):
    wide = pd.read_csv(study["outA"] / "features_wide.csv")
    assert len(wide) == N_PATIENTS
    assert wide["patient_pseudo_id"].is_unique
    errors = pd.read_csv(study["outA"] / "errors.csv")
    assert not (errors.get("stage", pd.Series(dtype=str)) == "measure").any(), errors
    # no key in the folder shared with statisticians
    assert not list(study["outA"].rglob("*.key"))


def test_reader_b_folder_wins_over_the_sidecars(study):
    a, b = _long(study["outA"]), _long(study["outB"])
    key = ["sop_instance_uid", "level"]
    m = a.merge(b, on=key, suffixes=("_a", "_b"))
    assert len(m) == len(a) == len(b)
    lat = m[m["ha_mm_a"].notna() & m["spacing_row_mm_a"].notna()]
    assert len(lat) > 100
    # in pixels: the noise was planted in pixels
    diff = ((lat["ha_mm_b"] - lat["ha_mm_a"]) / lat["spacing_row_mm_a"]).to_numpy()
    # every height moved: reader B is reader A plus N(0, 2 px) per coordinate
    assert (np.abs(diff) > 1e-6).mean() > 0.95
    # a height is |As - Ai|: its noise along the line is N(0, 2 sd^2)
    sd = float(np.std(diff))
    expected = np.sqrt(2) * READER_B_SD_PX
    assert 0.75 * expected < sd < 1.3 * expected, (sd, expected)
    # the run records which annotation file each film used
    assert set(b["annotation_source"]) == {"annotations_folder"}
    assert set(a["annotation_source"]) == {"sidecar"}
    assert (a["annotation_sha256"] != b["annotation_sha256"]).all()
    manifest = (study["outB"] / "run_manifest.json").read_text()
    assert "readerB" in manifest


def test_reliability_of_the_two_readers(study):
    out = study["root"] / "rel"
    run("reliability", study["films"], study["readerB"], "--images", study["films"],
        "--out", out, "--no-plots")
    tables = list(out.glob("*.csv"))
    assert tables, list(out.iterdir())
    icc = pd.concat([pd.read_csv(t) for t in tables if "icc" in pd.read_csv(t).columns.str
                     .lower().str.cat(sep=" ")], ignore_index=True)
    col = next(c for c in icc.columns if c.lower().startswith("icc"))
    vals = pd.to_numeric(icc[col], errors="coerce").dropna()
    assert len(vals) > 0 and (vals < 1.0).all() and (vals > 0.5).any()


def test_reliability_of_a_folder_against_itself_warns(study):
    out = study["root"] / "rel_same"
    proc = run("reliability", study["films"], study["films"], "--images", study["films"],
               "--out", out, "--no-plots", expect=(0, 1))
    text = (proc.stderr + proc.stdout).lower()
    assert "same" in text and "warn" in text


@pytest.mark.parametrize("model", ["li2021", "an2021", "xiong2021", "rules"])
def test_every_published_model_reads_the_batch_output(study, model):
    features = study["outA"] / "features_wide.csv"
    out = study["root"] / f"risk_{model}.csv"
    run("risk", "apply", features, "--model", model, "-o", out)
    res = pd.read_csv(out)
    assert len(res) == N_PATIENTS
    value_cols = [c for c in res.columns if c not in pd.read_csv(features).columns]
    assert value_cols, res.columns
    # every row has a value or names what is missing
    reason = next((c for c in res.columns if "missing" in c or "reason" in c), None)
    for _, row in res.iterrows():
        has_value = row[value_cols].notna().any()
        assert has_value or (reason is not None and isinstance(row[reason], str)), row


def test_an2021_recalibrated_on_the_cohort(study):
    features = study["outA"] / "features_wide.csv"
    out = study["root"] / "an2021_recal.csv"
    run("risk", "apply", features, "--model", "an2021", "--recalibrate-on", "recompression",
        "-o", out)
    res = pd.read_csv(out)
    assert len(res) == N_PATIENTS


@pytest.mark.parametrize(("n", "seed", "rare"), [
    (60, 1, False), (60, 2, False), (150, 3, False), (500, 1, False), (500, 2, False),
    (500, 4, False), (3000, 5, False), (500, 6, True), (3000, 7, True),
])
def test_risk_fit_on_simulated_cohorts_then_apply(tmp_path, n, seed, rare):
    df = simulate_li2021(n, seed=seed)
    if rare:  # keep the events down to ~5 %
        rng = np.random.default_rng(seed)
        ev = df.index[df["residual_back_pain"] == 1]
        keep_ev = rng.choice(ev, size=max(3, int(0.05 * n)), replace=False)
        df = pd.concat([df[df["residual_back_pain"] == 0], df.loc[keep_ev]]).sort_index()
    cohort = tmp_path / "cohort.csv"
    df.drop(columns=["true_lp", "true_probability"]).to_csv(cohort, index=False)
    outdir = tmp_path / "fit"
    run("risk", "fit", cohort, "--outcome", "residual_back_pain", "--predictors",
        "ivc,posterior_fascia_oedema,goutallier_grade:0+1|2|3+4,"
        "cement_distribution_postop:spongy|blocky",
        "--outdir", outdir, "--bootstrap", "40", "--seed", "11", expect=(0, 1))
    coef = next(outdir.glob("*.json"), None)
    if coef is None:  # a fit refused (e.g. separation) must say why, and write nothing half
        return
    pred = tmp_path / "pred.csv"
    run("risk", "apply", cohort, "--model", coef, "-o", pred)
    assert len(pd.read_csv(pred)) == len(df)


def test_saved_model_applies_to_the_batch_output(study, tmp_path):
    df = simulate_li2021(400, seed=3)
    cohort = tmp_path / "cohort.csv"
    df.drop(columns=["true_lp", "true_probability"]).to_csv(cohort, index=False)
    run("risk", "fit", cohort, "--outcome", "residual_back_pain", "--predictors",
        "ivc,posterior_fascia_oedema,cement_distribution_postop:spongy|blocky",
        "--outdir", tmp_path / "fit", "--bootstrap", "20", "--seed", "1")
    coef = next((tmp_path / "fit").glob("*.json"))
    out = tmp_path / "applied.csv"
    run("risk", "apply", study["outA"] / "features_wide.csv", "--model", coef, "-o", out)
    assert len(pd.read_csv(out)) == N_PATIENTS


def test_export_sr_and_read_back(study, tmp_path):
    from spine_measure.sr.read import read_sr

    patient = study["films"] / "SM003"
    run("export-sr", patient, "--out", tmp_path / "sr")
    srs = sorted((tmp_path / "sr").rglob("*.dcm"))
    assert len(srs) == 3
    long = _long(study["outA"])
    for sr in srs:
        back = read_sr(sr)
        text = json.dumps(back, default=str) if not hasattr(back, "to_dict") else \
            json.dumps(back.to_dict(), default=str)
        assert "wedge" in text.lower()
    assert not long.empty


def test_exit_codes_of_ordinary_failures(study, tmp_path):
    run("info", tmp_path / "nope.dcm", expect=2)
    run("measure", tmp_path / "nope.dcm", expect=2)
    run("batch", tmp_path / "nope", "--out", tmp_path / "o", expect=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run("batch", empty, "--out", tmp_path / "o2", expect=3)
    assert "no DICOM" in proc.stderr + proc.stdout
