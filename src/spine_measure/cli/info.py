"""``spine-measure info PATH...``: one line per file, what spine_measure sees in it."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app

if TYPE_CHECKING:  # the readers (numpy, pydicom) are imported when the command runs
    from spine_measure.io.calibration import Calibration
    from spine_measure.io.radiograph import RadiographMetadata


def _candidates(paths: list[Path], *, include_images: bool) -> list[str]:
    """Files to describe: given files as they are; folders expanded to DICOM files (by
    content) and, with ``include_images``, plain image files."""
    from spine_measure.io.radiograph import PLAIN_IMAGE_SUFFIXES, looks_like_dicom
    from spine_measure.io.scan import iter_files

    out: list[str] = []
    for p in paths:
        if p.is_dir():
            for f in iter_files(p):
                try:
                    with open(f, "rb") as fh:
                        head = fh.read(132)
                except OSError:
                    out.append(f)
                    continue
                if looks_like_dicom(head) or (
                    include_images and Path(f).suffix.lower() in PLAIN_IMAGE_SUFFIXES
                ):
                    out.append(f)
        else:
            out.append(os.fspath(p))
    return out


def _record(path: str, meta: RadiographMetadata | None, cal: Calibration | None,
            shape: tuple[int, int] | None, error: str | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"path": path, "ok": error is None}
    if error is not None:
        rec["error"] = error
        return rec
    assert meta is not None and cal is not None
    rec.update(
        format=meta.format,
        modality=meta.modality,
        rows=shape[0] if shape else meta.rows,
        columns=shape[1] if shape else meta.columns,
        frames=meta.number_of_frames,
        photometric=meta.photometric_interpretation,
        transfer_syntax=meta.transfer_syntax_uid,
        row_spacing_mm=cal.row_mm,
        col_spacing_mm=cal.col_mm,
        calibration_source=str(cal.source),
        calibration_detail=cal.detail,
        calibration_notes=list(cal.notes),
        patient_id=meta.patient_id,
        date=meta.date.isoformat() if meta.date else None,
        view=meta.view_position,
        sop_instance_uid=meta.sop_instance_uid,
    )
    return rec


HEADER = "\t".join(("path", "status", "modality", "rows x cols", "spacing (source)",
                    "patient", "date", "view"))
"""The header row of the tab-separated output (error lines: path, ``error``, reason)."""


def _why_uncalibrated(rec: dict[str, Any]) -> str:
    """Why a file has no spacing, in a user's terms (lengths are then in pixels)."""
    if rec["calibration_notes"]:
        return "; ".join(rec["calibration_notes"])
    if rec["format"] != "dicom":
        return (f"a {rec['format'].upper()} file has no pixel spacing; draw a calibration "
                "line in the annotation")
    return "no PixelSpacing or ImagerPixelSpacing in the header"


def _line(rec: dict[str, Any]) -> str:
    if not rec["ok"]:
        return f"{rec['path']}\terror\t{rec['error']}"
    if rec["row_spacing_mm"] is not None:
        spacing = f"{rec['row_spacing_mm']:.4g}x{rec['col_spacing_mm']:.4g} mm " \
                  f"({rec['calibration_source']})"
    else:
        spacing = f"px ({rec['calibration_source']}: {_why_uncalibrated(rec)})"
    fields = [
        rec["path"], "ok", rec["modality"] or rec["format"].upper(),
        f"{rec['rows']}x{rec['columns']}", spacing,
        rec["patient_id"] or "-", rec["date"] or "-", rec["view"] or "-",
    ]
    return "\t".join(str(f) for f in fields)


@app.command("info")
def info(
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH", help="DICOM or image files, or folders."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    header_only: bool = typer.Option(
        False, "--header-only", help="Read headers only (fast; does not check the pixel data)."
    ),
    frame: int | None = typer.Option(None, "--frame", help="Frame of a multi-frame image."),
    include_images: bool = typer.Option(
        False, "--include-images", help="In folders, list PNG/JPEG/TIFF files too."
    ),
) -> None:
    """Describe each file: modality, size, spacing and its source, patient, date, view.

    Exit code 0 when every file is readable, 1 when some are not, 2 when a path does not
    exist, 3 when no file was readable.
    """
    from spine_measure.errors import RadiographError
    from spine_measure.io.radiograph import PLAIN_IMAGE_SUFFIXES, load_radiograph
    from spine_measure.io.scan import read_header

    missing = [p for p in paths if not p.exists()]
    if missing:
        typer.echo(f"error: {missing[0]}: no such file or folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    files = _candidates(paths, include_images=include_images)
    n_ok = 0
    if files and not as_json:
        typer.echo(HEADER)
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unusable attributes are reported in the record
            try:
                if header_only and Path(path).suffix.lower() not in PLAIN_IMAGE_SUFFIXES:
                    h = read_header(path)
                    rec = _record(path, h.metadata, h.calibration, None, None)
                else:
                    r = load_radiograph(path, frame=frame)
                    rec = _record(path, r.metadata, r.calibration, r.shape, None)
            except RadiographError as exc:
                rec = _record(path, None, None, None, exc.reason)
        n_ok += rec["ok"]
        typer.echo(json.dumps(rec) if as_json else _line(rec))
    if not as_json:
        typer.echo(f"{len(files)} file(s): {n_ok} readable, {len(files) - n_ok} not"
                   + ("" if files else " (no DICOM file found; --include-images lists "
                                       "PNG/JPEG/TIFF files too)"), err=True)
    if not files or n_ok == 0:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_OK if n_ok == len(files) else EXIT_SOME_FAILED)
