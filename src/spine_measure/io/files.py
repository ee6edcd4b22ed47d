"""What kind of thing a path is, in the user's terms, before anything opens it.

Only regular files are ever read. Opening a named pipe blocks until something writes to it,
a device like ``/dev/zero`` never ends, and a symbolic link loop cannot be opened at all; so
every reader asks :func:`not_a_regular_file` first and reports the answer as the file's
problem (``docs/robustness.md``).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import logging
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["describe_os_error", "names_file", "not_a_regular_file", "route_warnings",
           "walk_regular_files", "working_on"]

_log = logging.getLogger("spine_measure")

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """``None`` when ``path`` is a regular file (or a symbolic link to one), else the reason
    it cannot be read, e.g. ``"is a named pipe (FIFO), not a file"`` or ``"is a symbolic link
    to /dev/zero, a character device, not a file"``."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (it points back to itself); not followed"
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        return describe_os_error(exc)
    if stat.S_ISREG(st.st_mode):
        return None
    kind = _kind(st.st_mode)
    if os.path.islink(path):
        return f"is a symbolic link to {os.path.realpath(path)}, {kind}, not a file"
    return f"is {kind}, not a file"


def describe_os_error(exc: OSError) -> str:
    """An :class:`OSError` as the user's words, without the path (the caller names it)."""
    reasons = {
        errno.ENOENT: "no such file or folder",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EFBIG: "file too large (file size limit reached)",
        errno.EISDIR: "is a folder",
        errno.ENOTDIR: "a part of the path is not a folder",
        errno.ELOOP: "symbolic link loop",
        errno.ENAMETOOLONG: "file name too long",
        errno.EEXIST: "already exists",
    }
    return reasons.get(exc.errno or -1) or (exc.strerror or "cannot be opened").lower()


def walk_regular_files(root: str | os.PathLike[str], *, recursive: bool = True,
                       on_skip: object = None):  # type: ignore[no-untyped-def]
    """Regular files under ``root`` in sorted order, hidden names skipped.

    Folders reached through symbolic links are followed once; a link leading back into a
    folder already being walked (a loop) is not followed. Anything that is not a regular
    file (pipes, devices, sockets, link loops, dangling links) is passed to
    ``on_skip(path, reason)`` instead of being yielded.
    """
    root = os.fspath(root)
    skip = on_skip if callable(on_skip) else (lambda _p, _r: None)

    def walk(folder: str, ancestors: frozenset[tuple[int, int]]):  # type: ignore[no-untyped-def]
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skip(folder, f"cannot list the folder ({describe_os_error(exc)})")
            return
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                if recursive:
                    subdirs.append(entry)
                continue
            try:  # a plain regular file (no link): known from the listing, no stat
                plain = entry.is_file(follow_symlinks=False)
            except OSError:
                plain = False
            reason = None if plain else not_a_regular_file(entry.path)
            if reason is None:
                yield entry.path
            else:
                skip(entry.path, reason)
        for entry in subdirs:
            try:
                st = os.stat(entry.path)
            except OSError as exc:
                skip(entry.path, describe_os_error(exc))
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                skip(entry.path, "is a symbolic link loop (a folder linking back to a folder "
                                 "above it); not followed")
                continue
            yield from walk(entry.path, ancestors | {ident})

    try:
        st = os.stat(root)
    except OSError:
        return
    yield from walk(root, frozenset({(st.st_dev, st.st_ino)}))


_CURRENT_FILE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "spine_measure_current_file", default=None)


@contextlib.contextmanager
def working_on(path: str | os.PathLike[str]) -> Iterator[None]:
    """Mark ``path`` as the file being read, so that a warning raised meanwhile (by pydicom,
    numpy or spine_measure) is reported naming it (:func:`route_warnings`)."""
    token = _CURRENT_FILE.set(os.fspath(path))
    try:
        yield
    finally:
        _CURRENT_FILE.reset(token)


def names_file(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: run ``fn(path, ...)`` :func:`working_on` its first argument."""
    @functools.wraps(fn)
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> T:
        with working_on(path):
            return fn(path, *args, **kwargs)
    return wrapper


class _NameTheFile(logging.Filter):
    """Prefix a log line with the file being worked on when it does not name it already."""

    def filter(self, record: logging.LogRecord) -> bool:
        where = _CURRENT_FILE.get()
        if where is not None and record.levelno >= logging.WARNING:
            text = record.getMessage()
            if where not in text:
                record.msg, record.args = f"{where}: {text}", None
        return True


def route_warnings(logger: logging.Logger | None = None) -> None:
    """Show Python warnings as the tool's own log lines: ``"<file>: <message>"`` (the file
    being read when it was raised), each once per file, without the source file and line of
    the code that warned. Deprecation warnings (for developers) stay hidden. The command line
    installs this once at start-up."""
    log = logger or _log
    seen: set[tuple[str | None, str]] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        where = _CURRENT_FILE.get()
        if where is not None and text.startswith(where + ": "):
            text = text[len(where) + 2:]
        if (where, text) in seen:
            return
        seen.add((where, text))
        if where is None:
            log.warning("%s", text)
        else:
            log.warning("%s: %s", where, text)

    warnings.showwarning = show
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _NameTheFile) for f in handler.filters):
            handler.addFilter(_NameTheFile())
    warnings.simplefilter("always")
    for quiet in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.simplefilter("ignore", quiet)
