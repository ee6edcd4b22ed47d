"""``spine-measure reliability READER_A_DIR READER_B_DIR --out OUT``: agreement of two readings.

Pairs two annotation folders of the same films (two readers, or one reader twice) by image
reference and writes ICC(2,1), ICC(3,1), Bland-Altman, SEM, MDC95 and Cohen's kappa per
measurement, the thresholds-versus-MDC table and a Bland-Altman figure (``docs/reliability.md``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app
from spine_measure.errors import SpineMeasureError


def _f(v: Any, nd: int = 2) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(x) else f"{x:.{nd}f}"


def _print(run: Any) -> None:
    from rich.console import Console

    from spine_measure.cli.tables import print_table
    from spine_measure.reliability.report import _ci_text, design_sentence

    console = Console(highlight=False)
    rows = [[r["column"], str(r["n_pairs"]),
             f"{_f(r['icc2_1'], 3)} {_ci_text(r.to_dict(), 'icc2_1')}",
             _f(r["icc3_1"], 3), _f(r["bias"]),
             f"{_f(r['loa_low'])} to {_f(r['loa_high'])}", _f(r["sem"]), _f(r["mdc95"])]
            for _, r in run.reliability.iterrows()]
    print_table(console, f"Reliability: {run.n_films} paired film(s) (differences: reader b - a)",
                ("measurement", "n", "ICC(2,1) [95% CI]", "ICC(3,1)", "bias", "95% LoA", "SEM",
                 "MDC95"), rows)
    console.print(design_sentence(run))
    if len(run.kappa):
        rows = [[r["measurement"], str(r["n_pairs"]), r["weights"], _f(r["pct_agreement"], 1),
                 f"{_f(r['kappa'], 3)} [{_f(r['kappa_ci_low'])}, {_f(r['kappa_ci_high'])}]"]
                for _, r in run.kappa.iterrows()]
        print_table(console, "Categorical: Cohen's kappa",
                    ("measurement", "n", "weights", "% agree", "kappa [95% CI]"), rows)
    rows = [[r["flag"], r["change_measure"], f"{_f(r['threshold'], 1)} {r['unit']}",
             r["underlying_measurement"], _f(r["mdc95"]), _f(r["ratio_threshold_to_mdc"]),
             r["verdict"]] for _, r in run.thresholds.iterrows()]
    print_table(console, "Thresholds versus MDC95",
                ("flag", "change", "threshold", "underlying", "MDC95", "ratio", "verdict"), rows)
    console.print(f"Longitudinal: {run.longitudinal_status}")


@app.command("reliability")
def reliability(
    reader_a: Path = typer.Argument(
        ..., metavar="READER_A_DIR",
        help="Annotation folder of reader a (or reading 1)."),
    reader_b: Path = typer.Argument(
        ..., metavar="READER_B_DIR",
        help="Annotation folder of reader b (or reading 2)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    images: Path | None = typer.Option(
        None, "--images", help="DICOM folder (header scan): spacing for lengths in mm, "
                               "patient and dates for the longitudinal pairs."),
    levels: str = typer.Option("all", "--levels",
                               help="all: every vertebra; index: fractured or treated only."),
    kappa_weights: str = typer.Option("linear", "--kappa-weights",
                                      help="Weights of the Genant-grade kappa: linear or "
                                           "quadratic."),
    site: str = typer.Option("anterior", "--site", help="Site of height loss and compression "
                                                        "rate increase (docs/measurements.md)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write bland_altman.png."),
    every_film: bool = typer.Option(
        False, "--every-film",
        help="Pair every film, also a second film of a patient at the same time point "
             "(default: one reading per vertebra per time point; needs --images)."),
    n_boot: int = typer.Option(2000, "--bootstrap", min=100,
                               help="Resamples of the patient cluster bootstrap."),
    seed: int = typer.Option(20240607, "--seed", help="Seed of the cluster bootstrap."),
) -> None:
    """Agreement of two annotation sets of the same films: ICC, Bland-Altman,
    SEM, MDC95, kappa, and every threshold-based flag next to the MDC."""
    from spine_measure.measurements import LongitudinalOptions
    from spine_measure.reliability.report import BootstrapOptions, run_reliability

    for name, p in (("READER_A_DIR", reader_a), ("READER_B_DIR", reader_b)):
        if not p.is_dir():
            typer.echo(f"Error: {name}: {p}: not a folder", err=True)
            raise typer.Exit(EXIT_USAGE)
    if images is not None and not images.is_dir():
        typer.echo(f"Error: --images: {images}: not a folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    checks = (("--levels", levels, ("all", "index")),
              ("--kappa-weights", kappa_weights, ("linear", "quadratic")),
              ("--site", site, ("anterior", "middle", "posterior")))
    for opt, val, allowed in checks:
        if val not in allowed:
            typer.echo(f"Error: {opt}: {val!r} is not one of {', '.join(allowed)}", err=True)
            raise typer.Exit(EXIT_USAGE)
    try:
        run = run_reliability(reader_a, reader_b, out, images=images, levels=levels,
                              ordinal_weights=kappa_weights,
                              long_options=LongitudinalOptions(site=site), plots=plots,
                              one_per_time_point=not every_film,
                              bootstrap=BootstrapOptions(n_boot=n_boot, seed=seed))
    except (SpineMeasureError, OSError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE) from None
    _print(run)
    for w in run.warnings:
        typer.echo(f"warning: {w}", err=True)
    for r in run.unpaired:
        typer.echo(f"unpaired: {r.file}: {r.reason}", err=True)
    for r in run.errors:
        typer.echo(f"error: {r.file}: {r.reason}", err=True)
    typer.echo(f"{run.n_films} paired film(s), {len(run.unpaired)} unpaired, "
               f"{len(run.errors)} error(s); outputs in {out}", err=True)
    if run.n_films == 0:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_SOME_FAILED if (run.unpaired or run.errors) else EXIT_OK)
