"""``measure --uncertainty SD_MM`` / ``--uncertainty-from DIR`` (issue 16 items 11-12): the
command's real output, checked against hand formulas and against the reliability run that
feeds it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from spine_measure.cli import EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_dicoms"
POSTOP = SAMPLES / "SM001" / "SM001_postop.dcm"
AP = SAMPLES / "SM005" / "SM005_preop_ap.dcm"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample_dicoms not present")


def _rows(capsys, *args: str) -> list[dict]:
    assert main(["measure", *args, "--json", "--no-cement"]) == EXIT_OK
    return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]


def test_json_carries_u_of_every_measurement(capsys):
    rows = _rows(capsys, str(POSTOP), "--uncertainty", "1.0")
    l1 = next(r for r in rows if r["level"] == "L1")
    # a height |As - Ai| with 1 mm per coordinate: sqrt(2) mm, whatever the spacing
    assert l1["ha_mm_u"] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert l1["hp_mm_u"] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert 2.0 < l1["wedge_angle_deg_u"] < 6.0
    assert l1["compression_ge_38_5_state"] in ("true", "false", "uncertain")
    assert "1 mm" in l1["uncertainty_model"]
    top = next(r for r in rows if r["level"] == "T10")
    assert top["regional_kyphotic_angle_deg_u"] is None     # no value, no uncertainty
    # without the option: the same values, no uncertainty fields
    plain = _rows(capsys, str(POSTOP))
    p1 = next(r for r in plain if r["level"] == "L1")
    assert p1["ha_mm"] == l1["ha_mm"] and "ha_mm_u" not in p1


def test_ap_film_flag_gets_its_third_state(capsys):
    rows = _rows(capsys, str(AP), "--uncertainty", "1.0")
    cobb = next(r for r in rows if "coronal_cobb_angle_deg" in r)
    assert cobb["coronal_cobb_angle_deg_u"] > 1.0
    flag = next(r for r in rows if "degenerative_scoliosis" in r)
    assert flag["degenerative_scoliosis_state"] == "true"       # 21.7 deg, far above 10
    assert "degenerative_scoliosis_u" not in flag
    # 11 deg landmark SD makes 21.7 deg within 1.96 u of 10 deg: uncertain
    rows = _rows(capsys, str(AP), "--uncertainty", "11")
    flag = next(r for r in rows if "degenerative_scoliosis" in r)
    assert flag["degenerative_scoliosis_state"] == "uncertain"


def test_table_shows_plus_minus(capsys):
    assert main(["measure", str(POSTOP), "--no-cement", "--uncertainty", "0.5"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "± 0.71" in out                       # heights: sqrt(2) * 0.5
    assert "standard uncertainty from landmark SD 0.5 mm" in out


@pytest.mark.parametrize("args, needle", [
    (["--uncertainty", "1", "--uncertainty-from", "."], "give one of them"),
    (["--uncertainty", "-1"], "not a landmark SD"),
    (["--uncertainty", "nan"], "not a landmark SD"),
    (["--uncertainty-from", "no/such/dir"], "not a folder"),
])
def test_bad_options_are_one_line(capsys, args, needle):
    assert main(["measure", str(POSTOP), *args]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_reliability_output_feeds_measure(tmp_path, capsys):
    """reliability -> landmark_error.json -> measure --uncertainty-from: the height u equals
    sqrt(sd_across(As)^2 + sd_across(Ai)^2), read from the run's own summary."""
    from spine_measure.reliability import simulate_readers

    sim = simulate_readers(SAMPLES, tmp_path / "sim", sd_px=1.5)
    rel = tmp_path / "rel"
    main(["reliability", str(sim.dir_a), str(sim.dir_b), "--images", str(SAMPLES), "--out",
          str(rel), "--no-plots"])
    capsys.readouterr()
    summary = json.loads((rel / "landmark_error.json").read_text())
    per = summary["per_point"]
    assert (main(["measure", str(tmp_path / "missing_is_fine"), "--uncertainty-from",
                  str(tmp_path)]) == EXIT_USAGE)
    capsys.readouterr()
    rows = _rows(capsys, str(POSTOP), "--uncertainty-from", str(rel))
    l1 = next(r for r in rows if r["level"] == "L1")
    want = math.hypot(per["As"]["sd_across"], per["Ai"]["sd_across"])
    # (the height line is nearly, not exactly, perpendicular to the endplates)
    assert l1["ha_mm_u"] == pytest.approx(want, rel=2e-3)
    # about sqrt(2) * 1.5 px at this film's 0.25 mm spacing
    assert l1["ha_mm_u"] == pytest.approx(math.sqrt(2) * 1.5 * 0.25, rel=0.15)
    assert str(rel) in l1["uncertainty_model"]
