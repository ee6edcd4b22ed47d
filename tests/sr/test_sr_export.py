"""SR export of the sample films: validity (dciodvfy, dsrdump), round trip, stable UIDs."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from spine_measure.io.annotation import load_annotation, sidecar_path
from spine_measure.measurements import measure_film
from spine_measure.service import measure_film_file
from spine_measure.sr import read_sr, write_film_sr
from spine_measure.sr.export import from_scoord, to_scoord

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_dicoms"
FILMS = sorted(SAMPLE_DIR.rglob("*.dcm"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("SPINE_MEASURE_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required (SPINE_MEASURE_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} not installed (Debian dicom3tools / dcmtk)")
    return path


def _f32(x: float) -> float:
    return float(np.float32(x))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every sample film exported once: stem -> (SrWritten, FilmMeasurements, cement rows)."""
    out = tmp_path_factory.mktemp("sr")
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SM007 follow-up: PixelSpacing 0\0 warning
        for f in FILMS:
            w = write_film_sr(f, out)
            r = measure_film_file(f)
            res[f.stem] = (w, r.measurements, r.cement)
    return res


def test_sample_set_is_what_the_tests_assume():
    assert len(FILMS) == 22
    assert any(f.stem.endswith("_ap") for f in FILMS)


def test_every_sr_passes_dciodvfy(exported):
    tool = _tool("dciodvfy")
    for stem, (w, _, _) in exported.items():
        out = subprocess.run([tool, str(w.path)], capture_output=True, text=True, timeout=60)
        text = out.stdout + out.stderr
        errors = [ln for ln in text.splitlines() if ln.startswith("Error")]
        assert errors == [], f"{stem}: {errors}"
        assert "Comprehensive3DSR" in text  # dciodvfy recognised the IOD


def test_dsrdump_renders_concepts_and_values(exported):
    tool = _tool("dsrdump")
    w, fm, _ = exported["SM001_preop"]
    out = subprocess.run([tool, str(w.path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in ("Imaging Measurement Report", "Measurement Group",
                   "(66794005,SCT,\"L1 vertebra\")",
                   "Anterior vertebral body height", "Vertebral wedge angle",
                   "(mm,UCUM,\"mm\")", "(deg,UCUM,\"Degree\")", "Image Region",
                   "(POLYLINE,", "selected from IMAGE"):
        assert needle in text, needle
    ha = fm.get("L1", "ha").value
    # the 16-character decimal string of L1's anterior height is printed
    assert f'"{pydicom.valuerep.format_number_as_ds(ha)}"' in text


def test_finding_sites_are_the_snomed_vertebra_codes(exported):
    # hand-written SCTIDs (SNOMED CT; DICOM CID 7603 for C/T/L, the S1 code cited in the docs)
    expected = {"L1": "66794005", "T12": "23215003", "L2": "14293000", "T11": "12989004"}
    w, _, _ = exported["SM002_postop"]
    ds = pydicom.dcmread(w.path)
    seen = {}
    for g in ds.ContentSequence[-1].ContentSequence:
        items = g.ContentSequence
        label = next(i.TextValue for i in items
                     if i.ConceptNameCodeSequence[0].CodeValue == "112039")
        sites = [i.ConceptCodeSequence[0] for i in items
                 if i.ConceptNameCodeSequence[0].CodeValue == "363698007"]
        if sites:
            seen[label] = (sites[0].CodeValue, sites[0].CodingSchemeDesignator)
    for level, sctid in expected.items():
        assert seen[level] == (sctid, "SCT"), level
    assert seen["T12 cement"] == ("23215003", "SCT")
    assert seen["film"] == ("421060004", "SCT")


def test_scoord_is_column_row_of_the_landmarks(exported):
    w, fm, _ = exported["SM003_preop"]
    ds = pydicom.dcmread(w.path)
    v = fm.landmarks["L2"]
    for g in ds.ContentSequence[-1].ContentSequence:
        if any(i.get("TextValue") == "L2" for i in g.ContentSequence):
            region = next(i for i in g.ContentSequence if i.ValueType == "SCOORD")
            break
    gd = list(region.GraphicData)
    r, c = v.points["As"]  # the first vertex is As, as (x=col, y=row), float32
    assert gd[0] == _f32(c) and gd[1] == _f32(r)
    assert gd[:2] == gd[-2:]  # closed polyline
    assert region.GraphicType == "POLYLINE"
    ref = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == fm.metadata["sop_instance_uid"]


def test_round_trip_of_every_film(exported):
    for stem, (w, fm, cement) in exported.items():
        sr = read_sr(w.path)
        ann = load_annotation(sidecar_path(fm.metadata["image"]))
        # landmarks: exactly the float32 rounding of the originals (SCOORD is FL)
        rounded = fm.landmarks.transformed(lambda a: a.astype(np.float32).astype(float))
        assert sr.landmarks.view == fm.view
        assert sr.landmarks.levels() == fm.landmarks.levels(), stem
        for v in fm.landmarks:
            back = sr.landmarks[v.level]
            assert dict(back.points) == dict(rounded[v.level].points), (stem, v.level)
            assert (back.fractured, back.treated, back.excluded) == \
                (v.fractured, v.treated, v.excluded)
            for name, (r, c) in v.points.items():  # float32 precision: |d| <= 2^-24 |x|
                br, bc = back.points[name]
                assert abs(br - r) <= 2.0 ** -24 * abs(r) and abs(bc - c) <= 2.0 ** -24 * abs(c)
        # calibration: spacing and source exact
        assert sr.spacing == fm.spacing, stem
        assert sr.calibration_source == fm.calibration_source, stem
        if ann.calibration is None:
            assert sr.calibration_line is None
        else:
            assert sr.calibration_line.length_mm == ann.calibration.length_mm
            assert sr.calibration_line.p1 == tuple(_f32(x) for x in ann.calibration.p1)
        # every present value exact (FloatingPointValue); missing values omitted
        for level, per in fm.vertebrae.items():
            present = {n: r for n, r in per.items() if r.ok}
            assert set(sr.vertebrae.get(level, {})) == set(present), (stem, level)
            for n, r in present.items():
                assert sr.vertebrae[level][n] == r.value, (stem, level, n)
                assert sr.units[level][n] == r.unit
        film_ok = [r for r in fm.film if r.ok]
        assert [(f.name, f.value) for f in sr.film] == [(r.name, r.value) for r in film_ok]
        for f, r in zip(sr.film, film_ok, strict=True):
            if isinstance(r.value, bool):  # a coded flag: its end vertebrae are not stored
                assert (f.upper, f.lower) == (None, None)
                continue
            assert (f.upper, f.lower) == (r.detail.get("upper"), r.detail.get("lower"))
        # re-measuring the read-back landmarks with the stored spacing gives exactly what
        # the float32-rounded originals give, and the originals to 1e-4
        again = measure_film(sr.landmarks, spacing=sr.spacing,
                             calibration_source=sr.calibration_source)
        ref = measure_film(rounded, spacing=fm.spacing, calibration_source=fm.calibration_source)
        for level, per in again.vertebrae.items():
            for n, r in per.items():
                a, b, o = r.value, ref.get(level, n).value, fm.get(level, n).value
                if isinstance(a, float) and math.isnan(a):
                    assert math.isnan(b) and math.isnan(o)
                    continue
                assert a == b, (stem, level, n)
                if isinstance(a, float):
                    assert abs(a - o) <= 1e-4 * max(1.0, abs(o)), (stem, level, n, a, o)
                else:
                    assert a == o, (stem, level, n)
        # cement: every coded column equals the measured row
        for level, row in cement.items():
            back = sr.cement[level]
            for col, value in row.items():
                if col in ("cement_status", "cement_reasons"):
                    continue
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    assert col not in back or back[col] is None, (stem, level, col)
                    continue
                assert back[col] == value, (stem, level, col, back.get(col), value)


def test_numeric_value_decimal_string_matches_float(exported):
    w, fm, _ = exported["SM004_postop"]
    ds = pydicom.dcmread(w.path)
    n = 0
    for g in ds.ContentSequence[-1].ContentSequence:
        for i in g.ContentSequence:
            if i.ValueType != "NUM":
                continue
            mv = i.MeasuredValueSequence[0]
            ds_text = str(mv.NumericValue.original_string if hasattr(
                mv.NumericValue, "original_string") else mv.NumericValue)
            assert len(ds_text) <= 16
            if "FloatingPointValue" in mv:
                fp = float(mv.FloatingPointValue)
                # 16 characters keep >= 12 significant digits for these magnitudes
                assert abs(float(ds_text) - fp) <= 1e-11 * max(1.0, abs(fp)), (ds_text, fp)
                n += 1
    assert n > 50


def test_reader_calibration_film_uses_the_line(exported):
    w, fm, _ = exported["SM007_followup"]
    sr = read_sr(w.path)
    assert sr.calibration_source == "reader"
    # 80 mm over 298.6668... px: the spacing the measurements used
    assert sr.spacing == fm.spacing
    assert sr.spacing[0] == pytest.approx(80.0 / (318.6668259556405 - 20.0), rel=1e-12)
    assert sr.calibration_line.p0 == (20.0, 20.0)
    assert sr.calibration_line.length_mm == 80.0
    # the cement is measured with the same (reader line) spacing, so its lengths are in mm
    assert "cement_gap_inferior_mm" in sr.cement["L1"]
    assert "cement_gap_inferior_px" not in sr.cement["L1"]


def test_to_annotation_rebuilds_a_measurable_annotation(exported):
    w, fm, _ = exported["SM007_followup"]
    ann = read_sr(w.path).to_annotation()
    orig = load_annotation(sidecar_path(fm.metadata["image"]))
    assert ann.image.sop_instance_uid == orig.image.sop_instance_uid
    assert (ann.image.rows, ann.image.cols) == (orig.image.rows, orig.image.cols)
    assert ann.reader == orig.reader
    assert ann.landmarks.levels() == orig.landmarks.levels()
    # measuring the rebuilt annotation on the same film: its calibration line is float32,
    # so the spacing (and every length) agrees to ~1e-7 relative
    from types import SimpleNamespace

    from spine_measure.io.scan import read_header
    from spine_measure.measurements import measure_annotation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdr = read_header(fm.metadata["image"])
    again = measure_annotation(SimpleNamespace(calibration=hdr.calibration,
                                               metadata=hdr.metadata), ann)
    assert again.calibration_source == "reader"
    assert again.spacing[0] == pytest.approx(fm.spacing[0], rel=1e-6)
    assert again.get("L1", "ha").value == pytest.approx(fm.get("L1", "ha").value, rel=1e-5)


def test_uids_are_stable_across_exports(exported, tmp_path):
    f = SAMPLE_DIR / "SM005" / "SM005_postop.dcm"
    w1 = exported["SM005_postop"][0]
    w2 = write_film_sr(f, tmp_path)
    a, b = read_sr(w1.path), read_sr(w2.path)
    assert a.sop_instance_uid == b.sop_instance_uid
    assert a.tracking == b.tracking and len(a.tracking) >= 8
    d1, d2 = pydicom.dcmread(w1.path), pydicom.dcmread(w2.path)
    assert d1.SeriesInstanceUID == d2.SeriesInstanceUID
    # different films: different UIDs, same SR series within a study
    other = read_sr(exported["SM005_preop"][0].path)
    assert other.sop_instance_uid != a.sop_instance_uid
    assert set(other.tracking.values()).isdisjoint(a.tracking.values())
    # a changed annotation gives a new SR instance UID but keeps the tracking UIDs
    (tmp_path / "cobb").mkdir()
    w3 = write_film_sr(f, tmp_path / "cobb", cobb=["T12:superior,L5:inferior"],
                       file_name="cobb.sr.dcm")
    c = read_sr(w3.path)
    assert c.sop_instance_uid != a.sop_instance_uid
    assert c.tracking["L4"] == a.tracking["L4"]
    cobb = [fv for fv in c.film if fv.name == "cobb_angle"]
    assert len(cobb) == 1 and (cobb[0].upper, cobb[0].lower) == ("T12:superior", "L5:inferior")


def test_patient_module_copied_from_the_source(exported, tmp_path):
    """Pseudonymised by default (tests/sr/test_sr_pseudonym.py); with
    ``include_identifiers`` the patient module is the source's."""
    w, fm, _ = exported["SM006_preop"]
    src = pydicom.dcmread(fm.metadata["image"], stop_before_pixels=True)
    default = pydicom.dcmread(w.path)
    assert default.PatientID != src.PatientID and not default.get("PatientBirthDate")
    assert default.StudyInstanceUID == src.StudyInstanceUID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = write_film_sr(fm.metadata["image"], tmp_path, include_identifiers=True)
    sr = pydicom.dcmread(kept.path)
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
               "StudyInstanceUID", "AccessionNumber"):
        assert sr.get(kw) == src.get(kw), kw
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    schemes = [s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence]
    assert "99SPMEAS" in schemes


def test_coordinate_conversion_is_a_column_swap():
    rc = np.array([[10.0, 2.5], [-0.5, 7.25]])
    xy = to_scoord(rc)
    assert xy.tolist() == [[2.5, 10.0], [7.25, -0.5]]
    assert from_scoord(xy.ravel()).tolist() == rc.tolist()
    with pytest.raises(ValueError, match='"points_rc" must have shape'):
        to_scoord(np.zeros(3))
