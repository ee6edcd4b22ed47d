"""``spine-measure measure PATH...``: every single-film measurement, per film and vertebra.

Each image is measured by :func:`spine_measure.service.measure_film_file`, as ``batch`` and
``export-sr`` measure it: its annotation is the one in ``--annotations`` when that folder
has one for it (by SOPInstanceUID / pixel hash, else by name), else the sidecar next to the
image, and it must belong to the image (UID or pixel hash, rows x columns). DICOM files are
read header-only unless cement needs the pixels; plain images are decoded for their hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app
from spine_measure.cli.annotation_options import require_annotations_folder
from spine_measure.cli.uncertainty_options import (
    HELP_FROM,
    HELP_SD,
    UncertaintyOptionError,
    resolve_uncertainty,
)
from spine_measure.errors import SpineMeasureError

if TYPE_CHECKING:  # the measurements are imported when a command runs (fast start-up)
    from spine_measure.measurements import FilmMeasurements


def _sidecar_images(files: list[Path]) -> set[Path]:
    """Plain images that belong to a film next to them, not films themselves: ``X.<tag>.png``
    beside a film ``X.dcm`` (e.g. the ``*.cement.png`` truth masks of the sample studies)."""
    from spine_measure.io.radiograph import PLAIN_IMAGE_SUFFIXES

    stems = {(f.parent, f.stem) for f in files if f.suffix.lower() not in PLAIN_IMAGE_SUFFIXES}
    stems |= {(f.parent, f.name) for f in files if not f.suffix}
    out = set()
    for f in files:
        if f.suffix.lower() in PLAIN_IMAGE_SUFFIXES:
            base = Path(f.stem)  # "X.cement"
            if base.suffix and (f.parent, base.stem) in stems:
                out.add(f)
    return out


def candidates(paths: list[Path], *, plain_images: bool = True) -> tuple[list[Path], int]:
    """The films to measure: files named on the command line as they are; folders expanded
    to their DICOM files (by content) and, with ``plain_images``, PNG/JPEG/TIFF/BMP films --
    not images that accompany a film (``X.cement.png`` next to ``X.dcm``). Returns the films
    and the number of such companion images left out."""
    from spine_measure.io.radiograph import PLAIN_IMAGE_SUFFIXES, looks_like_dicom
    from spine_measure.io.scan import iter_files

    out: list[Path] = []
    n_companions = 0
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        found: list[Path] = []
        dicoms: list[Path] = []
        for f in iter_files(p):
            fp = Path(f)
            if fp.suffix.lower() in PLAIN_IMAGE_SUFFIXES:
                found.append(fp)
                continue
            try:
                with open(fp, "rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if looks_like_dicom(head):
                found.append(fp)
                dicoms.append(fp)
        companions = _sidecar_images(found)
        n_companions += len(companions)
        out += [f for f in found if f not in companions
                and (plain_images or f.suffix.lower() not in PLAIN_IMAGE_SUFFIXES
                     or f in dicoms)]
    return out, n_companions


def report_unused(finder: Any) -> None:
    """One warning line for the annotation files of ``--annotations`` no film used."""
    unused = finder.unused()
    if not unused:
        return
    names = [finder.relative(p) for p in unused]
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    typer.echo(f"warning: {len(names)} annotation file(s) in {finder.annotations_dir} match "
               f"none of the films given, not used: {shown}", err=True)


def _json_lines(fm: FilmMeasurements, fu: Any = None,
                sources: dict[str, str] | None = None) -> list[str]:
    from spine_measure.measurements.api import result_value_for_json

    extra: dict[Any, dict[str, Any]] = {}
    if fu is not None:
        from spine_measure.measurements.uncertainty import uncertainty_columns

        extra = uncertainty_columns(fu)
        for cols in extra.values():
            cols["uncertainty_model"] = fu.model.describe()
    sources = sources or {}
    lines = [json.dumps({**row, "landmark_source": sources.get(row["level"]),
                         **extra.get(row["level"], {})}, sort_keys=False)
             for row in fm.to_rows()]
    base = {k: v for k, v in fm.to_records()[0].items()
            if k in ("image", "annotation", "annotation_source", "sop_instance_uid",
                     "study_date")} \
        if fm.to_records() else {"image": fm.metadata.get("image")}
    for r in fm.film:
        lines.append(json.dumps({
            **base, "view": fm.view, "level": None,
            "calibration_source": r.calibration_source, r.column: result_value_for_json(r.value),
            "endplates": f'{r.detail.get("upper", "")},{r.detail.get("lower", "")}',
            **({k: v for k, v in extra.get(None, {}).items()
                if k in (f"{r.column}_u", f"{r.name}_state", "uncertainty_model")}
               if fu is not None else {}),
            "reasons": f"{r.name}: {r.reason}" if r.reason else ""}))
    return lines


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.2f}"
    return str(value)


def _with_u(value: Any, u: Any) -> str:
    text = _fmt(value)
    if u is None or text == "-" or not isinstance(u, float) or u != u:
        return text
    return f"{text} ± {u:.2f}"


def _print_table(fm: FilmMeasurements, fu: Any = None) -> None:
    """The film's values as a table, measurements down, vertebrae across; split into several
    tables of fewer vertebrae when the terminal is too narrow, never cutting a name."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    title = f"{fm.metadata.get('image', '')}  ({fm.view}, {fm.calibration_source})"
    if fm.metadata.get("annotation"):
        where = str(fm.metadata.get("annotation_source", "")).replace("_", " ")
        title += f"\nannotation: {fm.metadata['annotation']} ({where})"
    if fm.vertebrae:
        levels = list(fm.vertebrae)
        names = list(next(iter(fm.vertebrae.values())))
        columns = [fm.get(levels[0], name).column for name in names]
        headers = {}
        for lv in levels:
            v = fm.landmarks[lv]
            flags = "".join(f for f, on in (("F", v.fractured), ("T", v.treated),
                                            ("X", v.excluded)) if on)
            headers[lv] = f"{lv} {flags}".strip()
        def cell(lv: str, name: str) -> str:
            key = (lv, name)
            if fu is not None and key in fu.items:
                return _with_u(fm.get(lv, name).value, fu.items[key].u)
            return _fmt(fm.get(lv, name).value)

        cells = {lv: [cell(lv, name) for name in names] for lv in levels}
        if fu is not None:
            from spine_measure.measurements.uncertainty import film_flag_states

            states = film_flag_states(fu)
            columns.append("compression >= 38.5 %")
            for lv in levels:
                cells[lv].append(states.get(lv, {}).get("compression_ge_38_5_state", "-"))
        first = max(len(c) for c in [*columns, "measurement"]) + 3
        width = {lv: max(len(headers[lv]), *(len(c) for c in cells[lv])) + 3 for lv in levels}
        groups: list[list[str]] = [[]]
        used = first + 1
        for lv in levels:
            if groups[-1] and used + width[lv] > console.width:
                groups.append([])
                used = first + 1
            groups[-1].append(lv)
            used += width[lv]
        for i, group in enumerate(groups):
            table = Table(title=escape(title) if i == 0 else None, show_lines=False)
            table.add_column("measurement", no_wrap=True, min_width=first - 3)
            for lv in group:
                table.add_column(headers[lv], justify="right", no_wrap=True)
            for j, col in enumerate(columns):
                table.add_row(col, *(cells[lv][j] for lv in group))
            console.print(table)
        if any(h != lv for lv, h in headers.items()):
            console.print("flags: F fractured, T treated, X excluded (not a reference)")
    film_u: dict[str, Any] = {}
    film_states: dict[str, str] = {}
    if fu is not None:
        from spine_measure.measurements.uncertainty import film_flag_states

        film_u = {it.column: it.u for (lv, _), it in fu.items.items() if lv is None}
        film_states = film_flag_states(fu).get(None, {})
    for r in fm.film:
        ends = f' ({r.detail.get("upper")} - {r.detail.get("lower")})' if r.detail.get("upper") \
            else ""
        why = f"  [{r.reason}]" if r.reason else ""
        state = film_states.get(f"{r.name}_state")
        state = f" (with uncertainty: {state})" if state else ""
        console.print(f"{r.column}: {_with_u(r.value, film_u.get(r.column))}{state}{ends}{why}",
                      markup=False)
    if fu is not None:
        console.print(f"± : standard uncertainty from {fu.model.describe()}", markup=False)


@app.command("measure")
def measure(
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH", help="Radiographs (DICOM or images) or folders."),
    annotations: Path | None = typer.Option(
        None, "--annotations", metavar="ADIR",
        help="Folder of annotation files; it wins over the sidecar next to each image for "
             "every image it covers (default: sidecars)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines: one per vertebra, one per "
                                                       "film-level measurement."),
    cobb: list[str] = typer.Option(
        [], "--cobb", metavar="SPEC", help='Sagittal Cobb angle between two endplates, e.g. '
                           '"T10:superior,L2:inferior" or "T10s-L2i", or "treated" / '
                           '"treated+1" (the treated segment; repeatable).'),
    with_cement: bool = typer.Option(
        True, "--cement/--no-cement", help="Cement features (docs/cement.md) of treated "
                                           "vertebrae "
                                           "(decodes the pixels of films that have one)."),
    uncertainty: float | None = typer.Option(None, "--uncertainty", metavar="SD_MM",
                                             help=HELP_SD),
    uncertainty_from: Path | None = typer.Option(None, "--uncertainty-from", metavar="DIR",
                                                 help=HELP_FROM),
    accept_proposed: bool = typer.Option(
        False, "--accept-proposed", help="Also measure vertebrae whose proposed landmarks no "
                                         "reader has confirmed (JSON rows say which in "
                                         "landmark_source)."),
) -> None:
    """Every single-film measurement, per film and vertebra (docs/measurements.md), and the
    cement features of treated vertebrae (docs/cement.md)."""
    from spine_measure.measurements import REGISTRY
    from spine_measure.measurements.api import result_value_for_json
    from spine_measure.measurements.context import parse_cobb_spec

    try:
        for c in cobb:
            parse_cobb_spec(c)
    except SpineMeasureError as exc:
        typer.echo(f"Error: --cobb: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    missing = [p for p in paths if not p.exists()]
    if missing:
        typer.echo(f"Error: {missing[0]}: no such file or folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    require_annotations_folder(annotations)
    try:
        model = resolve_uncertainty(uncertainty, uncertainty_from)
    except UncertaintyOptionError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    from spine_measure.service import AnnotationFinder, FilmError, measure_film_file

    finder = AnnotationFinder(annotations)
    files, n_companions = candidates(paths)
    if n_companions:
        typer.echo(f"{n_companions} image(s) that accompany a film (X.<tag>.png next to X.dcm, "
                   "e.g. cement masks) are not films: not measured", err=True)
    if not files:
        typer.echo("Error: no image files found", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE)
    done = failed = 0
    for path in files:
        try:
            res = measure_film_file(path, finder=finder, cobb=cobb, cement=with_cement,
                                    accept_proposed=accept_proposed)
        except (FilmError, OSError) as exc:
            failed += 1
            msg = str(exc)
            if as_json:
                typer.echo(json.dumps({"image": os.fspath(path), "ok": False, "error": msg}))
            typer.echo(f"Error: {msg}", err=True)
            continue
        done += 1
        for msg in res.plausibility:
            typer.echo(f"warning: {res.choice.relative}: implausible landmarks: {msg}",
                       err=True)
        for level, why in res.unconfirmed:
            if as_json:
                typer.echo(json.dumps({"image": os.fspath(path), "level": level, "ok": False,
                                       "stage": "unconfirmed", "error": why}))
            typer.echo(f"Note: {path}: {why}", err=True)
        fm = res.measurements
        fu = None
        if model is not None:
            from spine_measure.measurements.uncertainty import film_uncertainty

            fu = film_uncertainty(fm, model)
        cement: dict[str, dict[str, Any]] = {
            **res.cement, **{lv: {"cement_error": why} for lv, why in res.cement_errors.items()}}
        if as_json:
            for line in _json_lines(fm, fu, res.landmark_source):
                typer.echo(line)
            for level, row in cement.items():
                typer.echo(json.dumps({"image": os.fspath(path), "level": level,
                                       **{k: result_value_for_json(v) for k, v in row.items()}}))
        else:
            _print_table(fm, fu)
            for level, row in cement.items():
                shown = ", ".join(f"{k}={_fmt(row.get(k))}" for k in (
                    "cement_found", "npec", "cement_distribution", "cement_fill_pct",
                    "leak_locations", "leak_intradiscal_spike", "cement_error") if k in row)
                typer.echo(f"cement {level}: {shown}")
    report_unused(finder)
    if not as_json:
        typer.echo(f"{done} measured, {failed} failed "
                   f"({len(REGISTRY)} registered measurements)", err=True)
    if done == 0:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)
