"""Pseudonymised patient identifiers: a keyed hash (HMAC-SHA256) of the real id.

The same key always maps the same ``PatientID`` to the same pseudonym, so re-runs and later
batches of one study can be joined, while the pseudonym alone reveals nothing without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

__all__ = ["KEY_ENV", "KEY_FILE", "pseudonym", "resolve_key"]

log = logging.getLogger(__name__)

KEY_ENV = "SPINE_MEASURE_PSEUDONYM_KEY"
"""Environment variable holding the pseudonymisation key."""

KEY_FILE = "pseudonym.key"
"""File in the output folder holding a generated key (when none was given)."""

PREFIX = "P"
DIGITS = 16


def pseudonym(patient_id: str, key: bytes) -> str:
    """Pseudonym of ``patient_id``: ``"P"`` + the first 16 hex digits of
    HMAC-SHA256(key, patient_id) (64 bits: collisions need ~4e9 patients).

    >>> pseudonym("SM001", b"k")
    'Pab48cc5e2d0a20ec'
    """
    digest = hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGITS]


def resolve_key(option: str | None, out_dir: str | os.PathLike[str]) -> tuple[bytes, str]:
    """The key and where it came from: ``"option"``, ``"environment"`` or ``"generated"``.

    Without an option or the :data:`KEY_ENV` variable, a random 256-bit key is generated once
    and stored in ``OUT/pseudonym.key`` (mode 0600), with a warning, so that re-runs into the
    same folder give the same pseudonyms. Keep that file apart from the tables you share.
    """
    if option:
        return option.encode("utf-8"), "option"
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8"), "environment"
    path = Path(out_dir) / KEY_FILE
    if path.is_file():
        return path.read_text(encoding="ascii").strip().encode("ascii"), "generated"
    key = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    log.warning("no pseudonymisation key given (--pseudonym-key or %s): generated one and "
                "stored it in %s; keep it secret and apart from the tables", KEY_ENV, path)
    return key.encode("ascii"), "generated"
