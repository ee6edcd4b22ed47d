"""Geometry is never the bottleneck: measuring N annotated films against reading their N
DICOM headers, in the same run.

    .venv/bin/python benchmarks/bench_measure.py [--films 506] [--repeat 5] [--root sample_dicoms]

For every film in ``sample_dicoms/`` that has a ``*.truth.json`` (22 films: 21 lateral, one
AP), cycled to N >= 500 films, it times

(a) ``spine_measure.io.scan.read_header`` of the N DICOM files (what a batch or the napari
    plugin pays per film before any measurement);
(b) a bare ``pydicom.dcmread(path, stop_before_pixels=True)`` of the same files;
(c) ``measure_film`` of the N films from their truth landmarks (every single-film
    measurement, no pixel work; landmarks and calibration prepared beforehand);
(d) for information, the annotation path end to end: parse the truth JSON, build the
    ``SpineLandmarks`` (validated) and measure.

and prints the ratio (c) / (a): the target is < 1.0, i.e. a batch spends more time reading
headers (let alone pixels) than measuring, and the napari table can be recomputed on every
landmark edit. The films are copied to a temporary folder first and read from the page cache
(every film is read once before timing), so (a) and (b) are at their cheapest and the ratio
is conservative.

Timing: each row is the best of ``--repeat`` passes over the N films, passes of the four rows
interleaved so that load on a shared machine affects them alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom

import spine_measure
from spine_measure.io.scan import read_header
from spine_measure.landmarks import SpineLandmarks
from spine_measure.measurements import measure_film

ROOT = Path(__file__).resolve().parents[1] / "sample_dicoms"


def sample_films(root: Path) -> list[tuple[Path, Path]]:
    """``(dicom, truth)`` pairs of every annotated sample film, sorted."""
    pairs = []
    for truth in sorted(root.glob("*/*.truth.json")):
        dcm = truth.with_name(truth.name.removesuffix(".truth.json") + ".dcm")
        if dcm.exists():
            pairs.append((dcm, truth))
    if not pairs:
        sys.exit(f"no *.truth.json with a .dcm next to it under {root}")
    return pairs


def film_inputs(truth: Path) -> tuple[SpineLandmarks, dict[str, Any]]:
    """Landmarks and ``measure_film`` keyword arguments from a truth file."""
    t = json.loads(truth.read_text())
    spine = SpineLandmarks.from_dict({"view": t["view"], "vertebrae": t["vertebrae"]})
    cal = t.get("calibration") or {}
    spacing = (cal["row_mm"], cal["col_mm"]) if cal.get("row_mm") else None
    return spine, {"spacing": spacing,
                   "calibration_source": cal.get("source", "uncalibrated")}


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--films", type=int, default=506, help="N, films per pass (>= 500)")
    ap.add_argument("--repeat", type=int, default=5, help="passes per row (best is kept)")
    ap.add_argument("--root", type=Path, default=ROOT, help="folder of the sample films")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="bench_measure_") as tmp:
        # a private snapshot of the films, safe from a concurrent regeneration of the samples
        snap = Path(tmp)
        for dcm, truth in sample_films(args.root):
            (snap / dcm.parent.name).mkdir(exist_ok=True)
            shutil.copy2(dcm, snap / dcm.parent.name / dcm.name)
            shutil.copy2(truth, snap / truth.parent.name / truth.name)
        run(sample_films(snap), args)


def run(pairs: list[tuple[Path, Path]], args: argparse.Namespace) -> None:
    """Time the four rows on ``pairs`` and print the table."""
    n = max(args.films, 1)
    films = [pairs[i % len(pairs)] for i in range(n)]
    paths = [str(d) for d, _ in films]
    prepared = {t: film_inputs(t) for _, t in pairs}
    inputs = [prepared[t] for _, t in films]
    texts = {t: t.read_text() for _, t in pairs}
    truth_texts = [texts[t] for _, t in films]
    n_vert = sum(len(s) for s, _ in inputs)

    def header() -> None:
        for p in paths:
            read_header(p)

    def bare() -> None:
        for p in paths:
            pydicom.dcmread(p, stop_before_pixels=True)

    def measure() -> None:
        for spine, kw in inputs:
            measure_film(spine, **kw)

    def end_to_end() -> None:
        for text in truth_texts:
            t = json.loads(text)
            spine = SpineLandmarks.from_dict({"view": t["view"], "vertebrae": t["vertebrae"]})
            cal = t.get("calibration") or {}
            measure_film(spine, spacing=(cal["row_mm"], cal["col_mm"]) if cal.get("row_mm")
                         else None, calibration_source=cal.get("source", "uncalibrated"))

    rows: dict[str, Callable[[], None]] = {
        "(a) read_header (spine_measure.io.scan)": header,
        "(b) pydicom.dcmread(stop_before_pixels=True)": bare,
        "(c) measure_film from landmarks": measure,
        "(d) truth JSON -> SpineLandmarks -> measure": end_to_end,
    }
    for fn in rows.values():  # warm the page cache, imports and caches
        fn()
    best = {name: float("inf") for name in rows}
    for _ in range(max(args.repeat, 1)):
        for name, fn in rows.items():
            best[name] = min(best[name], timed(fn))

    per = {name: t / n * 1e3 for name, t in best.items()}
    head = per["(a) read_header (spine_measure.io.scan)"]
    print(f"spine_measure {getattr(spine_measure, '__version__', '?')}, "
          f"Python {platform.python_version()}, pydicom {pydicom.__version__}, "
          f"{platform.machine()}")
    print(f"N = {n} films ({len(pairs)} distinct sample films cycled, "
          f"{n_vert / n:.1f} vertebrae per film on average), best of {args.repeat} passes")
    print()
    print(f"  {'operation':48s} {'total ms':>9s} {'ms/film':>8s} {'vs (a)':>7s}")
    for name, t in best.items():
        print(f"  {name:48s} {t * 1e3:9.1f} {per[name]:8.4f} {per[name] / head:6.2f}x")
    meas = per["(c) measure_film from landmarks"]
    ratio = meas / head
    verdict = "OK" if ratio < 1.0 else "NOT MET"
    print()
    print(f"ratio measure / header read = {ratio:.3f}   target < 1.0   {verdict}")
    print(f"ratio measure / bare pydicom header read = "
          f"{meas / per['(b) pydicom.dcmread(stop_before_pixels=True)']:.3f}")


if __name__ == "__main__":
    main()
