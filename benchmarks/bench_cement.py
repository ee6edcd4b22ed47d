"""Benchmark: cement segmentation + features of one treated vertebra vs decoding the film.

Renders one synthetic 3000 x 3000 post-operative lateral film at 0.139 mm (SM001's L1,
spongy cement; the header states that spacing, so the cement code works on its 0.278 mm
grid),
writes it as uncompressed, RLE, JPEG-LS and JPEG 2000 DICOM into a temporary folder, and
measures in the same run (median of ``--repeat`` runs, after one warm-up):

* ``decode``: ``load_radiograph(path).pixels`` (file read + decompression);
* ``cement``: :func:`spine_measure.cement.analyze_cement` on the decoded
  :class:`~spine_measure.io.radiograph.Radiograph` (what the batch and ``measure`` do: only the
  search region is converted to density), segmentation and every feature of the treated
  vertebra; also split into segmentation and features.

For uncompressed and RLE films it also times the whole per-film batch step
(``batch.worker.process_film``: hash, header, annotation, measurements, cement, overlay; the
film and its annotation planned by ``plan_batch`` as ``spine-measure batch`` plans them).

Targets (decided in issue 14, item 15): the cement step is <= 10 % of decoding for the
compressed syntaxes archives hold (JPEG-LS, JPEG 2000; JPEG lossless has no encoder among
the project's dependencies, so it is not measured here), and <= 15 % of the whole per-film
batch step for uncompressed and RLE films. Exit code 1 when a target is missed.
Usage: ``python benchmarks/bench_cement.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

from _timing import median_time as _median_time  # benchmarks/_timing.py

from spine_measure.cement import analyze_cement, cement_features, segment_cement
from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks
from spine_measure.synthetic import CASES, render_case_film
from spine_measure.synthetic.dicom import write_film

TARGET = 0.10        # of decoding, compressed syntaxes
TARGET_STEP = 0.15   # of the whole per-film batch step, uncompressed and RLE
STEP_SYNTAXES = ("explicit", "rle")


def _batch_step(gen, ts: str, folder: Path, repeat: int) -> float:
    """Median seconds of the batch's whole per-film step on ``gen`` written as ``ts``."""
    from spine_measure.batch.plan import plan_batch
    from spine_measure.batch.worker import process_film
    from spine_measure.synthetic.annotations import write_annotation_for_truth
    from spine_measure.synthetic.studies import write_generated

    paths = write_generated(replace(gen, header=replace(gen.header, transfer_syntax=ts)),
                            folder)
    write_annotation_for_truth(next(p for p in paths if p.name.endswith(".truth.json")))
    plan = plan_batch(folder, key=b"bench")
    (task,) = plan.tasks
    rec = process_film(task)
    if rec["status"] != "done":
        raise SystemExit(f"batch step failed on the {ts} film: {rec['reason']}")
    return _median_time(lambda: process_film(task), repeat)




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
              f" {'segment ms':>11s} {'features ms':>12s} {'step ms':>8s} {'of step':>8s}")
        missed = []
        for ts in ("explicit", "rle", "jpegls", "j2k"):
            path = Path(tmp) / f"film_{ts}.dcm"
            write_film(path, gen.film.pixels, replace(gen.header, transfer_syntax=ts))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_dec = _median_time(lambda p=path: load_radiograph(p).pixels, args.repeat)
                rg = load_radiograph(path)
                _ = rg.pixels  # decoded once, as the batch has it when cement runs

            def cement(rg=rg):
                return analyze_cement(rg, lm, level, rg.spacing)

            t_cem = _median_time(cement, args.repeat)
            seg = segment_cement(rg, lm, level, rg.spacing)
            t_seg = _median_time(lambda rg=rg: segment_cement(rg, lm, level, rg.spacing),
                                 args.repeat)
            t_feat = _median_time(lambda s=seg, rg=rg: cement_features(s, lm, level, rg.spacing),
                                  args.repeat)
            ratio = t_cem / t_dec
            step = ""
            if ts in STEP_SYNTAXES:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t_step = _batch_step(gen, ts, Path(tmp) / f"batch_{ts}", args.repeat)
                of_step = t_cem / t_step
                step = f" {1000 * t_step:8.1f} {100 * of_step:7.1f}%"
                if of_step > TARGET_STEP:
                    missed.append(f"{ts}: {100 * of_step:.1f} % of the batch step")
            else:
                worst = max(worst, ratio)
                if ratio > TARGET:
                    missed.append(f"{ts}: {100 * ratio:.1f} % of decoding")
            print(f"{ts:16s} {1000 * t_dec:10.1f} {1000 * t_cem:10.1f} {100 * ratio:6.1f}%"
                  f" {1000 * t_seg:11.1f} {1000 * t_feat:12.1f}{step}")
        res = cement()
        print(f"npec={res.features.npec} distribution={res.features.distribution} "
              f"leaks={len(res.features.leaks)}")
    print(f"compressed: worst {100 * worst:.1f} % of decoding (target <= "
          f"{100 * TARGET:.0f} %); uncompressed and RLE: target <= {100 * TARGET_STEP:.0f} % "
          "of the batch step")
    print("missed: " + "; ".join(missed) if missed else "every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
