"""``--pseudonym-key`` / ``--pseudonym-key-file``: the same two options on every command that
writes pseudonymised output (``batch``, ``export-sr``); the key is resolved by
:func:`spine_measure.batch.pseudonym.resolve_key` (``docs/batch.md``, Pseudonymisation)."""

from __future__ import annotations

import typer

__all__ = ["KEY_OPTION", "KEY_FILE_OPTION"]

KEY_OPTION = typer.Option(
    None, "--pseudonym-key", metavar="KEY",
    help="Key of the pseudonyms (default: $SPINE_MEASURE_PSEUDONYM_KEY, else a key file).")
KEY_FILE_OPTION = typer.Option(
    None, "--pseudonym-key-file", metavar="FILE",
    help="File holding the key (default: $SPINE_MEASURE_PSEUDONYM_KEY_FILE, else the user's "
         "key, generated once; never in the output folder).")
