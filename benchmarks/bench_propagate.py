"""Benchmark: propagating every annotated vertebra of a 3000 x 3000 film, and refining clicks.

Renders SM001's pre-op and post-op lateral films at 3000 x 3000 (0.139 mm), writes them as
JPEG 2000 DICOM (the usual compressed export) into a temporary folder, and measures in the
same run (median of ``--repeat`` runs after one warm-up):

* ``decode``: ``load_radiograph`` of both films (the baseline: what opening them costs);
* ``propagate``: :func:`spine_measure.propose.propagate_landmarks` pre-op -> post-op of all
  seven vertebrae (T10-L4; L1 is treated, so its endplates get stage 3 too);
* ``refine``: :func:`spine_measure.propose.refine.refine_landmark` of one perturbed corner,
  per click (over every corner of the film).

Prints the absolute times, the ratio ``propagate / decode``, the per-click time, the number
of cores and the load average (the machine is shared: compare ratios between runs). Targets:
propagation <= 2 s, refinement <= 20 ms per click; exit code 1 when either is missed.
Usage: ``python benchmarks/bench_propagate.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from _timing import median_time as _median_time  # benchmarks/_timing.py

from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks
from spine_measure.propose import propagate_landmarks
from spine_measure.propose.refine import refine_landmark
from spine_measure.synthetic import CASES, render_case_film
from spine_measure.synthetic.dicom import write_film

TARGET_PROPAGATE_S = 2.0
TARGET_REFINE_MS = 20.0




def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    case = CASES[0]
    gens = [render_case_film(case, plan, shape=(3000, 3000), spacing_mm=0.139)
            for plan in case.films[:2]]
    truth = SpineLandmarks.from_dict(gens[0].truth)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for g in gens:
            p = Path(tmp) / f"{g.stem}.dcm"
            write_film(p, g.film.pixels, replace(g.header, transfer_syntax="j2k"))
            paths.append(p)

        def decode():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return [load_radiograph(p) for p in paths]

        films = decode()
        src, tgt = films[0].density, films[1].density
        t_decode = _median_time(decode, args.repeat)
        result = {}

        def propagate():
            result["p"] = propagate_landmarks(src, truth, tgt)

        t_prop = _median_time(propagate, args.repeat)
        prop = result["p"]
        rng = np.random.default_rng(0)
        clicks = []
        for v in truth:
            if v.level == "S1":
                continue
            for n in ("As", "Ai", "Ps", "Pi"):
                noisy = dict(v.points)
                noisy[n] = tuple(v.point(n) + rng.normal(0, 5.0, 2))
                clicks.append((noisy, n))

        def refine_all():
            for pts, n in clicks:
                refine_landmark(tgt, pts, n, radius_px=15)

        t_refine = _median_time(refine_all, args.repeat) / len(clicks)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"film 3000x3000 (0.139 mm), JPEG 2000, {len(truth)} vertebrae; "
          f"median of {args.repeat} runs; {os.cpu_count()} cores, load average {load:.1f}")
    print(f"decode both films      {t_decode:7.3f} s")
    print(f"propagate (all levels) {t_prop:7.3f} s   ratio to decode {t_prop / t_decode:5.2f}"
          f"   target <= {TARGET_PROPAGATE_S:.1f} s")
    print(f"  proposed {len(prop.proposed())} of {len(prop.vertebrae)}; global confidence "
          f"{prop.global_fit.confidence:.2f}")
    print(f"refine one click       {1000 * t_refine:7.2f} ms  (over {len(clicks)} corners)"
          f"   target <= {TARGET_REFINE_MS:.0f} ms")
    ok = t_prop <= TARGET_PROPAGATE_S and 1000 * t_refine <= TARGET_REFINE_MS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
