"""``batch --cobb``: the study's sagittal Cobb angles fill ``cobb_angle_deg`` of the long
table, with the endplates used, checked against an angle computed here from the truth points
(numpy, independent of ``spine_measure.geometry``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import SAMPLE, copy_sample
from typer.testing import CliRunner

from spine_measure.cli import app


def _naive_cobb(truth: dict, upper: tuple[str, str], lower: tuple[str, str]) -> float:
    """Angle (deg) between two endplate lines in mm; positive when they converge anteriorly
    (the anterior ends closer together than the posterior ends)."""
    cal = truth["calibration"]
    s = np.array([cal["row_mm"], cal["col_mm"]])
    pts = {v["level"]: {k: np.array(p) * s for k, p in v["points"].items()}
           for v in truth["vertebrae"]}

    def ends(level: str, which: str) -> tuple[np.ndarray, np.ndarray]:
        p = pts[level]
        return (p["Ps"], p["As"]) if which == "superior" else (p["Pi"], p["Ai"])

    (p1, a1), (p2, a2) = ends(*upper), ends(*lower)
    u, w = (a1 - p1) / np.linalg.norm(a1 - p1), (a2 - p2) / np.linalg.norm(a2 - p2)
    angle = math.degrees(math.acos(float(np.clip(u @ w, -1, 1))))
    converging = np.linalg.norm(a2 - a1) < np.linalg.norm(p2 - p1)
    return angle if converging else -angle


def _long_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "measurements_long.csv", newline="") as fh:
        return list(csv.DictReader(fh))


_SRC: dict[str, Path] = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    src = copy_sample(tmp_path_factory.mktemp("src"), ["SM001", "SM002"])
    out = tmp_path_factory.mktemp("out") / "run"
    res = CliRunner().invoke(app, ["batch", str(src), "--out", str(out), "--no-progress",
                                   "--no-overlays", "--pseudonym-key", "k",
                                   "--cobb", "T10s-L2i", "--cobb", "treated+1"])
    assert res.exit_code == 0, res.output
    _SRC["src"] = src  # the input folder, for the resume test
    return out


def test_cobb_angles_fill_the_long_table_and_match_a_naive_computation(run):
    rows = [r for r in _long_rows(run) if r["level"] == "" and r["view"] == "lateral"]
    assert len(rows) == 2 * 6  # two Cobb angles on each of six lateral films
    truth_by_uid = {}
    for t in SAMPLE.glob("SM00[12]/*.truth.json"):
        d = json.loads(t.read_text())
        truth_by_uid[d["sop_instance_uid"]] = d
    for r in rows:
        truth = truth_by_uid[r["sop_instance_uid"]]
        upper = tuple(r["cobb_upper_endplate"].split(":"))
        lower = tuple(r["cobb_lower_endplate"].split(":"))
        if r["cobb_spec"] == "treated+1":
            treated = [v["level"] for v in truth["vertebrae"] if v["treated"]] or \
                [v["level"] for v in truth["vertebrae"] if v["fractured"]]
            levels = [v["level"] for v in truth["vertebrae"]]
            assert upper == (levels[levels.index(treated[0]) - 1], "superior")
            assert lower == (levels[levels.index(treated[-1]) + 1], "inferior")
        else:
            assert r["cobb_spec"] == "T10:superior,L2:inferior"
            assert (upper, lower) == (("T10", "superior"), ("L2", "inferior"))
        want = _naive_cobb(truth, upper, lower)
        assert float(r["cobb_angle_deg"]) == pytest.approx(want, abs=1e-9)
    # SM001 pre-op: the fractured L1 (not yet treated) decides treated+1: T12 sup - L2 inf
    pre = [r for r in rows if r["time_point"] == "preop" and r["cobb_spec"] == "treated+1"]
    assert {(r["cobb_upper_endplate"], r["cobb_lower_endplate"]) for r in pre} == {
        ("T12:superior", "L2:inferior"), ("T11:superior", "L1:inferior")}


def test_the_data_dictionary_and_manifest_know_the_cobb_columns(run):
    with open(run / "data_dictionary.csv", newline="") as fh:
        cols = {r["column"]: r for r in csv.DictReader(fh) if r["table"] ==
                "measurements_long"}
    for c in ("cobb_angle_deg", "cobb_spec", "cobb_upper_endplate", "cobb_lower_endplate",
              "coronal_cobb_upper_endplate", "genant_grade_reader", "genant_shape_reader"):
        assert cols[c]["definition"] and "carried through" not in cols[c]["definition"], c
    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["options"]["cobb"] == ["T10s-L2i", "treated+1"]


def test_a_bad_cobb_option_is_one_line_and_exit_2(tmp_path):
    res = CliRunner().invoke(app, ["batch", str(SAMPLE), "--out", str(tmp_path / "o"),
                                   "--cobb", "T10s-X2i"])
    assert res.exit_code == 2
    assert "--cobb" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_changing_the_cobb_option_is_refused_on_resume(run):
    args = ["batch", str(_SRC["src"]), "--out", str(run), "--no-progress", "--no-overlays",
            "--pseudonym-key", "k"]
    same = CliRunner().invoke(app, [*args, "--cobb", "T10s-L2i", "--cobb", "treated+1"])
    assert same.exit_code == 0, same.output   # resumes: every film from the journal
    res = CliRunner().invoke(app, [*args, "--cobb", "treated"])
    assert res.exit_code == 2 and "other options (cobb" in res.output


def test_output_and_documented_dictionaries_share_one_layout(run):
    """Same header; every row of the output's dictionary is the documented row of that
    column (the output holds a subset: the cement columns its films produced)."""
    docs = SAMPLE.parent / "docs" / "data_dictionary.csv"
    with open(docs, newline="") as fh:
        doc_rows = list(csv.DictReader(fh))
    with open(run / "data_dictionary.csv", newline="") as fh:
        out_rows = list(csv.DictReader(fh))
    assert list(doc_rows[0]) == list(out_rows[0])
    documented = {(r["table"], r["column"]): r for r in doc_rows}
    for r in out_rows:
        if r["family"] != "clinical":
            assert documented[(r["table"], r["column"])] == r, r["column"]
    units = {r["unit"] for r in doc_rows}
    assert "percent" not in units
    shape = {r["column"]: r for r in doc_rows if r["table"] == "features_wide"
             and r["time_point"] == "postop" and r["column"].startswith(
                 ("cement_solidity", "cement_roughness", "cement_components",
                  "cement_hole_fraction", "cement_texture_cv"))}
    assert len(shape) == 5
    assert len({r["definition"] for r in shape.values()}) == 5   # each its own definition
    assert all(r["unit"] for r in shape.values())
