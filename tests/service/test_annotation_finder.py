"""The one annotation lookup (``spine_measure.service.AnnotationFinder``) and the one
identity check (``check_identity``) of every command."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from dicom_helpers import make_dicom

from spine_measure.io.annotation import (
    Annotation,
    AnnotationMismatchError,
    ImageRef,
    load_annotation,
    read_image_reference,
    save_annotation,
)
from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.service import AnnotationFinder, FilmError, check_identity, measure_film_file


def lateral(level: str, r0: float = 10.0, c0: float = 10.0) -> Vertebra:
    pts = {"As": (r0, c0 + 30), "Ai": (r0 + 20, c0 + 30), "Ps": (r0, c0), "Pi": (r0 + 20, c0)}
    return Vertebra(level, "lateral", pts)


def annotation(uid: str | None = None, *, rows: int = 64, ref: ImageRef | None = None,
               shift: float = 0.0) -> Annotation:
    lm = SpineLandmarks("lateral", (lateral("T12", 0.5), lateral("L1", 30.0 + shift)))
    return Annotation(ref or ImageRef(rows=rows, cols=64, sop_instance_uid=uid), lm)


def test_precedence_folder_then_sidecar_then_input_folder(tmp_path):
    images, notes = tmp_path / "images", tmp_path / "notes"
    images.mkdir()
    notes.mkdir()
    uid = {k: make_dicom(images / f"{k}.dcm") for k in "abcd"}
    # a: only a sidecar
    save_annotation(annotation(uid["a"]), images / "a.sm.json")
    # b: a sidecar AND a file in the folder under an unrelated name: the folder wins
    save_annotation(annotation(uid["b"]), images / "b.sm.json")
    save_annotation(annotation(uid["b"], shift=2), notes / "reader1_0007.sm.json")
    # c: in the folder by name only (the UID lookup finds nothing else)
    save_annotation(annotation(uid["c"]), notes / "c.sm.json")
    # d: elsewhere in the input folder, found by UID (batch)
    (images / "sub").mkdir()
    save_annotation(annotation(uid["d"]), images / "sub" / "whatever.sm.json")

    plain = AnnotationFinder()
    assert plain.find(images / "a.dcm").source == "sidecar"
    assert plain.find(images / "b.dcm").path == images / "b.sm.json"
    assert plain.find(images / "d.dcm", sop_instance_uid=uid["d"]) is None
    assert plain.unused() == []

    f = AnnotationFinder(notes, input_root=images)
    got = {k: f.find(images / f"{k}.dcm", sop_instance_uid=uid[k]) for k in "abcd"}
    assert (got["a"].source, got["a"].relative) == ("sidecar", "a.sm.json")
    assert (got["b"].source, got["b"].relative) == ("annotations_folder", "reader1_0007.sm.json")
    assert (got["c"].source, got["c"].path) == ("annotations_folder", notes / "c.sm.json")
    assert (got["d"].source, got["d"].relative) == ("input_folder", "sub/whatever.sm.json")
    assert f.unused() == []
    save_annotation(annotation("1.2.3.999"), notes / "orphan.sm.json")
    f2 = AnnotationFinder(notes)
    f2.find(images / "b.dcm", sop_instance_uid=uid["b"])
    assert [p.name for p in f2.unused()] == ["c.sm.json", "orphan.sm.json"]


def test_the_folder_wins_in_measure_film_file_and_values_differ(tmp_path):
    images, notes = tmp_path / "images", tmp_path / "notes"
    images.mkdir()
    notes.mkdir()
    uid = make_dicom(images / "b.dcm")
    save_annotation(annotation(uid), images / "b.sm.json")
    save_annotation(annotation(uid, shift=2), notes / "x.sm.json")
    a = measure_film_file(images / "b.dcm", cement=False)
    b = measure_film_file(images / "b.dcm", finder=AnnotationFinder(notes), cement=False)
    assert a.choice.source == "sidecar" and b.choice.source == "annotations_folder"
    # the gap T12 -> L1 grew by 2 px; L1's own height is unchanged (no spacing: px)
    assert b.annotation.landmarks["L1"].points["As"][0] - \
        a.annotation.landmarks["L1"].points["As"][0] == 2.0
    assert a.measurements.get("L1", "ha").value == b.measurements.get("L1", "ha").value == 20


def test_identity_check_refuses_another_image(tmp_path):
    uid_a, uid_c = make_dicom(tmp_path / "a.dcm"), make_dicom(tmp_path / "c.dcm")
    save_annotation(annotation(uid_a), tmp_path / "c.sm.json")  # a's annotation next to c
    with pytest.raises(FilmError, match=f"annotates SOPInstanceUID {uid_a}, but c.dcm has "
                                        f"{uid_c}") as info:
        measure_film_file(tmp_path / "c.dcm", cement=False)
    assert info.value.stage == "annotation" and info.value.path.endswith("c.sm.json")
    ann = load_annotation(tmp_path / "c.sm.json")
    with pytest.raises(AnnotationMismatchError, match="annotates a 64x64 image, but x.dcm is "
                                                      "65x64"):
        check_identity(ann, tmp_path / "c.sm.json", film="x.dcm", sop_instance_uid=uid_a,
                       rows=65, cols=64)
    check_identity(ann, tmp_path / "c.sm.json", film="a.dcm", sop_instance_uid=uid_a,
                   rows=64, cols=64)  # its own film: fine


def test_plain_images_by_pixel_hash(tmp_path):
    from PIL import Image

    pixels = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    Image.fromarray(pixels).save(tmp_path / "film.png")
    notes = tmp_path / "notes"
    notes.mkdir()
    ref = read_image_reference(tmp_path / "film.png")
    save_annotation(annotation(ref=ref), notes / "whatever.sm.json")
    res = measure_film_file(tmp_path / "film.png", finder=AnnotationFinder(notes))
    assert res.choice.relative == "whatever.sm.json"
    assert AnnotationFinder(notes).find(tmp_path / "film.png", pixel_sha256="f" * 64) is None
    # another PNG with this annotation copied next to it: refused by its pixel hash
    Image.fromarray(pixels[::-1].copy()).save(tmp_path / "other.png")
    shutil.copy(notes / "whatever.sm.json", tmp_path / "other.sm.json")
    with pytest.raises(FilmError, match="annotates pixel hash"):
        measure_film_file(tmp_path / "other.png")
