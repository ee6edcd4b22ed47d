"""``spine-measure annotate PATH``: open napari with the film(s) loaded and the annotation
widget docked. napari and the plugin are imported only when the command runs."""

from __future__ import annotations

from pathlib import Path

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_USAGE, app


@app.command("annotate")
def annotate(
    path: Path = typer.Argument(..., help="A DICOM file, a folder of films, or a PNG/JPEG/TIFF."),
    reader: str = typer.Option(None, "--reader",
                               help="Reader id written into the annotations (default: the "
                                    "one typed in the widget last time)."),
    annotations: Path = typer.Option(
        None, "--annotations", file_okay=False,
        help="Folder for annotation and autosave files (default: beside each film); for "
             "films on a read-only folder or CD."),
) -> None:
    """Open napari on PATH with the spine annotation widget docked.

    A film whose annotation file cannot be read (corrupt, a newer format, another image)
    opens with a message: read-only, or start over with the file kept and backed up."""
    if not path.exists():
        typer.echo(f"{path}: no such file or folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    if annotations is not None and not annotations.is_dir():
        typer.echo(f"{annotations}: --annotations must be an existing folder", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        from napari_spine_measure._reader import read_paths
    except ImportError as exc:
        typer.echo("spine-measure annotate needs the napari plugin: pip install "
                   f"napari-spine-measure (or -e plugins/napari) ({exc})", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    from spine_measure.errors import SpineMeasureError

    try:
        layers = read_paths(str(path))
    except (SpineMeasureError, OSError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_NOTHING_DONE) from None
    if not layers:
        typer.echo(f"{path}: no readable film", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE)
    try:
        import napari

        from napari_spine_measure._widget import SpineAnnotationWidget
    except ImportError as exc:
        typer.echo(f"spine-measure annotate needs napari ({exc})", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    viewer = napari.Viewer(title=f"spine-measure · {path.name}")
    for data, kwargs, _kind in layers:
        viewer.add_image(data, **kwargs)
    widget = SpineAnnotationWidget(viewer, reader=reader, annotations_dir=annotations)
    viewer.window.add_dock_widget(widget, name="Spine annotation", area="right")
    napari.run()
    raise typer.Exit(EXIT_OK)
