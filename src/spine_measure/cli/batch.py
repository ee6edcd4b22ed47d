"""``spine-measure batch DIR --out OUT``: measure a folder of annotated films.

Exit codes: 0 every film measured (unannotated films are skipped, not failed); 1 some films
failed (see ``OUT/errors.csv``); 2 usage error (bad option, missing folder, ``OUT`` holds a
run with other options); 3 nothing measured; 130 interrupted (re-run to resume).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_USAGE, app

log = logging.getLogger(__name__)


@app.command("batch")
def batch(
    input_dir: Path = typer.Argument(..., help="Folder of DICOM films (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    annotations: Path | None = typer.Option(
        None, "--annotations", help="Folder of annotation files (*.sm.json); default: "
                                    "sidecars next to the films."),
    clinical: Path | None = typer.Option(None, "--clinical",
                                         help="Clinical table CSV (SPEC 1.5)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask distributed scheduler address (tcp://host:8786)."),
    scheduler_timeout: float = typer.Option(
        10.0, "--scheduler-timeout", min=0.1,
        help="Seconds to wait for the --scheduler to answer before giving up."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Also write real PatientIDs and file paths."),
    pseudonym_key: str | None = typer.Option(
        None, "--pseudonym-key", help="Key of the pseudonyms (default: "
                                      "$SPINE_MEASURE_PSEUDONYM_KEY, else generated in OUT)."),
    no_overlays: bool = typer.Option(False, "--no-overlays",
                                     help="Do not draw review overlays."),
    sr: bool = typer.Option(False, "--sr", help="Also write each film's measurements as a "
                                                "DICOM SR (TID 1500) into OUT/sr/."),
    postop_window_days: int = typer.Option(14, "--postop-window-days", min=0,
                                           help="Post-op films within this many days of the "
                                                "procedure."),
    restart: bool = typer.Option(False, "--restart",
                                 help="Discard the journal in OUT and start again."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Measure every annotated film of DIR and write the feature tables to OUT."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from spine_measure.batch import BatchOptions, JournalMismatchError, run_batch
    from spine_measure.batch.runner import BatchOutputError
    from spine_measure.errors import SpineMeasureError

    err = Console(stderr=True)
    for p, what in ((input_dir, "input folder"), (annotations, "annotations folder")):
        if p is not None and not p.is_dir():
            err.print(f"{p}: {what} not found")
            raise typer.Exit(EXIT_USAGE)
    if clinical is not None and not clinical.is_file():
        err.print(f"{clinical}: clinical table not found")
        raise typer.Exit(EXIT_USAGE)
    opts = BatchOptions(input_dir=str(input_dir), out_dir=str(out),
                        annotations_dir=None if annotations is None else str(annotations),
                        clinical=None if clinical is None else str(clinical), jobs=jobs,
                        scheduler=scheduler, scheduler_timeout=scheduler_timeout,
                        include_identifiers=include_identifiers,
                        pseudonym_key=pseudonym_key, overlays=not no_overlays,
                        postop_window_days=postop_window_days, restart=restart, sr=sr)
    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                   disable=not progress, transient=True)
    state: dict[str, Any] = {}

    def planned(n: int) -> None:
        state["task"] = bar.add_task("measuring", total=n)

    def result(rec: dict[str, Any]) -> None:
        bar.advance(state["task"])

    try:
        with bar:
            summary = run_batch(opts, on_planned=planned, on_result=result)
    except JournalMismatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except BatchOutputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE) from None
    except SpineMeasureError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    err.print(f"films: {summary.n_films}  done: {summary.n_done}  failed: {summary.n_failed}  "
              f"skipped: {summary.n_skipped}  warnings: {summary.n_warnings}  "
              f"(from journal: {summary.n_from_journal})  rows: {summary.n_rows}  "
              f"in {summary.seconds:.1f} s")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:15]:
        err.print(f"  {n:4d} x {reason}")
    if summary.key_source == "generated":
        err.print(f"pseudonym key: generated, stored in {Path(out) / 'pseudonym.key'}")
    err.print(f"outputs: {Path(out) / 'features_wide.csv'}, measurements_long.csv, "
              f"errors.csv, overlays/")
    raise typer.Exit(summary.exit_code)
