"""One film, one service: ``measure``, ``batch`` and ``export-sr`` measure a film the same way.

A second reader's annotations folder (reader A's sidecars next to the films, reader B's in
``--annotations``): B wins for every film it covers, in every command, and the outputs say
which file each film was measured with; B's values differ from A's by exactly the planted
change (checked against the distance computed here from the annotation files' points).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, main
from spine_measure.measurements.registry import column_name
from spine_measure.sr import read_sr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch"))
from batch_helpers import copy_sample  # noqa: E402

SHIFT_ROWS = 6.0   # reader B places L1's anterior-inferior corner 6 px lower
FILMS = ("SM001_preop", "SM001_postop", "SM001_followup")
ORPHAN_UID = "1.2.826.0.1.3680043.99.1.2.3"


def _ha_px(points: dict, spacing: tuple[float, float]) -> float:
    (r0, c0), (r1, c1) = points["As"], points["Ai"]
    return math.hypot((r1 - r0) * spacing[0], (c1 - c0) * spacing[1])


def _l1(ann_path: Path) -> dict:
    data = json.loads(ann_path.read_text())
    return next(v for v in data["landmarks"]["vertebrae"] if v["level"] == "L1")["points"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    films = copy_sample(root / "in", ["SM001", "SM002"])
    reader_b = root / "readerB"
    reader_b.mkdir()
    for stem in FILMS:
        data = json.loads((films / "SM001" / f"{stem}.sm.json").read_text())
        for v in data["landmarks"]["vertebrae"]:
            if v["level"] == "L1":
                v["points"]["Ai"][0] += SHIFT_ROWS
        data["reader"] = "B"
        (reader_b / f"{stem}.sm.json").write_text(json.dumps(data))
    # an annotation of reader B for an image that is not in the study
    orphan = json.loads((reader_b / "SM001_preop.sm.json").read_text())
    orphan["image"]["sop_instance_uid"] = ORPHAN_UID
    (reader_b / "elsewhere.sm.json").write_text(json.dumps(orphan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc_a = main(["batch", str(films), "--out", str(root / "outA"), "--no-overlays",
                     "--no-progress", "--pseudonym-key", "k"])
        rc_b = main(["batch", str(films), "--out", str(root / "outB"), "--no-overlays",
                     "--no-progress", "--pseudonym-key", "k", "--annotations", str(reader_b),
                     "--include-identifiers", "--sr"])
    assert (rc_a, rc_b) == (EXIT_OK, EXIT_OK)
    return root, films, reader_b


def _long(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "measurements_long.csv", dtype=str, keep_default_na=False)


def _uid(dcm: Path) -> str:
    return str(pydicom.dcmread(dcm, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize("stem", FILMS)
def test_second_reader_folder_wins_in_batch(study, stem):
    root, films, reader_b = study
    dcm = films / "SM001" / f"{stem}.dcm"
    uid = _uid(dcm)
    rows = {}
    for run in ("outA", "outB"):
        long = _long(root / run)
        sel = long[(long.sop_instance_uid == uid) & (long.level == "L1")]
        assert len(sel) == 1
        rows[run] = sel.iloc[0]
    # the spacing is the film's (header and magnification), the same for both readers
    sp = (float(rows["outA"]["spacing_row_mm"]), float(rows["outA"]["spacing_col_mm"]))
    assert sp == (float(rows["outB"]["spacing_row_mm"]), float(rows["outB"]["spacing_col_mm"]))
    want_a = _ha_px(_l1(films / "SM001" / f"{stem}.sm.json"), sp)
    want_b = _ha_px(_l1(reader_b / f"{stem}.sm.json"), sp)
    assert want_b - want_a > 0.5 * SHIFT_ROWS * sp[0]   # the planted change is visible
    assert float(rows["outA"]["ha_mm"]) == pytest.approx(want_a, rel=1e-9)
    assert float(rows["outB"]["ha_mm"]) == pytest.approx(want_b, rel=1e-9)
    # the long table says which annotation each film used
    assert rows["outA"]["annotation_source"] == "sidecar"
    assert rows["outB"]["annotation_source"] == "annotations_folder"
    assert rows["outB"]["annotation_file"] == f"annotations:{stem}.sm.json"
    sha = hashlib.sha256((reader_b / f"{stem}.sm.json").read_bytes()).hexdigest()
    assert rows["outB"]["annotation_sha256"] == sha


def test_manifest_names_the_annotation_files_relatively(study):
    root, films, reader_b = study
    for run, want in (("outA", "SM001/SM001_postop.sm.json"),
                      ("outB", "annotations:SM001_postop.sm.json")):
        text = (root / run / "run_manifest.json").read_text()
        inputs = {i["file"]: i for i in json.loads(text)["inputs"]}
        assert inputs["SM001/SM001_postop.dcm"]["annotation"] == want
        assert inputs["SM001/SM001_postop.dcm"]["annotation_source"] == (
            "sidecar" if run == "outA" else "annotations_folder")
        # films reader B did not annotate keep reader A's sidecar, and say so
        assert inputs["SM002/SM002_postop.dcm"]["annotation"] == "SM002/SM002_postop.sm.json"
        for i in inputs.values():
            assert not i["annotation"].startswith("/") and str(root) not in i["annotation"]


def test_unmatched_and_fallback_annotations_are_reported(study):
    root, _films, _reader_b = study
    err = pd.read_csv(root / "outB" / "errors.csv", dtype=str, keep_default_na=False)
    orphan = err[err.file == "annotations:elsewhere.sm.json"]
    assert list(orphan.status) == ["warning"]
    assert ORPHAN_UID in orphan.reason.iloc[0] and "not used" in orphan.reason.iloc[0]
    fallback = err[err.file.str.startswith("SM002/") & (err.stage == "annotation")]
    assert len(fallback) == 3 and fallback.status.eq("warning").all()
    assert fallback.reason.str.contains("no annotation for this film in the annotations "
                                        "folder; the sidecar: SM002/").all()
    # reader A's run has no annotation warnings at all
    err_a = pd.read_csv(root / "outA" / "errors.csv", dtype=str, keep_default_na=False)
    assert not (err_a.stage == "annotation").any()


def _measure_json(args, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["measure", "--json", *args])
    cap = capsys.readouterr()
    return rc, [json.loads(line) for line in cap.out.splitlines() if line.strip()], cap.err


def test_measure_batch_and_export_sr_give_the_same_numbers(study, tmp_path, capsys):
    """The same film and annotation: every value of ``measure`` equals the batch's long
    table (and its cement the wide table's), and the SR holds the same numbers."""
    root, films, reader_b = study
    dcm = films / "SM001" / "SM001_postop.dcm"
    rc, lines, err = _measure_json([str(dcm), "--annotations", str(reader_b)], capsys)
    assert rc == EXIT_OK, err
    # the other files of reader B's folder were not used: one warning line
    assert "3 annotation file(s)" in err and "elsewhere.sm.json" in err
    uid = _uid(dcm)
    long = _long(root / "outB")
    long = long[long.sop_instance_uid == uid].set_index("level")
    vert = [r for r in lines if r.get("level") and "cement_found" not in r]
    assert len(vert) == 7
    n = 0
    for r in vert:
        assert r["annotation"] == "SM001_postop.sm.json"
        assert r["annotation_source"] == "annotations_folder"
        row = long.loc[r["level"]]
        for col, v in r.items():
            if col in long.columns and isinstance(v, float):
                assert float(row[col]) == v, (r["level"], col)   # exactly: same code path
                n += 1
    assert n > 70
    # cement of the treated level: measure == batch's features_wide (post-op columns)
    cement = next(r for r in lines if r.get("level") == "L1" and "cement_found" in r)
    wide = pd.read_csv(root / "outB" / "features_wide.csv", dtype=str,
                       keep_default_na=False)
    wrow = wide[wide.sop_instance_uid_postop == uid].iloc[0]
    checked = 0
    for col, v in cement.items():
        if isinstance(v, float) and f"{col}_postop" in wide.columns:
            assert float(wrow[f"{col}_postop"]) == v, col
            checked += 1
    assert checked >= 5
    # export-sr with the same folder, and the batch's own SR: same numbers as measure
    out = tmp_path / "sr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export-sr", str(dcm), "--annotations", str(reader_b), "--out",
                     str(out)]) == EXIT_OK
    capsys.readouterr()
    exported = read_sr(out / f"{uid}.sr.dcm")
    batch_sr = read_sr(next((root / "outB" / "sr").rglob(f"{uid}.sr.dcm")))
    by_level = {r["level"]: r for r in vert}
    for sr in (exported, batch_sr):
        assert sr.vertebrae["L1"]["ha"] == by_level["L1"]["ha_mm"]
        m = 0
        for level, values in sr.vertebrae.items():
            for name, v in values.items():
                col = column_name(name, sr.units[level][name])
                if isinstance(v, float) and col in by_level[level]:
                    assert v == by_level[level][col], (level, name)
                    m += 1
        assert m > 70
        c = 0
        for col, v in sr.cement["L1"].items():
            if isinstance(v, float) and col in cement:
                assert v == pytest.approx(cement[col], rel=1e-12, abs=1e-12), col
                c += 1
        assert c >= 5
    assert exported.sop_instance_uid == batch_sr.sop_instance_uid   # same content


def test_every_command_refuses_another_images_annotation(tmp_path, capsys):
    films = copy_sample(tmp_path / "in", ["SM001"])
    # the post-op annotation copied next to the pre-op film
    shutil.copy(films / "SM001" / "SM001_postop.sm.json", films / "SM001" / "SM001_preop.sm.json")
    # a follow-up annotation claiming another image size
    p = films / "SM001" / "SM001_followup.sm.json"
    data = json.loads(p.read_text())
    data["image"]["rows"] += 10
    p.write_text(json.dumps(data))
    for film, text in (("SM001_preop", "annotates SOPInstanceUID"),
                       ("SM001_followup", "annotates a ")):
        dcm = films / "SM001" / f"{film}.dcm"
        rc, _lines, err = _measure_json([str(dcm)], capsys)
        assert rc == EXIT_NOTHING_DONE and text in err and f"{film}.sm.json" in err
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = main(["export-sr", str(dcm), "--out", str(tmp_path / "sr")])
        err = capsys.readouterr().err
        assert rc == EXIT_NOTHING_DONE and text in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["batch", str(films), "--out", str(tmp_path / "out"), "--no-overlays",
              "--no-progress", "--pseudonym-key", "k"])
    capsys.readouterr()
    err = pd.read_csv(tmp_path / "out" / "errors.csv", dtype=str, keep_default_na=False)
    for film, text in (("SM001_preop", "annotates SOPInstanceUID"),
                       ("SM001_followup", "annotates a ")):
        sel = err[(err.file == f"SM001/{film}.dcm") & (err.status == "failed")]
        assert len(sel) == 1 and text in sel.reason.iloc[0]
        assert sel.reason.iloc[0].startswith(f"SM001/{film}.sm.json: ")  # relative, no tmp path
        assert str(tmp_path) not in sel.reason.iloc[0]


def test_measure_a_sample_folder_skips_the_cement_masks(capsys):
    sample = Path(__file__).resolve().parents[2] / "sample_dicoms" / "SM002"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["measure", str(sample), "--no-cement"])
    err = capsys.readouterr().err
    assert rc == EXIT_OK, err
    assert "3 measured, 0 failed" in err
    assert "2 image(s) that accompany a film" in err


def test_measure_a_text_file_named_dcm_says_not_dicom(tmp_path, capsys):
    fake = tmp_path / "notes.dcm"
    fake.write_text("this is not an image\n" * 20)
    rc, _lines, err = _measure_json([str(fake)], capsys)
    assert rc == EXIT_NOTHING_DONE
    assert f"{fake}: not a DICOM file" in err and "annotation" not in err
