"""Bad input never stops the run and is never silent: each problem is a row of errors.csv
(or a flagged value) and the other films are measured."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pydicom
import pytest
from batch_helpers import copy_sample

from spine_measure.batch import BatchOptions, pseudonym, run_batch


def _errors(out):
    return pd.read_csv(out / "errors.csv", dtype=str, keep_default_na=False)


def _has(err, file_part, stage, status, text):
    sel = err[err.file.str.contains(file_part, regex=False) & (err.stage == stage)
              & (err.status == status) & err.reason.str.contains(text, regex=False)]
    return len(sel) > 0


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    src = copy_sample(tmp_path_factory.mktemp("in"), ["SM001", "SM002", "SM006"])
    ann_dir = tmp_path_factory.mktemp("ann")
    # 1. unannotated film
    (src / "SM002" / "SM002_preop.sm.json").unlink()
    # 2. unreadable file (DICOM preamble, garbage after it)
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10" * 7)
    # 3. duplicate SOPInstanceUIDs: an identical copy, and a changed file with the same UID
    shutil.copy(src / "SM001" / "SM001_followup.dcm", src / "SM001" / "copy_followup.dcm")
    ds = pydicom.dcmread(src / "SM006" / "SM006_followup.dcm")
    ds.SeriesDescription = "edited"
    ds.save_as(src / "SM006" / "SM006_followup_edited.dcm")
    # 4. no date at all on one film, and AcquisitionDate != StudyDate on another
    ds = pydicom.dcmread(src / "SM002" / "SM002_followup.dcm")
    for kw in ("StudyDate", "AcquisitionDate", "ContentDate", "SeriesDate"):
        if kw in ds:
            delattr(ds, kw)
    ds.save_as(src / "SM002" / "SM002_followup.dcm")
    ds = pydicom.dcmread(src / "SM001" / "SM001_preop.dcm")
    ds.StudyDate = "20230301"
    ds.AcquisitionDate = "20230314"
    ds.save_as(src / "SM001" / "SM001_preop.dcm")
    # 5. missing neighbour: the post-op annotation of SM001 keeps only the treated L1
    p = src / "SM001" / "SM001_postop.sm.json"
    a = json.loads(p.read_text())
    a["landmarks"]["vertebrae"] = [v for v in a["landmarks"]["vertebrae"] if v["level"] == "L1"]
    p.write_text(json.dumps(a))
    # 6. an annotation whose UID matches no image (annotations folder)
    orphan = json.loads((src / "SM002" / "SM002_postop.sm.json").read_text())
    orphan["image"]["sop_instance_uid"] = "1.2.3.4.5.6.7.8.9"
    (ann_dir / "orphan.sm.json").write_text(json.dumps(orphan))
    # 7. a sidecar that annotates another image
    shutil.copy(src / "SM006" / "SM006_postop.sm.json", src / "SM006" / "SM006_preop.sm.json")
    # 8. an annotation file that is not valid
    (ann_dir / "broken.sm.json").write_text("{not json")
    out = tmp_path_factory.mktemp("out")
    summary = run_batch(BatchOptions(str(src), str(out), annotations_dir=str(ann_dir),
                                     overlays=False, pseudonym_key="test-key"))
    return src, out, summary


def test_run_completes_and_counts(bad_run):
    _src, out, summary = bad_run
    assert summary.n_failed >= 3 and summary.n_skipped >= 2
    assert summary.exit_code == 1
    wide = pd.read_csv(out / "features_wide.csv", dtype=str, keep_default_na=False)
    assert len(wide) == 3  # every patient still has its row


def test_unannotated_film_is_skipped(bad_run):
    assert _has(_errors(bad_run[1]), "SM002/SM002_preop.dcm", "annotation", "skipped",
                "no annotation")


def test_unreadable_file_fails(bad_run):
    assert _has(_errors(bad_run[1]), "broken.dcm", "read", "failed", "")


def test_duplicate_uids(bad_run):
    err = _errors(bad_run[1])
    assert _has(err, "SM001/copy_followup.dcm", "scan", "skipped", "identical copy of "
                "SM001/SM001_followup.dcm")
    for f in ("SM006/SM006_followup.dcm", "SM006/SM006_followup_edited.dcm"):
        assert _has(err, f, "scan", "failed", "duplicate SOPInstanceUID")


def test_missing_and_conflicting_dates(bad_run):
    _src, out, _s = bad_run
    err = _errors(out)
    assert _has(err, "SM002/SM002_followup.dcm", "timepoint", "skipped", "no date")
    assert _has(err, "SM001/SM001_preop.dcm", "timepoint", "warning",
                "AcquisitionDate 2023-03-14 differs from StudyDate 2023-03-01")
    wide = pd.read_csv(out / "features_wide.csv", dtype=str, keep_default_na=False)
    row = wide[wide.patient_pseudo_id == pseudonym("SM002", b"test-key")].iloc[0]
    assert row["sop_instance_uid_followup"] == "" and "no followup film" in row["reasons"]
    assert row["height_loss_pct"] == ""


def test_missing_neighbour_is_flagged(bad_run):
    _src, out, _s = bad_run
    assert _has(_errors(out), "SM001/SM001_postop.dcm", "measure", "warning",
                "L1 cr_anterior: L1: no normal neighbour")
    wide = pd.read_csv(out / "features_wide.csv", dtype=str, keep_default_na=False)
    row = wide[wide.patient_pseudo_id == pseudonym("SM001", b"test-key")].iloc[0]
    assert row["cr_anterior_pct_postop"] == "" and row["ha_mm_postop"] != ""
    assert "postop cr_anterior" in row["reasons"] and row["avhr_recovery_pct"] == ""


def test_orphan_and_bad_annotations(bad_run):
    err = _errors(bad_run[1])
    assert _has(err, "orphan.sm.json", "annotation", "warning",
                "annotates SOPInstanceUID 1.2.3.4.5.6.7.8.9, which no scanned image has")
    assert _has(err, "broken.sm.json", "annotation", "failed", "")
    assert _has(err, "SM006/SM006_preop.dcm", "annotation", "failed", "annotates "
                "SOPInstanceUID")
