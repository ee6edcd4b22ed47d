"""``spine-measure reliability`` end to end on small simulated reader folders."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from spine_measure.reliability import simulate_readers

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"
SERIES = [f"{p}/{p}_{tp}.sm.json" for p in ("SM001", "SM006")
          for tp in ("preop", "postop", "followup")]

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample_dicoms not present")


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    s = simulate_readers(SAMPLES, base / "in", sd_px=1.5, files=[*SERIES,
                                                                 "SM002/SM002_preop.sm.json"])
    # reader b never read SM002_preop (unpaired), and one of b's files is broken JSON
    (s.dir_b / "SM002" / "SM002_preop.sm.json").unlink()
    (s.dir_b / "SM006" / "broken.sm.json").write_text('{"schema": "spine_measure.annot',
                                                       encoding="utf-8")
    return s


def test_cli_end_to_end_with_images(sim, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["reliability", str(sim.dir_a), str(sim.dir_b), "--out", str(out),
               "--images", str(SAMPLES)])
    assert rc == EXIT_SOME_FAILED  # the run completes; the bad inputs are listed
    for name in ("reliability.csv", "kappa.csv", "thresholds_vs_mdc.csv", "pairs_long.csv",
                 "unpaired.csv", "errors.csv", "summary.md", "bland_altman.png"):
        assert (out / name).is_file(), name
    unpaired = _csv(out / "unpaired.csv")
    assert [Path(r["file"]).name for r in unpaired] == ["SM002_preop.sm.json"]
    assert "reader b" in unpaired[0]["reason"]
    errors = _csv(out / "errors.csv")
    assert [Path(r["file"]).name for r in errors] == ["broken.sm.json"]
    assert "JSON" in errors[0]["reason"] and "\n" not in errors[0]["reason"]
    rel = pd.read_csv(out / "reliability.csv").set_index("column")
    # with --images the films are calibrated: lengths in mm
    assert "ha_mm" in rel.index and "ha_px" not in rel.index
    assert rel.loc["ha_mm", "n_pairs"] > 20
    # two complete series (SM001, SM006): longitudinal pairs
    assert rel.loc["kyphosis_progression_deg", "n_pairs"] == 2
    assert rel.loc["height_loss_pct", "n_pairs"] == 2
    pairs = pd.read_csv(out / "pairs_long.csv")
    assert set(pairs.loc[pairs["view"] == "lateral", "time_point"].dropna()) == {
        "preop", "postop", "followup", "series"}
    assert not pairs["file_a"].fillna("").str.contains("SM002_preop").any()
    thr = pd.read_csv(out / "thresholds_vs_mdc.csv")
    assert list(thr["change_measure"]) == ["kyphosis_progression", "height_loss_pct",
                                           "compression_rate_increase"]
    assert list(thr["threshold"]) == [10.0, 15.0, 15.0]
    assert (thr["direct_n_pairs"] == 2).all()
    assert set(thr["verdict"]) <= {"threshold exceeds MDC", "threshold within measurement error"}
    summary = (out / "summary.md").read_text()
    assert "2 complete series" in summary and "Thresholds versus MDC95" in summary
    # the unit of analysis and the counts are stated; 2 patients: no bootstrap, and it says so
    assert "6 paired film(s) of 2 patient(s)" in summary and "optimistic" in summary
    assert rel.loc["ha_mm", "n_patients"] == 2 and rel.loc["ha_mm", "n_films"] == 6
    assert rel.loc["ha_mm", "cluster_unit"] == "patient"
    assert rel.loc["ha_mm", "n_vertebrae"] < rel.loc["ha_mm", "n_pairs"]
    assert set(pairs["patient"]) == {"P01", "P02"}   # pseudonymous, no PatientID
    err = capsys.readouterr().err
    assert "broken.sm.json" in err and "6 paired film(s), 1 unpaired, 1 error(s)" in err


def test_cli_without_images_skips_longitudinal_with_reason(sim, tmp_path):
    out = tmp_path / "out"
    rc = main(["reliability", str(sim.dir_a), str(sim.dir_b), "--out", str(out), "--no-plots",
               "--levels", "index", "--kappa-weights", "quadratic"])
    assert rc == EXIT_SOME_FAILED
    assert not (out / "bland_altman.png").exists()
    rel = pd.read_csv(out / "reliability.csv")
    assert "ha_px" in set(rel["column"])
    assert not rel["scope"].eq("longitudinal").any()
    pairs = pd.read_csv(out / "pairs_long.csv")
    assert pairs["index_vertebra"].all()
    assert pairs["level"].nunique() == 2  # SM001 L1, SM006 T11
    kappa = pd.read_csv(out / "kappa.csv").set_index("measurement")
    assert kappa.loc["genant_grade", "weights"] == "quadratic"
    assert "pass --images" in (out / "summary.md").read_text()


def test_cli_all_clean_exits_ok(tmp_path, capsys):
    s = simulate_readers(SAMPLES, tmp_path / "in", sd_px=1.0, files=SERIES[:2])
    rc = main(["reliability", str(s.dir_a), str(s.dir_b), "--out", str(tmp_path / "o"),
               "--no-plots"])
    assert rc == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "Unit of analysis" in out and "patients unknown (pass --images)" in out


def test_cli_usage_and_nothing_to_do(tmp_path, capsys):
    empty_a, empty_b = tmp_path / "a", tmp_path / "b"
    empty_a.mkdir()
    empty_b.mkdir()
    assert main(["reliability", str(tmp_path / "missing"), str(empty_b), "--out",
                 str(tmp_path / "o")]) == EXIT_USAGE
    assert "READER_A_DIR" in capsys.readouterr().err
    assert main(["reliability", str(empty_a), str(empty_b), "--out", str(tmp_path / "o"),
                 "--levels", "some"]) == EXIT_USAGE
    assert main(["reliability", str(empty_a), str(empty_b), "--out",
                 str(tmp_path / "o")]) == EXIT_NOTHING_DONE
    assert (tmp_path / "o" / "reliability.csv").is_file()


def test_cli_same_folder_twice_warns(sim, tmp_path, capsys):
    out = tmp_path / "same"
    main(["reliability", str(sim.dir_a), str(sim.dir_a), "--out", str(out), "--no-plots"])
    err = capsys.readouterr().err
    assert "warning: READER_A_DIR and READER_B_DIR are the same folder" in err
    assert "perfect by construction" in (out / "summary.md").read_text()


def test_cli_copied_annotations_warn(tmp_path, capsys):
    import shutil

    s = simulate_readers(SAMPLES, tmp_path / "in", sd_px=1.0, files=SERIES[:2])
    copy = tmp_path / "copy_of_a"
    shutil.copytree(s.dir_a, copy)
    main(["reliability", str(s.dir_a), str(copy), "--out", str(tmp_path / "o"), "--no-plots"])
    err = capsys.readouterr().err
    assert "byte-identical" in err and "every one of the" in err
