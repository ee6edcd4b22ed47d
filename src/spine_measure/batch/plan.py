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
from spine_measure.io.annotation import AnnotationIndex, find_annotation, index_annotations
from spine_measure.io.scan import DicomHeader, scan_folder

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


def plan_batch(root: str | Path, *, annotations_dir: str | Path | None = None,
               key: bytes, overlays: bool = True, cement_tolerance_mm: float = 1.0,
               sr: bool = False, identifiers: bool = False,
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
    indexes: list[AnnotationIndex] = []
    for d in ([annotations_dir] if annotations_dir is not None else []) + [root]:
        try:
            indexes.append(index_annotations(d))
        except SpineMeasureError as exc:
            plan.issues.append(ErrorRow(str(d), "annotation", "failed", str(exc)))
    seen_ann: set[Path] = set()
    for idx in indexes:
        for path, reason in idx.errors:
            if _resolve(path) not in seen_ann:
                seen_ann.add(_resolve(path))
                plan.issues.append(ErrorRow(_rel(path, root), "annotation", "failed", reason))
        for ident, paths in idx.duplicates:
            plan.issues.append(ErrorRow(_rel(paths[0], root), "annotation", "warning",
                                        f"image {ident} is annotated by {len(paths)} files ("
                                        + ", ".join(_rel(p, root) for p in paths)
                                        + "); the first is used"))
    image_uids = {h.sop_instance_uid for h in scan.images if h.sop_instance_uid}
    orphan_seen: set[Path] = set()
    for idx in indexes:
        for e in idx.unmatched(image_uids):
            if _resolve(e.path) in orphan_seen:
                continue
            orphan_seen.add(_resolve(e.path))
            what = f"SOPInstanceUID {e.sop_instance_uid}" if e.sop_instance_uid else \
                f"pixel hash {str(e.pixel_sha256)[:12]}..."
            plan.issues.append(ErrorRow(_rel(e.path, root), "annotation", "warning",
                                        f"annotates {what}, which no scanned image has; "
                                        "not used"))
    ann_index = indexes[0] if indexes else None
    used_ann: set[str] = set()
    for h in sorted(scan.images, key=lambda h: _rel(h.path, root)):
        if h.path in excluded:
            continue
        rel = _rel(h.path, root)
        m = h.metadata
        try:
            ann = find_annotation(h.path, annotations_dir, sop_instance_uid=h.sop_instance_uid,
                                  index=ann_index)
            if ann is None and annotations_dir is not None and len(indexes) > 1:
                ann = indexes[1].lookup(sop_instance_uid=h.sop_instance_uid)
        except SpineMeasureError as exc:
            plan.issues.append(ErrorRow(rel, "annotation", "failed", str(exc)))
            continue
        if ann is not None:
            used_ann.add(str(_resolve(ann)))
        date = m.date.isoformat() if m.date is not None else None
        if m.acquisition_date and m.study_date and m.acquisition_date != m.study_date:
            plan.issues.append(ErrorRow(rel, "timepoint", "warning",
                                        f"conflicting dates: AcquisitionDate "
                                        f"{m.acquisition_date} differs from StudyDate "
                                        f"{m.study_date}; AcquisitionDate is used"))
        task = FilmTask(key=rel, path=h.path, annotation_path=None if ann is None else str(ann),
                        sop_instance_uid=h.sop_instance_uid, rows=m.rows, cols=m.columns,
                        calibration=h.calibration,
                        pseudo_id=pseudonym(m.patient_id or "", key),
                        date=date, overlays=overlays, cement_tolerance_mm=cement_tolerance_mm,
                        sr=sr, identifiers=identifiers)
        plan.tasks.append(task)
        plan.headers[rel] = h
        plan.fingerprints[rel] = _stat(h.path) + _stat(task.annotation_path)
    plan.annotation_files = sorted(used_ann)
    return plan
