"""Issue 18.10, 18.12, 18.13, 18.14, 18.16: import-landmarks stays inside its folders and
takes plain numbers only; unwritable outputs, an empty CSV and an unreachable scheduler are
one line; a full disk loses nothing and the run resumes; messages name the file in the
user's terms. Minimal reproducers, run as the user runs them (a child process)."""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from conftest import SAMPLE, good_folder, one_line_error, run_cli

from spine_measure.cli import main


def _landmark_csv(path: Path, image: str, x: str = "200.5") -> Path:
    rows = ["image,view,level,point,x,y"]
    for pt, (xx, yy) in {"As": (x, "400"), "Ai": ("205", "480"), "Ps": ("290", "402"),
                         "Pi": ("292", "478")}.items():
        rows.append(f"{image},lateral,L1,{pt},{xx},{yy}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def folders(tmp_path):
    images, outside, out = tmp_path / "images", tmp_path / "outside", tmp_path / "out"
    images.mkdir()
    outside.mkdir()
    shutil.copy(SAMPLE / "SM001/SM001_postop.dcm", images / "SM001_postop.dcm")
    shutil.copy(SAMPLE / "SM001/SM001_postop.dcm", outside / "SM001_postop.dcm")
    return tmp_path, images, outside, out


@pytest.mark.parametrize("name, why", [
    ("../outside/SM001_postop.dcm", "a path that leaves the folder (..)"),
    ("<abs>", "an absolute path"),
])
def test_import_landmarks_reads_and_writes_only_inside_its_folders(folders, name, why):
    tmp_path, images, outside, out = folders
    if name == "<abs>":
        name = str(outside / "SM001_postop.dcm")
    csv = _landmark_csv(tmp_path / "lm.csv", name)
    rc = main(["import-landmarks", str(csv), "--images", str(images), "--out", str(out)])
    assert rc == 3
    assert sorted(p.name for p in outside.iterdir()) == ["SM001_postop.dcm"]
    assert not any(tmp_path.rglob("*.sm.json"))


def test_import_landmarks_refuses_a_link_leading_out(folders, capsys):
    tmp_path, images, outside, out = folders
    os.symlink(outside / "SM001_postop.dcm", images / "link.dcm")
    csv = _landmark_csv(tmp_path / "lm.csv", "link.dcm")
    assert main(["import-landmarks", str(csv), "--images", str(images), "--out",
                 str(out)]) == 3
    assert "a link that leads outside the folder" in capsys.readouterr().err


@pytest.mark.parametrize("x", ["1_000", "\u0661\u0662\u0663", "inf", "nan", "0x10", " 1e3 e"])
def test_import_landmarks_takes_plain_decimal_numbers_only(folders, capsys, x):
    tmp_path, images, _outside, out = folders
    csv = _landmark_csv(tmp_path / "lm.csv", "SM001_postop.dcm", x=x)
    assert main(["import-landmarks", str(csv), "--images", str(images), "--out",
                 str(out)]) in (1, 3)
    assert f'"{x.strip()}" is not a plain decimal number' in capsys.readouterr().err


def test_import_landmarks_good_numbers_still_import(folders):
    tmp_path, images, _outside, out = folders
    csv = _landmark_csv(tmp_path / "lm.csv", "SM001_postop.dcm", x="+2.005E2")
    assert main(["import-landmarks", str(csv), "--images", str(images), "--out",
                 str(out)]) == 0
    assert (out / "SM001_postop.sm.json").is_file()


def test_import_landmarks_unwritable_out(folders):
    tmp_path, images, _outside, _out = folders
    (tmp_path / "file").write_text("x")
    csv = _landmark_csv(tmp_path / "lm.csv", "SM001_postop.dcm")
    proc = run_cli("import-landmarks", csv, "--images", images, "--out",
                   tmp_path / "file" / "out")
    one_line_error(proc)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot create the folder" in proc.stderr


def _wide(tmp_path: Path) -> Path:
    out = tmp_path / "batch"
    assert main(["batch", str(good_folder(tmp_path / "in")), "--out", str(out),
                 "--no-progress", "--no-overlays"]) == 0
    return out / "features_wide.csv"


@pytest.mark.parametrize("content", [b"", b"\n"])
def test_risk_apply_on_an_empty_csv_is_one_line(tmp_path, content):
    (tmp_path / "e.csv").write_bytes(content)
    proc = run_cli("risk", "apply", tmp_path / "e.csv", "--model", "li2021")
    one_line_error(proc)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'e.csv'}: the file is empty (no header " \
                                  "line, no rows)"


def test_risk_apply_unwritable_outputs(tmp_path):
    wide = _wide(tmp_path)
    (tmp_path / "folder").mkdir()
    ro = tmp_path / "ro.csv"
    ro.write_text("keep me\n")
    ro.chmod(0o444)
    cases = {tmp_path / "missing" / "r.csv": "no such file or folder",
             tmp_path / "folder": "is a folder",
             ro: "the file is read-only"}
    for target, why in cases.items():
        proc = run_cli("risk", "apply", wide, "--model", "li2021", "-o", target)
        one_line_error(proc)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode in (2, 3) and len(lines) == 1 and why in lines[0], lines
    assert ro.read_text() == "keep me\n"


def test_risk_apply_under_a_file_size_limit(tmp_path):
    """A full disk, simulated by RLIMIT_FSIZE in the child: one line, no partial file."""
    wide = _wide(tmp_path)
    target = tmp_path / "r.csv"

    def small() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40, resource.RLIM_INFINITY))

    proc = run_cli("risk", "apply", wide, "--model", "li2021", "-o", target, preexec_fn=small)
    one_line_error(proc)
    assert proc.returncode == 3
    assert "file too large" in proc.stderr and not target.exists()
    assert not list(tmp_path.glob(".r.csv*"))  # no temporary file left behind


def test_batch_under_a_file_size_limit_keeps_the_journal_and_resumes(tmp_path):
    """The journal is written film by film; the tables hit the limit: one line naming the
    file, the films measured so far kept; the same command without the limit resumes and
    gives the same tables as an undisturbed run."""
    src = good_folder(tmp_path / "in")
    ref_out = tmp_path / "ref"
    assert main(["batch", str(src), "--out", str(ref_out), "--no-progress"]) == 0
    out = tmp_path / "out"

    def small() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))

    proc = run_cli("batch", src, "--out", out, "--no-progress", preexec_fn=small)
    one_line_error(proc)
    assert proc.returncode == 3
    line = [ln for ln in proc.stderr.splitlines() if ln.lower().startswith("error:")]
    assert len(line) == 1 and "file too large" in line[0], proc.stderr
    assert not list(out.rglob("*.tmp"))
    proc = run_cli("batch", src, "--out", out, "--no-progress")
    one_line_error(proc)
    assert proc.returncode == 0
    for name in ("features_wide.csv", "measurements_long.csv", "errors.csv"):
        assert (out / name).read_bytes() == (ref_out / name).read_bytes(), name


@pytest.mark.parametrize("kind", ["existing_file", "parent_is_file"])
def test_batch_out_that_cannot_be_a_folder(tmp_path, kind):
    src = good_folder(tmp_path / "in")
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if kind == "existing_file" else tmp_path / "f" / "out"
    proc = run_cli("batch", src, "--out", out, "--no-progress")
    one_line_error(proc)
    assert proc.returncode in (2, 3)
    errors = [ln for ln in proc.stderr.splitlines() if ln.lower().startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / "f") in errors[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_batch_out_on_a_read_only_file_system(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.system(f"mount -t tmpfs -o ro,size=64k tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        proc = run_cli("batch", good_folder(tmp_path / "in"), "--out", mnt / "out",
                       "--no-progress")
    finally:
        os.system(f"umount {mnt}")
    one_line_error(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.lower().startswith("error:")]
    assert len(errors) == 1 and "read-only file system" in errors[0]


def test_unreachable_scheduler_is_one_line_naming_the_address(tmp_path):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    proc = run_cli("batch", good_folder(tmp_path / "in"), "--out", tmp_path / "out",
                   "--no-progress", "--scheduler", address, "--scheduler-timeout", "1",
                   timeout=60)
    one_line_error(proc)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.lower().startswith("error:")]
    assert len(errors) == 1 and address in errors[0] and "--scheduler-timeout" in errors[0]


def test_errors_csv_reasons_are_relative_and_in_user_terms(tmp_path):
    """No exception class names, no absolute (temporary) paths in errors.csv."""
    src = good_folder(tmp_path / "in")
    (src / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10" * 7)
    ann = src / "SM003_preop.sm.json"
    ann.write_text(ann.read_text()[:-40])
    out = tmp_path / "out"
    main(["batch", str(src), "--out", str(out), "--no-progress", "--no-overlays"])
    err = pd.read_csv(out / "errors.csv", dtype=str, keep_default_na=False)
    assert len(err) >= 2
    for reason in err.reason:
        assert str(tmp_path) not in reason, reason
        assert not re.search(r"\b[A-Z][a-zA-Z]+(Error|Exception)\b", reason), reason


def test_warnings_are_log_lines_naming_the_file(tmp_path):
    """pydicom's "Unknown encoding" warning (repeated 98 times in one export-sr before) comes
    out once per film as the tool's log line naming the film, never as 'charset.py:738:'."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(SAMPLE / "SM003/SM003_postop.dcm")
    ds._dict[Tag(0x00080005)] = RawDataElement(Tag(0x00080005), "CS", 10, b"ISO_IR 999", 0,
                                               False, True)
    ds._dict[Tag(0x00100010)] = RawDataElement(Tag(0x00100010), "PN", 12, b"M\xfcller^Hans",
                                               0, False, True)
    film = tmp_path / "enc.dcm"
    ds.save_as(film)
    shutil.copy(SAMPLE / "SM003/SM003_postop.sm.json", tmp_path / "enc.sm.json")
    for argv in (["export-sr", film, "--out", tmp_path / "sr"], ["measure", film]):
        proc = run_cli(*argv)
        one_line_error(proc)
        assert not re.search(r"\.py:\d+:", proc.stderr), proc.stderr
        warned = [ln for ln in proc.stderr.splitlines() if "Unknown encoding" in ln]
        assert warned and all(str(film) in ln for ln in warned), proc.stderr
        assert len(warned) == len(set(warned))


def test_export_sr_with_a_huge_coordinate_is_one_line(tmp_path):
    """A 1e308 coordinate (valid JSON, a valid float) cannot be stored as DICOM Graphic Data
    (32-bit floats): one line in the user's terms, no pydicom traceback pasted into it, and
    no partial SR file."""
    import json

    film = tmp_path / "SM003_postop.dcm"
    shutil.copy(SAMPLE / "SM003/SM003_postop.dcm", film)
    ann = json.loads((SAMPLE / "SM003/SM003_postop.sm.json").read_text())
    v = ann["landmarks"]["vertebrae"][0]
    first = next(iter(v["points"]))
    v["points"][first] = [1e308, v["points"][first][1]]
    (tmp_path / "SM003_postop.sm.json").write_text(json.dumps(ann))
    proc = run_cli("export-sr", film, "--out", tmp_path / "sr")
    one_line_error(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "too large to be stored in DICOM" in errors[0], proc.stderr
    assert "pack" not in errors[0] and "(0070,0022)" not in errors[0]
    assert not list((tmp_path / "sr").glob("*"))


def test_risk_apply_warnings_name_the_file(tmp_path):
    csv = tmp_path / "few.csv"
    csv.write_text("patient_pseudo_id,foo\nx,1\n")
    proc = run_cli("risk", "apply", csv, "--model", "li2021", "-o", tmp_path / "r.csv")
    one_line_error(proc)
    warned = [ln for ln in proc.stderr.splitlines() if "input column(s) missing" in ln]
    assert len(warned) == 1 and f"{csv}: model li2021" in warned[0]
