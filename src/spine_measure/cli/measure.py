"""``spine-measure measure PATH...``: every single-film measurement, per film and vertebra.

Each image needs an annotation file (found next to the image, by name in ``--annotations``,
or by SOPInstanceUID / pixel hash there). DICOM files are read header-only (the spacing and
UIDs are all a measurement needs); plain images are decoded for their pixel hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app
from spine_measure.errors import SpineMeasureError
from spine_measure.measurements import REGISTRY, FilmMeasurements, measure_radiograph
from spine_measure.measurements.api import result_value_for_json
from spine_measure.measurements.context import parse_endplate_pair


def _candidates(paths: list[Path]) -> list[Path]:
    from spine_measure.io.radiograph import PLAIN_IMAGE_SUFFIXES, looks_like_dicom
    from spine_measure.io.scan import iter_files

    out: list[Path] = []
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        for f in iter_files(p):
            fp = Path(f)
            if fp.suffix.lower() in PLAIN_IMAGE_SUFFIXES:
                out.append(fp)
                continue
            try:
                with open(fp, "rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if looks_like_dicom(head):
                out.append(fp)
    return out


def measure_file(path: Path, annotations_dir: Path | None,
                 cobb: list[str]) -> FilmMeasurements:
    """Measure one image with its annotation file (raises SpineMeasureError on failure)."""
    from spine_measure.errors import FileError
    from spine_measure.io.annotation import find_annotation, load_annotation
    from spine_measure.io.files import not_a_regular_file
    from spine_measure.io.radiograph import load_radiograph, looks_like_dicom
    from spine_measure.io.scan import read_header

    problem = not_a_regular_file(path)
    if problem is not None:
        raise FileError(path, problem)
    ann_path = find_annotation(path, annotations_dir)
    if ann_path is None:
        where = f" or in {annotations_dir}" if annotations_dir else ""
        raise FileError(path, f"no annotation file (looked next to the image{where})")
    ann = load_annotation(ann_path)
    with open(path, "rb") as fh:
        head = fh.read(132)
    if looks_like_dicom(head):
        hdr = read_header(path)
        film: Any = SimpleNamespace(calibration=hdr.calibration, metadata=hdr.metadata)
    else:
        film = load_radiograph(path)
    try:
        fm = measure_radiograph(film, ann.landmarks, calibration_line=ann.calibration, cobb=cobb)
    except ValueError as exc:  # e.g. a reader calibration line giving an absurd spacing
        raise FileError(ann_path, str(exc)) from None
    return FilmMeasurements(fm.landmarks, fm.spacing, fm.calibration_source, fm.options,
                            fm.vertebrae, fm.film,
                            {**fm.metadata, "image": os.fspath(path),
                             "annotation": os.fspath(ann_path)})


def cement_rows(path: Path, fm: FilmMeasurements, annotations_dir: Path | None,
                tolerance_mm: float = 1.0) -> dict[str, dict[str, Any]]:
    """SPEC §4 cement features of every treated vertebra of a lateral film (decodes the
    pixels only when there is one). A vertebra that cannot be analysed maps to
    ``{"cement_error": reason}``; "no cement found" (e.g. a pre-op film) is a value."""
    from spine_measure.cement import measure_cement
    from spine_measure.io.annotation import load_annotation
    from spine_measure.io.radiograph import load_radiograph

    treated = [v.level for v in fm.landmarks if v.treated and v.level != "S1"]
    if fm.view != "lateral" or not treated:
        return {}
    ann = load_annotation(fm.metadata["annotation"])
    film = load_radiograph(path)
    out: dict[str, dict[str, Any]] = {}
    for level in treated:
        edited = ann.cement_mask(level)
        try:
            out[level] = measure_cement(film, ann.landmarks, level, tolerance_mm=tolerance_mm,
                                        mask=None if edited is None else edited.to_array(),
                                        spacing=fm.spacing)
        except SpineMeasureError as exc:
            out[level] = {"cement_error": str(exc)}
    return out


def _json_lines(fm: FilmMeasurements) -> list[str]:
    lines = [json.dumps(row, sort_keys=False) for row in fm.to_rows()]
    base = {k: v for k, v in fm.to_records()[0].items()
            if k in ("image", "annotation", "sop_instance_uid", "study_date")} \
        if fm.to_records() else {"image": fm.metadata.get("image")}
    for r in fm.film:
        lines.append(json.dumps({
            **base, "view": fm.view, "level": None,
            "calibration_source": r.calibration_source, r.column: result_value_for_json(r.value),
            "endplates": f'{r.detail.get("upper", "")},{r.detail.get("lower", "")}',
            "reasons": f"{r.name}: {r.reason}" if r.reason else ""}))
    return lines


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.2f}"
    return str(value)


def _print_table(fm: FilmMeasurements) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"{fm.metadata.get('image', '')}  ({fm.view}, {fm.calibration_source})"
    if fm.vertebrae:
        table = Table(title=title, show_lines=False)
        table.add_column("measurement")
        levels = list(fm.vertebrae)
        for lv in levels:
            v = fm.landmarks[lv]
            flags = "".join(f for f, on in (("F", v.fractured), ("T", v.treated),
                                            ("X", v.excluded)) if on)
            table.add_column(f"{lv} {flags}".strip(), justify="right")
        names = list(next(iter(fm.vertebrae.values())))
        for name in names:
            col = fm.get(levels[0], name).column
            table.add_row(col, *(_fmt(fm.get(lv, name).value) for lv in levels))
        console.print(table)
    for r in fm.film:
        ends = f' ({r.detail.get("upper")} - {r.detail.get("lower")})' if r.detail.get("upper") \
            else ""
        why = f"  [{r.reason}]" if r.reason else ""
        console.print(f"{r.column}: {_fmt(r.value)}{ends}{why}")


@app.command("measure")
def measure(
    paths: list[Path] = typer.Argument(..., help="Radiographs (DICOM or images) or folders."),
    annotations: Path | None = typer.Option(
        None, "--annotations", help="Folder of annotation files (default: next to each image)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines: one per vertebra, one per "
                                                       "film-level measurement."),
    cobb: list[str] = typer.Option(
        [], "--cobb", help='Sagittal Cobb angle between two endplates, e.g. '
                           '"T10:superior,L2:inferior" (repeatable).'),
    with_cement: bool = typer.Option(
        True, "--cement/--no-cement", help="Cement features (SPEC §4) of treated vertebrae "
                                           "(decodes the pixels of films that have one)."),
) -> None:
    """Every single-film measurement, per film and vertebra (SPEC §2), and the cement
    features of treated vertebrae (SPEC §4)."""
    try:
        for c in cobb:
            parse_endplate_pair(c)
    except SpineMeasureError as exc:
        typer.echo(f"Error: --cobb: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if annotations is not None and not annotations.is_dir():
        typer.echo(f"Error: --annotations: {annotations}: not a folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    files = _candidates(paths)
    if not files:
        typer.echo("Error: no image files found", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE)
    done = failed = 0
    for path in files:
        try:
            fm = measure_file(path, annotations, cobb)
        except (SpineMeasureError, OSError) as exc:
            failed += 1
            msg = str(exc)
            if as_json:
                typer.echo(json.dumps({"image": os.fspath(path), "ok": False, "error": msg}))
            typer.echo(f"Error: {msg}", err=True)
            continue
        cement: dict[str, dict[str, Any]] = {}
        if with_cement:
            try:
                cement = cement_rows(path, fm, annotations)
            except (SpineMeasureError, OSError) as exc:
                # the pixels cannot be decoded: the film is not fully measured
                failed += 1
                if as_json:
                    typer.echo(json.dumps({"image": os.fspath(path), "ok": False,
                                           "error": str(exc)}))
                typer.echo(f"Error: {exc}", err=True)
                continue
        done += 1
        if as_json:
            for line in _json_lines(fm):
                typer.echo(line)
            for level, row in cement.items():
                typer.echo(json.dumps({"image": os.fspath(path), "level": level,
                                       **{k: result_value_for_json(v) for k, v in row.items()}}))
        else:
            _print_table(fm)
            for level, row in cement.items():
                shown = ", ".join(f"{k}={_fmt(row.get(k))}" for k in (
                    "cement_found", "npec", "cement_distribution", "cement_fill_pct",
                    "leak_locations", "leak_intradiscal_spike", "cement_error") if k in row)
                typer.echo(f"cement {level}: {shown}")
    if not as_json:
        typer.echo(f"{done} measured, {failed} failed "
                   f"({len(REGISTRY)} registered measurements)", err=True)
    if done == 0:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)
