"""The clinical table (SPEC §1.5): a CSV keyed by patient id (and optionally level).

Columns are matched case-insensitively, with common aliases, to the canonical names the
feature table and the risk models use (``age_years``, ``bmi_kg_m2``, ...); any other column is
carried through under its own (snake-cased) name. The table is never required.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_measure.errors import FileError
from spine_measure.landmarks import LEVELS

__all__ = ["CANONICAL", "ClinicalTable", "ClinicalTableError", "read_clinical"]


class ClinicalTableError(FileError):
    """The clinical table cannot be read or has no patient id column."""


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
_NUMERIC = {"age_years", "bmi_kg_m2", "bmd_t_score", "cement_volume_ml"}


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass
class ClinicalTable:
    """Rows by (patient id, level or None); ``columns`` in output order; ``problems`` lists
    (row number, reason) of rows or values that could not be used."""

    path: str
    columns: list[str]
    rows: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)

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


def _value(col: str, raw: str, where: str, problems: list[tuple[str, str]]) -> Any:
    raw = raw.strip()
    if raw == "" or raw.lower() in ("na", "nan", "n/a", "null", "none"):
        return None
    if col in _NUMERIC:
        try:
            return float(raw)
        except ValueError:
            problems.append((where, f'column "{col}": "{raw}" is not a number; left empty'))
            return None
    if col == "procedure_date":
        try:
            return dt.date.fromisoformat(raw.replace("/", "-")) if "-" in raw or "/" in raw \
                else dt.datetime.strptime(raw, "%Y%m%d").date()
        except ValueError:
            problems.append((where, f'column "procedure_date": "{raw}" is not a date '
                                    "(YYYY-MM-DD or YYYYMMDD); left empty"))
            return None
    if col == "level":
        up = raw.upper()
        if up not in LEVELS:
            problems.append((where, f'column "level": "{raw}" is not a vertebral level'))
            return None
        return up
    if col == "procedure":
        return raw.upper()
    if col == "approach":
        return raw.lower()
    return raw


def read_clinical(path: str | Path) -> ClinicalTable:
    """Read the clinical CSV.

    Raises
    ------
    ClinicalTableError
        Missing file, not CSV, or no patient id column.
    """
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            body = list(reader)
    except OSError as exc:
        raise ClinicalTableError(p, f"cannot read clinical table ({exc.strerror})") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ClinicalTableError(p, f"not a CSV file ({exc})") from None
    if not header:
        raise ClinicalTableError(p, "empty clinical table")
    alias = {a: canon for canon, names in CANONICAL.items() for a in names}
    cols = []
    for h in header:
        s = _snake(h)
        cols.append(alias.get(s, s))
    if "patient_id" not in cols:
        raise ClinicalTableError(p, f"no patient id column (one of "
                                    f"{', '.join(CANONICAL['patient_id'])}); got "
                                    f"{', '.join(header)}")
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise ClinicalTableError(p, f"column {dup[0]!r} appears twice (after matching aliases)")
    table = ClinicalTable(str(p), [c for c in cols if c not in ("patient_id", "level")])
    for i, raw_row in enumerate(body, start=2):
        if not any(x.strip() for x in raw_row):
            continue
        where = f"{p.name}:{i}"
        if len(raw_row) != len(cols):
            table.problems.append((where, f"has {len(raw_row)} fields, the header {len(cols)}; "
                                          "row ignored"))
            continue
        row = {c: _value(c, v, where, table.problems) for c, v in zip(cols, raw_row, strict=True)}
        pid = row.pop("patient_id")
        level = row.pop("level", None)
        if pid is None:
            table.problems.append((where, "no patient id; row ignored"))
            continue
        key = (str(pid), level)
        if key in table.rows:
            table.problems.append((where, "second row for the same patient"
                                          f"{' level ' + level if level else ''}; row ignored"))
            continue
        table.rows[key] = row
    return table
