"""``spine-measure export-sr`` on good and bad input; completeness of the SR codes."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_SOME_FAILED, main
from spine_measure.measurements import REGISTRY
from spine_measure.sr import codes as C
from spine_measure.sr import read_sr

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_dicoms"


def _uid(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_same_file_name_in_two_folders_does_not_clash(tmp_path, capsys):
    """Two films called film.dcm in different folders: SRs named by SOPInstanceUID."""
    for sub, film in (("a", "SM001_postop"), ("b", "SM002_postop")):
        (tmp_path / sub).mkdir()
        src = SAMPLE_DIR / film[:5] / f"{film}.dcm"
        shutil.copy(src, tmp_path / sub / "film.dcm")
        shutil.copy(src.with_name(f"{film}.sm.json"), tmp_path / sub / "film.sm.json")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["export-sr", str(tmp_path / "a" / "film.dcm"), str(tmp_path / "b" / "film.dcm"),
                   "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{_uid(tmp_path / s / 'film.dcm')}.sr.dcm" for s in ("a", "b"))
    # the same instance twice (a copy) is refused by name, not overwritten
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["export-sr", str(tmp_path / "a"), str(tmp_path / "c"), "--out",
                   str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert rc == 1 and "already written" in err and "same SOPInstanceUID" in err


def test_bad_inputs_fail_one_line_each_and_the_rest_is_exported(tmp_path, capsys):
    png = tmp_path / "film.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    lonely = tmp_path / "lonely.dcm"  # a DICOM film without annotation
    shutil.copy(SAMPLE_DIR / "SM001" / "SM001_preop.dcm", lonely)
    good = SAMPLE_DIR / "SM001" / "SM001_postop.dcm"
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["export-sr", str(png), str(lonely), str(good), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == EXIT_SOME_FAILED
    errors = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert len(errors) == 2
    assert str(png) in errors[0] and "not a DICOM file" in errors[0]
    assert str(lonely) in errors[1] and "no annotation file" in errors[1]
    assert "1 SR written, 2 failed" in err
    written = out / f"{_uid(good)}.sr.dcm"   # named by SOPInstanceUID, as batch --sr
    assert written.is_file()
    assert read_sr(written).landmarks.levels()[0] == "T10"


def test_nothing_exported_is_exit_3(tmp_path, capsys):
    png = tmp_path / "film.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    assert main(["export-sr", str(png), "--out", str(tmp_path / "o")]) == EXIT_NOTHING_DONE
    assert "0 SR written, 1 failed" in capsys.readouterr().err


def test_folders_contribute_dicom_files_only(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["export-sr", str(SAMPLE_DIR / "SM002"), "--out", str(tmp_path)])
    assert rc == 0  # the *.cement.png next to the films are not candidates
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{_uid(SAMPLE_DIR / 'SM002' / f'SM002_{tp}.dcm')}.sr.dcm"
        for tp in ("followup", "postop", "preop"))
    assert "3 SR written, 0 failed" in capsys.readouterr().err


def test_read_sr_rejects_a_non_sr_file():
    from spine_measure.errors import FileError

    with pytest.raises(FileError, match="SM001_preop.dcm: not a structured report"):
        read_sr(SAMPLE_DIR / "SM001" / "SM001_preop.dcm")


def test_every_single_film_measurement_has_a_code():
    single = {n for n, d in REGISTRY.items() if d.scope in ("vertebra", "film")}
    assert single == set(C.MEASUREMENT_CONCEPTS)
    for name, d in REGISTRY.items():
        if name in C.VALUE_CODES:
            assert d.kind in ("grade", "category")


def test_private_codes_are_unique_and_short():
    allc = C.all_private_codes()
    values = [c.value for c in allc]
    assert len(values) == len(set(values))
    assert all(1 <= len(v) <= 16 and c.scheme_designator == C.SCHEME
               for v, c in zip(values, allc, strict=True))


def test_vertebra_codes_hand_checked():
    # SNOMED CT identifiers written out by hand (DICOM CID 7603; S1 cited in the docs)
    for level, sctid in (("C2", "39976000"), ("T1", "64864005"), ("T12", "23215003"),
                         ("L1", "66794005"), ("L5", "49668003"), ("S1", "65985001")):
        c = C.vertebra_code(level)
        assert (c.value, c.scheme_designator) == (sctid, "SCT")
        assert C.level_of_code(sctid, "SCT") == level
    with pytest.raises(ValueError, match='"L6" is not a vertebral level'):
        C.vertebra_code("L6")


def test_landmark_set_codes_round_trip():
    for view, names in (("lateral", {"As", "Ai", "Ps", "Pi"}),
                        ("lateral", {"As", "Ai", "Ps", "Pi", "Ms"}),
                        ("lateral", {"As", "Ps"}), ("ap", {"SL", "SR", "IL", "IR"})):
        code = C.landmark_set_code(view, names)
        back_view, _, order = C.landmark_names_of(code.value)
        assert back_view == view and set(order) == names
    # As=bit0, Ms=bit1, Ps=bit2, Pi=bit3, Mi=bit4, Ai=bit5: corners = 1+4+8+32
    assert C.landmark_set_code("lateral", {"As", "Ai", "Ps", "Pi"}).value == "LM-L-45"
    assert C.landmark_order("lateral", {"As", "Ai", "Ps", "Pi", "Mi"}) == \
        ("As", "Ps", "Pi", "Mi", "Ai")
