"""``batch --uncertainty`` / ``--uncertainty-from`` (issue 16 items 11-12): optional columns
in both tables, checked against hand formulas and across the two tables."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from spine_measure.cli import EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_dicoms"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample_dicoms not present")


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _batch(src: Path, out: Path, *extra: str) -> int:
    return main(["batch", str(src), "--out", str(out), "--no-overlays", "--no-progress",
                 "--pseudonym-key", "test-key", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("bu")
    src = SAMPLES / "SM001"
    assert _batch(src, base / "plain") == EXIT_OK
    assert _batch(src, base / "u", "--uncertainty", "1.0") == EXIT_OK
    return base


def test_long_table_has_u_of_every_single_film_measurement(runs):
    rows = _read(runs / "u" / "measurements_long.csv")
    l1 = [r for r in rows if r["level"] == "L1"]
    assert len(l1) == 3                           # pre-op, post-op, follow-up
    for r in l1:
        # a height with 1 mm per coordinate: sqrt(2) mm
        assert float(r["ha_mm_u"]) == pytest.approx(math.sqrt(2), rel=1e-6)
        assert float(r["wedge_angle_deg_u"]) > 1.0
        assert r["compression_ge_38_5_state"] in ("true", "false", "uncertain")
        assert "1 mm" in r["uncertainty_model"]
    plain = _read(runs / "plain" / "measurements_long.csv")
    assert not any(c.endswith("_u") for c in plain[0])        # opt-in only
    # the measured values are the same with and without the option
    assert [r["ha_mm"] for r in plain] == [r["ha_mm"] for r in rows]


def test_wide_u_adds_the_films_in_quadrature(runs):
    """kyphosis_progression = KA(follow-up) - KA(post-op): its u in features_wide equals the
    root sum of squares of the two films' regional_kyphotic_angle_deg_u in
    measurements_long (films read independently)."""
    wide = _read(runs / "u" / "features_wide.csv")
    assert len(wide) == 1
    w = wide[0]
    level = w["level"]
    long_ = {r["time_point"]: r for r in _read(runs / "u" / "measurements_long.csv")
             if r["level"] == level}
    ka = [float(long_[tp]["regional_kyphotic_angle_deg_u"]) for tp in ("postop", "followup")]
    assert float(w["kyphosis_progression_deg_u"]) == pytest.approx(math.hypot(*ka), rel=1e-6)
    assert w["recompression_state"] in ("true", "false", "uncertain")
    assert w["refracture_state"] in ("true", "false", "uncertain", "unknown")
    plain = _read(runs / "plain" / "features_wide.csv")[0]
    assert "kyphosis_progression_deg_u" not in plain and "recompression_state" not in plain


def test_dictionary_defines_every_added_column(runs):
    d = {(r["table"], r["column"]): r for r in _read(runs / "u" / "data_dictionary.csv")}
    for table, file in (("features_wide", "features_wide.csv"),
                        ("measurements_long", "measurements_long.csv")):
        cols = _read(runs / "u" / file)[0].keys()
        for c in cols:
            if c.endswith("_u") or c.endswith("_state") or c == "uncertainty_model":
                assert d[(table, c)]["definition"], (table, c)
    assert d[("measurements_long", "ha_mm_u")]["unit"] == d[("measurements_long",
                                                             "ha_mm")]["unit"]


def test_changing_the_model_reassembles_without_remeasuring(runs, tmp_path, capsys):
    """The uncertainty is not journalled: a re-run with another SD resumes every film from
    the journal and rewrites the tables with the new u."""
    import shutil

    out = tmp_path / "again"
    shutil.copytree(runs / "u", out)
    assert _batch(SAMPLES / "SM001", out, "--uncertainty", "0.5") == EXIT_OK
    assert "(from journal: 3)" in capsys.readouterr().err
    r = next(r for r in _read(out / "measurements_long.csv") if r["level"] == "L1")
    assert float(r["ha_mm_u"]) == pytest.approx(math.sqrt(2) * 0.5, rel=1e-6)


def test_both_sources_refused(tmp_path, capsys):
    assert _batch(SAMPLES / "SM001", tmp_path / "o", "--uncertainty", "1",
                  "--uncertainty-from", str(tmp_path)) == EXIT_USAGE
    assert "give one of them" in capsys.readouterr().err


def test_batch_sr_carries_the_uncertainty_as_export_sr(tmp_path, capsys):
    """batch --sr --uncertainty writes the SR export-sr --uncertainty writes (same UID, same
    expanded uncertainties, equal to z_0.975 u of the long table); a resumed --sr run with
    another model is refused, not mixed."""
    from spine_measure.sr import read_sr

    out = tmp_path / "o"
    assert _batch(SAMPLES / "SM001", out, "--sr", "--uncertainty", "1") == EXIT_OK
    assert "carry no uncertainty" not in capsys.readouterr().err
    film = SAMPLES / "SM001" / "SM001_postop.dcm"
    assert main(["export-sr", str(film), "--out", str(tmp_path / "x"), "--pseudonym-key",
                 "test-key", "--uncertainty", "1"]) == EXIT_OK
    (exported,) = (tmp_path / "x").glob("*.sr.dcm")
    (batched,) = [p for p in (out / "sr").rglob(exported.name)]
    a, b = read_sr(exported), read_sr(batched)
    assert a.sop_instance_uid == b.sop_instance_uid
    assert b.uncertainty95 and dict(a.uncertainty95) == dict(b.uncertainty95)
    row = next(r for r in _read(out / "measurements_long.csv")
               if r["level"] == "L1" and r["time_point"] == "postop")
    from spine_measure.sr.export import UNCERTAINTY_COVERAGE  # z of 95 %, 1.95996...

    assert b.uncertainty95["L1"]["ha"] == pytest.approx(
        UNCERTAINTY_COVERAGE * float(row["ha_mm_u"]), rel=1e-12)
    # the journalled SRs carry the model: another one is refused, with the option named
    capsys.readouterr()
    assert _batch(SAMPLES / "SM001", out, "--sr", "--uncertainty", "0.5") == EXIT_USAGE
    assert "--uncertainty / --uncertainty-from (with --sr)" in capsys.readouterr().err
    # without --sr the model stays out of the journal (the tables are reassembled)
    plain = tmp_path / "plain"
    assert _batch(SAMPLES / "SM001", plain, "--uncertainty", "1") == EXIT_OK
    assert _batch(SAMPLES / "SM001", plain, "--uncertainty", "0.5") == EXIT_OK
