"""``--annotations ADIR``: the folder of annotation files, checked in one place for every
command that reads annotations (``measure``, ``export-sr``, ``propagate``, ``refine``).

Which file a film's annotation is then taken from: ``docs/cli.md`` (one function,
:class:`spine_measure.service.AnnotationFinder`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from spine_measure.cli import EXIT_USAGE

__all__ = ["require_annotations_folder"]


def require_annotations_folder(annotations: Path | None) -> None:
    """Check ``--annotations``: when given it must be a folder, else a one-line usage error
    (exit code 2)."""
    if annotations is not None and not annotations.is_dir():
        typer.echo(f"Error: --annotations: {annotations}: not a folder", err=True)
        raise typer.Exit(EXIT_USAGE)
