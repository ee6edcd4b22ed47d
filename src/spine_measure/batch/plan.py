"""Plan a batch: header scan, annotation lookup, duplicate UIDs, one task per film.

Nothing here decodes pixels: the plan is made from DICOM headers (``scan_folder``) and the
``image`` block of the annotation files (``index_annotations``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spine_measure.batch.pseudonym import pseudonym
from spine_measure.batch.worker import FilmTask
from spine_measure.errors import SpineMeasureError
from spine_measure.io.scan import DicomHeader, scan_folder
from spine_measure.service import AnnotationFinder

__all__ = ["BatchPlan", "ErrorRow", "plan_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class ErrorRow:
    """One row of ``errors.csv``: a file, the stage, ``failed``/``skipped``/``warning``, why."""

    file: str
    stage: str
    status: str
    reason: str


@dataclass
class BatchPlan:
    """The films to process (sorted by key) and what the plan already found wrong."""

    root: Path
    tasks: list[FilmTask] = field(default_factory=list)
    headers: dict[str, DicomHeader] = field(default_factory=dict)
    issues: list[ErrorRow] = field(default_factory=list)
    fingerprints: dict[str, list[int]] = field(default_factory=dict)
    annotation_files: list[str] = field(default_factory=list)
    n_files: int = 0
    annotations_dir: Path | None = None

    def annotation_name(self, path: str | Path) -> str:
        """How outputs name an annotation file: relative to the input folder, or
        ``annotations:<path relative to the --annotations folder>``."""
        p = _resolve(path)
        if self.annotations_dir is not None:
            try:
                return "annotations:" + p.relative_to(self.annotations_dir).as_posix()
            except ValueError:
                pass
        return _rel(p, self.root)


def _resolve(path: str | Path) -> Path:
    """``path`` resolved; a symbolic link loop (which cannot be resolved) stays as given."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def _rel(path: str | Path, root: Path) -> str:
    """``path`` relative to the input folder as the user sees it (links not resolved)."""
    for p in (Path(os.path.abspath(path)), _resolve(path)):
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            continue
    return _resolve(path).as_posix()


def _file_sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _stat(path: str | None) -> list[int]:
    if path is None:
        return [0, 0]
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def no_films_reason(root: str | Path, label: str | None = None) -> str:
    """Why a batch found no film in ``root``: an empty folder, or only files batch does not
    read (PNG/JPEG films are measured with ``spine-measure measure``)."""
    from spine_measure.io.radiograph import PLAIN_IMAGE_SUFFIXES
    from spine_measure.io.scan import iter_files

    n = n_plain = 0
    for f in iter_files(root):
        n += 1
        n_plain += Path(f).suffix.lower() in PLAIN_IMAGE_SUFFIXES
    seen = "the folder is empty" if n == 0 else (
        f"{n} file(s) looked at, {n_plain} of them PNG/JPEG/TIFF images" if n_plain
        else f"{n} file(s) looked at, none of them DICOM")
    return (f"no DICOM files found in {label or root} ({seen}); batch reads DICOM; for "
            "PNG/JPEG films use spine-measure measure")


def plan_batch(root: str | Path, *, annotations_dir: str | Path | None = None,
               key: bytes, overlays: bool = True, cement_tolerance_mm: float = 1.0,
               sr: bool = False, identifiers: bool = False, accept_proposed: bool = False,
               progress: Callable[[str], None] | None = None) -> BatchPlan:
    """Scan ``root`` and build one :class:`FilmTask` per DICOM image.

    Problems become :class:`ErrorRow` entries, never exceptions: unreadable files (stage
    ``read``), DICOM objects that are not images (``skip``), duplicate SOPInstanceUIDs
    (identical copies: the first by path is used; different content: all are failed, since an
    annotation could not be matched), annotation files that cannot be read or that name
    another image, and annotations whose UID matches no scanned image.
    """
    root = Path(root).resolve()
    plan = BatchPlan(root)
    scan = scan_folder(root, progress=progress)
    plan.n_files = scan.n_files
    for issue in scan.issues:
        plan.issues.append(ErrorRow(_rel(issue.path, root), issue.stage,
                                    "failed" if issue.stage == "read" else "skipped",
                                    issue.reason))
    if not scan.images and not scan.issues:
        plan.issues.append(ErrorRow(".", "scan", "failed",
                                    no_films_reason(root, "the input folder")))
    excluded: set[str] = set()
    for uid, paths in sorted(scan.duplicate_sop_instance_uids().items()):
        paths = sorted(paths, key=lambda p: _rel(p, root))
        shas = {p: _file_sha(p) for p in paths}
        if len(set(shas.values())) == 1:
            for p in paths[1:]:
                excluded.add(p)
                plan.issues.append(ErrorRow(_rel(p, root), "scan", "skipped",
                                            f"duplicate SOPInstanceUID {uid}: identical copy of "
                                            f"{_rel(paths[0], root)}, which is used"))
        else:
            for p in paths:
                excluded.add(p)
                others = ", ".join(_rel(q, root) for q in paths if q != p)
                plan.issues.append(ErrorRow(_rel(p, root), "scan", "failed",
                                            f"duplicate SOPInstanceUID {uid} with different "
                                            f"content (also in {others}): the annotation "
                                            "cannot be matched; give each image its own UID"))
    try:
        finder = AnnotationFinder(annotations_dir, input_root=root)
    except SpineMeasureError as exc:
        plan.issues.append(ErrorRow(str(annotations_dir), "annotation", "failed", str(exc)))
        return plan
    plan.annotations_dir = None if annotations_dir is None else Path(annotations_dir).resolve()

    def ann_name(path: Path) -> str:
        return plan.annotation_name(path)

    unreadable: set[Path] = set()
    for idx in (finder.index, finder.root_index):
        if idx is None:
            continue
        for path, reason in idx.errors:
            if _resolve(path) not in unreadable:
                unreadable.add(_resolve(path))
                plan.issues.append(ErrorRow(ann_name(path), "annotation", "failed", reason))
        for ident, paths in idx.duplicates:
            plan.issues.append(ErrorRow(ann_name(paths[0]), "annotation", "warning",
                                        f"image {ident} is annotated by {len(paths)} files ("
                                        + ", ".join(ann_name(p) for p in paths)
                                        + "); the first is used"))
    image_uids = {h.sop_instance_uid for h in scan.images if h.sop_instance_uid}
    if finder.root_index is not None:
        for e in finder.root_index.unmatched(image_uids):
            what = f"SOPInstanceUID {e.sop_instance_uid}" if e.sop_instance_uid else \
                f"pixel hash {str(e.pixel_sha256)[:12]}..."
            plan.issues.append(ErrorRow(ann_name(e.path), "annotation", "warning",
                                        f"annotates {what}, which no scanned image has; "
                                        "not used"))
    for h in sorted(scan.images, key=lambda h: _rel(h.path, root)):
        if h.path in excluded:
            continue
        rel = _rel(h.path, root)
        m = h.metadata
        choice = finder.find(h.path, sop_instance_uid=h.sop_instance_uid)
        if choice is not None and finder.annotations_dir is not None \
                and choice.source != "annotations_folder":
            plan.issues.append(ErrorRow(rel, "annotation", "warning",
                                        f"no annotation for this film in the annotations "
                                        f"folder; the {choice.describe()} is used"))
        date = m.date.isoformat() if m.date is not None else None
        if m.acquisition_date and m.study_date and m.acquisition_date != m.study_date:
            plan.issues.append(ErrorRow(rel, "timepoint", "warning",
                                        f"conflicting dates: AcquisitionDate "
                                        f"{m.acquisition_date} differs from StudyDate "
                                        f"{m.study_date}; AcquisitionDate is used"))
        ann = None if choice is None else choice.path
        task = FilmTask(key=rel, path=h.path, annotation_path=None if ann is None else str(ann),
                        sop_instance_uid=h.sop_instance_uid, rows=m.rows, cols=m.columns,
                        calibration=h.calibration,
                        pseudo_id=pseudonym(m.patient_id or "", key),
                        date=date, overlays=overlays, cement_tolerance_mm=cement_tolerance_mm,
                        sr=sr, identifiers=identifiers, header=h,
                        accept_proposed=accept_proposed,
                        annotation_source=None if choice is None else choice.source,
                        annotation_file=None if choice is None else choice.relative)
        plan.tasks.append(task)
        plan.headers[rel] = h
        plan.fingerprints[rel] = _stat(h.path) + _stat(task.annotation_path)
    plan.annotation_files = sorted({t.annotation_path for t in plan.tasks
                                    if t.annotation_path is not None})
    entries = {_resolve(e.path): e for e in (finder.index.entries if finder.index else ())}
    for path in finder.unused():
        if _resolve(path) in unreadable:
            continue
        e = entries.get(_resolve(path))
        what = "an image" if e is None else (
            f"SOPInstanceUID {e.sop_instance_uid}" if e.sop_instance_uid else
            f"pixel hash {str(e.pixel_sha256)[:12]}...")
        plan.issues.append(ErrorRow(ann_name(path), "annotation", "warning",
                                    f"annotates {what}, which no scanned image has; "
                                    "not used"))
    return plan
