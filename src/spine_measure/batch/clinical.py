"""The clinical table: a CSV keyed by patient id (and optionally level), validated.

Columns are matched case-insensitively, with common aliases, to the canonical names the
feature table and the risk models use (``age_years``, ``bmi_kg_m2``, ...); any other column is
carried through under its own (snake-cased) name. Every value of a canonical column is checked
(numbers in a plausible range, category codes, dates, levels: :data:`RULES`); a value that
fails is left empty and reported as a :class:`ClinicalProblem` with its line, column and value,
and the rest of the row is used. What makes the whole table unusable (unreadable, no patient
id column, a column twice, a column named like a measured one) raises
:class:`ClinicalTableError`. The accepted ranges and codes are listed in ``docs/batch.md``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spine_measure.errors import FileError
from spine_measure.landmarks import LEVELS

__all__ = ["CANONICAL", "MISSING", "RULES", "ClinicalProblem", "ClinicalTable",
           "ClinicalTableError", "read_clinical"]


class ClinicalTableError(FileError):
    """The clinical table as a whole cannot be used (see :func:`read_clinical`)."""


#: canonical column -> accepted header spellings (after lower-casing and snake-casing).
CANONICAL: dict[str, tuple[str, ...]] = {
    "patient_id": ("patient_id", "patientid", "patient", "id", "mrn"),
    "level": ("level", "treated_level", "vertebra"),
    "age_years": ("age_years", "age"),
    "sex": ("sex", "gender"),
    "bmi_kg_m2": ("bmi_kg_m2", "bmi"),
    "bmd_t_score": ("bmd_t_score", "t_score", "bmd"),
    "procedure": ("procedure",),
    "approach": ("approach",),
    "cement_volume_ml": ("cement_volume_ml", "cement_volume"),
    "procedure_date": ("procedure_date", "surgery_date", "operation_date"),
    "anti_osteoporosis_therapy": ("anti_osteoporosis_therapy", "anti_osteoporosis"),
    "brace": ("brace",),
}

#: Cell texts read as "no value" (case-insensitive, surrounding blanks ignored).
MISSING = ("", "na", "n/a", "nan", "null", "none")

_YES = ("yes", "y", "true", "1")
_NO = ("no", "n", "false", "0")

#: canonical column -> (kind, specification, unit or description) of its valid values.
#: ``number``: (low, high) inclusive, finite; ``code``: accepted text -> value written.
RULES: dict[str, tuple[str, Any, str]] = {
    "age_years": ("number", (0.0, 120.0), "years"),
    "bmi_kg_m2": ("number", (10.0, 80.0), "kg/m2"),
    "bmd_t_score": ("number", (-10.0, 10.0), "SD"),
    "cement_volume_ml": ("number", (0.0, 50.0), "ml"),
    "sex": ("code", {"m": "M", "male": "M", "f": "F", "female": "F"}, "M or F"),
    "procedure": ("code", {"pvp": "PVP", "vertebroplasty": "PVP", "pkp": "PKP",
                           "bkp": "PKP", "kyphoplasty": "PKP"}, "PVP or PKP"),
    "approach": ("code", {"unilateral": "unilateral", "unipedicular": "unilateral",
                          "bilateral": "bilateral", "bipedicular": "bilateral"},
                 "unilateral or bilateral"),
    "anti_osteoporosis_therapy": ("code", {**dict.fromkeys(_YES, True),
                                           **dict.fromkeys(_NO, False)}, "yes or no"),
    "brace": ("code", {**dict.fromkeys(_YES, True), **dict.fromkeys(_NO, False)},
              "yes or no"),
    "procedure_date": ("date", (1980, 2100), "YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD"),
    "level": ("level", LEVELS, "a vertebral level C1 ... S1"),
}

_ABOVE_LOW = ("cement_volume_ml",)     # the low end itself is not accepted
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DELIMITERS = (",", ";", "\t")


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass(frozen=True)
class ClinicalProblem:
    """One problem of the clinical table: where it is and what was done about it.

    ``status`` is ``"failed"`` (a value left empty or a row ignored: the run exits 1) or
    ``"warning"``; ``lines`` are the physical line numbers of the file (1 = header).
    ``str()`` gives ``'<file>:<line>: column "<name>": value "<value>" <reason>'``.
    """

    path: str
    lines: tuple[int, ...]
    reason: str
    column: str | None = None
    value: str | None = None
    status: Literal["failed", "warning"] = "failed"

    @property
    def where(self) -> str:
        """``<file>:<line>`` (``<file>:<first>-<last>`` for a record over several lines)."""
        if not self.lines:
            return self.path
        a, b = self.lines[0], self.lines[-1]
        return f"{self.path}:{a}" if a == b else f"{self.path}:{a}-{b}"

    @property
    def message(self) -> str:
        """The problem without the file and line."""
        parts = []
        if self.column is not None:
            parts.append(f'column "{self.column}"')
        if self.value is not None:
            parts.append(f'value "{_show(self.value)}"')
        return (": ".join(parts) + " " if parts else "") + self.reason

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _show(value: str, limit: int = 60) -> str:
    text = value.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class ClinicalTable:
    """Rows by (patient id, level or None); ``columns`` in output order (without the key
    columns); ``lines`` the line of each row; ``problems`` what could not be used."""

    path: str
    columns: list[str]
    rows: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    lines: dict[tuple[str, str | None], int] = field(default_factory=dict)
    problems: list[ClinicalProblem] = field(default_factory=list)
    delimiter: str = ","

    def lookup(self, patient_id: str, level: str) -> tuple[dict[str, Any] | None, str]:
        """The row for (patient, level), else the patient's level-less row; with the match
        kind ``"patient_level"``, ``"patient"`` or ``"none"``."""
        if (patient_id, level) in self.rows:
            return self.rows[(patient_id, level)], "patient_level"
        if (patient_id, None) in self.rows:
            return self.rows[(patient_id, None)], "patient"
        return None, "none"

    def patients(self) -> set[str]:
        return {p for p, _ in self.rows}


def _number(raw: str, delimiter: str) -> float | None:
    text = raw.replace(",", ".") if delimiter == ";" and raw.count(",") == 1 else raw
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    return float(text)


def _check(col: str, raw: str, delimiter: str) -> tuple[Any, str | None]:
    """(value, None) or (None, reason) for one non-missing cell of a canonical column."""
    kind, spec, what = RULES[col]
    if kind == "number":
        lo, hi = spec
        accepted = (f"above {lo:g} and at most {hi:g} {what}" if col in _ABOVE_LOW
                    else f"{lo:g} to {hi:g} {what}")
        x = _number(raw, delimiter)
        if x is None and raw.lower().lstrip("+-") in ("inf", "infinity"):
            x = math.inf
        if x is None:
            return None, "is not a number (plain decimal, e.g. 23.4)"
        if not math.isfinite(x):
            return None, f"is not a finite number (accepted: {accepted})"
        if (col in _ABOVE_LOW and x <= lo) or not lo <= x <= hi:
            return None, f"is outside the accepted range ({accepted})"
        return x, None
    if kind == "code":
        key = raw.lower()
        if key in spec:
            return spec[key], None
        return None, f"is not a valid code (accepted: {what})"
    if kind == "date":
        text = raw.replace("/", "-")
        try:
            if re.fullmatch(r"[0-9]{8}", text):
                d = dt.datetime.strptime(text, "%Y%m%d").date()
            elif re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
                d = dt.date.fromisoformat(text)
            else:
                return None, f"is not a date ({what})"
        except ValueError:
            return None, f"is not a valid calendar date ({what})"
        if not spec[0] <= d.year <= spec[1]:
            return None, f"is outside the accepted years {spec[0]} to {spec[1]}"
        return d, None
    up = raw.upper()
    if up in spec:
        return up, None
    return None, f"is not a vertebral level ({what})"


def _sniff(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def read_clinical(path: str | Path, *, reserved: Collection[str] = (),
                  reserved_suffixes: tuple[str, ...] = ()) -> ClinicalTable:
    """Read and validate the clinical CSV.

    The delimiter (``,``, ``;`` or tab) is the one the header line holds most of; in a
    ``;``-separated file a decimal comma (``23,4``) is accepted in numbers.

    Parameters
    ----------
    path : str or Path
        The CSV (UTF-8, with or without BOM).
    reserved, reserved_suffixes : optional
        Column names (after snake-casing), and name endings, that belong to measured columns
        of the output; a clinical column with such a name is refused.

    Raises
    ------
    ClinicalTableError
        Unreadable or not UTF-8 text, empty, no patient id column, a column twice (after
        matching aliases), or a column named like a measured one.
    """
    p = Path(path)
    name = str(path)
    if p.exists() and not p.is_file():
        raise ClinicalTableError(p, "not a regular file (a folder, pipe or device); the "
                                    "clinical table is a CSV file")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ClinicalTableError(p, f"cannot read the clinical table ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ClinicalTableError(p, f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                                    f"position {exc.start}); save it as CSV UTF-8") from None
    if "\x00" in text:
        raise ClinicalTableError(p, "not a CSV file (it holds NUL bytes)")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimiter = _sniff(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        header_line = reader.line_num
    except csv.Error as exc:
        raise ClinicalTableError(p, f"not a CSV file (line {reader.line_num}: {exc})") from None
    records: list[tuple[int, int, list[str]]] = []
    unreadable: ClinicalProblem | None = None
    end = reader.line_num
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:      # e.g. a field over the csv module's size limit
            unreadable = ClinicalProblem(name, (end + 1,), f"cannot be read as CSV ({exc}); "
                                                           "this and every later row ignored")
            break
        start, end = end + 1, reader.line_num
        records.append((start, end, record))
    if not header:
        raise ClinicalTableError(p, "empty clinical table")
    alias = {a: canon for canon, names in CANONICAL.items() for a in names}
    cols = [alias.get(_snake(h), _snake(h)) for h in header]
    if "patient_id" not in cols:
        others = [d for d in _DELIMITERS if d != delimiter and d in first]
        hint = (f" (read as {_delimiter_name(delimiter)}-separated)" if others else "")
        raise ClinicalTableError(p, f"no patient id column (one of "
                                    f"{', '.join(CANONICAL['patient_id'])}) in the header "
                                    f"line {header_line}{hint}; got "
                                    f"{', '.join(h.strip() for h in header)}")
    dup = sorted({c for c in cols if c and cols.count(c) > 1})
    if dup:
        names = [h.strip() for h, c in zip(header, cols, strict=True) if c == dup[0]]
        raise ClinicalTableError(p, f"columns {' and '.join(repr(n) for n in names)} are the "
                                    f"same column {dup[0]!r} (after matching aliases)")
    clash = [(h.strip(), c) for h, c in zip(header, cols, strict=True)
             if c and c not in CANONICAL and (c in reserved or c.endswith(reserved_suffixes))]
    if clash:
        listed = ", ".join(f'"{h}"' + (f' (read as "{c}")' if c != h else "")
                           for h, c in clash)
        raise ClinicalTableError(
            p, f"column(s) {listed} would have the name of a measured column of the output; "
               "a clinical column never replaces or duplicates a measurement: rename it in "
               f'the clinical table (e.g. "clinical_{clash[0][1]}"). Names ending in '
               f"{', '.join(reserved_suffixes) or '-'} are reserved for measured columns "
               "(docs/batch.md, Clinical table)")
    table = ClinicalTable(name, [c for c in cols if c and c not in ("patient_id", "level")],
                          delimiter=delimiter)
    unnamed = [i for i, c in enumerate(cols) if not c]
    for i in unnamed:
        hit = next(((a, b) for a, b, r in records if i < len(r) and r[i].strip()), None)
        if hit is not None:
            table.problems.append(ClinicalProblem(
                name, (hit[0],), f"column {i + 1} has no name in the header: its values are "
                                 "ignored"))
    for start, end, record in records:
        _read_row(table, cols, start, end, record, header)
    if unreadable is not None:
        table.problems.append(unreadable)
    return table


def _delimiter_name(d: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab"}[d]


def _read_row(table: ClinicalTable, cols: list[str], start: int, end: int,
              record: list[str], header: list[str]) -> None:
    name = table.path
    lines = tuple(range(start, end + 1))
    if not any(x.strip() for x in record):
        return
    if end > start or any("\n" in x or "\r" in x for x in record):
        table.problems.append(ClinicalProblem(
            name, lines, f"one row runs over lines {start} to {end}: a quote (\") opened and "
                         "not closed, or a value with a line break; the row is ignored (values "
                         "may not contain line breaks)"))
        return
    if len(record) > len(cols) and not any(x.strip() for x in record[len(cols):]):
        record = record[: len(cols)]
    if len(record) != len(cols):
        table.problems.append(ClinicalProblem(
            name, lines, f"has {len(record)} fields, the header {len(cols)} (a "
                         f"{_delimiter_name(table.delimiter)} inside an unquoted value?); the "
                         "row is ignored"))
        return
    row: dict[str, Any] = {}
    for c, h, raw in zip(cols, header, record, strict=True):
        if not c:
            continue
        raw = raw.strip()
        if raw.lower() in MISSING:
            row[c] = None
        elif c in RULES:
            value, reason = _check(c, raw, table.delimiter)
            if reason is not None:
                action = "the row is ignored" if c == "level" else "left empty"
                table.problems.append(ClinicalProblem(name, lines, f"{reason}; {action}",
                                                      column=h.strip(), value=raw))
                if c == "level":
                    return
            row[c] = value
        else:
            row[c] = raw
    pid = row.pop("patient_id")
    level = row.pop("level", None)
    if pid is None:
        table.problems.append(ClinicalProblem(name, lines, "no patient id; the row is ignored"))
        return
    key = (str(pid), level)
    if key in table.rows:
        table.problems.append(ClinicalProblem(
            name, lines, "a second row for the same patient"
                         + (f" and level {level}" if level else "")
                         + f" (first on line {table.lines[key]}); this row is ignored"))
        return
    table.rows[key] = row
    table.lines[key] = start
