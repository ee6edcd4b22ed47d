"""Header-only folder scan: by content, grouped, never decoding, carrying on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from spine_measure.io.calibration import CalibrationSource
from spine_measure.io.scan import read_header, scan_folder


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "a" / "b").mkdir(parents=True)
    # DICOM without extension, with a misleading extension, and a raw dataset without meta
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "a" / "IM0001")
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "a" / "b" / "scan.txt")
    shutil.copy(get_testdata_file("no_meta_group_length.dcm"), tmp_path / "raw")
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "plan.dcm")
    (tmp_path / "notes.dcm").write_text("not dicom at all")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    (tmp_path / ".hidden.dcm").write_bytes(b"")
    return tmp_path


def test_finds_dicom_by_content_and_groups(folder):
    result = scan_folder(folder)
    names = sorted(Path(h.path).name for h in result.images)
    assert names == ["IM0001", "scan.txt"]
    assert result.n_files == 6  # hidden file skipped
    tree = result.by_patient()
    assert set(tree) == {"1CT1", "4MR1"}
    (study,) = tree["1CT1"]
    (series,) = tree["1CT1"][study]
    assert [Path(h.path).name for h in tree["1CT1"][study][series]] == ["IM0001"]


def test_unreadable_files_are_reported_and_the_scan_carries_on(folder):
    result = scan_folder(folder)
    issues = {Path(i.path).name: i for i in result.issues}
    assert issues["broken.dcm"].stage == "read"
    assert issues["plan.dcm"].stage == "skip" and "not an image" in issues["plan.dcm"].reason
    assert "notes.dcm" not in issues  # plain non-DICOM files are simply not DICOM


def test_never_decodes_pixels(folder, monkeypatch):
    def boom(*a, **k):  # pragma: no cover - must not be called
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(boom))
    assert len(scan_folder(folder).images) == 2


def test_header_carries_calibration():
    h = read_header(get_testdata_file("CT_small.dcm"))
    assert h.calibration.source is CalibrationSource.PIXEL_SPACING
    assert h.metadata.rows == 128 and h.is_image


def test_duplicate_uids(folder):
    shutil.copy(folder / "a" / "IM0001", folder / "copy")
    dupes = scan_folder(folder).duplicate_sop_instance_uids()
    assert len(dupes) == 1 and len(next(iter(dupes.values()))) == 2


def test_plain_images_listed_on_request(folder):
    from PIL import Image

    Image.new("L", (4, 4)).save(folder / "film.png")
    assert scan_folder(folder).plain_images == []
    assert [Path(p).name for p in scan_folder(folder, include_plain_images=True).plain_images] \
        == ["film.png"]
