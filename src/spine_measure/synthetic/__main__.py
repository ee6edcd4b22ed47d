"""``python -m spine_measure.synthetic OUT_DIR [--seed N] [--patients SM001,SM002]``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from spine_measure.synthetic.studies import DEFAULT_SEED, generate_sample_set


def main(argv: list[str] | None = None) -> int:
    """Regenerate the sample studies; returns 0 on success, 2 on bad arguments."""
    p = argparse.ArgumentParser(prog="python -m spine_measure.synthetic",
                                description="Write the synthetic sample studies.")
    p.add_argument("out_dir", help="output folder (e.g. sample_dicoms)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="master seed")
    p.add_argument("--patients", default=None, help="comma-separated patient ids (default all)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    t0 = time.perf_counter()
    patients = args.patients.split(",") if args.patients else None
    paths = generate_sample_set(args.out_dir, seed=args.seed, patients=patients)
    logging.getLogger(__name__).info("%d files written in %.1f s", len(paths),
                                     time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
