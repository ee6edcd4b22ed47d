"""Benchmark: cement segmentation + features of one treated vertebra vs decoding the film.

Renders one synthetic 3000 x 3000 post-operative lateral film (SM001's L1, spongy cement),
writes it as uncompressed, RLE and JPEG-LS DICOM into a temporary folder, and measures in the
same run (median of ``--repeat`` runs, after one warm-up):

* ``decode``: ``load_radiograph(path).pixels`` (file read + decompression);
* ``cement``: ``Radiograph.density`` + :func:`spine_measure.cement.analyze_cement` (segmentation
  and every feature) for the treated vertebra.

Prints each ratio ``cement / decode``; the target is <= 10 %. Exit code 1 when a ratio is
above the target. Usage: ``python benchmarks/bench_cement.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

from spine_measure.cement import analyze_cement
from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks
from spine_measure.synthetic import CASES, render_case_film
from spine_measure.synthetic.dicom import write_film

TARGET = 0.10


def _median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    case = CASES[0]
    plan = case.films[1]
    gen = render_case_film(case, plan, shape=(3000, 3000), spacing_mm=0.139)
    lm = SpineLandmarks.from_dict(gen.truth)
    level = case.level
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        print(f"film 3000x3000, {level}, spacing 0.139 mm; median of {args.repeat} runs")
        print(f"{'transfer syntax':16s} {'decode ms':>10s} {'cement ms':>10s} {'ratio':>7s}"
              "  (cement = Radiograph.density + analyze_cement)")
        for ts in ("explicit", "rle", "jpegls"):
            path = Path(tmp) / f"film_{ts}.dcm"
            write_film(path, gen.film.pixels, replace(gen.header, transfer_syntax=ts))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_dec = _median_time(lambda p=path: load_radiograph(p).pixels, args.repeat)
                rg = load_radiograph(path)

            def cement(rg=rg):
                rg.__dict__.pop("density", None)   # recompute the cached density each run
                rg.__dict__.pop("values", None)
                return analyze_cement(rg.density, lm, level, rg.spacing)

            t_cem = _median_time(cement, args.repeat)
            dens = rg.density
            t_roi = _median_time(lambda d=dens, rg=rg: analyze_cement(d, lm, level, rg.spacing),
                                 args.repeat)
            ratio = t_cem / t_dec
            worst = max(worst, ratio)
            print(f"{ts:16s} {1000 * t_dec:10.1f} {1000 * t_cem:10.1f} {100 * ratio:6.1f}%"
                  f"   (without the full-film density conversion: {1000 * t_roi:.1f} ms, "
                  f"{100 * t_roi / t_dec:.1f}%)")
        res = cement()
        print(f"npec={res.features.npec} distribution={res.features.distribution} "
              f"leaks={len(res.features.leaks)}")
    print(f"worst ratio {100 * worst:.1f} % (target <= {100 * TARGET:.0f} %)")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
