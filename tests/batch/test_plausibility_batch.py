"""Implausible landmarks in a batch: a ``plausibility`` warning row in errors.csv naming the
film, the refused vertebra's values empty with the reason, no 178 deg Cobb angle, and every
other film's rows exactly those of a clean run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from batch_helpers import copy_sample
from typer.testing import CliRunner

from spine_measure.cli import app


def _run(src: Path, out: Path) -> None:
    res = CliRunner().invoke(app, ["batch", str(src), "--out", str(out), "--no-progress",
                                   "--no-overlays", "--pseudonym-key", "k"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _edit(sidecar: Path, level: str, fn) -> None:
    d = json.loads(sidecar.read_text())
    for v in d["landmarks"]["vertebrae"]:
        if v["level"] == level:
            v["points"] = fn(v["points"])
    sidecar.write_text(json.dumps(d))


def test_implausible_films_are_reported_and_refused(tmp_path):
    clean = copy_sample(tmp_path / "clean", ["SM001", "SM005"])
    _run(clean, tmp_path / "out_clean")
    bad = copy_sample(tmp_path / "bad", ["SM001", "SM005"])
    # SM005's AP film: one vertebra with negated columns (what made Cobb 178 deg)
    _edit(bad / "SM005" / "SM005_preop_ap.sm.json", "L2",
          lambda p: {k: [r, -c] for k, (r, c) in p.items()})
    # SM001 pre-op: L2 placed upside down
    _edit(bad / "SM001" / "SM001_preop.sm.json", "L2",
          lambda p: {"As": p["Ai"], "Ai": p["As"], "Ms": p["Mi"], "Mi": p["Ms"],
                     "Ps": p["Pi"], "Pi": p["Ps"]})
    _run(bad, tmp_path / "out_bad")
    errors = [r for r in _rows(tmp_path / "out_bad" / "errors.csv")
              if r["stage"] == "plausibility"]
    files = {r["file"] for r in errors}
    assert files == {"SM005/SM005_preop_ap.dcm", "SM001/SM001_preop.dcm"}
    assert all(r["status"] == "warning" for r in errors)
    assert any("L2: placed upside down" in r["reason"] for r in errors)
    assert any("outside" in r["reason"] for r in errors)
    long_bad = _rows(tmp_path / "out_bad" / "measurements_long.csv")
    ap = [r for r in long_bad if r["view"] == "ap" and r["level"] == ""]
    assert ap and ap[0]["coronal_cobb_angle_deg"] == ""
    assert ap[0]["degenerative_scoliosis"] == ""
    assert "implausible landmarks" in ap[0]["reasons"]
    # every other film's rows are those of the clean run
    long_clean = _rows(tmp_path / "out_clean" / "measurements_long.csv")
    touched = {r["sop_instance_uid"] for r in long_bad if "implausible" in r["reasons"]}
    assert len(touched) == 2
    assert [r for r in long_bad if r["sop_instance_uid"] not in touched] == \
        [r for r in long_clean if r["sop_instance_uid"] not in touched]
    refused = [r for r in long_bad if r["sop_instance_uid"] in touched and r["level"] == "L2"
               and r["view"] == "lateral"]
    assert refused and refused[0]["ha_mm"] == "" and "implausible" in refused[0]["reasons"]
