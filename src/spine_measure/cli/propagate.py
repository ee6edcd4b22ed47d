"""``spine-measure propagate`` and ``spine-measure refine``: proposals for a reader to review.

``propagate SOURCE_FILM TARGET_FILM... --out DIR`` carries the source film's confirmed
landmarks to each target film (same patient); ``propagate DIR --out DIR`` does it for every
unannotated film of a folder, from the annotated film of the same PatientID nearest in time.
``refine FILM... --out DIR`` moves every point to the edges the image shows where it gives a
clear answer. Both write annotation files (``<film>.sm.json``) into ``--out``: proposals are
unconfirmed (``docs/annotation_format.md``), so ``measure`` and ``batch`` leave them out until
a reader confirms them (or ``--accept-proposed``). A table of every vertebra / point tried
(``propagation.csv`` / ``refinement.csv``) is written next to them. A proposal's flags are
decided for the target film (carried forward in time, ``treated`` where cement fills the body
or the ``--clinical`` table says so; :mod:`spine_measure.propose.flags`), and what cannot be
known is printed and written in the ``flags_check`` column. ``docs/propagation.md``.

Exit codes: 0 every film done; 1 some films failed (or some vertebrae could not be proposed);
2 usage error; 3 nothing done.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app
from spine_measure.cli.annotation_options import require_annotations_folder

log = logging.getLogger(__name__)

PROPAGATION_COLUMNS = ("target", "source", "days", "level", "status", "confidence", "reason",
                       "flags", "flags_check")
REFINEMENT_COLUMNS = ("film", "level", "point", "status", "distance_px", "reason")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _propagate_job(job: tuple[str, str, str | None, str, int | None, Any]) -> dict[str, Any]:
    """Worker: propose one target film; never raises (errors become the record)."""
    source, target, annotations, out, days, clinical = job
    from spine_measure.errors import SpineMeasureError
    from spine_measure.io.annotation import save_annotation, sidecar_path
    from spine_measure.propose.files import propose_for_film

    rec: dict[str, Any] = {"source": source, "target": target, "days": days, "rows": [],
                           "error": None, "written": None}
    try:
        result, _ = propose_for_film(source, target, annotations_dir=annotations,
                                     clinical=clinical)
    except (SpineMeasureError, OSError) as exc:
        rec["error"] = _one_line(exc)
        return rec
    except Exception as exc:  # one bad film never stops the run
        log.debug("%s failed", target, exc_info=True)
        rec["error"] = _one_line(f"{target}: {type(exc).__name__}: {exc}")
        return rec
    rec["rows"] = [dict(r) for r in result.rows]
    if result.n_proposed:
        dest = Path(out) / sidecar_path(target).name
        if dest.exists():
            rec["error"] = (f"{dest}: exists; not replaced (remove it, or choose another "
                            "--out)")
            return rec
        try:
            save_annotation(result.annotation, dest)
        except (SpineMeasureError, OSError) as exc:
            rec["error"] = _one_line(exc)
            return rec
        rec["written"] = os.fspath(dest)
    return rec


def _refine_job(job: tuple[str, str | None, str, float | None, float | None]
                ) -> dict[str, Any]:
    film, annotations, out, radius_px, radius_mm = job
    import warnings

    from spine_measure.errors import FileError, SpineMeasureError
    from spine_measure.io.annotation import save_annotation, sidecar_path
    from spine_measure.io.radiograph import load_radiograph
    from spine_measure.propose.files import find_film_annotation, refine_annotation

    rec: dict[str, Any] = {"film": film, "rows": [], "error": None, "written": None}
    try:
        found = find_film_annotation(film, annotations)
        if found is None:
            raise FileError(film, "no annotation (looked next to the film"
                                  + (f" and in {annotations})" if annotations else ")"))
        ann = found[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            radiograph = load_radiograph(film)
        if radius_mm is not None:
            if radiograph.spacing is None:
                raise FileError(film, "--radius-mm needs a calibrated film (no pixel spacing "
                                      "in its header); give --radius-px instead")
            radius = radius_mm / float(min(radiograph.spacing))
        else:
            radius = float(radius_px)  # type: ignore[arg-type]
        result = refine_annotation(radiograph, ann, radius_px=radius)
        rec["rows"] = [dict(r) for r in result.rows]
        dest = Path(out) / sidecar_path(film).name
        if dest.exists():
            raise FileError(dest, "exists; not replaced (remove it, or choose another --out)")
        save_annotation(result.annotation, dest)
        rec["written"] = os.fspath(dest)
    except (SpineMeasureError, OSError) as exc:
        rec["error"] = _one_line(exc)
    except Exception as exc:
        log.debug("%s failed", film, exc_info=True)
        rec["error"] = _one_line(f"{film}: {type(exc).__name__}: {exc}")
    return rec


def _run(jobs: list[Any], fn: Any, n_jobs: int, label: str, progress: bool
         ) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                   disable=not progress, transient=True)
    out: list[dict[str, Any]] = []
    with bar:
        task = bar.add_task(label, total=len(jobs))
        if n_jobs <= 1 or len(jobs) <= 1:
            for j in jobs:
                out.append(fn(j))
                bar.advance(task)
        else:
            from concurrent.futures import ProcessPoolExecutor  # only here: fast start-up

            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                for rec in pool.map(fn, jobs):
                    out.append(rec)
                    bar.advance(task)
    return out


def _clinical_facts(path: Path | None) -> Any:
    """``--clinical``: PatientID -> treated levels and procedure date; a table that cannot be
    used is a one-line usage error (rejected values are skipped, as in ``batch``, and
    counted)."""
    if path is None:
        return None
    from spine_measure.batch.clinical import read_clinical
    from spine_measure.errors import SpineMeasureError
    from spine_measure.propose.files import clinical_facts

    if not path.is_file():
        typer.echo(f"Error: --clinical: {path}: clinical table not found", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        table = read_clinical(path)
    except SpineMeasureError as exc:
        typer.echo(f"Error: --clinical: {_one_line(exc)}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    for problem in table.problems:
        typer.echo(f"Warning: --clinical: {_one_line(problem)}", err=True)
    return clinical_facts(table)


def _flag_checks(rows: list[dict[str, Any]]) -> list[str]:
    """The film's flag notes for the summary: each vertebra's own, and a note common to every
    proposed vertebra (a film-level one) once."""
    notes = [(r["level"], [x for x in (r.get("flags_check") or "").split("; ") if x])
             for r in rows if r["status"] == "proposed"]
    common = set.intersection(*(set(n) for _, n in notes)) if notes else set()
    out = [f"{lv}: {x}" for lv, n in notes for x in n if x not in common]
    return out + sorted(common)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    from spine_measure.batch.tables import csv_text
    from spine_measure.io.annotation import atomic_write_text

    atomic_write_text(path, csv_text(columns, rows))


@app.command("propagate")
def propagate(
    paths: list[Path] = typer.Argument(
        ..., help="SOURCE_FILM TARGET_FILM... (the source has an annotation), or one folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the proposed annotation "
                                                      "files and propagation.csv."),
    annotations: Path | None = typer.Option(
        None, "--annotations", help="Folder of annotation files (default: next to the films)."),
    clinical: Path | None = typer.Option(
        None, "--clinical", metavar="CSV",
        help="Clinical table (as for batch): its treated level and procedure date per "
             "PatientID set the proposals' treated flag."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Propose a film's landmarks on the patient's other films, for a reader to review."""
    from spine_measure.propose.files import plan_folder

    err = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    require_annotations_folder(annotations)
    facts = _clinical_facts(clinical)
    unpaired: list[tuple[str, str]] = []
    if len(paths) == 1 and paths[0].is_dir():
        plan = plan_folder(paths[0], annotations_dir=annotations)
        pairs = [(p.source, p.target, p.days) for p in plan.pairs]
        unpaired = plan.unpaired
        if not pairs:
            err(f"Error: {paths[0]}: no unannotated film with an annotated film of the same "
                f"patient ({plan.n_annotated} annotated film(s), {len(unpaired)} unpaired)")
            for path, why in unpaired:
                err(f"  {path}: {why}")
            raise typer.Exit(EXIT_NOTHING_DONE)
    else:
        if len(paths) < 2:
            err("Error: give SOURCE_FILM TARGET_FILM... or one folder")
            raise typer.Exit(EXIT_USAGE)
        for p in paths:
            if not p.is_file():
                err(f"Error: {p}: no such file")
                raise typer.Exit(EXIT_USAGE)
        pairs = [(os.fspath(paths[0]), os.fspath(t), None) for t in paths[1:]]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err(f"Error: --out: {out}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from None
    job_list = [(s, t, None if annotations is None else os.fspath(annotations), os.fspath(out),
                 d, facts) for s, t, d in pairs]
    recs = _run(job_list, _propagate_job, jobs, "proposing", progress)
    rows: list[dict[str, Any]] = []
    n_ok = n_failed_films = n_prop = n_fail_vert = 0
    for rec in recs:
        base = {"target": rec["target"], "source": rec["source"], "days": rec["days"]}
        if rec["error"]:
            n_failed_films += 1
            rows.append({**base, "level": "", "status": "error", "reason": rec["error"]})
            err(f"Error: {rec['error']}")
            continue
        n_ok += 1
        for r in rec["rows"]:
            rows.append({**base, **r})
            n_prop += r["status"] == "proposed"
            n_fail_vert += r["status"] == "failed"
        failed = [f"{r['level']} ({r['reason']})" for r in rec["rows"]
                  if r["status"] == "failed"]
        flagged = [f"{r['level']} {r['flags']}" for r in rec["rows"]
                   if r["status"] == "proposed" and r.get("flags")]
        where = rec["written"] or "nothing written"
        err(f"{Path(rec['target']).name}: {sum(r['status'] == 'proposed' for r in rec['rows'])}"
            f" proposed from {Path(rec['source']).name} -> {where}"
            + (f"; flags: {', '.join(flagged)}" if flagged else "")
            + (f"; not proposed: {', '.join(failed)}" if failed else ""))
        for check in _flag_checks(rec["rows"]):
            err(f"  check flags: {check}")
    for path, why in unpaired:
        rows.append({"target": path, "source": "", "days": None, "level": "",
                     "status": "unpaired", "reason": why})
    _write_csv(out / "propagation.csv", PROPAGATION_COLUMNS, rows)
    err(f"films: {len(recs)}  done: {n_ok}  failed: {n_failed_films}  unpaired: "
        f"{len(unpaired)}  vertebrae proposed: {n_prop}  not proposed: {n_fail_vert}  "
        f"-> {out / 'propagation.csv'}")
    if n_prop == 0:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_SOME_FAILED if (n_failed_films or n_fail_vert) else EXIT_OK)


@app.command("refine")
def refine(
    films: list[Path] = typer.Argument(..., help="Films whose annotations to refine."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the refined annotation "
                                                      "files and refinement.csv."),
    annotations: Path | None = typer.Option(
        None, "--annotations", help="Folder of annotation files (default: next to the films)."),
    radius_px: float | None = typer.Option(
        None, "--radius-px", min=0.5, help="Largest move of a point, pixels (default 8)."),
    radius_mm: float | None = typer.Option(
        None, "--radius-mm", min=0.05, help="Largest move of a point, mm (calibrated films; "
                                            "instead of --radius-px)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Move each landmark to the corner / endplate edge the image shows nearby."""
    err = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    require_annotations_folder(annotations)
    if radius_px is not None and radius_mm is not None:
        err(f"Error: --radius-px {radius_px:g} and --radius-mm {radius_mm:g}: give one "
            "radius, not both")
        raise typer.Exit(EXIT_USAGE)
    if radius_px is None:
        radius_px = 8.0
    for f in films:
        if not f.is_file():
            err(f"Error: {f}: no such file")
            raise typer.Exit(EXIT_USAGE)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err(f"Error: --out: {out}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from None
    job_list = [(os.fspath(f), None if annotations is None else os.fspath(annotations),
                 os.fspath(out), radius_px, radius_mm) for f in films]
    recs = _run(job_list, _refine_job, jobs, "refining", progress)
    rows: list[dict[str, Any]] = []
    n_ok = n_err = n_moved = n_kept = 0
    for rec in recs:
        if rec["error"]:
            n_err += 1
            rows.append({"film": rec["film"], "level": "", "point": "", "status": "error",
                         "reason": rec["error"]})
            err(f"Error: {rec['error']}")
            continue
        n_ok += 1
        for r in rec["rows"]:
            rows.append({"film": rec["film"], **r})
        moved = sum(r["status"] == "refined" for r in rec["rows"])
        n_moved += moved
        n_kept += len(rec["rows"]) - moved
        err(f"{Path(rec['film']).name}: {moved} of {len(rec['rows'])} point(s) refined -> "
            f"{rec['written']}")
    _write_csv(out / "refinement.csv", REFINEMENT_COLUMNS, rows)
    err(f"films: {len(recs)}  done: {n_ok}  failed: {n_err}  points refined: {n_moved}  "
        f"kept: {n_kept}  -> {out / 'refinement.csv'}")
    if n_ok == 0:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_SOME_FAILED if n_err else EXIT_OK)
