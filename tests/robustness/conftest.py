"""Fixtures of the robustness tests: sample films relabelled as a separate patient, and the
command line run in a child process (so that an abort, a hang or a traceback is seen as the
user would see it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicoms"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")


def film_copy(src: str, dest: Path, *, patient: str = "BAD01", uid: str = "1.2.826.0.1.99.1",
              **changes) -> Path:
    """Copy ``sample_dicoms/<src>`` to ``dest`` as another patient (new SOPInstanceUID),
    with its sidecar annotation, applying ``changes`` (attribute -> value, None deletes)."""
    ds = pydicom.dcmread(SAMPLE / src)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.PatientID = patient
    for kw, value in changes.items():
        if value is None:
            delattr(ds, kw)
        else:
            setattr(ds, kw, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    ann = json.loads((SAMPLE / src).with_name(Path(src).stem + ".sm.json").read_text())
    ann["image"]["sop_instance_uid"] = uid
    dest.with_name(dest.stem + ".sm.json").write_text(json.dumps(ann, indent=1))
    return dest


def good_folder(dest: Path, patient: str = "SM003") -> Path:
    """One sample patient's films and sidecars in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted((SAMPLE / patient).glob("*.dcm")):
        shutil.copy(f, dest / f.name)
        shutil.copy(f.with_name(f.stem + ".sm.json"), dest / f"{f.stem}.sm.json")
    return dest


def run_cli(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    """``spine-measure ARGS`` in a child process with this worktree's sources."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "80"
    code = "import sys; from spine_measure.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    """No traceback, a documented exit code, no abort."""
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode in (0, 1, 2, 3), (proc.returncode, proc.stderr[-2000:])
