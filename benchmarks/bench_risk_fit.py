"""Benchmark of ``spine-measure risk fit`` (not a test; ``docs/performance.md``).

Cohort: ``simulate_li2021(3000, seed=0)`` with the Li 2021 predictors; 1000 bootstrap
resamples (the default). Measured in the same run:

* baseline: 1000 bare statsmodels refits (``sm.Logit(...).fit(method="newton")``) on the same
  resamples, i.e. the least any optimism bootstrap of this model costs with the reference
  fitter, nothing else;
* ``spine-measure risk fit`` end to end (CLI, separate process: reading the CSV, the fit,
  1000 resamples with c-index, calibration slope/intercept/in-the-large, Brier, lowess
  calibration curve and net-benefit optimism, four 300 dpi figures, the HTML report);
* the same command again with the same seed, to check the outputs are byte-identical.

Prints the seconds, the ratio ``risk fit / baseline`` and the target (<= 30 s).

Usage: ``python benchmarks/bench_risk_fit.py [--n 3000] [--bootstrap 1000]
[--work /tmp/bench_risk_fit]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PREDICTORS = ("ivc,posterior_fascia_oedema,goutallier_grade:0+1|2|3+4,"
              "cement_distribution_postop:spongy|blocky")


def baseline_refits(df, n_boot: int, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds of the bare statsmodels refits."""
    import statsmodels.api as sm

    from spine_measure.risk.fit import encode, parse_predictors

    specs = parse_predictors(PREDICTORS.split(","), df)
    X, _ = encode(specs, df)
    Xc = sm.add_constant(X.to_numpy(float))
    y = df.residual_back_pain.to_numpy(float)
    rng = np.random.default_rng(seed)
    t, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            idx = rng.integers(0, len(y), len(y))
            try:
                sm.Logit(y[idx], Xc[idx]).fit(disp=0, method="newton", maxiter=50)
            except Exception:  # noqa: BLE001 - a failed refit still cost its time
                pass
    return time.perf_counter() - t, time.process_time() - c


def run_cli(csv: Path, out: Path, n_boot: int, seed: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one ``risk fit`` process."""
    cmd = [sys.executable, "-c", "import sys; from spine_measure.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "risk", "fit", str(csv), "-y",
           "residual_back_pain", "-x", PREDICTORS, "-o", str(out), "-B", str(n_boot),
           "--seed", str(seed), "--no-progress"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=os.environ.copy())
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_risk_fit"))
    a = ap.parse_args()
    from spine_measure.risk import simulate_li2021

    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    df = simulate_li2021(a.n, seed=0)
    csv = a.work / "cohort.csv"
    df.to_csv(csv, index=False)
    base, base_cpu = baseline_refits(df, a.bootstrap, a.seed)
    t1, c1 = run_cli(csv, a.work / "run1", a.bootstrap, a.seed)
    t2, c2 = run_cli(csv, a.work / "run2", a.bootstrap, a.seed)
    same = digest(a.work / "run1") == digest(a.work / "run2")
    res = {"n": a.n, "bootstrap": a.bootstrap, "cpus": os.cpu_count(),
           "load_average_1min": round(os.getloadavg()[0], 2),
           "baseline_statsmodels_refits_s": round(base, 2),
           "baseline_cpu_s": round(base_cpu, 2),
           "risk_fit_s": round(t1, 2), "risk_fit_cpu_s": round(c1, 2),
           "risk_fit_rerun_s": round(t2, 2), "risk_fit_rerun_cpu_s": round(c2, 2),
           "ratio_risk_fit_vs_baseline_wall": round(t1 / base, 2),
           "ratio_risk_fit_vs_baseline_cpu": round(c1 / base_cpu, 2),
           "target_s": 30, "target_met_wall": t1 <= 30, "byte_identical_rerun": same}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
