"""Proposals in napari: propose a film's landmarks from the patient's other annotated film,
draw the proposals apart from readings, and review them (``docs/propagation.md``).

The "Proposals" tab of :class:`~napari_spine_measure._widget.SpineAnnotationWidget`:

* **Propose from** lists the other annotated films of the same PatientID (films open in the
  viewer and DICOM files in the film's folder) and runs
  :func:`spine_measure.propose.files.propose_annotation` for the film on screen; the message
  says what was proposed (with its confidence) and what failed, with the reason.
* Proposals are drawn **hollow** in their own colour, with their confidence, until a reader
  confirms them; the measurements table marks (◌, italic) every value computed from
  unconfirmed points, the vertebra's own or its reference neighbours'.
* **Review** walks the unconfirmed vertebrae cranial to caudal: Enter confirms the one on
  screen, a drag fixes a point (it becomes a ``reader`` point), N rejects it (not
  measurable: its points are removed); undo (U) brings back each step.
* **Refine clicks** (off by default): a placed or dropped corner / mid-endplate point goes to
  the edge the image shows within the radius
  (:func:`spine_measure.propose.refine.refine_landmark`) and is marked ``refined``; where
  the image gives no clear answer the point stays where the reader put it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QFont
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_spine_measure.controller import AnnotationController, SessionError
from spine_measure.errors import SpineMeasureError
from spine_measure.landmarks import LEVELS

if TYPE_CHECKING:
    from napari_spine_measure._widget import SpineAnnotationWidget

__all__ = ["PROPOSAL_COLOUR", "ReviewPanel", "UNCONFIRMED_MARK", "proposal_sources"]

log = logging.getLogger(__name__)

#: colour of proposed (unconfirmed) points: hollow rings, apart from the readings' pale blue
PROPOSAL_COLOUR = np.array([1.00, 0.45, 0.85, 1.0])
#: a proposal being reviewed
REVIEWED_COLOUR = np.array([1.00, 0.76, 0.30, 1.0])
READING_BORDER = np.array([0.063, 0.125, 0.165, 1.0])  # the landmarks layer's own border
#: appended to a table header / shown in a value's tooltip: computed from unconfirmed points
UNCONFIRMED_MARK = "◌"
_INDEX = {name: i for i, name in enumerate(LEVELS)}


def _film_label(path: Path, header: Any) -> str:
    m = header.metadata if hasattr(header, "metadata") else header
    date = getattr(m, "acquisition_date", None) or getattr(m, "study_date", None)
    return f"{path.name}" + (f" · {date.isoformat()}" if date else "")


def proposal_sources(film: str | Path, patient_id: str | None, *,
                     annotations_dir: str | Path | None = None,
                     open_films: list[Any] = ()) -> tuple[list[tuple[Path, str]], str]:
    """The annotated films of patient ``patient_id`` other than ``film``: the films open in
    the viewer (``Radiograph`` objects) and the DICOM files in ``film``'s folder.

    Returns ``([(path, label), ...] sorted by date, note)``; ``note`` says why the list is
    empty (no PatientID, no other annotated film).
    """
    from spine_measure.io.scan import scan_folder
    from spine_measure.propose.files import find_film_annotation

    film = Path(film).resolve()
    if not patient_id:
        return [], "this film has no PatientID: cannot find the patient's other films"
    found: dict[Path, Any] = {}
    for rg in open_films:
        m = rg.metadata
        if m.patient_id == patient_id and m.path:
            found[Path(m.path).resolve()] = m
    if film.parent.is_dir():
        scan = scan_folder(film.parent, recursive=False)
        for h in scan.images:
            if h.metadata.patient_id == patient_id:
                found.setdefault(Path(h.path).resolve(), h.metadata)
    found.pop(film, None)
    out: list[tuple[Any, Path, str]] = []
    skipped: list[str] = []
    for path, meta in found.items():
        try:
            ann = find_film_annotation(path, annotations_dir)
        except (SpineMeasureError, ValueError, OSError) as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        if ann is None or not ann[1].confirmed_landmarks().levels():
            continue
        n = len(ann[1].confirmed_landmarks().levels())
        date = meta.acquisition_date or meta.study_date
        out.append((date, path, f"{_film_label(path, meta)} · {n} vertebrae"))
    out.sort(key=lambda t: (t[0] is None, t[0] or 0, str(t[1])))
    note = "" if out else f"no other annotated film of patient {patient_id} here"
    if skipped:
        note = "; ".join([note, *skipped]).strip("; ")
    return [(p, label) for _d, p, label in out], note


def _conf_text(c: float | None) -> str:
    return "" if c is None else f"{100 * c:.0f}%"


@dataclass(eq=False)
class _ProposalJob:
    """One "Propose" run: for which film (its path and session) and from which source."""

    source: Path
    film: Any  # the film's path as its Radiograph holds it (the widget's session key)
    ctl: AnnotationController
    film_name: str
    worker: Any = None
    result: Any = None
    cancelled: bool = False  # the reader cancelled: the result is discarded


def _compute_proposal(source_rg: Any, source: Path, source_annotation: Any, target: Any,
                      existing: Any) -> Any:
    """The worker thread's part of "Propose": read the source film when it is not open,
    register and propose (:func:`spine_measure.propose.files.propose_annotation`). Touches
    no session and no widget."""
    from spine_measure.io.radiograph import load_radiograph
    from spine_measure.propose.files import propose_annotation

    if source_rg is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source_rg = load_radiograph(source)
    return propose_annotation(source_rg, source_annotation, target, existing=existing)


class ReviewPanel(QWidget):
    """The "Proposals" tab; see the module docstring. ``widget`` is the dock widget it
    belongs to (its controller, layers and status line)."""

    def __init__(self, widget: SpineAnnotationWidget) -> None:
        super().__init__()
        self.w = widget
        #: review mode on: Enter confirms, N rejects the vertebra being reviewed
        self.active = False
        self.current: str | None = None
        self._placing_before = True  # the widget's mode before review, restored after
        self._ctl: AnnotationController | None = None
        self.last_result: Any = None
        self._acting = False  # confirming / rejecting: refresh() does not move on by itself
        self._sources_stale = True  # listed when the tab is shown (a folder scan)
        self._job: _ProposalJob | None = None  # the proposal being computed
        self._build()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Propose from"))
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("The patient's other annotated films (same PatientID)")
        row.addWidget(self.source_combo, 1)
        self.find_button = QPushButton("Find")
        self.find_button.setToolTip("List the patient's annotated films again")
        self.find_button.clicked.connect(lambda: self.refresh_sources())
        row.addWidget(self.find_button)
        self.propose_button = QPushButton("Propose")
        self.propose_button.setToolTip("Carry the chosen film's confirmed landmarks to the film "
                                       "on screen (levels it already has are kept)")
        self.propose_button.clicked.connect(lambda: self.propose())
        row.addWidget(self.propose_button)
        lay.addLayout(row)
        self.busy_bar = QProgressBar()  # indeterminate while a proposal is computed
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumHeight(8)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.hide()
        busy_row = QHBoxLayout()
        busy_row.addWidget(self.busy_bar, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Discard the proposal being computed (nothing of it is "
                                      "added to the film)")
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.cancel_button.hide()
        busy_row.addWidget(self.cancel_button)
        lay.addLayout(busy_row)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        lay.addWidget(self.result_label)

        row = QHBoxLayout()
        self.review_button = QPushButton("Review proposals")
        self.review_button.setCheckable(True)
        self.review_button.setToolTip("Walk the unconfirmed vertebrae: Enter confirms, drag a "
                                      "point to fix it, N: not measurable (removes it)")
        self.review_button.toggled.connect(self.set_review)
        row.addWidget(self.review_button)
        self.confirm_button = QPushButton("Confirm (Enter)")
        self.confirm_button.clicked.connect(lambda: self.confirm_current())
        row.addWidget(self.confirm_button)
        self.reject_button = QPushButton("Not measurable (N)")
        self.reject_button.clicked.connect(lambda: self.reject_current())
        row.addWidget(self.reject_button)
        lay.addLayout(row)
        self.review_label = QLabel("")
        self.review_label.setWordWrap(True)
        lay.addWidget(self.review_label)

        row = QHBoxLayout()
        self.refine_box = QCheckBox("Refine clicks to the image's edges")
        self.refine_box.setToolTip("A placed or dropped corner / mid-endplate point moves to "
                                   "the cortical edge within the radius (marked 'refined'); "
                                   "it stays put where the image gives no clear answer")
        self.refine_box.toggled.connect(lambda _=False: self._sync_refiner())
        row.addWidget(self.refine_box)
        row.addWidget(QLabel("radius"))
        self.radius_spin = QDoubleSpinBox()
        self.radius_spin.setRange(2.0, 30.0)
        self.radius_spin.setValue(8.0)
        self.radius_spin.setSuffix(" px")
        self.radius_spin.valueChanged.connect(lambda _=0.0: self._sync_refiner())
        row.addWidget(self.radius_spin)
        row.addStretch(1)
        lay.addLayout(row)
        for b in (*self.findChildren(QPushButton), self.refine_box):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    # ------------------------------------------------------------------ sources, propose
    def _radiograph(self) -> Any:
        layer = self.w._image_layer
        return None if layer is None else layer.metadata.get("radiograph")

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        """The patient's films are listed when the tab is first shown for a film (reading
        the folder's headers is not done on every film switch)."""
        super().showEvent(event)
        if self._sources_stale and self.w.controller is not None:
            self.refresh_sources()

    def refresh_sources(self) -> list[tuple[Path, str]]:
        """List the patient's other annotated films in the drop-down."""
        self._sources_stale = False
        rg = self._radiograph()
        self.source_combo.clear()
        if rg is None:
            return []
        open_films = [ly.metadata["radiograph"] for ly in self.w._film_layers()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sources, note = proposal_sources(rg.metadata.path, rg.metadata.patient_id,
                                             annotations_dir=self.w.annotations_dir,
                                             open_films=open_films)
        for path, label in sources:
            self.source_combo.addItem(label, str(path))
        self.propose_button.setEnabled(bool(sources) and self._job is None)
        if note:
            self.result_label.setText(note)
        return sources

    @property
    def busy(self) -> bool:
        """A proposal is being computed (in a worker thread)."""
        return self._job is not None

    def propose(self, source: str | Path | None = None) -> _ProposalJob | None:
        """Propose the landmarks of ``source`` (default: the film chosen in the drop-down) on
        the film on screen; the vertebrae it already has are kept.

        The registration takes seconds, so it runs in a worker thread: the window stays
        usable (look, zoom, switch films, keep placing) while a busy bar shows. The result
        goes to the session of the film it was started for, whatever film is on screen
        then (:meth:`_finished`), and only to levels that session still has no points for;
        it is dropped, with a message, when that film was closed. Returns the running job
        (its ``result`` is set when done; :attr:`busy` is False again, see
        :attr:`last_result`), or None when nothing was started (the reason in the status
        line)."""
        from superqt.utils import create_worker

        from spine_measure.propose.files import find_film_annotation

        ctl = self.w.controller
        target = self._radiograph()
        if self._job is not None:
            what = ("a cancelled proposal is still finishing" if self._job.cancelled
                    else f"already proposing for {self._job.film_name}")
            self.w._status(f"{what}: wait for it", error=True)
            return None
        if source is None:
            if self._sources_stale:
                self.refresh_sources()
            source = self.source_combo.currentData()
        if ctl is None or target is None:
            self.w._status("open a film first", error=True)
            return None
        if ctl.read_only is not None:
            self.w._status(f"read-only session, nothing proposed: {ctl.read_only}", error=True)
            return None
        if not source:
            self.w._status("no film to propose from: annotate another film of this patient "
                           "first", error=True)
            return None
        source = Path(source)
        try:
            found = find_film_annotation(source, self.w.annotations_dir)
            if found is None:
                raise SessionError("has no annotation (annotate it first)")
        except (SessionError, SpineMeasureError, ValueError, OSError) as exc:
            self._say_error(source, exc)
            return None
        open_rg = {Path(ly.metadata["radiograph"].metadata.path).resolve():
                   ly.metadata["radiograph"] for ly in self.w._film_layers()}
        job = _ProposalJob(source=source, film=target.metadata.path, ctl=ctl,
                           film_name=Path(target.metadata.path).name)
        # the session as it is now: the levels it has are not proposed (levels placed
        # while the worker runs are kept too: add_proposals never replaces points)
        existing = ctl.annotation()
        # superqt's worker (napari's relays errors as tracebacks in its notifications): a
        # failed registration is one line in the status bar
        worker = create_worker(
            _compute_proposal, open_rg.get(source.resolve()), source, found[1], target,
            existing, _start_thread=False,
            _connect={"returned": lambda result, j=job: self._deliver(self._finished, j,
                                                                       result),
                      "errored": lambda exc, j=job: self._deliver(self._failed, j, exc),
                      "finished": lambda j=job: self._deliver(self._job_done, j)})
        self._job = job
        job.worker = worker
        self.propose_button.setEnabled(False)
        self.busy_bar.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.result_label.setText(f"Proposing {job.film_name} from {source.name}… (the "
                                  "window stays usable; the result goes to this film)")
        self.w._status(f"proposing from {source.name} in the background")
        worker.start()
        return job

    def cancel(self) -> None:
        """Discard the proposal being computed: its result will not touch any session. The
        registration itself cannot be interrupted; it finishes in the background (a new
        proposal waits for it, so two never run at once)."""
        job = self._job
        if job is None or job.cancelled:
            return
        job.cancelled = True
        self.cancel_button.setEnabled(False)
        msg = (f"proposal for {job.film_name} from {job.source.name} cancelled: its result "
               "will be discarded")
        self.result_label.setText(msg)
        self.w._status(msg)

    def _deliver(self, fn: Any, *args: Any) -> None:
        """Hand the worker's outcome to ``fn`` unless the window was closed meanwhile (the
        proposal is then simply not used: nothing of the reader's is lost)."""
        from qtpy import sip

        if not sip.isdeleted(self) and not sip.isdeleted(self.result_label):
            fn(*args)

    def _say_error(self, source: Path, exc: BaseException) -> None:
        text = str(exc)
        self.w._status(text if source.name in text else f"{source.name}: {text}", error=True)

    def _job_done(self, job: _ProposalJob) -> None:
        if self._job is job:
            self._job = None
        self.busy_bar.hide()
        self.cancel_button.hide()
        self.propose_button.setEnabled(self.source_combo.count() > 0)

    def _failed(self, job: _ProposalJob, exc: BaseException) -> None:
        if job.cancelled:
            self.result_label.setText(f"Cancelled proposal from {job.source.name}: discarded")
            return
        if not isinstance(exc, SessionError | SpineMeasureError | ValueError | OSError):
            log.exception("proposing from %s failed", job.source, exc_info=exc)
        self._say_error(job.source, exc)
        self.result_label.setText(f"From {job.source.name}: nothing proposed ({exc})")

    def _finished(self, job: _ProposalJob, result: Any) -> None:
        """Apply ``result`` to the session of the film the job was started for (never to
        the film on screen when that is another one)."""
        films = {ly.metadata["radiograph"].metadata.path for ly in self.w._film_layers()}
        ctl = self.w._controllers.get(job.film)
        job.result = result
        if job.cancelled:
            msg = (f"cancelled proposal for {job.film_name} from {job.source.name}: "
                   "discarded, nothing added")
            self.w._status(msg)
            self.result_label.setText(msg)
            return
        if ctl is not job.ctl or job.film not in films:
            msg = (f"proposals from {job.source.name} dropped: {job.film_name} was closed "
                   "while they were computed")
            self.w._status(msg, error=True)
            self.result_label.setText(msg)
            return
        if ctl.read_only is not None:
            self.w._status(f"read-only session, nothing proposed: {ctl.read_only}",
                           error=True)
            return
        try:
            added = ctl.add_proposals(result.annotation)
        except (SessionError, SpineMeasureError, ValueError) as exc:
            self._say_error(job.source, exc)
            return
        self.last_result = result
        parts = []
        ok = [f"{r['level']} ({_conf_text(r['confidence'])})" for r in result.rows
              if r["status"] == "proposed" and r["level"] in added]
        if ok:
            parts.append(f"proposed {', '.join(ok)}")
        failed = [f"{r['level']}: {r['reason']}" for r in result.rows if r["status"] == "failed"]
        if failed:
            parts.append(f"failed {'; '.join(failed)}")
        kept = [r["level"] for r in result.rows if r["status"] == "kept"
                or (r["status"] == "proposed" and r["level"] not in added)]
        if kept:
            parts.append(f"kept as annotated {', '.join(kept)}")
        text = f"From {job.source.name}: " + (" · ".join(parts) or "nothing to propose")
        if ctl is not self.w.controller:
            # the reader moved to another film meanwhile: the proposals wait in their own
            # film's session (autosaved there); review them when that film is shown
            text = (f"{job.film_name} (not on screen): {text[0].lower()}{text[1:]}; "
                    f"show {job.film_name} to review")
            self.result_label.setText(text)
            self.w._status(text, error=bool(failed) and not ok)
            return
        self.result_label.setText(text)
        self.w._status(text, error=bool(failed) and not ok)
        if added:  # review starts; one undo takes back the proposal
            self.set_review(True, undoable=False)

    # ------------------------------------------------------------------ review mode
    def set_review(self, on: bool, *, undoable: bool = True) -> None:
        """Start (or stop) walking the unconfirmed vertebrae (not ``undoable``: going to the
        first one is part of the previous step, e.g. the proposal)."""
        on = bool(on)
        ctl = self.w.controller
        if on and (ctl is None or not ctl.unconfirmed_levels()):
            self.w._status("no unconfirmed proposals to review")
            on = False
        self.active = on
        if self.review_button.isChecked() != on:
            self.review_button.blockSignals(True)
            self.review_button.setChecked(on)
            self.review_button.blockSignals(False)
        if on:
            self._placing_before = self.w._placing
            self.w.set_placing(False)  # a click on the film does not add points; drags fix
            self._go(self._next(None), undoable=undoable)
        else:
            self._end()

    def _next(self, after: str | None) -> str | None:
        ctl = self.w.controller
        todo = ctl.unconfirmed_levels() if ctl is not None else ()
        if not todo:
            return None
        if after is None:
            return todo[0]
        later = [lv for lv in todo if _INDEX[lv] > _INDEX[after]]
        return (later or list(todo))[0]

    def _go(self, level: str | None, *, undoable: bool = False) -> None:
        """Review ``level`` (None: review is over). Not ``undoable``: moving on after a
        confirmation or rejection is part of it, so one undo brings back both."""
        ctl = self.w.controller
        self.current = level
        if level is None or ctl is None:
            self._end()
            if ctl is not None:
                ctl.last_message = "; ".join(m for m in (ctl.last_message,
                                                         "every proposal is reviewed") if m)
            self.w.refresh()
            return
        self.w._call(ctl.select_level, level, undoable=undoable)
        pts = np.array(list(ctl.points(level).values()), dtype=float)
        if len(pts) and self.w.landmarks_layer is not None:
            centre = pts.mean(axis=0) * np.asarray(self.w.landmarks_layer.scale)[-2:]
            cam = getattr(getattr(self.w.viewer, "scene", None), "camera", None) or \
                self.w.viewer.camera
            cam.center = (*tuple(cam.center)[:-2], *centre)
        self.w.refresh(force_points=True)

    def _end(self) -> None:
        """Leave review mode (the widget's placing / correcting mode comes back)."""
        was = self.active or self.current is not None or \
            self.w._placing != self._placing_before
        self.active = False
        self.current = None
        self.review_button.blockSignals(True)
        self.review_button.setChecked(False)
        self.review_button.blockSignals(False)
        if was and self.w.landmarks_layer is not None:
            self.w.set_placing(self._placing_before)
        self.w.refresh()

    def confirm_current(self) -> str | None:
        """Confirm the vertebra being reviewed (outside review mode: the current level when
        it is unconfirmed) and go on to the next unconfirmed one."""
        ctl = self.w.controller
        level = self.current if self.active else (ctl.level if ctl is not None else None)
        if ctl is None or level is None or level not in ctl.unconfirmed_levels():
            return None
        self._acting = True
        try:
            msg = self.w._call(ctl.confirm, level)
        finally:
            self._acting = False
        if self.active:
            self._go(self._next(level))
        return msg

    def reject_current(self) -> str | None:
        """The vertebra being reviewed is not measurable: remove its proposal, go on."""
        ctl = self.w.controller
        if ctl is None or not self.active or self.current is None:
            return None
        level = self.current
        self._acting = True
        try:
            msg = self.w._call(ctl.reject, level)
        finally:
            self._acting = False
        self._go(self._next(level))
        return msg

    def key_enter(self) -> None:
        self.confirm_current()

    def key_n(self) -> bool:
        """N in review mode rejects the proposal under review; False: not in review mode
        (N keeps its usual meaning, "not measurable" for the level being annotated)."""
        if not self.active:
            return False
        self.reject_current()
        return True

    # ------------------------------------------------------------------ refinement
    def _sync_refiner(self) -> None:
        ctl = self.w.controller
        if ctl is None:
            return
        if not self.refine_box.isChecked():
            ctl.refiner = None
            return
        rg = self._radiograph()
        if rg is None:
            ctl.refiner = None
            return
        from spine_measure.propose.refine import refine_landmark

        image = rg.density
        radius = float(self.radius_spin.value())

        def refiner(level: str, name: str, points: dict[str, tuple[float, float]]) -> Any:
            if level == "S1":
                raise ValueError("S1 points are not refined")
            return refine_landmark(image, points, name, radius_px=radius)

        ctl.refiner = refiner

    # ------------------------------------------------------------------ drawing hooks
    def refresh(self, ctl: AnnotationController) -> None:
        """Called after every redraw of the widget: follow a film switch, update the
        labels."""
        if ctl is not self._ctl:
            self._ctl = ctl
            self.active = False
            self.current = None
            self.review_button.blockSignals(True)
            self.review_button.setChecked(False)
            self.review_button.blockSignals(False)
            self.result_label.setText("" if self._job is None else
                                      f"Proposing {self._job.film_name} in the background…")
            self._sync_refiner()
            self._sources_stale = True
            if self.isVisible():
                self.refresh_sources()
        if self.active and not self._acting and ctl.level in ctl.unconfirmed_levels():
            self.current = ctl.level  # undo, or [ / ]: review the vertebra on screen
        elif self.active and not self._acting and self.current is not None and \
                self.current not in ctl.unconfirmed_levels():
            # confirmed or removed some other way (undo, delete): go on
            self.current = self._next(self.current)
            if self.current is None:
                self.active = False
                QTimer.singleShot(0, self._end)  # after this redraw
        todo = ctl.unconfirmed_levels()
        if self.active and self.current is not None:
            c = self.level_confidence(ctl, self.current)
            conf = f" (proposed, {_conf_text(c)})" if c is not None else ""
            fl = ctl.flags(self.current)
            machine = sorted(f for f in ctl.review_of(self.current).flag_source if fl.get(f))
            check = f" · check the flag {', '.join(machine)}" if machine else ""
            self.w.prompt_label.setText(f"Reviewing {self.current}{conf}: Enter confirms · "
                                        f"drag a point to fix it · N not measurable{check}")
        counts = {"propagated": 0, "refined": 0, "reader": 0}
        for lv, pts in ctl.points().items():
            state = ctl.review_of(lv)
            for n in pts:
                counts[state.source(n)] += 1
        points = ""
        if counts["propagated"] or counts["refined"]:
            points = "\npoints: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        if todo:
            now = f" · reviewing {self.current}" if self.active and self.current else ""
            self.review_label.setText(f"{len(todo)} unconfirmed: {', '.join(todo)}{now}"
                                      + points)
        else:
            self.review_label.setText("No unconfirmed proposals" + points)
        self.review_button.setEnabled(bool(todo) or self.active)
        self.confirm_button.setEnabled(self.active)
        self.reject_button.setEnabled(self.active)

    @staticmethod
    def level_confidence(ctl: AnnotationController, level: str) -> float | None:
        """Lowest confidence of ``level``'s proposed points (None when none has one)."""
        conf = ctl.review_of(level).confidence
        return min(conf.values()) if conf else None

    def point_style(self, ctl: AnnotationController, keys: list[tuple[str, str]],
                    colours: np.ndarray, labels: list[str]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Face colours, border colours, border widths and labels of the landmarks layer:
        points of unconfirmed vertebrae hollow (transparent face, thick coloured border)
        with their confidence beside the ones of the vertebra on screen."""
        n = len(keys)
        face = np.array(colours, dtype=float).reshape(-1, 4).copy()
        border = np.tile(READING_BORDER, (n, 1))
        width = np.full(n, 0.1)
        labels = list(labels)
        unconfirmed = set(ctl.unconfirmed_levels())
        for i, (level, name) in enumerate(keys):
            if level not in unconfirmed:
                continue
            state = ctl.review_of(level)
            reviewed = level == ctl.level
            border[i] = REVIEWED_COLOUR if reviewed else PROPOSAL_COLOUR
            face[i] = (0.0, 0.0, 0.0, 0.0)
            width[i] = 0.3
            if reviewed:
                src = state.source(name)
                c = state.confidence.get(name)
                tag = _conf_text(c) if src == "propagated" else src
                labels[i] = f"{name} {tag}".strip()
        return face, border, width, labels

    def level_texts(self, ctl: AnnotationController, texts: list[str]) -> list[str]:
        """Level labels on the film: unconfirmed vertebrae say so, with their lowest point
        confidence."""
        out = []
        for t in texts:
            level = t.split()[0]
            if level in ctl.points() and not ctl.review_of(level).confirmed:
                c = self.level_confidence(ctl, level)
                t = f"{t} {UNCONFIRMED_MARK} proposed {_conf_text(c)}".rstrip()
            out.append(t)
        return out

    def mark_table(self, ctl: AnnotationController, fm: Any, rows: list[str]) -> None:
        """Mark (◌ in the header, italic pink values, a tooltip) what the table computes from
        unconfirmed points: a vertebra's own values, and values of others using it as a
        reference."""
        unconfirmed = set(ctl.unconfirmed_levels())
        if not unconfirmed:
            return
        t = self.w.table
        levels = list(fm.vertebrae)
        for j, lv in enumerate(levels):
            if lv in unconfirmed:
                h = t.horizontalHeaderItem(j)
                if h is not None:
                    h.setText(f"{h.text()} {UNCONFIRMED_MARK}")
                    tip = h.toolTip()
                    h.setToolTip(f"{lv}: proposed points not confirmed yet"
                                 + (f"; {tip}" if tip else ""))
            for i, name in enumerate(rows):
                item = t.item(i, j)
                r = fm.vertebrae[lv].get(name)
                if item is None or r is None:
                    continue
                uses = ({lv} | set(r.neighbours or ())) & unconfirmed
                if not uses:
                    continue
                f = QFont(item.font())
                f.setItalic(True)
                item.setFont(f)
                item.setForeground(QColor(*(int(255 * x) for x in PROPOSAL_COLOUR[:3])))
                tip = item.toolTip()
                note = (f"{UNCONFIRMED_MARK} computed from unconfirmed proposed points of "
                        f"{', '.join(sorted(uses, key=_INDEX.__getitem__))}")
                item.setToolTip(f"{note}; {tip}" if tip else note)
