"""Start-up benchmark: ``spine-measure --version`` and ``spine-measure info FILE`` against
``python -c "import pydicom"`` in the same run (each a fresh interpreter).

    .venv/bin/python benchmarks/bench_startup.py [--repeat 11] [--file sample_dicoms/...]
        [--compare-src OTHER_CHECKOUT/src]

Targets (issue 14, item 15): ``--version`` <= 0.3 s and ``info FILE`` <= 0.5 s. Wall times
on a shared machine drift, so every command runs ``--repeat`` times, interleaved with the
baseline, and the table gives the medians and each command's ratio to the baseline's median.
``--compare-src`` also times the two ``spine-measure`` commands with another source tree
first on ``PYTHONPATH`` (e.g. a checkout from before a change), interleaved in the same run.
The figures go into ``docs/performance.md`` ("Start-up").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what the ``spine-measure`` console script runs
CLI = "import sys; from spine_measure.cli import main; sys.exit(main(sys.argv[1:]))"


def commands(film: Path) -> dict[str, list[str]]:
    py = sys.executable
    return {
        'python -c "pass"': [py, "-c", "pass"],
        'python -c "import pydicom"': [py, "-c", "import pydicom"],
        "spine-measure --version": [py, "-c", CLI, "--version"],
        f"spine-measure info {film.name}": [py, "-c", CLI, "info", str(film)],
        f"spine-measure info --header-only {film.name}":
            [py, "-c", CLI, "info", "--header-only", str(film)],
    }


def run_once(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit code {proc.returncode}\n{proc.stderr}")
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--file", type=Path,
                    default=ROOT / "sample_dicoms" / "SM001" / "SM001_postop.dcm")
    ap.add_argument("--compare-src", type=Path, default=None)
    args = ap.parse_args(argv)
    cmds = {k: (v, None) for k, v in commands(args.file).items()}
    if args.compare_src is not None:
        other = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(args.compare_src), os.environ.get("PYTHONPATH", "")])}
        for name, cmd in commands(args.file).items():
            if name.startswith("spine-measure") and "--header-only" not in name:
                cmds[f"{name} [{args.compare_src.parent.name}]"] = (cmd, other)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for cmd, env in cmds.values():  # warm-up: page cache and .pyc files
        run_once(cmd, env)
    for _ in range(args.repeat):
        for name, (cmd, env) in cmds.items():
            times[name].append(run_once(cmd, env))
    base = statistics.median(times['python -c "import pydicom"'])
    print(f"median of {args.repeat} runs each, interleaved; baseline "
          f"'python -c \"import pydicom\"' = {base * 1000:.0f} ms")
    print(f"{'command':<56} {'median':>9} {'min':>9} {'ratio':>7}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<56} {med * 1000:7.0f} ms {min(ts) * 1000:6.0f} ms {med / base:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
