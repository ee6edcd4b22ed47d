"""``spine-measure info``: one line per file, JSON lines, exit codes."""

from __future__ import annotations

import json
import shutil

from pydicom.data import get_testdata_file

from spine_measure.cli import main


def test_info_lines_and_exit_codes(tmp_path, capsys):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm")
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    assert main(["info", str(tmp_path / "ct.dcm")]) == 0
    header, line = capsys.readouterr().out.strip().splitlines()
    assert header.split("\t") == ["path", "status", "modality", "rows x cols",
                                  "spacing (source)", "patient", "date", "view"]
    out = line.split("\t")
    assert out[1:5] == ["ok", "CT", "128x128", "0.6615x0.6615 mm (pixel_spacing)"]
    assert main(["info", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "error" in lines[1] and "bad.dcm" in lines[1]
    assert main(["info", str(tmp_path / "bad.dcm")]) == 3
    capsys.readouterr()
    assert main(["info", str(tmp_path / "missing.dcm")]) == 2


def test_info_json(tmp_path, capsys):
    shutil.copy(get_testdata_file("RG1_UNCI.dcm"), tmp_path / "rg.dcm")
    assert main(["info", "--json", "--header-only", str(tmp_path / "rg.dcm")]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["ok"] and rec["calibration_source"] == "uncalibrated"
    assert rec["calibration_notes"] == ["PixelSpacing 0\\0 is outside 0.01-5.0 mm"]
    assert rec["modality"] == "CR" and rec["rows"] == 1955


def test_usage_error_is_exit_2(capsys):
    assert main(["info", "--no-such-option"]) == 2


def test_uncalibrated_says_why(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    shutil.copy(get_testdata_file("RG1_UNCI.dcm"), tmp_path / "rg.dcm")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "film.png")
    assert main(["info", "--header-only", str(tmp_path / "rg.dcm"),
                 str(tmp_path / "film.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    spacing = [ln.split("\t")[4] for ln in lines]
    assert spacing == ["px (uncalibrated: PixelSpacing 0\\0 is outside 0.01-5.0 mm)",
                       "px (uncalibrated: a PNG file has no pixel spacing; draw a calibration "
                       "line in the annotation)"]
