"""`spine-measure measure` reports the cement of treated vertebrae (docs/cement.md)."""

from __future__ import annotations

import json
from pathlib import Path

from spine_measure.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"


def test_measure_json_has_cement_of_the_treated_level(capsys):
    film = SAMPLES / "SM002" / "SM002_postop.dcm"
    truth = json.loads(film.with_suffix(".truth.json").read_text())["cement"]
    assert main(["measure", "--json", str(film)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cement = [r for r in rows if "npec" in r]
    assert len(cement) == 1 and cement[0]["level"] == truth["level"]
    assert cement[0]["npec"] == truth["npec"]
    assert cement[0]["cement_distribution"] == truth["distribution"]
    assert cement[0]["leak_locations"] == ";".join(lk["location"] for lk in truth["leaks"])


def test_no_cement_option_skips_decoding(capsys, monkeypatch):
    import spine_measure.io.radiograph as radiograph

    def boom(*a, **k):  # pragma: no cover - must not be called
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(radiograph, "load_radiograph", boom)
    film = SAMPLES / "SM002" / "SM002_postop.dcm"
    assert main(["measure", "--json", "--no-cement", str(film)]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if '"npec"' in line]
