"""The annotation session of one film: all state and rules, no Qt and no napari.

The dock widget is a thin shell: every button and hotkey calls one method of
:class:`AnnotationController`, and the widget redraws itself from the controller after each
change (``controller.subscribe(callback)``). Tests drive the controller directly.

What the controller keeps:

* the points placed so far per level (complete vertebrae *and* partial ones), per-vertebra
  flags, levels marked "not measurable", optional points skipped;
* the guided sequence: the current level, the direction of travel (caudal or cranial) and
  the next point (:data:`PLACEMENT_ORDER`);
* the reader calibration line, the findings (docs/annotation_format.md), the time point,
  cement masks;
* an undo stack of snapshots (a drag of one point is one undo step), the dirty flag;
* the annotation file it was loaded from (its revision, for conflict detection) and an
  autosave file written atomically after every change, from which a crashed session is
  recovered.

Points are ``(row, col)`` pixels of the stored image (``docs/conventions.md``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_spine_measure._predict import predict_point
from spine_measure.io.annotation import (
    Annotation,
    AnnotationFileError,
    AnnotationMismatchError,
    CalibrationLine,
    CementMask,
    Findings,
    ImageRef,
    LevelReview,
    atomic_write_text,
    load_annotation,
    save_annotation,
    sidecar_path,
)
from spine_measure.io.calibration import Calibration
from spine_measure.landmarks import (
    GENANT_SHAPES,
    LEVELS,
    SpineLandmarks,
    Vertebra,
    required_points,
)
from spine_measure.measurements.api import FilmMeasurements
from spine_measure.service import measure_with_calibration

if TYPE_CHECKING:
    from spine_measure.cement.features import CementFeatures

__all__ = [
    "AUTOSAVE_SUFFIX",
    "FLAGS",
    "PLACEMENT_ORDER",
    "POINT_NAMES",
    "AnnotationController",
    "SessionError",
    "autosave_path_for",
]

log = logging.getLogger(__name__)

PLACEMENT_ORDER: dict[str, tuple[str, ...]] = {
    "lateral": ("As", "Ms", "Ps", "Pi", "Mi", "Ai"),
    "S1": ("As", "Ps"),
    "ap": ("SL", "SR", "IR", "IL"),
}
"""Guided order: once round the body (superior endplate anterior to posterior, then the
inferior endplate posterior to anterior), so each click is next to the previous one."""

POINT_NAMES: dict[str, str] = {
    "As": "anterior-superior corner",
    "Ms": "middle of the superior endplate",
    "Ps": "posterior-superior corner",
    "Pi": "posterior-inferior corner",
    "Mi": "middle of the inferior endplate",
    "Ai": "anterior-inferior corner",
    "SL": "superior endplate, left end",
    "SR": "superior endplate, right end",
    "IL": "inferior endplate, left end",
    "IR": "inferior endplate, right end",
}

FLAGS = ("fractured", "treated", "excluded")
AUTOSAVE_SUFFIX = ".autosave.json"
AUTOSAVE_SCHEMA = "napari_spine_measure.autosave/1"
_READER_REVIEW = LevelReview()
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}
_UNDO_LIMIT = 500
_KEEP = object()  # "leave this field as it is"


def _genant_problem(level: str, grade: Any, shape: Any) -> str | None:
    """Why ``grade`` / ``shape`` cannot be a reader's Genant override of ``level`` (each
    0-3 / one of :data:`GENANT_SHAPES`, or None = computed), else None."""
    if grade is not None and (isinstance(grade, bool) or not isinstance(grade, int | np.integer)
                              or not 0 <= int(grade) <= 3):
        return f"{level}: reader Genant grade must be 0-3 or computed; got {grade!r}"
    if shape is not None and shape not in GENANT_SHAPES:
        return (f"{level}: reader Genant shape must be one of {', '.join(GENANT_SHAPES)} or "
                f"computed; got {shape!r}")
    return None


class SessionError(ValueError):
    """An action that cannot be done in the current state (message says why)."""


def autosave_path_for(annotation_path: str | os.PathLike[str]) -> Path:
    """``X.sm.json`` -> ``X.sm.json.autosave.json`` (same folder, so it survives a crash)."""
    p = Path(annotation_path)
    return p.with_name(p.name + AUTOSAVE_SUFFIX)


@dataclass
class _State:
    """Everything undo restores."""

    points: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    flags: dict[str, dict[str, bool]] = field(default_factory=dict)
    skipped: dict[str, set[str]] = field(default_factory=dict)
    not_measurable: set[str] = field(default_factory=set)
    level: str | None = "T12"
    direction: int = 1
    calibration: CalibrationLine | None = None
    findings: Findings = field(default_factory=Findings)
    time_point: str | None = None
    cement: dict[str, CementMask] = field(default_factory=dict)
    #: level -> review state of proposals (``docs/propagation.md``); a level not listed was
    #: placed by a reader and is confirmed
    review: dict[str, LevelReview] = field(default_factory=dict)
    #: level -> the reader's own Genant (grade, shape) overriding the computed one; either
    #: may be None (that one stays computed)
    genant: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)

    def copy(self) -> _State:
        return _State(
            points={k: dict(v) for k, v in self.points.items()},
            flags={k: dict(v) for k, v in self.flags.items()},
            skipped={k: set(v) for k, v in self.skipped.items()},
            not_measurable=set(self.not_measurable),
            level=self.level, direction=self.direction, calibration=self.calibration,
            findings=self.findings, time_point=self.time_point, cement=dict(self.cement),
            review=dict(self.review), genant=dict(self.genant),
        )


class AnnotationController:
    """State and rules of annotating one film.

    Parameters
    ----------
    image : ImageRef
        The film (UID or pixel hash, rows, cols).
    header_calibration : Calibration
        The film's own calibration (``Radiograph.calibration``); a reader line overrides it.
    annotation_path : path-like, optional
        Where the annotation is saved (default: none until :meth:`save` is given a path).
        When the file exists it is loaded (it must annotate this image).
    view : {"lateral", "ap"}
    reader : str, optional
        Reader id written into the file.
    start_level : str
        Level the guided sequence starts at.
    autosave : bool
        Write the autosave file after every change (needs ``annotation_path``).
    load_existing : bool
        Load ``annotation_path`` when it exists (errors propagate). False: the caller loads
        it (the widget does, to offer "start over" or "read-only" for an unreadable file).
    """

    def __init__(self, image: ImageRef, header_calibration: Calibration, *,
                 annotation_path: str | os.PathLike[str] | None = None, view: str = "lateral",
                 reader: str | None = None, start_level: str = "T12",
                 autosave: bool = True, load_existing: bool = True) -> None:
        if not isinstance(image, ImageRef):
            raise TypeError(f'Argument "image" must be an ImageRef; got {type(image).__name__}')
        if view not in ("lateral", "ap"):
            raise SessionError(f'view "{view}" must be "lateral" or "ap"')
        if start_level not in _LEVEL_INDEX:
            raise SessionError(f'start level "{start_level}" is not a vertebral level')
        self.image = image
        self.header_calibration = header_calibration
        self.view = view
        self.reader = reader
        self.autosave_enabled = autosave
        self.annotation_path: Path | None = None if annotation_path is None \
            else Path(annotation_path)
        self._base: Annotation | None = None  # what the file held when loaded / last saved
        self._state = _State(level=start_level)
        self._undo: list[tuple[str, _State]] = []
        self._listeners: list[Callable[[], None]] = []
        self.dirty = False
        self.last_message = ""
        #: why the session is read-only (an unreadable annotation file), else None
        self.read_only: str | None = None
        #: the vertebra most recently completed by a click or a skip (flags go there
        #: once the sequence has moved on)
        self.last_completed: str | None = None
        #: the autosave could not be written (read-only folder ...): the reason, said once
        self.autosave_error: str | None = None
        # "start over" on an unreadable file: (its SHA-256, backup path); saving replaces it
        # only while its bytes are still the ones backed up
        self._replaces_unreadable: tuple[str, Path] | None = None
        self._autosave_pending = False  # moves of a drag not yet autosaved
        #: click refinement (the reader's toggle): ``refiner(level, name, points)`` returns
        #: a :class:`spine_measure.propose.refine.Refinement` for point ``name`` of the
        #: vertebra's ``points``, or raises ValueError when the point cannot be refined
        #: yet (its neighbours are not placed); applied to a placed point and at the end of
        #: a drag, in the same undo step
        self.refiner: Callable[[str, str, dict[str, tuple[float, float]]], Any] | None = None
        if load_existing and self.annotation_path is not None and \
                self.annotation_path.is_file():
            self.load(self.annotation_path)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_radiograph(cls, radiograph: Any, *, annotation_path: str | os.PathLike[str]
                        | None = None, reader: str | None = None,
                        annotations_dir: str | os.PathLike[str] | None = None,
                        **kwargs: Any) -> AnnotationController:
        """Controller for a loaded ``Radiograph``; the annotation file defaults to its sidecar
        (``X.dcm`` -> ``X.sm.json``), or to the file of that name in ``annotations_dir``
        (the reader's annotations folder, for films in a read-only folder)."""
        meta = radiograph.metadata
        rows, cols = radiograph.shape
        if meta.sop_instance_uid:
            image = ImageRef(rows=rows, cols=cols, sop_instance_uid=meta.sop_instance_uid,
                             study_instance_uid=meta.study_instance_uid,
                             series_instance_uid=meta.series_instance_uid,
                             file_name=Path(meta.path).name)
        else:
            image = ImageRef(rows=rows, cols=cols, pixel_sha256=radiograph.pixel_sha256,
                             file_name=Path(meta.path).name)
        if annotation_path is None and annotations_dir is not None:
            annotation_path = Path(annotations_dir) / sidecar_path(meta.path).name
        elif annotation_path is None and Path(meta.path).is_file():
            annotation_path = sidecar_path(meta.path)
        view = "ap" if (meta.view_position or "").upper() in ("AP", "PA") else "lateral"
        kwargs.setdefault("view", view)
        return cls(image, radiograph.calibration, annotation_path=annotation_path,
                   reader=reader, **kwargs)

    # ------------------------------------------------------------------ listeners
    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change of state."""
        self._listeners.append(callback)

    def _changed(self, *, autosave: bool = True) -> None:
        self.dirty = True
        if autosave:
            self.autosave()
        for cb in list(self._listeners):
            cb()

    def _push(self, tag: str) -> None:
        """Remember the state before a change; consecutive changes with the same non-empty
        coalescing tag (a drag of one point) make a single undo step."""
        if self.read_only is not None and tag != "select":
            raise SessionError(f"read-only session: {self.read_only}")
        if tag.startswith("move:") and self._undo and self._undo[-1][0] == tag:
            return
        self.last_message = ""  # a message describes the last change only
        self._undo.append((tag, self._state.copy()))
        del self._undo[:-_UNDO_LIMIT]

    # ------------------------------------------------------------------ queries
    @property
    def level(self) -> str | None:
        """The level being annotated (None when the sequence ran off the end of the spine)."""
        return self._state.level

    @property
    def direction(self) -> int:
        """+1: auto-advance caudally (down the spine); -1: cranially."""
        return self._state.direction

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def order(self, level: str) -> tuple[str, ...]:
        """Guided placement order of ``level``."""
        if self.view == "ap":
            return PLACEMENT_ORDER["ap"]
        return PLACEMENT_ORDER["S1"] if level == "S1" else PLACEMENT_ORDER["lateral"]

    def points(self, level: str | None = None) -> dict[str, Any]:
        """Placed points: of one level (name -> (row, col)), or all (level -> name -> ...)."""
        if level is not None:
            return dict(self._state.points.get(level, {}))
        return {lv: dict(p) for lv, p in self._state.points.items()}

    def flags(self, level: str) -> dict[str, bool]:
        return {f: self._state.flags.get(level, {}).get(f, False) for f in FLAGS}

    def skipped(self, level: str) -> set[str]:
        return set(self._state.skipped.get(level, set()))

    @property
    def not_measurable(self) -> set[str]:
        return set(self._state.not_measurable)

    @property
    def calibration_line(self) -> CalibrationLine | None:
        return self._state.calibration

    @property
    def findings(self) -> Findings:
        return self._state.findings

    @property
    def time_point(self) -> str | None:
        return self._state.time_point

    def cement_mask(self, level: str) -> CementMask | None:
        return self._state.cement.get(level)

    @property
    def cement_levels(self) -> tuple[str, ...]:
        return tuple(sorted(self._state.cement, key=_LEVEL_INDEX.__getitem__))

    def is_complete(self, level: str) -> bool:
        """All required points placed and every other point placed or skipped."""
        pts = self._state.points.get(level, {})
        skipped = self._state.skipped.get(level, set())
        return all(p in pts or p in skipped for p in self.order(level)) and \
            all(p in pts for p in required_points(level, self.view))

    def next_point(self) -> tuple[str, str] | None:
        """``(level, point)`` the next click places, or None."""
        level = self._state.level
        if level is None or level in self._state.not_measurable:
            return None
        pts = self._state.points.get(level, {})
        skipped = self._state.skipped.get(level, set())
        for name in self.order(level):
            if name not in pts and name not in skipped:
                return level, name
        return None

    def prompt(self) -> str:
        """One line for the widget: what to click next."""
        nxt = self.next_point()
        if nxt is None:
            if self._state.level is None:
                return "End of the spine reached: pick a level to continue"
            return f"{self._state.level} done: pick the next level"
        level, name = nxt
        return f"{level} · {name} — {POINT_NAMES[name]}"

    def preview(self) -> tuple[float, float] | None:
        """Predicted position of the next point (a hint, :mod:`._predict`)."""
        nxt = self.next_point()
        if nxt is None:
            return None
        level, name = nxt
        others = {lv: p for lv, p in self._state.points.items()
                  if lv != level and lv not in self._state.not_measurable}
        pt = predict_point(level, name, self._state.points.get(level, {}), others)
        if pt is None:
            return None
        r, c = pt
        if not (0 <= r <= self.image.rows - 1 and 0 <= c <= self.image.cols - 1):
            return None  # off the film: no hint (a ring outside would stretch the view)
        return pt

    # ------------------------------------------------------------------ guided placement
    def select_level(self, level: str, *, undoable: bool = True) -> None:
        """Make ``level`` the current one (its placed points are kept). ``undoable=False``:
        part of the previous step (review mode moving on after a confirmation), so one undo
        brings back both."""
        if level not in _LEVEL_INDEX:
            raise SessionError(f'"{level}" is not a vertebral level (C2-C7, T1-T12, L1-L5, S1)')
        if level == self._state.level:
            return
        if undoable:
            self._push("select")
        self._state.level = level
        self._changed(autosave=False)

    def resume(self) -> str | None:
        """Continue where a loaded annotation stopped: the first level after the most
        caudal annotated one (in the direction of travel) that still needs points, else the
        first before the most cranial one; None when the spine is done. Returns the level."""
        done = [lv for lv in self._state.points if lv in _LEVEL_INDEX]
        if not done:
            return self._state.level
        last = max(done, key=_LEVEL_INDEX.__getitem__) if self._state.direction > 0 \
            else min(done, key=_LEVEL_INDEX.__getitem__)
        first = min(done, key=_LEVEL_INDEX.__getitem__) if self._state.direction > 0 \
            else max(done, key=_LEVEL_INDEX.__getitem__)
        d = self._state.direction
        level = None
        for start, step in ((last, d), (first, -d)):
            i = _LEVEL_INDEX[start] + step
            while 0 <= i < len(LEVELS):
                cand = LEVELS[i]
                if cand not in self._state.not_measurable and not self.is_complete(cand):
                    level = cand
                    break
                i += step
            if level is not None:
                break
        # an incomplete level among the annotated ones comes first
        partial = [lv for lv in sorted(done, key=_LEVEL_INDEX.__getitem__)
                   if lv not in self._state.not_measurable and not self.is_complete(lv)]
        if partial:
            level = partial[0]
        self._state.level = level
        for cb in list(self._listeners):
            cb()
        return level

    def set_direction(self, direction: int) -> None:
        """+1 to advance caudally after each vertebra, -1 cranially."""
        if direction not in (1, -1):
            raise SessionError(f"direction must be +1 (caudal) or -1 (cranial); got {direction}")
        self._state.direction = direction
        self._changed(autosave=False)

    def _advance(self) -> None:
        """Move to the next level in the direction of travel that still needs points."""
        level = self._state.level
        if level is None:
            return
        i = _LEVEL_INDEX[level] + self._state.direction
        while 0 <= i < len(LEVELS):
            cand = LEVELS[i]
            if cand not in self._state.not_measurable and not self.is_complete(cand):
                self._state.level = cand
                return
            i += self._state.direction
        self._state.level = None

    def place(self, row: float, col: float) -> tuple[str, str]:
        """Place the next point of the guided sequence at ``(row, col)``; auto-advance to the
        next level when the vertebra is complete. Returns ``(level, point)`` placed."""
        nxt = self.next_point()
        if nxt is None:
            raise SessionError("no point to place: pick a level first")
        self._check_inside(row, col)
        level, name = nxt
        self._push("place")
        self._state.points.setdefault(level, {})[name] = (float(row), float(col))
        self._mark_source(level, name, "reader")
        note = self._refine(level, name)
        if self.is_complete(level):
            self.last_completed = level
            self._advance()
        self.last_message = f"placed {level} {name}" + note
        self._changed()
        return level, name

    def move(self, level: str, name: str, row: float, col: float, *,
             autosave: bool = True, refined: bool = False) -> None:
        """Move an existing point (a drag); a drag of one point is one undo step. With
        ``autosave=False`` (the moves of a mouse drag) the autosave is written by
        :meth:`end_move` at the release instead of at every mouse move.

        The moved point's source becomes ``reader`` (``refined`` when the click refinement
        placed it) and its proposal confidence is dropped, as
        :func:`spine_measure.propose.review.move_point` does; the vertebra's confirmation
        does not change (:meth:`confirm` does)."""
        pts = self._state.points.get(level, {})
        if name not in pts:
            raise SessionError(f"{level}: point {name} was not placed")
        self._check_inside(row, col)
        new = (float(row), float(col))
        if pts[name] == new:
            return
        self._push(f"move:{level}:{name}")
        pts[name] = new
        self._mark_source(level, name, "refined" if refined else "reader")
        self._autosave_pending = not autosave
        self._changed(autosave=autosave)

    def end_move(self) -> None:
        """Close the current drag: the next move of the same point is a new undo step."""
        if self._undo and self._undo[-1][0].startswith("move:"):
            tag, state = self._undo[-1]
            self._undo[-1] = ("moved", state)
            _, level, name = tag.split(":")
            if self.refiner is not None and name in self._state.points.get(level, {}):
                note = self._refine(level, name)
                if note:
                    self.last_message = f"moved {level} {name}" + note
                    self._autosave_pending = False
                    self._changed()
        if self._autosave_pending:
            self._autosave_pending = False
            self.autosave()

    def skip(self) -> str:
        """Skip the next point. An optional point (``Ms``/``Mi``) is left out (middle height
        not reported); a required one makes the vertebra "not measurable" and the sequence
        moves on. Returns a one-line description."""
        nxt = self.next_point()
        if nxt is None:
            raise SessionError("nothing to skip: pick a level first")
        level, name = nxt
        if name in required_points(level, self.view):
            return self.mark_not_measurable(level)
        self._push("skip")
        self._state.skipped.setdefault(level, set()).add(name)
        if self.is_complete(level):
            self.last_completed = level
            self._advance()
        self.last_message = f"skipped {level} {name} (optional)"
        self._changed()
        return self.last_message

    def mark_not_measurable(self, level: str | None = None) -> str:
        """Mark ``level`` (default: the current one) as not measurable: its points are kept
        for review but it is left out of the landmarks and measurements."""
        level = level or self._state.level
        if level is None:
            raise SessionError("no level selected")
        self._push("not_measurable")
        self._state.not_measurable.add(level)
        if level == self._state.level:
            self._advance()
        self.last_message = f"{level} marked not measurable"
        self._changed()
        return self.last_message

    def set_measurable(self, level: str) -> None:
        """Undo a "not measurable" mark."""
        if level in self._state.not_measurable:
            self._push("measurable")
            self._state.not_measurable.discard(level)
            self._changed()

    def delete_level(self, level: str) -> None:
        """Remove every point and flag of ``level``."""
        self._push("delete")
        for d in (self._state.points, self._state.flags, self._state.skipped,
                  self._state.review, self._state.genant):
            d.pop(level, None)
        self._state.not_measurable.discard(level)
        self._changed()

    # ------------------------------------------------------------------ review of proposals
    def review_of(self, level: str) -> LevelReview:
        """Review state of ``level`` (reader-placed and confirmed when not recorded)."""
        return self._state.review.get(level, _READER_REVIEW)

    def unconfirmed_levels(self) -> tuple[str, ...]:
        """Levels with points that hold proposals a reader has not confirmed yet, cranial to
        caudal."""
        return tuple(lv for lv in LEVELS if lv in self._state.points
                     and not self.review_of(lv).confirmed)

    def _mark_source(self, level: str, name: str, source: str) -> None:
        """Record that a reader (or the click refinement) put point ``name`` of ``level``
        (no entry is kept for a level a reader placed entirely)."""
        state = self._state.review.get(level)
        if state is None:
            if source == "reader":
                return
            state = _READER_REVIEW
        src = dict(state.point_source)
        src[name] = source
        conf = {k: c for k, c in state.confidence.items() if k != name}
        self._state.review[level] = dataclasses.replace(state, point_source=src,
                                                        confidence=conf)

    def _refine(self, level: str, name: str) -> str:
        """Apply :attr:`refiner` to the point just placed or dropped; returns a note for the
        message ("" when refinement is off or the point cannot be refined yet)."""
        if self.refiner is None:
            return ""
        pts = self._state.points[level]
        try:
            r = self.refiner(level, name, dict(pts))
        except ValueError:
            return ""  # S1, or the neighbours that give the directions are not placed yet
        if not r.ok:
            return f"; not refined: {r.reason}"
        if r.distance <= 0:
            return ""
        pts[name] = (float(r.point[0]), float(r.point[1]))
        self._mark_source(level, name, "refined")
        return f"; refined by {r.distance:.1f} px"

    def confirm(self, level: str) -> str:
        """Confirm the proposal of ``level`` (a reader accepts its points as they are now);
        point sources and confidences are kept (``spine_measure.propose.review.confirm``)."""
        state = self._state.review.get(level)
        if level not in self._state.points:
            raise SessionError(f"{level}: no points to confirm")
        if state is None or state.confirmed:
            self.last_message = f"{level} is already confirmed"
            return self.last_message
        self._push("confirm")
        self._state.review[level] = dataclasses.replace(state, confirmed=True)
        self.last_message = f"{level} confirmed"
        self._changed()
        return self.last_message

    def reject(self, level: str) -> str:
        """Reject the proposal of ``level`` (not measurable on this film): its points and
        review state are removed, so nothing is measured or saved from it
        (``spine_measure.propose.review.reject``); undo brings it back."""
        if level not in self._state.points:
            raise SessionError(f"{level}: no points to reject")
        self._push("reject")
        for d in (self._state.points, self._state.flags, self._state.skipped,
                  self._state.review, self._state.genant):
            d.pop(level, None)
        self._state.not_measurable.discard(level)
        self.last_message = f"{level} proposal rejected (not measurable)"
        self._changed()
        return self.last_message

    def add_proposals(self, proposed: Annotation) -> tuple[str, ...]:
        """Take the vertebrae of ``proposed`` (an annotation of this film from
        :func:`spine_measure.propose.files.propose_annotation`) that this session has no
        points for, with their review state; one undo step. Returns the levels added."""
        if proposed.view != self.view:
            raise SessionError(f"the proposals are {proposed.view}, this film is {self.view}")
        new = [v for v in proposed.landmarks if v.level not in self._state.points]
        if not new:
            self.last_message = "nothing new to propose"
            return ()
        self._push("propose")
        for v in new:
            self._state.points[v.level] = dict(v.points)
            self._state.flags[v.level] = {f: getattr(v, f) for f in FLAGS}
            if v.genant_grade_reader is not None or v.genant_shape_reader is not None:
                self._state.genant[v.level] = (v.genant_grade_reader, v.genant_shape_reader)
            optional = [p for p in self.order(v.level) if p not in v.points]
            if optional:
                self._state.skipped[v.level] = set(optional)
            self._state.not_measurable.discard(v.level)
            state = proposed.review_of(v.level)
            if not state.is_default:
                self._state.review[v.level] = state
        if self._state.level in self._state.points:
            self._advance()
        levels = tuple(v.level for v in new)
        self.last_message = f"proposed {', '.join(levels)}"
        self._changed()
        return levels

    def undo(self) -> bool:
        """Restore the state before the last change; False when there is nothing to undo."""
        if not self._undo:
            return False
        tag, state = self._undo.pop()
        self._state = state
        self.last_message = f"undone: {tag.split(':')[0]}"
        self._changed()
        return True

    def _check_inside(self, row: float, col: float) -> None:
        if not (np.isfinite(row) and np.isfinite(col)):
            raise SessionError(f"point ({row}, {col}) is not finite")
        if not (-0.5 <= row <= self.image.rows - 0.5 and -0.5 <= col <= self.image.cols - 0.5):
            raise SessionError(f"point (row {row:.1f}, col {col:.1f}) is outside the image "
                               f"({self.image.rows} x {self.image.cols})")

    # ------------------------------------------------------------------ flags, findings
    def set_flag(self, level: str, flag: str, value: bool) -> None:
        """Set ``fractured`` / ``treated`` / ``excluded`` of ``level``."""
        if flag not in FLAGS:
            raise SessionError(f'flag "{flag}" must be one of {", ".join(FLAGS)}')
        if level not in _LEVEL_INDEX:
            raise SessionError(f'"{level}" is not a vertebral level')
        if self.flags(level)[flag] == bool(value):
            return
        self._push("flag")
        self._state.flags.setdefault(level, {})[flag] = bool(value)
        self._changed()

    def genant_reader(self, level: str) -> tuple[int | None, str | None]:
        """The reader's own Genant ``(grade, shape)`` of ``level``; None = the computed one."""
        return self._state.genant.get(level, (None, None))

    def set_genant_reader(self, level: str, *, grade: Any = _KEEP,
                          shape: Any = _KEEP) -> str:
        """Override the computed Genant grade and/or shape of ``level`` with the reader's
        (kept in the annotation as ``genant_grade_reader`` / ``genant_shape_reader`` and
        exported beside the computed ones); None goes back to the computed value. One undo
        step. Returns a one-line description.

        Grade 0 goes with shape ``none`` only: setting grade 0 sets the shape to ``none``,
        setting shape ``none`` sets grade 0, and a grade 1-3 or a deformity shape clears the
        other field when it was the "normal" one (it is then computed again); the
        description says so.
        """
        if level not in _LEVEL_INDEX:
            raise SessionError(f'"{level}" is not a vertebral level')
        if level not in self._state.points:
            raise SessionError(f"{level}: no points, nothing to grade")
        old_g, old_s = self.genant_reader(level)
        g = old_g if grade is _KEEP else grade
        sh = old_s if shape is _KEEP else shape
        why = _genant_problem(level, g, sh)
        if why:
            raise SessionError(why)
        g = None if g is None else int(g)
        note = ""
        if grade is not _KEEP and g == 0 and sh != "none":
            sh, note = "none", " (shape none: grade 0)"
        elif grade is not _KEEP and g is not None and sh == "none":
            sh, note = None, " (shape computed again)"
        elif shape is not _KEEP and sh == "none" and g != 0:
            g, note = 0, " (grade 0: shape none)"
        elif shape is not _KEEP and sh is not None and g == 0:
            g, note = None, " (grade computed again)"
        if (g, sh) == (old_g, old_s):
            return ""
        self._push("genant")
        if g is None and sh is None:
            self._state.genant.pop(level, None)
        else:
            self._state.genant[level] = (g, sh)
        self.last_message = (f"{level} reader Genant: "
                             + ("computed" if g is None and sh is None else
                                f"grade {'computed' if g is None else g}, shape "
                                f"{'computed' if sh is None else sh}") + note)
        self._changed()
        return self.last_message

    def set_finding(self, name: str, value: Any) -> None:
        """Set one reader finding (docs/annotation_format.md); ``None`` = unknown. ``ct_hu`` takes a
        mapping level -> HU. Validation is :class:`~spine_measure.io.annotation.Findings`'s."""
        names = [f.name for f in dataclasses.fields(Findings)]
        if name not in names:
            raise SessionError(f'unknown finding "{name}" (one of {", ".join(names)})')
        new = dataclasses.replace(self._state.findings, **{name: value})
        if new == self._state.findings:
            return
        self._push("finding")
        self._state.findings = new
        self._changed()

    def set_time_point(self, time_point: str | None) -> None:
        """``preop`` / ``postop`` / ``followup``, or None to derive it from the DICOM dates."""
        if time_point not in (None, "preop", "postop", "followup"):
            raise SessionError(f'time point must be preop, postop, followup or none; '
                               f'got "{time_point}"')
        if time_point == self._state.time_point:
            return
        self._push("time_point")
        self._state.time_point = time_point
        self._changed()

    # ------------------------------------------------------------------ calibration
    def set_calibration(self, p0: tuple[float, float], p1: tuple[float, float],
                        length_mm: float) -> Calibration:
        """A reader line of ``length_mm`` from ``p0`` to ``p1`` becomes the calibration
        (docs/calibration.md rule 1). Returns the resulting :class:`Calibration`.

        Raises
        ------
        SessionError
            Zero-length line, non-positive length, or an implausible resulting spacing.
        """
        try:
            line = CalibrationLine(tuple(map(float, p0)), tuple(map(float, p1)),
                                   float(length_mm))
            cal = line.calibration(pixel_aspect=self._pixel_aspect())
        except ValueError as exc:
            raise SessionError(f"calibration: {exc}") from None
        self._push("calibration")
        self._state.calibration = line
        self.last_message = f"calibrated: {length_mm:g} mm line"
        self._changed()
        return cal

    def clear_calibration(self) -> None:
        """Back to the film's own calibration."""
        if self._state.calibration is not None:
            self._push("calibration")
            self._state.calibration = None
            self._changed()

    def _pixel_aspect(self) -> tuple[float, float]:
        sp = self.header_calibration.spacing
        return sp if sp is not None else (1.0, 1.0)

    @property
    def calibration(self) -> Calibration:
        """The calibration in force: the reader line when drawn, else the header's."""
        if self._state.calibration is not None:
            return self._state.calibration.calibration(pixel_aspect=self._pixel_aspect())
        return self.header_calibration

    # ------------------------------------------------------------------ cement
    def set_cement_mask(self, level: str, mask: np.ndarray, *, source: str = "edited",
                        params_hash: str | None = None) -> str:
        """Store the cement mask of ``level``. An automatic result never replaces a reader's
        edit (``merge_cement_mask`` rule 3); returns the merge action."""
        mask = np.asarray(mask).astype(bool)
        if mask.shape != (self.image.rows, self.image.cols):
            raise SessionError(f"{level}: cement mask shape {mask.shape} differs from the "
                               f"image {(self.image.rows, self.image.cols)}")
        incoming = CementMask.from_array(level, mask, source=source,  # type: ignore[arg-type]
                                         params_hash=params_hash)
        from spine_measure.io.annotation import merge_cement_mask

        result = merge_cement_mask(self._state.cement.get(level), incoming)
        if result.action == "unchanged" or result.mask is self._state.cement.get(level):
            self.last_message = f"{level} cement: {result.reason}"
            return result.action
        self._push("cement")
        self._state.cement[level] = result.mask
        self.last_message = (f"{level} cement: {'automatic' if source == 'auto' else 'edited'}"
                             f" mask {'stored' if result.action == 'added' else 'updated'}")
        self._changed()
        return result.action

    def clear_cement(self, level: str) -> None:
        if level in self._state.cement:
            self._push("cement")
            del self._state.cement[level]
            self._changed()

    def treated_level(self) -> str | None:
        """The level flagged treated (the first, cranial to caudal), else None."""
        treated = [lv for lv in LEVELS if self._state.flags.get(lv, {}).get("treated")]
        return treated[0] if treated else None

    # ------------------------------------------------------------------ results
    def landmarks(self) -> SpineLandmarks:
        """The measurable vertebrae (all required points placed, not marked not measurable)."""
        verts = []
        for level, pts in self._state.points.items():
            if level in self._state.not_measurable:
                continue
            if not all(p in pts for p in required_points(level, self.view)):
                continue
            grade, shape = self._state.genant.get(level, (None, None))
            verts.append(Vertebra(level, self.view, pts, **self.flags(level),  # type: ignore[arg-type]
                                  genant_grade_reader=grade, genant_shape_reader=shape))
        return SpineLandmarks(self.view, tuple(verts))  # type: ignore[arg-type]

    def incomplete_levels(self) -> tuple[str, ...]:
        """Levels with points but without all required ones (not saved in the file)."""
        return tuple(lv for lv in LEVELS if lv in self._state.points
                     and lv not in self._state.not_measurable
                     and not all(p in self._state.points[lv]
                                 for p in required_points(lv, self.view)))

    def cement_features(self, level: str) -> CementFeatures | None:
        """Cement features (docs/cement.md) of ``level``'s mask (automatic or edited), landmarks
        and calibration in force: what the batch reports for a stored mask. None without a
        mask; :class:`~spine_measure.cement.frame.CementError` when the vertebra cannot be
        measured (no landmarks, body outside the mask)."""
        mask = self._state.cement.get(level)
        if mask is None:
            return None
        from spine_measure.cement.features import cement_features

        return cement_features(mask.to_array(), self.landmarks(), level,
                               self.calibration.spacing)

    def measurements(self) -> FilmMeasurements:
        """Every single-film measurement (docs/measurements.md) of the measurable vertebrae,
        with the calibration in force: the one measuring service
        (:func:`spine_measure.service.measure_with_calibration`), which ``measure`` and
        ``batch`` reach through ``measure_film_file``."""
        return measure_with_calibration(
            self.header_calibration, self.annotation(),
            metadata={"sop_instance_uid": self.image.sop_instance_uid}
            if self.image.sop_instance_uid else {})

    def annotation(self) -> Annotation:
        """The annotation file's content for the current state."""
        s = self._state
        base = self._base
        kwargs: dict[str, Any] = {}
        if base is not None:
            kwargs = {"created": base.created, "modified": base.modified,
                      "revision": base.revision, "procedure_date": base.procedure_date}
        return Annotation(self.image, self.landmarks(), calibration=s.calibration,
                          findings=s.findings, time_point=s.time_point,  # type: ignore[arg-type]
                          cement=tuple(s.cement.values()), review=dict(s.review),
                          reader=self.reader or (base.reader if base else None), **kwargs)

    # ------------------------------------------------------------------ files
    @property
    def revision(self) -> int:
        """Revision of the file as loaded / last saved (0: never saved)."""
        return 0 if self._base is None else self._base.revision

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the state by the annotation in ``path`` (it must annotate this image).

        Raises
        ------
        AnnotationMismatchError
            The file annotates another image.
        AnnotationFileError
            The file cannot be read or is invalid.
        """
        p = Path(path)
        ann = load_annotation(p)
        same = ann.image.matches(sop_instance_uid=self.image.sop_instance_uid,
                                 pixel_sha256=self.image.pixel_sha256)
        if same is False:
            raise AnnotationMismatchError(p, "annotates another image "
                                             f"({ann.image.file_name or 'unknown file'})")
        self._base = ann
        self.annotation_path = p
        self.read_only = None
        self._replaces_unreadable = None
        self.view = ann.view
        self._state = self._state_from(ann, level=self._state.level)
        self._undo.clear()
        self.dirty = False
        self.last_message = f"loaded {p.name} (revision {ann.revision})"
        for cb in list(self._listeners):
            cb()

    def _state_from(self, ann: Annotation, level: str | None) -> _State:
        st = _State(level=level)
        for v in ann.landmarks:
            st.points[v.level] = dict(v.points)
            st.flags[v.level] = {f: getattr(v, f) for f in FLAGS}
            optional = [p for p in self.order(v.level) if p not in v.points]
            if optional:
                st.skipped[v.level] = set(optional)
        st.calibration = ann.calibration
        st.findings = ann.findings
        st.time_point = ann.time_point
        st.cement = {m.level: m for m in ann.cement}
        st.review = dict(ann.review)
        st.genant = {v.level: (v.genant_grade_reader, v.genant_shape_reader)
                     for v in ann.landmarks
                     if v.genant_grade_reader is not None or v.genant_shape_reader is not None}
        if st.level in st.points:
            st.level = next((lv for lv in LEVELS if lv not in st.points), None)
        return st

    def save(self, path: str | os.PathLike[str] | None = None, *,
             overwrite: bool = False) -> Path:
        """Save the annotation atomically; never over a newer file unless ``overwrite``.

        Levels with missing required points are not written (they cannot be measured) and
        are named in :attr:`last_message`.

        Raises
        ------
        AnnotationConflictError
            The file was changed since it was loaded or last saved (by another reader or
            session); nothing is written.
        """
        target = Path(path) if path is not None else self.annotation_path
        if target is None:
            raise SessionError("no annotation file: give a path to save to")
        if self.read_only is not None:
            raise SessionError(f"read-only session, nothing saved: {self.read_only}")
        if self._replaces_unreadable is not None and target == self.annotation_path \
                and target.exists():
            sha, backup = self._replaces_unreadable
            try:
                now = hashlib.sha256(target.read_bytes()).hexdigest()
            except OSError as exc:
                raise AnnotationFileError(target, f"cannot read: {exc}") from None
            if now != sha:
                raise AnnotationFileError(
                    target, "changed on disk since it was backed up to "
                            f"{backup.name}; nothing saved (save as a copy instead)")
            overwrite = True  # the unreadable file is kept in the backup
        if self.annotation_path is not None and target != self.annotation_path:
            # "save as": a new file, conflict-checked as a new annotation
            ann = self.annotation()
            ann = dataclasses.replace(ann, revision=0)
        else:
            ann = self.annotation()
        written = save_annotation(ann, target, overwrite=overwrite)
        old_autosave = self.autosave_path
        self._base = written
        self.annotation_path = target
        self._replaces_unreadable = None
        self.dirty = False
        for p in {old_autosave, self.autosave_path} - {None}:
            if p is not None and p.exists():
                with contextlib.suppress(OSError):
                    p.unlink()
        missing = self.incomplete_levels()
        self.last_message = (f"saved {target.name} (revision {written.revision})"
                             + (f"; not saved, incomplete: {', '.join(missing)}"
                                if missing else ""))
        for cb in list(self._listeners):
            cb()
        return target

    # ------------------------------------------------------------------ autosave
    @property
    def autosave_path(self) -> Path | None:
        return None if self.annotation_path is None else autosave_path_for(self.annotation_path)

    def _session_dict(self) -> dict[str, Any]:
        s = self._state
        return {
            "schema": AUTOSAVE_SCHEMA,
            "image": self.image.to_dict(),
            "view": self.view,
            "base_revision": self.revision,
            "points": {lv: {n: list(p) for n, p in pts.items()} for lv, pts in s.points.items()},
            "flags": s.flags,
            "skipped": {lv: sorted(v) for lv, v in s.skipped.items()},
            "not_measurable": sorted(s.not_measurable, key=_LEVEL_INDEX.__getitem__),
            "level": s.level,
            "direction": s.direction,
            "calibration": None if s.calibration is None else s.calibration.to_dict(),
            "findings": s.findings.to_dict(),
            "time_point": s.time_point,
            "cement": [m.to_dict() for m in s.cement.values()],
            "genant": {lv: list(g) for lv, g in s.genant.items()},
            "review": {lv: {"confirmed": r.confirmed, "point_source": dict(r.point_source),
                            "confidence": dict(r.confidence),
                            "flag_source": dict(r.flag_source)}
                       for lv, r in s.review.items()},
        }

    def autosave(self) -> Path | None:
        """Write the whole session (partial vertebrae included) atomically next to the
        annotation file; returns the path, or None when there is no annotation path."""
        p = self.autosave_path
        if p is None or not self.autosave_enabled or self.read_only is not None \
                or not p.parent.is_dir():
            return None
        try:
            atomic_write_text(p, json.dumps(self._session_dict(), indent=1))
        except OSError as exc:
            # a read-only folder (PACS export, CD): say it once, keep working in memory
            first = self.autosave_error is None
            self.autosave_error = (f"autosave cannot be written in {p.parent} "
                                   f"({exc.strerror or exc}); choose an annotations folder")
            if first:
                self.last_message = self.autosave_error
            return None
        self.autosave_error = None
        return p

    def recovery_available(self) -> bool:
        """True when an autosave of this image exists (a session ended without saving)."""
        p = self.autosave_path
        if p is None or not p.is_file():
            return False
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return data.get("schema") == AUTOSAVE_SCHEMA and ImageRef.from_dict(
            data.get("image", {})).matches(sop_instance_uid=self.image.sop_instance_uid,
                                           pixel_sha256=self.image.pixel_sha256) is not False

    def recover(self) -> None:
        """Restore the session from the autosave file (undo history starts afresh).

        The file's base revision is kept, so saving the recovered work still refuses to
        replace an annotation file someone else saved in the meantime."""
        p = self.autosave_path
        if p is None or not p.is_file():
            raise SessionError("no autosave to recover")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SessionError(f"{p}: cannot read the autosave ({exc})") from None
        if not isinstance(data, dict) or data.get("schema") != AUTOSAVE_SCHEMA:
            raise SessionError(f"{p}: not an autosave file of napari-spine-measure")
        st = _State(level=data.get("level"), direction=int(data.get("direction", 1)))
        st.points = {lv: {n: (float(v[0]), float(v[1])) for n, v in pts.items()}
                     for lv, pts in data.get("points", {}).items()}
        st.flags = {lv: {f: bool(v) for f, v in fl.items()}
                    for lv, fl in data.get("flags", {}).items()}
        st.skipped = {lv: set(v) for lv, v in data.get("skipped", {}).items()}
        st.not_measurable = set(data.get("not_measurable", []))
        cal = data.get("calibration")
        st.calibration = None if cal is None else CalibrationLine.from_dict(cal)
        st.findings = Findings.from_dict(data.get("findings") or {})
        st.time_point = data.get("time_point")
        st.cement = {m["level"]: CementMask.from_dict(m) for m in data.get("cement", [])}
        try:
            st.genant = {}
            for lv, (g, sh) in (data.get("genant") or {}).items():
                why = _genant_problem(lv, g, sh)
                if why is None and g is not None and sh is not None \
                        and (g == 0) != (sh == "none"):
                    why = f"{lv}: reader Genant grade {g} contradicts shape {sh}"
                if why:
                    raise ValueError(why)
                st.genant[lv] = (g, sh)
            st.review = {lv: LevelReview(confirmed=bool(r.get("confirmed", True)),
                                         point_source=r.get("point_source") or {},
                                         confidence=r.get("confidence") or {},
                                         flag_source=r.get("flag_source") or {})
                         for lv, r in (data.get("review") or {}).items()}
        except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
            raise SessionError(f"{p}: invalid review or Genant state in the autosave "
                               f"({exc})") from None
        base_rev = int(data.get("base_revision", 0))
        if self._base is not None and self._base.revision != base_rev:
            # the file moved on since the crashed session loaded it: keep the crashed base
            self._base = dataclasses.replace(self._base, revision=base_rev)
        elif self._base is None and base_rev:
            log.warning("%s: autosave was based on revision %d of a file that is gone",
                        p, base_rev)
        self._state = st
        self._undo.clear()
        self.last_message = f"recovered unsaved work from {p.name}"
        self._changed(autosave=False)

    def discard_recovery(self) -> None:
        """Delete the autosave file without using it."""
        p = self.autosave_path
        if p is not None and p.exists():
            with contextlib.suppress(OSError):
                p.unlink()

    # ------------------------------------------------------------------ unreadable file
    def open_read_only(self, reason: str) -> None:
        """Keep the session empty and refuse every change and save (the annotation file
        cannot be read: ``reason``); the file is never touched."""
        self.read_only = reason
        self.last_message = f"read-only: {reason}"
        for cb in list(self._listeners):
            cb()

    def start_over(self) -> Path:
        """Start an empty session although the annotation file cannot be read.

        The unreadable file is left untouched and copied first to
        ``<name>.unreadable-<UTC time>`` beside it; saving later replaces it only while its
        bytes are still the ones backed up. Returns the backup path.

        Raises
        ------
        SessionError
            No annotation file, or the backup cannot be written (read-only folder: choose an
            annotations folder).
        """
        p = self.annotation_path
        if p is None or not p.is_file():
            raise SessionError("no annotation file to start over from")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = p.with_name(f"{p.name}.unreadable-{stamp}")
        k = 1
        while backup.exists():
            k += 1
            backup = p.with_name(f"{p.name}.unreadable-{stamp}-{k}")
        try:
            data = p.read_bytes()
            shutil.copy2(p, backup)
        except OSError as exc:
            raise SessionError(f"{p}: cannot back up the unreadable file "
                               f"({exc.strerror or exc}); choose an annotations folder") \
                from None
        self._replaces_unreadable = (hashlib.sha256(data).hexdigest(), backup)
        self.read_only = None
        self._base = None
        self._state = _State(level=self._state.level, direction=self._state.direction)
        self._undo.clear()
        self.dirty = False
        self.last_message = f"started over; the unreadable file is kept as {backup.name}"
        for cb in list(self._listeners):
            cb()
        return backup

    # ------------------------------------------------------------------ misc
    def snapshot(self) -> Mapping[str, Any]:
        """A deep copy of the session as plain data (for tests and debugging)."""
        return copy.deepcopy(self._session_dict())
