"""The ``spine-measure`` command line: a thin shell over the library.

Exit codes (every subcommand):

==== =====================================================================
0    every input was processed
1    the command ran, but at least one input failed (reported, not raised)
2    usage error (bad option, missing path)
3    nothing could be processed (e.g. no readable input at all)
==== =====================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import typer

from spine_measure import __version__

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_DONE = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="spine-measure",
    help="Measure spine radiographs for vertebral augmentation (PVP/PKP) studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click help: wraps at any width without cutting option names, shows flags as
    # flags (no "<bool>") and a count option as "-v/-vv"
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"spine-measure {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False,
                                help="More log output: -v info, -vv debug (repeat the "
                                     "flag; it takes no value)."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from spine_measure.io.files import route_warnings

    route_warnings()  # warnings become log lines naming the file, once per file
    if verbose < 2:
        # pydicom logs every failed decoder attempt with a traceback; spine_measure tries
        # several decoders on purpose and reports the outcome itself. (pydicom resets its
        # logger's level when imported, so import it first.)
        import pydicom  # noqa: F401

        logging.getLogger("pydicom").setLevel(logging.CRITICAL)


# --- subcommands: each lives in its own module and registers itself on ``app`` ---------
from spine_measure.cli import annotate as _annotate  # noqa: E402,F401
from spine_measure.cli import batch as _batch  # noqa: E402,F401
from spine_measure.cli import export_sr as _export_sr  # noqa: E402,F401
from spine_measure.cli import import_landmarks as _import_landmarks  # noqa: E402,F401
from spine_measure.cli import info as _info  # noqa: E402,F401
from spine_measure.cli import measure as _measure  # noqa: E402,F401
from spine_measure.cli import propagate as _propagate  # noqa: E402,F401
from spine_measure.cli import reliability as _reliability  # noqa: E402,F401
from spine_measure.cli import risk as _risk  # noqa: E402,F401

# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        # standalone_mode=False: click returns a command's exit code instead of exiting.
        rv = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # Usage errors (typer vendors click: duck-type its ClickException).
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            return EXIT_USAGE
        raise
    return rv if isinstance(rv, int) else EXIT_OK
