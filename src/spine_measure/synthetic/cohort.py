"""Larger synthetic cohorts for end-to-end study tests: the seven sample designs, repeated.

``sample_dicoms/`` holds seven hand-designed patients. A study test needs more patients than
that, with the same exact ground truth. :func:`cohort_cases` derives ``n`` patients from the
seven designs: patient ``k`` (0-based) takes design ``k % 7`` and, for ``k >= 7``, a new
patient id (``SM008``, ``SM009``, …), so every film's pixels, noise, cement texture and UIDs
differ (they are seeded by the patient id), with its age, dates, cement volume and the
fracture's loss fractions jittered by a seeded generator. The loss changes stay small (±0.03),
so each design's character (recompression or not, NPEC pattern, leaks) is kept.

``python -m spine_measure.synthetic.cohort OUT --patients 12 [--seed N]`` writes the films,
their truth, the sidecar annotations (``X.sm.json``) and ``clinical.csv``, like
``python -m spine_measure.synthetic`` does for the seven sample patients.

``--reader-b DIR [--reader-b-sd-px 2.0]`` also writes a simulated second reader
(:func:`write_second_reader`): every sidecar copied to ``DIR`` (same relative path) with each
landmark coordinate moved by seeded Gaussian noise of ``sd_px`` pixels, reader id
``reader-b``. The sidecars play reader A. A height ``|As - Ai|`` then differs between the two
readers by ``N(0, 2 sd^2)`` px (both end points move along the line).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from spine_measure.synthetic.studies import (
    AP_PATIENT,
    AP_PLAN,
    CASES,
    DEFAULT_SEED,
    PatientCase,
    _write_clinical,
    render_case_film,
    write_generated,
)

__all__ = ["cohort_cases", "generate_cohort", "write_second_reader"]

log = logging.getLogger(__name__)


def cohort_cases(n_patients: int, seed: int = DEFAULT_SEED) -> list[PatientCase]:
    """``n_patients`` synthetic patients: the seven sample designs, then jittered copies.

    The first seven are exactly the sample patients ``SM001``–``SM007``. Same ``seed`` → the
    same cases.
    """
    if not (isinstance(n_patients, int) and 1 <= n_patients <= 999):
        raise ValueError(f'Argument "n_patients" must be an integer in 1..999; '
                         f'got {n_patients!r}')
    out: list[PatientCase] = []
    for k in range(n_patients):
        base = CASES[k % len(CASES)]
        if k < len(CASES):
            out.append(base)
            continue
        rng = np.random.default_rng([seed, 7919, k])
        pid = f"SM{k + 1:03d}"
        dl = rng.uniform(-0.03, 0.03, size=3)
        loss = {"preop": base.loss["preop"] + dl[0],
                "postop": base.loss["postop"] + dl[1],
                "followup": base.loss["followup"] + dl[1] + 0.5 * dl[2]}
        shift = int(rng.integers(20, 700))
        preop = (_dt.date.fromisoformat(base.preop_date)
                 + _dt.timedelta(days=shift)).isoformat()
        out.append(replace(
            base, patient_id=pid,
            age=int(np.clip(base.age + rng.integers(-6, 7), 55, 95)),
            bmi=round(float(base.bmi + rng.normal(0, 1.5)), 1),
            bmd_t_score=round(float(np.clip(base.bmd_t_score + rng.normal(0, 0.3), -5, -1)), 1),
            cement_volume_ml=round(float(np.clip(base.cement_volume_ml + rng.normal(0, 0.5),
                                                 1.5, 8.0)), 1),
            preop_date=preop, loss={k2: round(float(v), 3) for k2, v in loss.items()},
            summary=f"like {base.patient_id}: {base.summary}",
        ))
    return out


def generate_cohort(out_dir: str | os.PathLike[str], n_patients: int,
                    seed: int = DEFAULT_SEED, *, ap: bool = True) -> list[Path]:
    """Write ``n_patients`` patients (films, truth, sidecar annotations) and ``clinical.csv``.

    Patients made from the AP design (``SM005``'s) also get its AP film when ``ap`` is true.
    Returns the written paths; same arguments → byte-identical files.
    """
    from spine_measure.synthetic.annotations import write_annotation_for_truth

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = cohort_cases(n_patients, seed)
    ap_index = [c.patient_id for c in CASES].index(AP_PATIENT)
    written: list[Path] = []
    for k, case in enumerate(cases):
        plans = list(case.films)
        if ap and k % len(CASES) == ap_index:
            plans.append(AP_PLAN)
        for plan in plans:
            gen = render_case_film(case, plan, seed)
            written += write_generated(gen, out)
            written.append(write_annotation_for_truth(
                out / case.patient_id / f"{gen.stem}.truth.json"))
            log.info("wrote %s", gen.stem)
    written.append(_write_clinical(out, cases))
    return written


def write_second_reader(films_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                        sd_px: float = 2.0, seed: int = DEFAULT_SEED) -> list[Path]:
    """Reader B: every ``*.sm.json`` under ``films_dir`` plus seeded landmark noise.

    Each file gets its own random stream, derived from ``seed`` and its relative path (so
    adding a patient changes no other file); every landmark coordinate moves by
    ``N(0, sd_px^2)`` pixels, flags and findings are kept, the reader id is ``reader-b``.
    Written to ``out_dir`` under the same relative path. Same arguments → the same landmarks.
    """
    from spine_measure.io.annotation import load_annotation, save_annotation
    from spine_measure.reliability.simulate import noisy_annotation

    src, out = Path(films_dir), Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: folder not found")
    if out.resolve() == src.resolve():
        raise ValueError(f"{out}: reader B's folder must differ from the films' folder")
    written: list[Path] = []
    for side in sorted(src.rglob("*.sm.json")):
        rel = side.relative_to(src)
        stream = zlib.crc32(rel.as_posix().encode())
        rng = np.random.default_rng([int(seed), 2, stream])
        ann = noisy_annotation(load_annotation(side), rng, sd_px=sd_px, reader="reader-b")
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        save_annotation(ann, target, overwrite=True)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m spine_measure.synthetic.cohort OUT --patients N [--seed S]``."""
    p = argparse.ArgumentParser(prog="python -m spine_measure.synthetic.cohort",
                                description="Write a synthetic cohort of N patients.")
    p.add_argument("out_dir")
    p.add_argument("--patients", type=int, default=12, help="number of patients (default 12)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--no-ap", action="store_true", help="lateral films only")
    p.add_argument("--reader-b", metavar="DIR",
                   help="also write a second reader: the sidecars plus landmark noise, in DIR")
    p.add_argument("--reader-b-sd-px", type=float, default=2.0, metavar="SD",
                   help="reader B's landmark noise, pixels per coordinate (default 2.0)")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.reader_b and Path(args.reader_b).resolve() == Path(args.out_dir).resolve():
        print(f"error: {args.reader_b}: reader B's folder must differ from the films' folder",
              file=sys.stderr)
        return 2
    try:
        paths = generate_cohort(args.out_dir, args.patients, args.seed, ap=not args.no_ap)
        print(f"{len(paths)} files written to {args.out_dir}")
        if args.reader_b:
            b = write_second_reader(args.out_dir, args.reader_b, args.reader_b_sd_px, args.seed)
            print(f"reader B: {len(b)} annotation files written to {args.reader_b} "
                  f"(landmark noise {args.reader_b_sd_px:g} px, seed {args.seed})")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
