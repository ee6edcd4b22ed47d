"""Resume after kill -9, --jobs 2 and a Dask cluster all write exactly the serial output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_helpers import copy_sample

from spine_measure.batch import BatchOptions, JournalMismatchError, run_batch

KEY = "resume-key"
CLI = "import sys; from spine_measure.cli import main; sys.exit(main(sys.argv[1:]))"
VOLATILE = ("started", "finished", "seconds")


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every output file (not the journal or the key), the manifest without run times."""
    files = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_dir() or rel.startswith("journal/") or rel == "pseudonym.key":
            continue
        data = p.read_bytes()
        if rel == "run_manifest.json":
            m = json.loads(data)
            for k in VOLATILE:
                m.pop(k)
            m["counts"].pop("from_journal")
            m["options"].pop("jobs")
            m["options"].pop("scheduler")
            data = json.dumps(m, sort_keys=True).encode()
        files[rel] = data
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    src = copy_sample(tmp_path_factory.mktemp("in"), ["SM001", "SM002", "SM003"])
    out = tmp_path_factory.mktemp("ref")
    s = run_batch(BatchOptions(str(src), str(out), clinical=str(src / "clinical.csv"),
                               pseudonym_key=KEY))
    assert s.n_done == 9
    return src, _snapshot(out)


def _processes_writing(out) -> list[int]:
    """Pids of live processes whose command line names ``out`` (Linux /proc)."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(out).encode() in cmd and state != "Z":
            pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_resume_after_kill_is_byte_identical(reference, tmp_path):
    src, ref = reference
    out = tmp_path / "out"
    args = [sys.executable, "-c", CLI, "batch", str(src), "--out", str(out), "--clinical",
            str(src / "clinical.csv"), "--pseudonym-key", KEY, "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.is_dir() and len(list(journal.glob("f_*.json"))) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # its worker processes do not outlive it (they used to wait for work forever)
    deadline = time.monotonic() + 60
    while _processes_writing(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_writing(out), "worker processes outlived the killed batch"
    n_journal = len(list(journal.glob("f_*.json")))
    assert 3 <= n_journal < 9
    assert not (out / "features_wide.csv").exists()
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"from journal: {n_journal}" in rerun.stderr.replace("\n", " ")
    got = _snapshot(out)
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert got[name] == ref[name], name


def test_changed_options_are_refused(reference, tmp_path):
    src, _ref = reference
    out = tmp_path / "out"
    run_batch(BatchOptions(str(src), str(out), pseudonym_key=KEY, overlays=False))
    with pytest.raises(JournalMismatchError) as info:
        run_batch(BatchOptions(str(src), str(out), pseudonym_key=KEY + "x", overlays=True,
                               postop_window_days=21))
    msg = str(info.value)
    # the options that differ, by their command-line names, old and new value
    assert "overlays (--no-overlays): off before, on now" in msg
    assert "--postop-window-days: 14 before, 21 now" in msg
    assert "pseudonym key" in msg and "a different key" in msg and KEY not in msg
    assert "--clinical" not in msg and "hash" not in msg
    assert "--restart" in msg and "another --out" in msg
    s = run_batch(BatchOptions(str(src), str(out), pseudonym_key=KEY, overlays=False))
    assert s.n_from_journal == 9  # same options: everything comes from the journal


def test_jobs_2_equals_serial(reference, tmp_path):
    src, ref = reference
    out = tmp_path / "out"
    run_batch(BatchOptions(str(src), str(out), clinical=str(src / "clinical.csv"),
                           pseudonym_key=KEY, jobs=2))
    assert _snapshot(out) == ref


def test_dask_scheduler_equals_serial(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    src, ref = reference
    out = tmp_path / "out"
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        run_batch(BatchOptions(str(src), str(out), clinical=str(src / "clinical.csv"),
                               pseudonym_key=KEY, scheduler=cluster.scheduler_address))
    assert _snapshot(out) == ref
