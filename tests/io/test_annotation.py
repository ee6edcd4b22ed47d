"""Annotation files: exact round trip, schema errors, atomic writes, conflicts, lookup."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_helpers import make_dicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spine_measure.io import annotation as ann
from spine_measure.io.annotation import (
    SCHEMA_ID,
    Annotation,
    AnnotationConflictError,
    AnnotationError,
    AnnotationFileError,
    CalibrationLine,
    CementMask,
    Findings,
    ImageRef,
    annotation_from_json,
    annotation_schema,
    annotation_to_json,
    index_annotations,
    load_annotation,
    merge_cement_mask,
    pixel_hash,
    read_image_reference,
    save_annotation,
    sidecar_path,
)
from spine_measure.landmarks import AP_POINTS, LEVELS, SpineLandmarks, Vertebra

REPO = Path(__file__).resolve().parents[2]
UTC = dt.UTC


# --------------------------------------------------------------------------- helpers




def lateral(level: str, r0: float = 10.0, c0: float = 10.0, **flags: bool) -> Vertebra:
    pts = {"As": (r0, c0 + 30), "Ai": (r0 + 20, c0 + 30), "Ps": (r0, c0), "Pi": (r0 + 20, c0)}
    return Vertebra(level, "lateral", pts, **flags)


def simple_annotation(uid: str = "1.2.3.4", **kw) -> Annotation:
    lm = SpineLandmarks("lateral", (lateral("L1", treated=True), lateral("T12", 0.5, 10.0)))
    return Annotation(ImageRef(rows=64, cols=64, sop_instance_uid=uid), lm, **kw)


# --------------------------------------------------------------------------- round trip

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
opt_bool = st.sampled_from([None, True, False])


@st.composite
def annotations(draw):
    view = draw(st.sampled_from(["lateral", "ap"]))
    levels = draw(st.lists(st.sampled_from(LEVELS), unique=True, max_size=5))
    verts = []
    for level in levels:
        if view == "ap":
            names = list(AP_POINTS)
        elif level == "S1":
            names = ["As", "Ps"]
        else:
            names = ["As", "Ai", "Ps", "Pi"] + draw(
                st.lists(st.sampled_from(["Ms", "Mi"]), unique=True))
        pts = {n: (draw(finite), draw(finite)) for n in names}
        verts.append(Vertebra(level, view, pts, fractured=draw(st.booleans()),
                              treated=draw(st.booleans()), excluded=draw(st.booleans())))
    rows, cols = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    uid = draw(st.none() | st.just("1.2.840.113619.2.55.3.604688119"))
    digest = draw(st.none() | st.text("0123456789abcdef", min_size=64, max_size=64))
    if uid is None and digest is None:
        digest = "a" * 64
    image = ImageRef(rows=rows, cols=cols, sop_instance_uid=uid, pixel_sha256=digest,
                     file_name=draw(st.none() | st.text(max_size=20)))
    cement_levels = draw(st.lists(st.sampled_from(LEVELS), unique=True, max_size=2))
    masks = []
    for level in cement_levels:
        arr = np.array(draw(st.lists(st.booleans(), min_size=rows * cols,
                                     max_size=rows * cols))).reshape(rows, cols)
        masks.append(CementMask.from_array(level, arr, source=draw(st.sampled_from(
            ["auto", "edited"])), params_hash=draw(st.none() | st.text(max_size=16))))
    calib = None
    if draw(st.booleans()):
        p0 = (draw(finite), draw(finite))
        p1 = (p0[0] + draw(st.floats(1, 500)), draw(finite))
        calib = CalibrationLine(p0, p1, draw(st.floats(0.001, 1000)))
    findings = Findings(
        ivc=draw(opt_bool), endplate_disruption=draw(opt_bool),
        posterior_fascia_oedema=draw(opt_bool),
        goutallier_grade=draw(st.none() | st.integers(0, 4)),
        muscle_fat_fraction=draw(st.none() | st.floats(0, 1)),
        bone_marrow_oedema=draw(opt_bool), leakage_other_views=draw(opt_bool),
        ct_hu=draw(st.dictionaries(st.sampled_from(LEVELS), st.none() | finite, max_size=3)),
    )
    stamp = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1),
                         timezones=st.just(UTC))
    return Annotation(
        image, SpineLandmarks(view, tuple(verts)), calibration=calib, findings=findings,
        time_point=draw(st.sampled_from([None, "preop", "postop", "followup"])),
        procedure_date=draw(st.none() | st.dates(dt.date(1990, 1, 1), dt.date(2090, 1, 1))),
        cement=tuple(masks), reader=draw(st.none() | st.text(max_size=30)),
        created=draw(stamp), revision=draw(st.integers(0, 10_000)),
    ), masks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(annotations())
def test_round_trip_is_exact(case):
    a, masks = case
    # in memory: dict -> object and text -> object
    assert Annotation.from_dict(a.to_dict()) == a
    assert annotation_from_json(annotation_to_json(a)) == a
    # through a file
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.sm.json"
        written = save_annotation(a, path)
        loaded = load_annotation(path)
    assert loaded == written
    assert loaded.to_dict() == written.to_dict()
    assert written.revision == a.revision + 1
    assert dataclass_equal_except(loaded, a, {"revision", "modified", "spine_measure_version"})
    for m in masks:
        assert np.array_equal(loaded.cement_mask(m.level).to_array(), m.to_array())


def dataclass_equal_except(x: Annotation, y: Annotation, skip: set[str]) -> bool:
    import dataclasses

    return all(getattr(x, f.name) == getattr(y, f.name)
               for f in dataclasses.fields(x) if f.name not in skip)


def test_floats_are_bit_exact():
    tricky = [0.1 + 0.2, 5e-324, 1.7976931348623157e308, -0.0, 1 / 3, 123456.78901234567]
    pts = {"As": (tricky[0], tricky[1]), "Ai": (tricky[2], tricky[3]),
           "Ps": (tricky[4], tricky[5]), "Pi": (1.0, 2.0)}
    lm = SpineLandmarks("lateral", (Vertebra("L2", "lateral", pts),))
    a = Annotation(ImageRef(rows=8, cols=8, pixel_sha256="0" * 64), lm,
                   findings=Findings(muscle_fat_fraction=0.1 + 0.2))
    b = annotation_from_json(annotation_to_json(a))
    got = b.landmarks["L2"].points
    for name in ("As", "Ai", "Ps"):
        for x, y in zip(pts[name], got[name], strict=True):
            assert x.hex() == y.hex() and math.copysign(1, x) == math.copysign(1, y)
    assert b.findings.muscle_fat_fraction == 0.30000000000000004


def test_file_text_layout():
    text = annotation_to_json(simple_annotation(reader="r [ 1, 2 ]"))
    data = json.loads(text)
    assert list(data)[0] == "schema" and data["schema"] == SCHEMA_ID
    # points on one line; a string that looks like a list is left alone
    assert '"As": [10.0, 40.0]' in text
    assert data["reader"] == "r [ 1, 2 ]"
    assert re.search(r'"created": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"', text)


# --------------------------------------------------------------------------- schema


def test_docs_schema_copy_is_the_packaged_schema():
    import jsonschema

    packaged = (REPO / "src/spine_measure/schemas/annotation-2.schema.json").read_text()
    assert (REPO / "docs/annotation.schema.json").read_text() == packaged
    jsonschema.Draft202012Validator.check_schema(annotation_schema())
    assert annotation_schema()["properties"]["schema"]["const"] == SCHEMA_ID
    assert annotation_schema()["$defs"]["level"]["enum"] == list(LEVELS)


def test_docs_example_is_a_valid_file(tmp_path):
    doc = (REPO / "docs/annotation_format.md").read_text()
    block = re.search(r"```json\n(\{\n  \"schema\".*?)\n```", doc, re.S)
    assert block, "docs/annotation_format.md has no example file"
    (tmp_path / "ex.sm.json").write_text(block.group(1))
    a = load_annotation(tmp_path / "ex.sm.json")
    assert a.view == "lateral" and "L1" in a.landmarks
    assert a.cement_mask("L1").to_array().sum() == 6


def _broken(base: dict, path: tuple, value) -> dict:
    data = json.loads(json.dumps(base))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("image",), KeyError, "$: 'image' is a required property"),
        (("view",), "sideways", '$.view: "sideways" is not one of: lateral, ap'),
        (("landmarks", "vertebrae", 0, "points", "As"), [1.0, 2.0, 3.0],
         "$.landmarks.vertebrae[0].points.As: [1.0, 2.0, 3.0] is too long"),
        (("landmarks", "vertebrae", 0, "points", "As"), ["a", 2.0],
         "$.landmarks.vertebrae[0].points.As[0]: 'a' is not of type 'number'"),
        (("findings", "goutallier_grade"), 7,
         "$.findings.goutallier_grade: 7 is greater than the maximum of 4"),
        (("schema",), "spine_measure.annotation/9", 'version "spine_measure.annotation/9" is '
                                                    "not supported"),
        (("schema",), "other.thing/1", "not a spine_measure annotation file"),
        (("readr",), "x", '$: unknown field "readr"; did you mean "reader"?'),
        (("image", "sop_instance_uid"), None,
         "$.image: needs a sop_instance_uid (DICOM) or a pixel_sha256"),
        (("revision",), -1, "$.revision: -1 is less than the minimum of 0"),
        (("created",), "2024-03-11 10:00", '$.created: "2024-03-11 10:00" has the wrong format'),
        (("landmarks", "vertebrae", 0, "level"), "L9", '"L9" is not one of: C2'),
        # semantic checks after the schema: named vertebra / point / level
        (("landmarks", "vertebrae", 0, "points", "Ai"), KeyError,
         "$.landmarks: T12: missing required point(s) Ai"),
        (("cement", 0, "mask", "counts"), "AAQ=", "L1: cement mask counts add up to 4 pixels"),
        (("procedure_date",), "2024-02-30", '"procedure_date" must be a date YYYY-MM-DD'),
        (("view",), "ap", '$.view: "ap" differs from the landmarks view "lateral"'),
    ],
)
def test_schema_errors_are_one_line_with_json_path(tmp_path, path, value, expected):
    m = np.zeros((64, 64), bool)
    m[5:7, 5:8] = True
    good = simple_annotation(cement=(CementMask.from_array("L1", m),)).to_dict()
    f = tmp_path / "bad.sm.json"
    f.write_text(json.dumps(_broken(good, path, value)))
    with pytest.raises(AnnotationFileError) as info:
        load_annotation(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}: ")
    assert expected in msg, msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON (line 1, column 2"),
        ('{"x": NaN}', "NaN is not valid JSON"),
        ("[1, 2]", "holds a JSON object; got list"),
        ("", "not valid JSON"),
    ],
)
def test_unreadable_files(tmp_path, text, expected):
    f = tmp_path / "bad.sm.json"
    f.write_text(text)
    with pytest.raises(AnnotationFileError, match=re.escape(expected)):
        load_annotation(f)
    with pytest.raises(AnnotationFileError, match="file not found"):
        load_annotation(tmp_path / "missing.sm.json")


# --------------------------------------------------------------------------- validation


def test_construction_is_validated():
    with pytest.raises(AnnotationError, match="sop_instance_uid .* or a pixel_sha256"):
        ImageRef(rows=4, cols=4)
    with pytest.raises(AnnotationError, match="not a DICOM UID"):
        ImageRef(rows=4, cols=4, sop_instance_uid="1.2.abc")
    with pytest.raises(AnnotationError, match="goutallier_grade.*0-4"):
        Findings(goutallier_grade=5)
    with pytest.raises(AnnotationError, match="fraction, not percent"):
        Findings(muscle_fat_fraction=35.0)
    with pytest.raises(AnnotationError, match="ivc.*true, false or null"):
        Findings(ivc=1)
    with pytest.raises(AnnotationError, match='"L6" is not a vertebral level'):
        Findings(ct_hu={"L6": 100.0})
    with pytest.raises(AnnotationError, match="zero length"):
        CalibrationLine((1, 1), (1, 1), 10.0)
    with pytest.raises(AnnotationError, match="must be > 0"):
        CalibrationLine((1, 1), (1, 5), 0.0)
    with pytest.raises(AnnotationError, match="time zone"):
        simple_annotation(created=dt.datetime(2024, 1, 1))
    with pytest.raises(AnnotationError, match="time_point"):
        simple_annotation(time_point="later")
    m = CementMask.from_array("L1", np.ones((10, 10), bool))
    with pytest.raises(AnnotationError, match=r"L1: cement mask shape \(10, 10\) differs from "
                                              r"the image \(rows, cols\) \(64, 64\)"):
        simple_annotation(cement=(m,))
    m64 = CementMask.from_array("L1", np.ones((64, 64), bool))
    with pytest.raises(AnnotationError, match="L1: two cement masks"):
        simple_annotation(cement=(m64, m64))


def test_timestamps_are_normalised_to_utc():
    cet = dt.timezone(dt.timedelta(hours=1))
    a = simple_annotation(created=dt.datetime(2024, 3, 11, 11, 0, 0, 123, tzinfo=cet))
    assert a.created == dt.datetime(2024, 3, 11, 10, 0, 0, 123, tzinfo=UTC)
    assert a.to_dict()["created"] == "2024-03-11T10:00:00.000123Z"
    assert a.modified == a.created


def test_calibration_line_spacing_by_hand():
    # 3-4-5 triangle: the line is 5 px long and 10 mm -> 2 mm per pixel, square pixels
    line = CalibrationLine((10.0, 10.0), (13.0, 14.0), 10.0)
    assert line.spacing() == pytest.approx((2.0, 2.0), rel=1e-15)
    cal = line.calibration()
    assert str(cal.source) == "reader" and cal.calibrated
    # aspect (row:col = 1:0.75), line (0,0)-(30,40): scaled length hypot(30*1, 40*0.75)
    # = 30*sqrt(2); with L = 30*sqrt(2)*0.2 mm, k = 0.2 -> (0.2, 0.15)
    line = CalibrationLine((0.0, 0.0), (30.0, 40.0), 30 * math.sqrt(2) * 0.2)
    row_mm, col_mm = line.spacing(pixel_aspect=(1.0, 0.75))
    assert row_mm == pytest.approx(0.2, rel=1e-12) and col_mm == pytest.approx(0.15, rel=1e-12)
    # the aspect ratio of the header is kept
    assert row_mm / col_mm == pytest.approx(1 / 0.75, rel=1e-12)


# --------------------------------------------------------------------------- cement merge


def _mask(level: str, cells, source="auto", params="p1") -> CementMask:
    arr = np.zeros((64, 64), bool)
    for r, c in cells:
        arr[r, c] = True
    return CementMask.from_array(level, arr, source=source, params_hash=params)


def test_cement_merge_rule():
    auto1 = _mask("L1", [(5, 5)])
    auto2 = _mask("L1", [(6, 6)], params="p2")
    edit = _mask("L1", [(5, 5), (5, 6)], source="edited")
    r = merge_cement_mask(None, auto1)
    assert (r.action, r.mask) == ("added", auto1)
    r = merge_cement_mask(edit, auto2)  # re-run never discards a hand edit
    assert (r.action, r.mask) == ("kept_edit", edit) and "parameters changed" in r.reason
    r = merge_cement_mask(auto1, edit)
    assert (r.action, r.mask) == ("replaced", edit)
    r = merge_cement_mask(auto1, _mask("L1", [(5, 5)]))
    assert (r.action, r.mask) == ("unchanged", auto1)
    r = merge_cement_mask(auto1, auto2)
    assert (r.action, r.mask) == ("replaced", auto2)
    with pytest.raises(AnnotationError, match="levels L1 and L2"):
        merge_cement_mask(auto1, _mask("L2", [(1, 1)]))
    a, res = simple_annotation(cement=(edit,)).with_cement_mask(auto2)
    assert res.action == "kept_edit" and a.cement == (edit,)
    a, res = a.with_cement_mask(_mask("T12", [(2, 2)]))
    assert res.action == "added" and [m.level for m in a.cement] == ["T12", "L1"]


# --------------------------------------------------------------------------- saving


def test_atomic_write_keeps_old_file_when_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.sm.json"
    first = save_annotation(simple_annotation(reader="old"), path)
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(AnnotationFileError, match="cannot write.*No space left") as info:
        save_annotation(first.replace(reader="new"), path)
    assert str(info.value).startswith(str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sm.json"]  # no temp file left
    monkeypatch.undo()
    assert load_annotation(path) == first


def test_atomic_write_cleans_up_when_fsync_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.sm.json"
    save_annotation(simple_annotation(), path)
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(AnnotationFileError):
        save_annotation(load_annotation(path), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.sm.json"]


def test_two_writers_conflict(tmp_path):
    path = tmp_path / "a.sm.json"
    save_annotation(simple_annotation(), path)
    alice = load_annotation(path)
    bob = load_annotation(path)
    assert alice.revision == bob.revision == 1
    saved = save_annotation(alice.replace(reader="alice"), path)
    assert saved.revision == 2
    with pytest.raises(AnnotationConflictError) as info:
        save_annotation(bob.replace(reader="bob"), path)
    err = info.value
    assert (err.file_revision, err.loaded_revision) == (2, 1)
    msg = str(err)
    assert "\n" not in msg and msg.startswith(str(path))
    assert "revision 2" in msg and "revision 1" in msg
    assert load_annotation(path).reader == "alice"  # alice's work is intact
    forced = save_annotation(bob.replace(reader="bob"), path, overwrite=True)
    assert forced.revision == 3 and load_annotation(path).reader == "bob"


def test_conflict_rules(tmp_path):
    path = tmp_path / "a.sm.json"
    s1 = save_annotation(simple_annotation(), path)
    # a new annotation (revision 0) never replaces an existing file silently
    with pytest.raises(AnnotationConflictError, match="revision 1 .* revision 0"):
        save_annotation(simple_annotation(), path)
    # explicit expected revision
    with pytest.raises(AnnotationConflictError):
        save_annotation(s1, path, expected_revision=0)
    s2 = save_annotation(s1, path, expected_revision=1)
    assert s2.revision == 2 and s2.modified > s1.modified and s2.created == s1.created
    # same revision but written later by another tool -> conflict on modified time
    stale = s2.replace(modified=s2.modified - dt.timedelta(seconds=5))
    with pytest.raises(AnnotationConflictError, match="modified later"):
        save_annotation(stale, path)
    # revisions and modified times only go up
    s3 = save_annotation(load_annotation(path), path)
    assert (s3.revision, s3.modified > s2.modified) == (3, True)


def test_save_refuses_non_annotation_and_missing_folder(tmp_path):
    path = tmp_path / "a.sm.json"
    path.write_text("important notes")
    with pytest.raises(AnnotationFileError, match="not valid JSON"):
        save_annotation(simple_annotation(), path)
    assert path.read_text() == "important notes"
    save_annotation(simple_annotation(), path, overwrite=True)
    assert load_annotation(path).revision == 1
    with pytest.raises(AnnotationFileError, match="does not exist"):
        save_annotation(simple_annotation(), tmp_path / "nope" / "a.sm.json")


# --------------------------------------------------------------------------- lookup


def test_sidecar_path_rules():
    assert sidecar_path("/d/X.dcm") == Path("/d/X.sm.json")
    assert sidecar_path("/d/X.DCM") == Path("/d/X.sm.json")
    assert sidecar_path("/d/scan.png") == Path("/d/scan.sm.json")
    assert sidecar_path("/d/1.2.840.10008.1") == Path("/d/1.2.840.10008.1.sm.json")
    assert sidecar_path("/d/IM0001") == Path("/d/IM0001.sm.json")


def test_read_image_reference_dicom_and_png(tmp_path):
    from PIL import Image

    from spine_measure.io.radiograph import load_radiograph

    uid = make_dicom(tmp_path / "a.dcm", rows=64, cols=48)
    ref = read_image_reference(tmp_path / "a.dcm")
    ds = pydicom.dcmread(tmp_path / "a.dcm", stop_before_pixels=True)
    assert (ref.sop_instance_uid, ref.rows, ref.cols) == (uid, 64, 48)
    assert ref.study_instance_uid == ds.StudyInstanceUID
    assert ref.series_instance_uid == ds.SeriesInstanceUID
    assert ref.pixel_sha256 is None and ref.file_name == "a.dcm"

    pixels = (np.arange(30 * 20) % 251).astype(np.uint8).reshape(30, 20)
    Image.fromarray(pixels).save(tmp_path / "b.png")
    ref = read_image_reference(tmp_path / "b.png")
    assert (ref.rows, ref.cols, ref.sop_instance_uid) == (30, 20, None)
    assert ref.pixel_sha256 == pixel_hash(pixels)
    assert ref.pixel_sha256 == load_radiograph(tmp_path / "b.png").pixel_sha256
    # the hash changes when one pixel changes
    pixels[0, 0] ^= 1
    assert pixel_hash(pixels) != ref.pixel_sha256

    (tmp_path / "c.dcm").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(Exception, match=r"c\.dcm: ") as info:
        read_image_reference(tmp_path / "c.dcm")
    assert "\n" not in str(info.value)


def test_index_maps_uids_and_reports_orphans_duplicates_and_errors(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    save_annotation(simple_annotation("1.2.3.1"), tmp_path / "a.sm.json")
    save_annotation(simple_annotation("1.2.3.2"), sub / "b.sm.json")
    save_annotation(simple_annotation("1.2.3.2"), sub / "c.sm.json")  # duplicate UID
    (tmp_path / "broken.sm.json").write_text("{")
    lm = SpineLandmarks("lateral", ())
    save_annotation(Annotation(ImageRef(rows=4, cols=4, pixel_sha256="e" * 64), lm),
                    tmp_path / "png.sm.json")
    idx = index_annotations(tmp_path)
    assert dict(idx.by_uid) == {"1.2.3.1": tmp_path / "a.sm.json",
                                "1.2.3.2": sub / "b.sm.json"}
    assert dict(idx.by_pixel_hash) == {"e" * 64: tmp_path / "png.sm.json"}
    assert idx.duplicates == (("1.2.3.2", (sub / "b.sm.json", sub / "c.sm.json")),)
    assert [(p.name, "not valid JSON" in why) for p, why in idx.errors] == \
        [("broken.sm.json", True)]
    assert idx.lookup(sop_instance_uid="1.2.3.1") == tmp_path / "a.sm.json"
    assert idx.lookup(sop_instance_uid="9.9", pixel_sha256="e" * 64) == tmp_path / "png.sm.json"
    assert idx.lookup(sop_instance_uid="9.9") is None
    # only 1.2.3.1 was among the images of the batch: the others are orphans
    orphans = {e.path.name for e in idx.unmatched(["1.2.3.1"])}
    assert orphans == {"b.sm.json", "c.sm.json", "png.sm.json"}
    assert {e.path.name for e in idx.unmatched(["1.2.3.1"], ["e" * 64])} == \
        {"b.sm.json", "c.sm.json"}
    assert len(index_annotations(tmp_path, recursive=False).entries) == 2
    with pytest.raises(AnnotationFileError, match="annotations folder not found"):
        index_annotations(tmp_path / "nope")


def test_module_exports():
    for name in ann.__all__:
        assert hasattr(ann, name), name


def test_concurrent_savers_take_turns(tmp_path):
    """Eight threads save from the same loaded revision: exactly one wins, the rest conflict."""
    import threading

    path = tmp_path / "a.sm.json"
    save_annotation(simple_annotation(), path)
    loaded = load_annotation(path)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            save_annotation(loaded.replace(reader=f"r{i}"), path)
            outcomes.append("saved")
        except AnnotationConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["saved"]
    assert load_annotation(path).revision == 2
    assert [p.name for p in tmp_path.iterdir()] == ["a.sm.json"]


def test_doctests():
    import doctest

    from spine_measure.io import landmark_csv, mask_codec

    for module in (ann, mask_codec, landmark_csv):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
