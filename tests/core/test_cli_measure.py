"""``spine-measure measure`` on a small DICOM with its annotation file."""

from __future__ import annotations

import json

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from spine_measure.cli import main  # noqa: E402
from spine_measure.io.annotation import (  # noqa: E402
    Annotation,
    CalibrationLine,
    ImageRef,
    save_annotation,
    sidecar_path,
)

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def _write_dicom(path, rows=120, cols=60, spacing="0.2\\0.2"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX
    uid = generate_uid(entropy_srcs=[str(path)])
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = DX, uid, "DX"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series"])
    ds.PatientID, ds.StudyDate = "SMCLI", "20240311"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = spacing
    ds.PixelData = (np.arange(rows * cols, dtype=np.uint16) % 4096).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return uid


def _annotate(img, uid, spine, calibration=None, where=None):
    ann = Annotation(image=ImageRef(rows=120, cols=60, sop_instance_uid=uid),
                     landmarks=spine, calibration=calibration)
    target = (where / sidecar_path(img).name) if where else sidecar_path(img)
    save_annotation(ann, target)


def _lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_measure_json_lines(tmp_path, wedge_spine, capsys):
    img = tmp_path / "film.dcm"
    uid = _write_dicom(img)
    _annotate(img, uid, wedge_spine)
    code = main(["measure", str(img), "--json", "--cobb", "T12:superior,L2:inferior"])
    out = _lines(capsys.readouterr().out)
    assert code == 0
    rows = [r for r in out if r["level"]]
    assert [r["level"] for r in rows] == ["T12", "L1", "L2"]
    l1 = rows[1]
    # ImagerPixelSpacing 0.2 mm: L1 ha = 15 px = 3 mm; ratios unchanged by the spacing
    assert l1["ha_mm"] == pytest.approx(3.0)
    assert l1["calibration_source"] == "imager_pixel_spacing"
    assert l1["cr_anterior_pct"] == pytest.approx(15 / 24.5 * 100)
    assert l1["sop_instance_uid"] == uid and l1["fractured"] is True
    cobb = [r for r in out if r["level"] is None]
    assert cobb[0]["cobb_angle_deg"] == pytest.approx(np.degrees(np.arctan(0.1)))
    assert cobb[0]["endplates"] == "T12:superior,L2:inferior"


def test_reader_calibration_line_comes_first(tmp_path, wedge_spine, capsys):
    img = tmp_path / "film.dcm"
    uid = _write_dicom(img)
    ann_dir = tmp_path / "ann"
    ann_dir.mkdir()
    # a 50 mm ruler over 100 px: 0.5 mm per px -> L1 ha = 15 px = 7.5 mm
    _annotate(img, uid, wedge_spine, CalibrationLine((10.0, 5.0), (10.0, 105.0), 50.0),
              where=ann_dir)
    code = main(["measure", str(img), "--annotations", str(ann_dir), "--json"])
    rows = [r for r in _lines(capsys.readouterr().out) if r.get("level")]
    assert code == 0
    assert rows[1]["ha_mm"] == pytest.approx(7.5) and rows[1]["calibration_source"] == "reader"


def test_missing_annotation_and_table_output(tmp_path, wedge_spine, capsys):
    good, bad = tmp_path / "a.dcm", tmp_path / "b.dcm"
    _annotate(good, _write_dicom(good), wedge_spine)
    _write_dicom(bad)
    code = main(["measure", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert "b.dcm: no annotation file (looked next to the image)" in captured.err
    assert "ha_mm" in captured.out and "cr_anterior_pct" in captured.out
    assert "1 measured, 1 failed" in captured.err
    assert main(["measure", str(bad)]) == 3
    assert main(["measure", str(good), "--cobb", "T10"]) == 2
