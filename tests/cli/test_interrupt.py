"""Ctrl-C during ``batch --jobs 2``: one message saying how to resume, exit 130, no worker
tracebacks; the same command then resumes from the journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch"))
from batch_helpers import copy_sample  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from spine_measure.cli import main; sys.exit(main())"]


def test_ctrl_c_says_how_to_resume_and_workers_stay_quiet(tmp_path):
    films = copy_sample(tmp_path / "in")
    out = tmp_path / "out"
    args = [*CLI, "batch", str(films), "--out", str(out), "--jobs", "2", "--no-progress",
            "--pseudonym-key", "k"]
    env = {**os.environ, "COLUMNS": "80"}
    # a terminal's Ctrl-C goes to the whole process group: the parent and its workers
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "journal").glob("f_*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Run the same command again to resume" in stderr
    assert "Traceback" not in stderr and "ForkPoolWorker" not in stderr, stderr
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    from_journal = int(again.stderr.split("(from journal: ")[1].split(")")[0])
    assert from_journal >= 2
