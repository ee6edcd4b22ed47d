"""Benchmark of ``spine-measure batch`` (not a test; ``docs/performance.md``).

1. Builds a folder of >= 1,000 films: the sample studies copied with new UIDs and
   PatientIDs, each with its annotation (made from the ground truth, UID rewritten).
2. Measures, in the same run, the bare baseline (header scan + full pixel decode of every
   film, serial, no output) and ``run_batch`` with ``--jobs 2`` (overlays on); reports
   films/s and the ratio (target >= 0.7x).
3. Peak RSS of a batch run (main process plus its workers, sampled with psutil) on N/10 and
   N films (target: < 1.5x for 10x the films).

Usage: ``python benchmarks/bench_batch.py [--films 1100] [--work /tmp/bench_batch]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_dicoms"


def _annotate(folder: Path) -> None:
    try:
        from spine_measure.synthetic.annotations import write_annotation_for_truth as make
    except ImportError:
        sys.path.insert(0, str(ROOT / "tests" / "batch"))
        from batch_helpers import annotation_from_truth as make
    for t in sorted(folder.rglob("*.truth.json")):
        if not t.with_name(t.name.replace(".truth.json", ".sm.json")).exists():
            make(t)


def build_folder(dest: Path, n_films: int) -> int:
    """Copy the sample studies with new UIDs until ``n_films`` films exist; return the count."""
    import pydicom
    from pydicom.uid import generate_uid

    base = dest.parent / "base"
    if not base.exists():
        shutil.copytree(SAMPLE, base)
        _annotate(base)
    films = sorted(base.rglob("*.dcm"))
    dest.mkdir(parents=True, exist_ok=True)
    n, copy = 0, 0
    while n < n_films:
        for f in films:
            if n >= n_films:
                break
            pid = f"{f.parent.name}C{copy:05d}"
            out = dest / pid / f.name
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.with_name(out.stem + ".sm.json").exists():
                n += 1
                continue
            ds = pydicom.dcmread(f)
            uid = generate_uid(entropy_srcs=[pid, f.name])
            ds.SOPInstanceUID = uid
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.StudyInstanceUID = generate_uid(entropy_srcs=[pid, f.name, "study"])
            ds.SeriesInstanceUID = generate_uid(entropy_srcs=[pid, f.name, "series"])
            ds.PatientID = pid
            ds.save_as(out)
            ann = json.loads(f.with_name(f.stem + ".sm.json").read_text())
            ann["image"]["sop_instance_uid"] = uid
            for k in ("study_instance_uid", "series_instance_uid"):
                ann["image"][k] = None
            out.with_name(out.stem + ".sm.json").write_text(json.dumps(ann))
            n += 1
        copy += 1
    return n


def baseline(folder: Path) -> float:
    """Seconds for the bare header scan plus full decode of every film (serial)."""
    import warnings

    from spine_measure.io.radiograph import load_radiograph

    warnings.simplefilter("ignore")
    from spine_measure.io.scan import scan_folder

    t0 = time.perf_counter()
    scan = scan_folder(folder)
    for h in scan.images:
        load_radiograph(h.path).pixels.sum()
    return time.perf_counter() - t0


RUNNER = """
import sys, time, json
from spine_measure.batch import BatchOptions, run_batch
t0 = time.perf_counter()
s = run_batch(BatchOptions(sys.argv[1], sys.argv[2], jobs=int(sys.argv[3]),
                           pseudonym_key="bench"))
print(json.dumps({"seconds": time.perf_counter() - t0, "done": s.n_done,
                  "failed": s.n_failed}))
"""


def batch_run(folder: Path, out: Path, jobs: int) -> dict:
    """Run a batch in a subprocess; return its time, counts and the peak RSS of its tree."""
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(folder), str(out), str(jobs)],
                            stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.05)
    res = json.loads(proc.stdout.read().strip().splitlines()[-1])
    res["peak_rss_mb"] = round(peak / 2**20, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--films", type=int, default=1100)
    ap.add_argument("--work", default="/tmp/bench_batch")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    work = Path(args.work)
    small, large = work / "small", work / "large"
    n_small = build_folder(small, max(1, args.films // 10))
    n_large = build_folder(large, args.films)
    t_base = baseline(large)
    r_large = batch_run(large, work / "out_large", args.jobs)
    r_small = batch_run(small, work / "out_small", args.jobs)
    report = {
        "cpu_count": os.cpu_count(),
        "films": n_large,
        "baseline_scan_decode_s": round(t_base, 2),
        "baseline_films_per_s": round(n_large / t_base, 1),
        "batch_jobs": args.jobs,
        "batch_s": round(r_large["seconds"], 2),
        "batch_films_per_s": round(n_large / r_large["seconds"], 1),
        "throughput_ratio": round(t_base / r_large["seconds"], 2),
        "batch_done": r_large["done"], "batch_failed": r_large["failed"],
        "peak_rss_mb_small": r_small["peak_rss_mb"], "films_small": n_small,
        "peak_rss_mb_large": r_large["peak_rss_mb"],
        "rss_ratio_10x": round(r_large["peak_rss_mb"] / r_small["peak_rss_mb"], 2),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
