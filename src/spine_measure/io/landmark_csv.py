"""Importing landmarks made in other tools from a long CSV into annotation files.

Format (one row per point; header names are case-insensitive, extra columns are ignored)::

    image,view,level,point,x,y[,fractured,treated,excluded]
    SM001_preop.dcm,lateral,L1,As,233.0,412.25,true,true,false

* ``image``: file name relative to the images folder (sub-folders allowed).
* ``view``: ``lateral`` or ``ap``; ``level``: C2-S1 (any case); ``point``: As Ai Ms Mi Ps Pi
  (lateral, S1 only As Ps) or SL SR IL IR (AP), any case.
* ``x`` = column, ``y`` = row, in pixels of the stored image. By default ``(0, 0)`` is the
  centre of the top-left pixel (spine_measure's convention); tools that put ``(0, 0)`` at the
  top-left *corner* are imported with ``pixel_origin="corner"`` (0.5 px is subtracted). The
  conversion happens once, in :func:`xy_to_rowcol`.
* ``fractured``/``treated``/``excluded``: optional per-vertebra flags (true/false, 1/0,
  yes/no; empty = not given = false); repeated on each row of the vertebra or given once.

Bad rows are reported with their line number and reason and skipped; everything else is
imported (:func:`import_landmark_csv`). See ``docs/annotation_format.md``.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spine_measure.errors import FileError, RadiographError
from spine_measure.io.annotation import (
    Annotation,
    AnnotationError,
    AnnotationFileError,
    ImageRef,
    load_annotation,
    read_image_reference,
    save_annotation,
    sidecar_path,
)
from spine_measure.io.files import describe_os_error
from spine_measure.landmarks import (
    AP_POINTS,
    LATERAL_POINTS,
    LEVELS,
    LandmarkError,
    SpineLandmarks,
    Vertebra,
)

__all__ = [
    "FLAG_COLUMNS",
    "REQUIRED_COLUMNS",
    "CsvProblem",
    "ImportReport",
    "ImportedImage",
    "LandmarkCsvError",
    "LandmarkRow",
    "import_landmark_csv",
    "read_landmark_csv",
    "xy_to_rowcol",
]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "view", "level", "point", "x", "y")
FLAG_COLUMNS = ("fractured", "treated", "excluded")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_VIEWS = {"lateral": "lateral", "lat": "lateral", "ap": "ap", "pa": "ap", "frontal": "ap"}

PixelOrigin = Literal["center", "corner"]


class LandmarkCsvError(FileError):
    """The CSV as a whole cannot be read (missing file or columns, bad encoding)."""


def xy_to_rowcol(x: float, y: float, *, pixel_origin: PixelOrigin = "center",
                 ) -> tuple[float, float]:
    """Convert an external ``(x, y)`` point to spine_measure's ``(row, col)``.

    ``row = y - o``, ``col = x - o`` with ``o = 0`` when the tool puts ``(0, 0)`` at the centre
    of the top-left pixel (``"center"``, spine_measure's and DICOM's convention) and
    ``o = 0.5`` when it puts ``(0, 0)`` at the top-left corner of the image (``"corner"``).

    Examples
    --------
    >>> xy_to_rowcol(10.0, 2.5)
    (2.5, 10.0)
    >>> xy_to_rowcol(10.0, 2.5, pixel_origin="corner")
    (2.0, 9.5)
    """
    if pixel_origin == "center":
        offset = 0.0
    elif pixel_origin == "corner":
        offset = 0.5
    else:
        raise ValueError(f'Argument "pixel_origin" must be "center" or "corner"; '
                         f"got {pixel_origin!r}")
    return (float(y) - offset, float(x) - offset)


# --------------------------------------------------------------------------- results


def _line_spec(lines: Iterable[int]) -> str:
    """``[2, 3, 4, 7]`` -> ``"2-4,7"``."""
    nums = sorted(set(lines))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True)
class CsvProblem:
    """Rows of the CSV that were not imported, with the reason.

    ``str()`` gives ``"<csv>:<lines>: <reason>"``, e.g. ``"lm.csv:12: unknown point ..."``.
    """

    csv_path: str
    lines: tuple[int, ...]
    message: str

    def __str__(self) -> str:
        return f"{self.csv_path}:{_line_spec(self.lines)}: {self.message}"


@dataclass(frozen=True)
class LandmarkRow:
    """One valid CSV row, already converted to spine_measure's conventions."""

    line: int
    image: str
    view: str
    level: str
    point: str
    row: float
    col: float
    flags: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportedImage:
    """One annotation file written by :func:`import_landmark_csv`."""

    image: str
    annotation_path: Path
    vertebrae: int
    points: int
    action: Literal["created", "replaced", "updated"]


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_landmark_csv` did: files written and rows that failed."""

    csv_path: Path
    rows_total: int
    imported: tuple[ImportedImage, ...]
    problems: tuple[CsvProblem, ...]

    @property
    def failed_lines(self) -> tuple[int, ...]:
        """Line numbers of every row that was not imported."""
        return tuple(sorted({n for p in self.problems for n in p.lines}))

    @property
    def rows_failed(self) -> int:
        return len(self.failed_lines)

    @property
    def ok(self) -> bool:
        """True when every row was imported."""
        return not self.problems


# --------------------------------------------------------------------------- parsing


def _suggest(value: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(value, valid, n=1, cutoff=0.5) or [
        v for v in valid if v.lower() in difflib.get_close_matches(
            value.lower(), [w.lower() for w in valid], n=1, cutoff=0.5)]
    return f'; did you mean "{close[0]}"?' if close else ""


def _canonical(value: str, valid: Iterable[str]) -> str | None:
    low = value.lower()
    return next((v for v in valid if v.lower() == low), None)


def _parse_flag(text: str) -> bool | None:
    t = text.strip().lower()
    if not t:
        return None
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(text)


#: A plain decimal number: ASCII digits, optional sign, point and exponent. Python's
#: ``float`` also takes ``1_000``, other scripts' digits, "inf" and "nan"; a CSV cell is
#: never meant that way.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _parse_coord(text: str, name: str) -> float:
    cell = text.strip()
    if not _DECIMAL.fullmatch(cell):
        raise ValueError(f'{name} "{cell}" is not a plain decimal number')
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(f'{name} "{text.strip()}" is not a finite number')
    return value


def read_landmark_csv(
    path: str | os.PathLike[str], *, pixel_origin: PixelOrigin = "center",
) -> tuple[list[LandmarkRow], list[CsvProblem], int]:
    """Parse and check every row of a landmark CSV (no image access).

    Row checks: non-empty image, known view, level and point (with the nearest valid name
    suggested), numeric finite ``x``/``y``, flags, the same view for every row of an image,
    no point given twice, no conflicting flags for one vertebra.

    Returns
    -------
    rows : list of LandmarkRow
        The valid rows, with ``(row, col)`` from :func:`xy_to_rowcol`.
    problems : list of CsvProblem
        One per rejected row.
    rows_total : int
        Number of data rows (blank lines not counted).

    Raises
    ------
    LandmarkCsvError
        The file is missing, not UTF-8 text, or lacks a required column.
    """
    p = Path(path)
    name = str(p)
    try:
        fh = open(p, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise LandmarkCsvError(p, "file not found") from None
    except OSError as exc:
        raise LandmarkCsvError(p, f"cannot read: {exc}") from None
    rows: list[LandmarkRow] = []
    problems: list[CsvProblem] = []
    total = 0
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise LandmarkCsvError(p, "empty file (expected a header "
                                          f"{','.join(REQUIRED_COLUMNS)})")
            columns = [h.strip().lower() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise LandmarkCsvError(
                    p, f"missing column(s) {', '.join(missing)}; the header must hold "
                       f"{','.join(REQUIRED_COLUMNS)} (optional {','.join(FLAG_COLUMNS)}); "
                       f"got {','.join(h.strip() for h in header)}")
            dup = sorted({c for c in columns if c and columns.count(c) > 1})
            if dup:
                raise LandmarkCsvError(p, f"column {dup[0]} appears twice in the header")
            index = {c: i for i, c in enumerate(columns)}
            flag_cols = [c for c in FLAG_COLUMNS if c in index]
            image_view: dict[str, tuple[str, int]] = {}
            seen_points: dict[tuple[str, str, str], int] = {}
            seen_flags: dict[tuple[str, str, str], tuple[bool, int]] = {}
            line = reader.line_num + 1
            for record in reader:
                start, line = line, reader.line_num + 1
                if not record or all(not f.strip() for f in record):
                    continue
                total += 1
                if len(record) != len(columns):
                    problems.append(CsvProblem(name, (start,), f"expected {len(columns)} fields, "
                                                               f"got {len(record)}"))
                    continue
                parsed = _check_row(record, index, flag_cols, start, pixel_origin)
                if isinstance(parsed, str):
                    problems.append(CsvProblem(name, (start,), parsed))
                    continue
                first_view = image_view.setdefault(parsed.image, (parsed.view, start))
                if first_view[0] != parsed.view:
                    problems.append(CsvProblem(
                        name, (start,), f'{parsed.image}: view "{parsed.view}" differs from '
                                        f'"{first_view[0]}" on line {first_view[1]}'))
                    continue
                key = (parsed.image, parsed.level, parsed.point)
                if key in seen_points:
                    problems.append(CsvProblem(
                        name, (start,), f"{parsed.image} {parsed.level}: duplicate point "
                                        f"{parsed.point} (first given on line {seen_points[key]})"))
                    continue
                conflict = None
                for flag, value in parsed.flags.items():
                    fkey = (parsed.image, parsed.level, flag)
                    if fkey in seen_flags and seen_flags[fkey][0] != value:
                        conflict = (f"{parsed.image} {parsed.level}: {flag}={str(value).lower()} "
                                    f"contradicts {flag}={str(seen_flags[fkey][0]).lower()} on "
                                    f"line {seen_flags[fkey][1]}")
                        break
                if conflict:
                    problems.append(CsvProblem(name, (start,), conflict))
                    continue
                for flag, value in parsed.flags.items():
                    seen_flags.setdefault((parsed.image, parsed.level, flag), (value, start))
                seen_points[key] = start
                rows.append(parsed)
        except csv.Error as exc:
            raise LandmarkCsvError(p, f"line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise LandmarkCsvError(p, f"not UTF-8 text ({exc.reason} at byte {exc.start})") \
                from None
    return rows, problems, total


def _check_row(record: list[str], index: dict[str, int], flag_cols: list[str], line: int,
               pixel_origin: PixelOrigin) -> LandmarkRow | str:
    """A valid :class:`LandmarkRow` or the reason the row is rejected."""
    def cell(col: str) -> str:
        return record[index[col]].strip()

    image = cell("image")
    if not image:
        return "empty image name"
    view_text = cell("view")
    view = _VIEWS.get(view_text.lower())
    if view is None:
        return f'{image}: unknown view "{view_text}" (lateral or ap)' + _suggest(
            view_text.lower(), ["lateral", "ap"])
    level_text = cell("level")
    level = _canonical(level_text, LEVELS)
    if level is None:
        return (f'{image}: unknown level "{level_text}" (C2-C7, T1-T12, L1-L5, S1)'
                + _suggest(level_text.upper(), LEVELS))
    allowed = AP_POINTS if view == "ap" else (("As", "Ps") if level == "S1" else LATERAL_POINTS)
    point_text = cell("point")
    point = _canonical(point_text, allowed)
    if point is None:
        kind = "AP" if view == "ap" else ("S1 (As, Ps only)" if level == "S1" else "lateral")
        return (f'{image} {level}: unknown point "{point_text}" for a {kind} view'
                + _suggest(point_text, allowed))
    try:
        x = _parse_coord(cell("x"), "x")
        y = _parse_coord(cell("y"), "y")
    except ValueError as exc:
        return f"{image} {level} {point}: {exc}"
    flags: dict[str, bool] = {}
    for col in flag_cols:
        try:
            value = _parse_flag(cell(col))
        except ValueError:
            return (f'{image} {level}: {col} "{cell(col)}" must be true/false, yes/no, 1/0 or '
                    "empty")
        if value is not None:
            flags[col] = value
    r, c = xy_to_rowcol(x, y, pixel_origin=pixel_origin)
    return LandmarkRow(line, image, view, level, point, r, c, flags)


# --------------------------------------------------------------------------- import


def import_landmark_csv(
    csv_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    reader: str | None = None,
    overwrite: bool = False,
    pixel_origin: PixelOrigin = "center",
) -> ImportReport:
    """Turn a landmark CSV into one annotation file per image.

    For each image named in the CSV: the file is found under ``images_dir`` and identified
    (:func:`~spine_measure.io.annotation.read_image_reference`: DICOM UIDs from the header, a
    pixel hash for other images); points outside the image are rejected (x and y swapped?);
    each vertebra is validated (required points present); the annotation is written to
    ``out_dir`` mirroring the image's relative path (``a/b.dcm`` -> ``a/b.sm.json``).

    An existing annotation file is never replaced unless ``overwrite``; with ``overwrite``
    a valid existing annotation of the same image keeps its findings, calibration, cement
    masks and history (only landmarks, and reader when given, change; revision + 1).

    Returns
    -------
    ImportReport
        Files written and problems (with line numbers). Nothing is raised for bad rows.

    Raises
    ------
    LandmarkCsvError
        The CSV as a whole is unreadable.
    """
    images = Path(images_dir)
    out = Path(out_dir)
    rows, problems, total = read_landmark_csv(csv_path, pixel_origin=pixel_origin)
    name = str(csv_path)
    by_image: dict[str, list[LandmarkRow]] = {}
    for r in rows:
        by_image.setdefault(r.image, []).append(r)
    imported: list[ImportedImage] = []
    written: dict[Path, str] = {}
    for image, image_rows in by_image.items():
        all_lines = tuple(r.line for r in image_rows)
        outside = _outside(image, images)
        if outside:
            problems.append(CsvProblem(name, all_lines, f"{image}: {outside}; image names "
                                                        "are paths inside --images"))
            continue
        image_path = images / image
        if not image_path.is_file():
            problems.append(CsvProblem(name, all_lines, f"{image}: image not found "
                                                        f"({image_path})"))
            continue
        try:
            ref = read_image_reference(image_path)
        except (RadiographError, FileError) as exc:
            problems.append(CsvProblem(name, all_lines, f"{image}: unknown image "
                                                        f"({exc.reason})"))
            continue
        landmarks, vert_problems = _build_landmarks(name, image, image_rows, ref)
        problems.extend(vert_problems)
        if landmarks is None:
            continue
        used_lines = tuple(sorted(r.line for r in image_rows if r.level in landmarks))
        target = out / sidecar_path(Path(image)).as_posix()
        if _outside(sidecar_path(Path(image)).as_posix(), out):
            problems.append(CsvProblem(name, used_lines, f"{image}: its annotation file would "
                                                         "be written outside --out; not "
                                                         "written"))
            continue
        if target in written:
            problems.append(CsvProblem(name, used_lines, f"{image}: annotation file {target} "
                                                         f"was already written for "
                                                         f"{written[target]} in this import"))
            continue
        try:
            result = _write(target, ref, landmarks, reader=reader, overwrite=overwrite)
        except (AnnotationFileError, AnnotationError) as exc:
            problems.append(CsvProblem(name, used_lines, f"{image}: {exc}"))
            continue
        except OSError as exc:
            problems.append(CsvProblem(name, used_lines, f"{image}: cannot write "
                                                         f"{exc.filename or target} "
                                                         f"({describe_os_error(exc)})"))
            continue
        written[target] = image
        imported.append(ImportedImage(image, target, len(landmarks), len(used_lines), result))
        log.info("%s: wrote %s (%d vertebrae)", image, target, len(landmarks))
    problems.sort(key=lambda pr: pr.lines[0] if pr.lines else 0)
    return ImportReport(Path(csv_path), total, tuple(imported), tuple(problems))


def _outside(name: str, folder: Path) -> str | None:
    """Why ``name`` does not stay inside ``folder`` (None when it does): an absolute path,
    a ``..`` part, or a link that leads out."""
    pure = Path(name)
    posix = name.replace("\\", "/")
    if not name or pure.is_absolute() or posix.startswith("/") or \
            (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in posix.split("/"):
        return "a path that leaves the folder (..)"
    try:
        base = folder.resolve()
        (folder / pure).resolve().relative_to(base)
    except ValueError:
        return "a link that leads outside the folder"
    except (OSError, RuntimeError):
        return "a symbolic link loop"
    return None


def _build_landmarks(name: str, image: str, rows: list[LandmarkRow], ref: ImageRef,
                     ) -> tuple[SpineLandmarks | None, list[CsvProblem]]:
    problems: list[CsvProblem] = []
    by_level: dict[str, list[LandmarkRow]] = {}
    for r in rows:
        if not (-0.5 <= r.row <= ref.rows - 0.5 and -0.5 <= r.col <= ref.cols - 0.5):
            problems.append(CsvProblem(
                name, (r.line,), f"{image} {r.level} {r.point}: (x={r.col:g}, y={r.row:g}) is "
                                 f"outside the image ({ref.cols} columns x {ref.rows} rows); "
                                 "are x and y swapped?"))
            continue
        by_level.setdefault(r.level, []).append(r)
    vertebrae: list[Vertebra] = []
    for level, vrows in by_level.items():
        flags: dict[str, bool] = {}
        for r in vrows:
            for k, v in r.flags.items():
                flags.setdefault(k, v)
        try:
            vertebrae.append(Vertebra(level, vrows[0].view, {r.point: (r.row, r.col)
                                                             for r in vrows}, **flags))
        except LandmarkError as exc:
            problems.append(CsvProblem(name, tuple(r.line for r in vrows), f"{image} {exc}"))
    if not vertebrae:
        return None, problems
    return SpineLandmarks(rows[0].view, tuple(vertebrae)), problems  # type: ignore[arg-type]


def _write(target: Path, ref: ImageRef, landmarks: SpineLandmarks, *, reader: str | None,
           overwrite: bool) -> Literal["created", "replaced", "updated"]:
    if target.exists() and not overwrite:
        raise AnnotationFileError(target, "annotation file exists; use --overwrite "
                                          "(overwrite=True) to replace its landmarks")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        try:
            old = load_annotation(target)
        except AnnotationFileError as exc:
            log.warning("%s; replacing it", exc)
            old = None
        if old is not None and old.image.matches(sop_instance_uid=ref.sop_instance_uid,
                                                 pixel_sha256=ref.pixel_sha256):
            changes: dict[str, object] = {"landmarks": landmarks, "image": ref}
            if reader is not None:
                changes["reader"] = reader
            save_annotation(old.replace(**changes), target, expected_revision=old.revision)
            return "updated"
        save_annotation(Annotation(ref, landmarks, reader=reader), target, overwrite=True)
        return "replaced"
    save_annotation(Annotation(ref, landmarks, reader=reader), target)
    return "created"
