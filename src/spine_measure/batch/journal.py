"""The run journal: one small JSON file per processed film, written atomically.

A film's entry is written only after its overlay PNG is on disk, by the one process that
assembles the results, with a temporary file, ``fsync`` and :func:`os.replace`; an interrupted
run (Ctrl-C, ``kill -9``, power loss) therefore leaves either a complete entry or none. The
journal's ``options.json`` records the hash of the options that shape the output; a re-run with
other options is refused instead of mixing results. Entries are keyed by the film's path and
carry the size and modification time of the film and its annotation: a changed file is
processed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spine_measure.errors import SpineMeasureError
from spine_measure.io.annotation import atomic_write_text

__all__ = ["Journal", "JournalMismatchError", "atomic_write_bytes"]

JOURNAL_DIR = "journal"


class JournalMismatchError(SpineMeasureError):
    """The output folder holds a run made with different options."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, rename): a killed process leaves
    the old file or the new one. No fsync (overlays are cheap to redraw); the journal entry
    that follows is fsynced."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:  # a full disk leaves no partial file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Journal:
    """Journal of a batch run in ``OUT/journal``."""

    def __init__(self, out_dir: str | os.PathLike[str], options_hash: str,
                 options: Mapping[str, Any] | None = None,
                 describe: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]
                 | None = None) -> None:
        self.dir = Path(out_dir) / JOURNAL_DIR
        self.options_hash = options_hash
        self.options = dict(options) if options is not None else None
        self.describe = describe

    def open(self, *, restart: bool = False) -> int:
        """Create or re-open the journal; return the number of entries kept.

        Raises
        ------
        JournalMismatchError
            The journal was written with other options (and ``restart`` is false).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "options.json"
        if meta.is_file():
            try:
                stored = json.loads(meta.read_text(encoding="utf-8"))
                old = stored.get("options_hash")
            except (ValueError, AttributeError):  # damaged (e.g. a full disk)
                stored, old = {}, None
            if old != self.options_hash:
                if not restart:
                    old_opts = stored.get("options")
                    diff = (self.describe(old_opts, self.options)
                            if self.describe is not None and isinstance(old_opts, dict)
                            and self.options is not None else [])
                    what = ("; ".join(diff) if diff else
                            f"options hash {str(old)[:12]} vs {self.options_hash[:12]}")
                    raise JournalMismatchError(
                        f"{self.dir.parent}: holds a run made with other options ({what}). "
                        "To resume it, run again with the same options; to start afresh, "
                        "add --restart (discards that run's journal) or give another --out")
                for f in self.dir.glob("*.json"):
                    f.unlink()
            elif restart:
                for f in self.dir.glob("*.json"):
                    if f.name != "options.json":
                        f.unlink()
        content: dict[str, Any] = {"options_hash": self.options_hash}
        if self.options is not None:
            content["options"] = self.options
        atomic_write_text(meta, json.dumps(content, sort_keys=True) + "\n")
        return sum(1 for f in self.dir.glob("f_*.json"))

    def _path(self, key: str) -> Path:
        return self.dir / ("f_" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:24] + ".json")

    def get(self, key: str, fingerprint: list[int]) -> dict[str, Any] | None:
        """The journalled record of ``key`` when its input files are unchanged."""
        p = self._path(key)
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if entry.get("key") != key or entry.get("fingerprint") != list(fingerprint):
            return None
        return entry["record"]

    def put(self, key: str, fingerprint: list[int], record: dict[str, Any]) -> None:
        """Journal ``record`` atomically."""
        text = json.dumps({"key": key, "fingerprint": list(fingerprint), "record": record},
                          sort_keys=True, allow_nan=False)
        atomic_write_text(self._path(key), text + "\n")
