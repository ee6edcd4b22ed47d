"""``spine-measure import-landmarks LANDMARKS.csv --images DIR --out DIR``.

A thin shell over :func:`spine_measure.io.landmark_csv.import_landmark_csv`: one annotation
file per image; bad rows are reported (``file:line: reason``) and skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app

_HELP = (
    "Import landmarks from a CSV made in another tool into annotation files (*.sm.json). "
    "x is the column and y the row, in pixels of the stored image. "
    "Exit code 0 when every row was imported, 1 when some rows were not (each reported with "
    "its line number), 2 for a usage error, 3 when nothing could be imported."
)


@app.command("import-landmarks", help=_HELP)
def import_landmarks(
    csv_path: Annotated[Path, typer.Argument(
        metavar="LANDMARKS.csv",
        help="Long CSV: image,view,level,point,x,y[,fractured,treated,excluded].")],
    images: Annotated[Path, typer.Option(
        "--images", help="Folder the image names are relative to.")],
    out: Annotated[Path, typer.Option(
        "--out", help="Folder for the annotation files (*.sm.json).")],
    reader: Annotated[str | None, typer.Option(
        "--reader", help="Reader id stored in each file.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the landmarks of existing annotation files.")] = False,
    pixel_origin: Annotated[str, typer.Option(
        "--pixel-origin",
        help="Where the CSV puts (0, 0): 'center' of the top-left pixel (default) or its "
             "'corner' (0.5 px is subtracted).")] = "center",
) -> None:
    """Import landmarks from a CSV into annotation files (see ``_HELP``)."""
    from spine_measure.io.files import describe_os_error
    from spine_measure.io.landmark_csv import LandmarkCsvError, import_landmark_csv

    if pixel_origin not in ("center", "corner"):
        typer.echo(f'error: --pixel-origin must be "center" or "corner"; got "{pixel_origin}"',
                   err=True)
        raise typer.Exit(EXIT_USAGE)
    if not csv_path.is_file():
        typer.echo(f"error: {csv_path}: no such file", err=True)
        raise typer.Exit(EXIT_USAGE)
    if not images.is_dir():
        typer.echo(f"error: {images}: no such folder (--images)", err=True)
        raise typer.Exit(EXIT_USAGE)
    if out.exists() and not out.is_dir():
        typer.echo(f"error: {out}: exists and is not a folder (--out)", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"error: {out}: cannot create the folder ({describe_os_error(exc)}) (--out)",
                   err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        report = import_landmark_csv(csv_path, images, out, reader=reader, overwrite=overwrite,
                                     pixel_origin=pixel_origin)  # type: ignore[arg-type]
    except LandmarkCsvError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE) from None
    for problem in report.problems:
        typer.echo(str(problem), err=True)
    for item in report.imported:
        typer.echo(f"{item.action} {item.annotation_path} ({item.vertebrae} vertebrae, "
                   f"{item.points} points)")
    typer.echo(f"{len(report.imported)} annotation file(s) written; "
               f"{report.rows_total - report.rows_failed} of {report.rows_total} rows imported, "
               f"{report.rows_failed} failed", err=True)
    if report.rows_total == 0 or not report.imported:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_SOME_FAILED)
