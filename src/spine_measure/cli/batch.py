"""``spine-measure batch DIR --out OUT``: measure a folder of annotated films.

Exit codes: 0 every film measured (unannotated films are skipped, not failed); 1 some films
failed or clinical values were rejected (see ``OUT/errors.csv``); 2 usage error (bad option,
missing folder, ``OUT`` holds a run with other options, unusable clinical table or key);
3 nothing measured; 130 interrupted (re-run to resume).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from spine_measure.cli import EXIT_INTERRUPTED, EXIT_NOTHING_DONE, EXIT_USAGE, app
from spine_measure.cli.pseudonym_options import KEY_FILE_OPTION, KEY_OPTION
from spine_measure.cli.uncertainty_options import (
    HELP_FROM,
    HELP_SD,
    UncertaintyOptionError,
    resolve_uncertainty,
)

log = logging.getLogger(__name__)


@app.command("batch")
def batch(
    input_dir: Path = typer.Argument(
        ..., metavar="DIR", help="Folder of DICOM films (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="OUT", help="Output folder."),
    annotations: Path | None = typer.Option(
        None, "--annotations", metavar="ADIR",
        help="Folder of annotation files (*.sm.json), e.g. a second reader's: it wins over "
             "the sidecars next to the films for every film it covers (default: sidecars)."),
    clinical: Path | None = typer.Option(None, "--clinical", metavar="CSV",
                                         help="Clinical table (docs/batch.md)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, metavar="N",
                      help="Worker processes."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", metavar="ADDRESS",
        help="Dask distributed scheduler address (tcp://host:8786)."),
    scheduler_timeout: float = typer.Option(
        10.0, "--scheduler-timeout", min=0.1, metavar="SECONDS",
        help="Seconds to wait for the --scheduler to answer before giving up."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Also write real PatientIDs and file paths."),
    pseudonym_key: str | None = KEY_OPTION,
    pseudonym_key_file: Path | None = KEY_FILE_OPTION,
    no_overlays: bool = typer.Option(False, "--no-overlays",
                                     help="Do not draw review overlays."),
    sr: bool = typer.Option(False, "--sr", help="Also write each film's measurements as a "
                                                "DICOM SR (TID 1500) into OUT/sr/."),
    postop_window_days: int = typer.Option(14, "--postop-window-days", min=0, metavar="DAYS",
                                           help="Post-op films within this many days of the "
                                                "procedure."),
    cobb: list[str] = typer.Option(
        [], "--cobb", metavar="SPEC",
        help='Sagittal Cobb angle measured on every lateral film (repeatable): two '
             'endplates ("T10s-L2i", "T10:superior,L2:inferior"), "treated" (end endplates '
             'of the treated segment) or "treated+1" (one vertebra beyond it); '
             "docs/measurements.md."),
    restart: bool = typer.Option(False, "--restart",
                                 help="Discard the journal in OUT and start again."),
    accept_proposed: bool = typer.Option(
        False, "--accept-proposed", help="Also measure vertebrae whose proposed landmarks no "
                                         "reader has confirmed (rows marked in "
                                         "landmark_source)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    uncertainty: float | None = typer.Option(None, "--uncertainty", metavar="SD_MM",
                                             help=HELP_SD),
    uncertainty_from: Path | None = typer.Option(None, "--uncertainty-from", metavar="DIR",
                                                 help=HELP_FROM),
) -> None:
    """Measure every annotated film of DIR and write the feature tables to OUT."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from spine_measure.batch import BatchOptions, JournalMismatchError, run_batch
    from spine_measure.batch.runner import BatchOutputError, SchedulerError
    from spine_measure.errors import SpineMeasureError

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for p, what in ((input_dir, "input folder"), (annotations, "annotations folder")):
        if p is None or p.is_dir():
            continue
        if p.exists():
            hint = ("; batch measures a folder of films (for one film use "
                    "spine-measure measure)") if p is input_dir else ""
            err.print(f"Error: {p}: is a file, not a folder ({what}){hint}", markup=False)
        else:
            err.print(f"Error: {p}: {what} not found", markup=False)
        raise typer.Exit(EXIT_USAGE)
    if clinical is not None and not clinical.exists():     # other oddities: read_clinical
        err.print(f"Error: {clinical}: clinical table not found", markup=False)
        raise typer.Exit(EXIT_USAGE)
    try:
        model = resolve_uncertainty(uncertainty, uncertainty_from)
    except UncertaintyOptionError as exc:
        err.print(f"Error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    from spine_measure.measurements import parse_cobb_spec

    for c in cobb:
        try:
            parse_cobb_spec(c)
        except SpineMeasureError as exc:
            err.print(f"Error: --cobb: {exc}", markup=False)
            raise typer.Exit(EXIT_USAGE) from None
    opts = BatchOptions(input_dir=str(input_dir), out_dir=str(out),
                        annotations_dir=None if annotations is None else str(annotations),
                        clinical=None if clinical is None else str(clinical), jobs=jobs,
                        scheduler=scheduler, scheduler_timeout=scheduler_timeout,
                        include_identifiers=include_identifiers,
                        pseudonym_key=pseudonym_key,
                        pseudonym_key_file=(None if pseudonym_key_file is None
                                            else str(pseudonym_key_file)),
                        overlays=not no_overlays,
                        postop_window_days=postop_window_days, restart=restart, sr=sr,
                        uncertainty=model, cobb=tuple(cobb), accept_proposed=accept_proposed)
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
    except KeyboardInterrupt:
        n = sum(1 for _ in (Path(out) / "journal").glob("f_*.json")) \
            if (Path(out) / "journal").is_dir() else 0
        err.print(f"Interrupted: {n} film(s) are journalled in {out}. Run the same command "
                  "again to resume (films already done are not measured again).",
                  markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except JournalMismatchError as exc:
        err.print(f"Error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    except BatchOutputError as exc:
        err.print(f"Error: {exc}", markup=False)
        raise typer.Exit(EXIT_NOTHING_DONE) from None
    except SchedulerError as exc:
        err.print(f"Error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    except SpineMeasureError as exc:
        err.print(f"Error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    err.print(f"films: {summary.n_films}  done: {summary.n_done}  failed: {summary.n_failed}  "
              f"skipped: {summary.n_skipped}  warnings: {summary.n_warnings}  "
              f"(from journal: {summary.n_from_journal})  rows: {summary.n_rows}  "
              f"in {summary.seconds:.1f} s")
    if summary.n_clinical_errors:
        err.print(f"clinical table: {summary.n_clinical_errors} value(s) or row(s) rejected "
                  "(errors.csv, stage clinical)")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:15]:
        err.print(f"  {n:4d} x {reason}")
    if summary.key_path and summary.key_source != "generated":   # generated: logged once
        err.print(f"pseudonym key: {summary.key_path}", soft_wrap=True, markup=False)
    if summary.n_films == 0:
        from spine_measure.batch.plan import no_films_reason

        err.print(f"Error: {no_films_reason(input_dir)}", markup=False)
    written = ["measurements_long.csv", "errors.csv", "run_manifest.json"]
    written += [d + "/" for d in ("overlays", "sr") if (Path(out) / d).is_dir()]
    err.print(f"outputs: {Path(out) / 'features_wide.csv'}, " + ", ".join(written),
              markup=False)
    raise typer.Exit(summary.exit_code)
