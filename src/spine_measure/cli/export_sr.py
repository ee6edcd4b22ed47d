"""``spine-measure export-sr PATH... --out DIR``: one DICOM SR per measured DICOM film.

Each film is measured as ``spine-measure measure`` and ``batch`` measure it (same annotation
precedence and identity check, :mod:`spine_measure.service`); its SR is named after the
film's SOP Instance UID (``<SOPInstanceUID>.sr.dcm``, as ``batch --sr``) and holds the
landmarks (SCOORD on the source image), every single-film measurement and the
cement features of treated vertebrae (``docs/sr_export.md``). A file that fails is reported
on one line and the others are still exported. Vertebrae no reader has confirmed (proposals,
``docs/propagation.md``) are left out with a one-line note per film, unless
``--accept-proposed``: then each is in the SR marked with its landmark source.
"""

from __future__ import annotations

from pathlib import Path

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app
from spine_measure.cli.annotation_options import require_annotations_folder
from spine_measure.cli.pseudonym_options import KEY_FILE_OPTION, KEY_OPTION
from spine_measure.cli.uncertainty_options import (
    HELP_FROM,
    HELP_SD,
    UncertaintyOptionError,
    resolve_uncertainty,
)
from spine_measure.errors import SpineMeasureError


@app.command("export-sr")
def export_sr(
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH", help="DICOM radiographs or folders."),
    out: Path = typer.Option(..., "--out", metavar="DIR",
                             help="Folder the SR files are written to (created if missing)."),
    annotations: Path | None = typer.Option(
        None, "--annotations", metavar="ADIR",
        help="Folder of annotation files; it wins over the sidecar next to each image for "
             "every image it covers (default: sidecars)."),
    cobb: list[str] = typer.Option(
        [], "--cobb", metavar="SPEC", help='Sagittal Cobb angle between two endplates, e.g. '
                           '"T10:superior,L2:inferior" or "T10s-L2i", or "treated" / "treated+1" '
                           '(the treated segment; repeatable).'),
    with_cement: bool = typer.Option(
        True, "--cement/--no-cement", help="Cement features of treated vertebrae."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Keep the real patient name, ID, birth date and "
                                             "accession number (default: the pseudonym "
                                             "batch gives, docs/sr_export.md)."),
    pseudonym_key: str | None = KEY_OPTION,
    pseudonym_key_file: Path | None = KEY_FILE_OPTION,
    uncertainty: float | None = typer.Option(None, "--uncertainty", metavar="SD_MM",
                                             help=HELP_SD),
    uncertainty_from: Path | None = typer.Option(None, "--uncertainty-from", metavar="DIR",
                                                 help=HELP_FROM),
    accept_proposed: bool = typer.Option(
        False, "--accept-proposed", help="Also export vertebrae whose proposed landmarks no "
                                         "reader has confirmed (each marked with its "
                                         "LANDMARK-SOURCE in the SR)."),
) -> None:
    """Write each film's measurements as a DICOM SR (Comprehensive 3D SR, TID 1500),
    pseudonymised as ``batch --sr`` does unless ``--include-identifiers``."""
    from spine_measure.cli.measure import candidates, report_unused
    from spine_measure.io.files import working_on
    from spine_measure.measurements.context import parse_cobb_spec
    from spine_measure.service import AnnotationFinder
    from spine_measure.sr.export import write_film_sr

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
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"Error: --out: {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    key: bytes | None = None
    if include_identifiers:
        if pseudonym_key is not None or pseudonym_key_file is not None:
            typer.echo("Error: --include-identifiers keeps the real identifiers; a pseudonym "
                       "key has nothing to do (give one or the other)", err=True)
            raise typer.Exit(EXIT_USAGE)
    else:
        from spine_measure.batch.pseudonym import resolve_key

        try:
            pkey = resolve_key(pseudonym_key, out, key_file=pseudonym_key_file)
        except SpineMeasureError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        key = pkey.key
    # Folders contribute their DICOM files only (an SR must reference a DICOM instance);
    # a plain image named on the command line is reported as an error.
    files, _companions = candidates(paths, plain_images=False)
    if not files:
        typer.echo("Error: no image files found", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE)
    finder = AnnotationFinder(annotations)
    done = failed = 0
    used: dict[str, Path] = {}
    for path in files:
        try:
            with working_on(path):  # warnings while building its SR name the film
                written = write_film_sr(path, out, finder=finder, cobb=cobb,
                                        with_cement=with_cement, file_name=None, taken=used,
                                        include_identifiers=include_identifiers,
                                        pseudonym_key=key, uncertainty=model,
                                        accept_proposed=accept_proposed)
        except (SpineMeasureError, OSError) as exc:
            failed += 1
            typer.echo(f"Error: {exc}", err=True)
            continue
        used[written.path.name] = path
        done += 1
        extra = f" ({len(written.skipped)} values not coded)" if written.skipped else ""
        typer.echo(f"{path} -> {written.path}{extra}")
        if written.unconfirmed:
            typer.echo(f"{path}: {len(written.unconfirmed)} unconfirmed vertebra(e) left out "
                       f"({', '.join(written.unconfirmed)}): confirm them, or pass "
                       "--accept-proposed", err=True)
    report_unused(finder)
    typer.echo(f"{done} SR written, {failed} failed", err=True)
    if key is not None and pkey.path is not None and pkey.source != "generated":
        typer.echo(f"pseudonym key: {pkey.path}", err=True)  # generated: logged once
    if done == 0:
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)
