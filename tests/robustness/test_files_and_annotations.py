"""Issue 18.2, 18.3, 18.4, 18.7: pipes, devices and link loops are reported, never opened;
the annotation reader is bounded and refuses duplicate keys. Minimal reproducers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE, film_copy, good_folder, one_line_error, run_cli

from spine_measure.batch import BatchOptions, run_batch
from spine_measure.io.annotation import (
    MAX_JSON_DEPTH,
    AnnotationFileError,
    load_annotation,
)
from spine_measure.io.scan import iter_files

SIDE = "SM003/SM003_preop.sm.json"


def _errors(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "errors.csv", dtype=str, keep_default_na=False)


def _clean_rows(tmp_path: Path) -> pd.DataFrame:
    out = tmp_path / "clean_out"
    run_batch(BatchOptions(str(good_folder(tmp_path / "clean")), str(out), overlays=False))
    return pd.read_csv(out / "features_wide.csv", dtype=str)


def _good_rows_equal(out: Path, clean: pd.DataFrame) -> None:
    got = pd.read_csv(out / "features_wide.csv", dtype=str)
    got = got[got.patient_pseudo_id.isin(clean.patient_pseudo_id)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, clean)


def test_fifos_devices_and_link_loops_in_a_batch_folder(tmp_path):
    """A named pipe as a film and as an annotation, a link to /dev/zero, a pair of links
    pointing at each other, a link to itself, an annotation linking to itself and a folder
    linking to its parent: each one row of errors.csv saying what it is; the good films'
    rows are those of a clean run; nothing hangs (a child process with a timeout)."""
    clean = _clean_rows(tmp_path)
    mixed = good_folder(tmp_path / "mixed")
    os.mkfifo(mixed / "pipe.dcm")
    film_copy("SM001/SM001_preop.dcm", mixed / "pipe_ann.dcm")
    (mixed / "pipe_ann.sm.json").unlink()
    os.mkfifo(mixed / "pipe_ann.sm.json")
    os.symlink("/dev/zero", mixed / "zero.dcm")
    os.symlink(mixed / "loop_a_b.dcm", mixed / "loop_a.dcm")
    os.symlink(mixed / "loop_a.dcm", mixed / "loop_a_b.dcm")
    os.symlink(mixed / "self.dcm", mixed / "self.dcm")
    film_copy("SM001/SM001_followup.dcm", mixed / "selfann.dcm", uid="1.2.826.0.1.99.2")
    (mixed / "selfann.sm.json").unlink()
    os.symlink(mixed / "selfann.sm.json", mixed / "selfann.sm.json")
    (mixed / "sub").mkdir()
    os.symlink("..", mixed / "sub" / "up")
    out = tmp_path / "out"
    proc = run_cli("batch", mixed, "--out", out, "--no-progress", "--no-overlays",
                   timeout=300)
    one_line_error(proc)
    assert proc.returncode == 1
    err = _errors(out)
    reasons = dict(zip(err.file, err.reason, strict=False))
    assert "named pipe (FIFO)" in reasons["pipe.dcm"]
    assert "pipe_ann.sm.json" in " ".join(err.file) or \
        "named pipe" in reasons.get("pipe_ann.dcm", "")
    assert "symbolic link to /dev/zero, a character device" in reasons["zero.dcm"]
    for name in ("loop_a.dcm", "loop_a_b.dcm", "self.dcm"):
        assert "symbolic link loop" in reasons[name], name
    assert "symbolic link loop" in reasons["selfann.sm.json"]
    assert "symbolic link loop" in reasons["sub/up"]
    _good_rows_equal(out, clean)


def test_single_file_commands_name_what_the_path_is(tmp_path):
    os.mkfifo(tmp_path / "pipe.dcm")
    os.symlink("/dev/zero", tmp_path / "zero.dcm")
    for cmd in ("info", "measure"):
        proc = run_cli(cmd, tmp_path / "pipe.dcm", tmp_path / "zero.dcm", timeout=60)
        one_line_error(proc)
        text = (proc.stdout + proc.stderr).replace("\terror\t", ": ")
        assert "pipe.dcm: is a named pipe (FIFO), not a file" in text
        assert "zero.dcm: is a symbolic link to /dev/zero, a character device, not a file" \
            in text


def test_folder_walk_does_not_follow_a_loop(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.dcm").write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "a" / "back")
    skipped: list[tuple[str, str]] = []
    files = list(iter_files(tmp_path, on_skip=lambda p, r: skipped.append((p, r))))
    assert files == [str(tmp_path / "a" / "x.dcm")]
    assert skipped and "loop" in skipped[0][1]


def _sidecar(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.sm.json"
    p.write_text(text, encoding="utf-8")
    return p


def test_deeply_nested_json_is_refused_without_recursion(tmp_path):
    """An unknown key holding 1,000 nested arrays (RecursionError in measure, export-sr and
    batch before)."""
    d = json.loads((SAMPLE / SIDE).read_text())
    d["x_unknown"] = "@@"
    p = _sidecar(tmp_path, json.dumps(d).replace('"@@"', "[" * 1000 + "]" * 1000))
    with pytest.raises(AnnotationFileError, match=f"nested 1001 levels deep; an annotation "
                                                  f"file has at most {MAX_JSON_DEPTH}"):
        load_annotation(p)
    p = _sidecar(tmp_path, '{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(AnnotationFileError, match="nested 100000 levels"):
        load_annotation(p)


def test_nesting_inside_strings_does_not_count(tmp_path):
    d = json.loads((SAMPLE / SIDE).read_text())
    d["reader"] = "[[[[" * 10 + '\\"{'
    assert load_annotation(_sidecar(tmp_path, json.dumps(d))).reader == d["reader"]


def test_duplicate_landmarks_key_is_refused(tmp_path):
    """Appending ``"landmarks": {...}`` used to drop every landmark silently."""
    text = (SAMPLE / SIDE).read_text().rstrip().rstrip("}") + \
        ', "landmarks": {"view": "ap", "vertebrae": []}}'
    with pytest.raises(AnnotationFileError, match='duplicate key "landmarks"'):
        load_annotation(_sidecar(tmp_path, text))


def test_duplicate_point_in_a_vertebra_is_refused(tmp_path):
    """A second "As" inside a vertebra used to move the corner."""
    text = (SAMPLE / SIDE).read_text().replace('"As": [', '"As": [1.0, 1.0], "As": [', 1)
    with pytest.raises(AnnotationFileError, match='x.sm.json: duplicate key "As"'):
        load_annotation(_sidecar(tmp_path, text))


def test_annotation_size_is_bounded(tmp_path, monkeypatch):
    from spine_measure.io import annotation

    monkeypatch.setattr(annotation, "MAX_ANNOTATION_BYTES", 1000)
    with pytest.raises(AnnotationFileError, match="too large for an annotation file"):
        load_annotation(_sidecar(tmp_path, (SAMPLE / SIDE).read_text()))


def test_a_bad_annotation_in_a_batch_costs_only_its_film(tmp_path):
    clean = _clean_rows(tmp_path)
    mixed = good_folder(tmp_path / "mixed")
    bad = film_copy("SM001/SM001_preop.dcm", mixed / "deep.dcm")
    d = json.loads(bad.with_name("deep.sm.json").read_text())
    d["x_unknown"] = "@@"
    bad.with_name("deep.sm.json").write_text(json.dumps(d).replace('"@@"', "[" * 1000 +
                                                                   "]" * 1000))
    dup = film_copy("SM001/SM001_followup.dcm", mixed / "dup.dcm", uid="1.2.826.0.1.99.3")
    side = dup.with_name("dup.sm.json")
    side.write_text(side.read_text().rstrip().rstrip("}") + ', "landmarks": {}}')
    out = tmp_path / "out"
    summary = run_batch(BatchOptions(str(mixed), str(out), overlays=False))
    assert summary.n_done == 3
    err = _errors(out)
    assert err.reason.str.contains("nested 1001 levels deep").any()
    assert err.reason.str.contains('duplicate key "landmarks"').any()
    assert not err.reason.str.contains(str(tmp_path)).any()  # relative paths only
    _good_rows_equal(out, clean)
