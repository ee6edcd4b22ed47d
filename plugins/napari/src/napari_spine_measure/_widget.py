"""The annotation dock widget: a thin Qt shell over :class:`AnnotationController`.

Each button, hotkey and layer event forwards to one controller method; after every change
the controller notifies the widget, which redraws its layers, labels and the measurement
table from the controller (:meth:`SpineAnnotationWidget.refresh`). The public methods below
(``place_point``, ``skip``, ``undo``, ``set_flag``, ``calibrate``, ``auto_segment``,
``save``, ``load`` ...) are exactly what the buttons call, so tests drive the widget the
way a reader does.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, QSettings, Qt, QTimer
from qtpy.QtGui import QColor, QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_spine_measure import _layers
from napari_spine_measure._layers import to_rgba
from napari_spine_measure._review import READING_BORDER, ReviewPanel
from napari_spine_measure.controller import FLAGS, AnnotationController, SessionError
from spine_measure.errors import SpineMeasureError
from spine_measure.io.annotation import (
    AnnotationConflictError,
    format_timestamp,
    load_annotation,
    sidecar_path,
)
from spine_measure.landmarks import LEVELS

__all__ = ["TABLE_ROWS", "SpineAnnotationWidget", "cement_segmenter", "cement_summary"]

log = logging.getLogger(__name__)

#: Measurement table rows: registry name, label (unit and calibration added per film).

_FLAG_SOURCE_TEXT = {
    "propagated": "proposed, carried from the other film - check it",
    "cement": "proposed, cement seen in the body on this film - check it",
    "clinical": "proposed, the clinical table names this level - check it",
}
"""Why a machine set a proposal's flag (``flag_source``), shown until the reader confirms."""

TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("ha", "ha anterior"),
    ("hm", "hm middle"),
    ("hp", "hp posterior"),
    ("wedge_angle", "Wedge angle"),
    ("regional_kyphotic_angle", "Kyphotic angle"),
    ("cr_anterior", "CR ant. (AVHR)"),
    ("cr_middle", "CR middle"),
    ("cr_posterior", "CR posterior"),
    ("compression_pct", "Compression"),
    ("wedge_ratio", "Wedge ha/hp"),
    ("biconcavity_ratio", "Biconc. hm/hp"),
    ("crush_ratio", "Crush hp/ref"),
    ("genant_grade", "Genant grade"),
    ("genant_shape", "Genant shape"),
    ("genant_grade_reader", "Grade (reader)"),
    ("genant_shape_reader", "Shape (reader)"),
)
"""Rows of the table; the calibration of the lengths is named once, in its title (the rows
stay narrow, so 7+ vertebrae fit side by side without scrolling)."""

_SOURCE_LONG = {
    "reader": "reader line",
    "pixel_spacing_calibrated": "PixelSpacing, calibrated",
    "imager_pixel_spacing_ermf": "ImagerPixelSpacing / ERMF",
    "imager_pixel_spacing": "ImagerPixelSpacing (detector plane)",
    "pixel_spacing": "PixelSpacing",
    "uncalibrated": "uncalibrated",
}
#: Delay (ms) after the last change before the table gets its "± u" (Landmark SD set).
UNCERTAINTY_DELAY_MS = 250
#: While a point is dragged the layers and the table are redrawn at most once per this
#: many ms (mouse moves come faster than a redraw on a large film); the release redraws
#: everything exactly.
DRAG_REDRAW_MS = 30

#: Short form shown next to every length in the table.
_SOURCE_SHORT = {
    "reader": "reader",
    "pixel_spacing_calibrated": "PS cal.",
    "imager_pixel_spacing_ermf": "IPS/ERMF",
    "imager_pixel_spacing": "IPS",
    "pixel_spacing": "PS",
    "uncalibrated": "uncal.",
}
_SHAPE_SHORT = {"wedge": "wedge", "biconcave": "bicon.", "crush": "crush", "none": "none"}
#: the reader's Genant override choices: (text, value); None = the computed one
GENANT_GRADE_CHOICES: tuple[tuple[str, int | None], ...] = (
    ("grade: computed", None), ("0 normal", 0), ("1 mild", 1), ("2 moderate", 2),
    ("3 severe", 3))
GENANT_SHAPE_CHOICES: tuple[tuple[str, str | None], ...] = (
    ("shape: computed", None), ("none", "none"), ("wedge", "wedge"),
    ("biconcave", "biconcave"), ("crush", "crush"))
#: table rows of the reader's override (not measurements: they come from the annotation)
_READER_ROWS = {"genant_grade_reader": 0, "genant_shape_reader": 1}
_UNIT_TEXT = {"mm": "mm", "px": "px", "deg": "°", "pct": "%", "grade": "", "": ""}
_TRI = (("unknown", None), ("yes", True), ("no", False))
_FINDING_FLAGS = (
    ("ivc", "Intravertebral cleft (IVC)"),
    ("endplate_disruption", "Endplate cortical disruption"),
    ("posterior_fascia_oedema", "Posterior fascia oedema"),
    ("bone_marrow_oedema", "Bone marrow oedema (follow-up)"),
    ("leakage_other_views", "Cement leakage on other views"),
)
HOTKEYS = {
    "K": "skip the next point (optional) / vertebra not measurable (required)",
    "N": "mark the current vertebra not measurable (reviewing proposals: reject the one "
         "under review)",
    "Enter": "reviewing proposals: confirm the vertebra under review",
    "U": "undo",
    "E": "switch between placing points and correcting (dragging) them",
    "]": "next level (caudal)",
    "[": "previous level (cranial)",
    "F": "flag fractured: the vertebra under the mouse, else the one just finished",
    "T": "flag treated: the vertebra under the mouse, else the one just finished",
    "X": "flag excluded: the vertebra under the mouse, else the one just finished",
    "G": "reader's Genant grade of the vertebra under the mouse, else the one just "
         "finished: computed -> 0 -> 1 -> 2 -> 3 -> computed",
    "Shift-G": "reader's Genant shape of the same vertebra: computed -> none -> wedge -> "
               "biconcave -> crush -> computed",
    "Shift-S": "save",
}
"""The plugin's keys. They work whichever layer is active (bound on every film and
annotation layer as well as the viewer, so napari's own meaning of E, [ and ] on the
shapes and labels layers does not take over while the widget is open)."""


_LEAK_PLACE = {"superior_disc": "superior disc", "inferior_disc": "inferior disc",
               "anterior": "anterior", "posterior": "posterior (canal)", "lateral": "lateral"}


def cement_summary(f: Any) -> str:
    """The docs/cement.md features of one treated vertebra (a ``CementFeatures``) as the few lines
    the cement tab shows under the mask: NPEC with both gaps, fill and distribution, and
    every leak with its location, type, area and endplate contact.

    >>> from spine_measure.cement.features import cement_features
    >>> from spine_measure.landmarks import Vertebra
    >>> v = Vertebra("L1", "lateral", {"As": (20, 89.5), "Ai": (79.5, 89.5),
    ...                               "Ps": (20, 30), "Pi": (79.5, 30)})
    >>> m = np.zeros((120, 120), bool); m[20:60, 50:70] = True
    >>> print(cement_summary(cement_features(m, v, "L1", (0.5, 0.5))))
    NPEC inferior: gap superior 0.0 mm, inferior 10.2 mm (contact ≤ 1 mm)
    fill 21 %, distribution blocky
    leaks: none
    """
    if not f.found:
        return str(f.status)
    u = f.length_unit
    lines = [f"NPEC {f.npec}: gap superior {f.gap_superior:.1f} {u}, inferior "
             f"{f.gap_inferior:.1f} {u} (contact ≤ {f.tolerance:g} {u})",
             f"fill {f.fill_pct:.0f} %, distribution {f.distribution or 'not decided'}"]
    leaks = []
    for lk in f.leaks:
        kind = f" {lk.type}" if lk.type else ""
        touch = {True: ", touches the adjacent endplate", False: "",
                 None: ", adjacent endplate not annotated"}[lk.touches_adjacent_endplate]
        leaks.append(f"{_LEAK_PLACE.get(lk.location, lk.location)}{kind} "
                     f"{lk.area:.1f} {f.area_unit.replace('2', '²')}{touch}")
    lines.append("leaks: " + ("; ".join(leaks) if leaks else "none"))
    return "\n".join(lines)


_MISSING = object()
#: marks a vertebra whose landmarks describe no vertebra (not measured), in the table
#: header and on the film
REFUSED_MARK = "⚠"


def refused_levels(fm: Any) -> dict[str, str]:
    """Level -> why the measurements of its vertebra were refused (implausible landmarks:
    upside down, endplates crossing ... ``spine_measure.measurements.plausibility``), read
    from the reasons the film's measurements ``fm`` carry."""
    out = {}
    for level, per in fm.vertebrae.items():
        prefix = f"{level}: implausible landmarks: "
        for r in per.values():
            if r.reason and r.reason.startswith(prefix):
                out[level] = r.reason[len(prefix):]
                break
    return out


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.shape == b.shape and bool(np.array_equal(a, b)))
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def cement_segmenter() -> Any | None:
    """The toolkit's automatic cement segmentation, or None when it is not installed.

    Adapter over ``spine_measure.cement.segment.segment_cement(density, landmarks, level,
    spacing)``, which returns a result with ``mask``, ``found``, ``reason`` and
    ``params_hash``."""
    try:
        from spine_measure.cement.segment import segment_cement
    except ImportError:
        return None
    return segment_cement


def _fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.1f}" if unit != "" else f"{value:.2f}"
    return str(value)


SETTINGS_ENV = "SPINE_MEASURE_NAPARI_SETTINGS"


def _settings() -> QSettings:
    """The plugin's remembered preferences (reader id, annotations folder): the user's Qt
    settings, or the INI file named by ``$SPINE_MEASURE_NAPARI_SETTINGS`` (tests)."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("spine_measure", "napari-spine-measure")


READER_PATTERNS = ("*.dcm", "*.dicom")


def prefer_this_reader() -> None:
    """Make this plugin napari's reader for DICOM files (napari's own cannot open JPEG 2000
    films), unless the user already chose a reader for them in napari's preferences."""
    try:
        from napari.settings import get_settings
    except ImportError:
        return
    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    missing = {p: "napari-spine-measure" for p in READER_PATTERNS if p not in current}
    if missing:
        plugins.extension2reader = {**current, **missing}


def _inside(poly: np.ndarray, p: np.ndarray) -> bool:
    """Point ``p`` inside polygon ``poly`` (even-odd rule)."""
    r, c = p
    inside = False
    n = len(poly)
    for i in range(n):
        r1, c1 = poly[i]
        r2, c2 = poly[(i + 1) % n]
        if (r1 > r) != (r2 > r) and c < c1 + (r - r1) * (c2 - c1) / (r2 - r1):
            inside = not inside
    return inside


def _assign(layer: Any, values: dict[str, Any]) -> None:
    """Set several properties of a napari layer (in order) with one refresh: napari
    re-slices and redraws the layer after each property otherwise (several ms each)."""
    if not values:
        return
    values = dict(values)
    if "data" in values and len(values["data"]) != len(layer.data):
        layer.data = values.pop("data")  # new rows: napari re-slices before they are styled
    block = getattr(layer, "_block_refresh", None)  # napari >= 0.5
    if block is None or len(values) <= 1:
        for name, value in values.items():
            setattr(layer, name, value)
        return
    with block():
        for name, value in values.items():
            setattr(layer, name, value)
    layer.refresh()


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


class _CloseGuard(QObject):
    """Event filter on napari's main window: closing with unsaved work asks first."""

    def __init__(self, widget: SpineAnnotationWidget) -> None:
        super().__init__(widget)
        self.widget = widget

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Close and not self.widget.may_close():
            event.ignore()
            return True
        return False


class SpineAnnotationWidget(QWidget):
    """Dock widget for guided six-point annotation with live measurements.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer; films are its image layers opened by this plugin's reader (they carry
        the :class:`~spine_measure.io.radiograph.Radiograph` in ``metadata``).
    ask : bool
        Ask with dialogs (recover an autosave? replace a newer file?); False: never ask,
        never recover or replace (tests).
    reader : str, optional
        Reader id written into the annotation files (default: the one typed last time,
        remembered in the Qt settings).
    annotations_dir : path-like, optional
        Folder for annotation and autosave files (default: beside each film). For films in
        a read-only folder (a PACS export, a CD).
    """

    def __init__(self, napari_viewer: Any, *, ask: bool = True,
                 reader: str | None = None,
                 annotations_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.ask = ask  # False in tests: no modal dialogs
        remembered = _settings().value("reader", "", type=str) or None
        self.reader = reader or remembered
        self.annotations_dir: Path | None = None if annotations_dir is None \
            else Path(annotations_dir)
        self.controller: AnnotationController | None = None
        self._controllers: dict[str, AnnotationController] = {}
        self._image_layer: Any = None
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()  # visibility followed
        self._switching = False
        self._keys: list[tuple[str, str]] = []
        self._syncing = False
        self._placing = True
        self.last_refresh_ms = float("nan")
        self._cache: dict[str, Any] = {}
        self._refused: dict[str, str] = {}  # level -> why it is not measured
        self.landmarks_layer: Any = None
        self.endplates_layer: Any = None
        self.preview_layer: Any = None
        self.labels_layer: Any = None
        self.calibration_layer: Any = None
        self.cement_layer: Any = None
        self._cement_features_key: tuple[Any, Any, str] | None = None  # mask, inputs, text
        self._segment = cement_segmenter()
        self._error: str | None = None  # the last refused action, until the next one
        # a drag redraws at most every DRAG_REDRAW_MS (the timer catches the last move)
        self._dragging = False
        self._drag_pending = False  # the controller changed since the last full redraw
        self._last_drag_redraw = 0.0
        self._drag_timer = QTimer(self)
        self._drag_timer.setSingleShot(True)
        self._drag_timer.timeout.connect(self._drag_redraw)
        self._build_ui()
        self._bind_keys()
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        self.viewer.layers.events.removed.connect(self._films_changed)
        self.viewer.layers.selection.events.active.connect(self._show_cement_layer)
        prefer_this_reader()
        if _settings().value("reading_mode", False, type=bool):
            self.set_reading_mode(True)
        self._close_guard = _CloseGuard(self)
        qt_window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if qt_window is not None:
            qt_window.installEventFilter(self._close_guard)
        self._films_changed()

    # ================================================================== UI
    def _build_ui(self) -> None:
        self.setMinimumWidth(520)
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)

        film_row = QHBoxLayout()
        film_row.addWidget(QLabel("Film"))
        self.film_combo = QComboBox()
        self.film_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.film_combo.currentIndexChanged.connect(self._film_selected)
        film_row.addWidget(self.film_combo, 1)
        root.addLayout(film_row)

        session_row = QHBoxLayout()
        session_row.addWidget(QLabel("Reader"))
        self.reader_edit = QLineEdit(self.reader or "")
        self.reader_edit.setPlaceholderText("your reader id (saved in the files)")
        self.reader_edit.setToolTip("Written into every annotation you save; remembered "
                                    "between sessions")
        self.reader_edit.editingFinished.connect(
            lambda: self.set_reader(self.reader_edit.text()))
        session_row.addWidget(self.reader_edit, 1)
        self.folder_button = QPushButton("Annotations folder…")
        self.folder_button.setToolTip("Where annotations and autosaves go (default: beside "
                                      "each film); needed for a read-only folder or a CD")
        self.folder_button.clicked.connect(self._choose_annotations_dir)
        session_row.addWidget(self.folder_button)
        root.addLayout(session_row)

        # problems the reader must see (read-only session, autosave impossible ...)
        self.notice_label = QLabel("")
        self.notice_label.setWordWrap(True)
        self.notice_label.setStyleSheet("padding: 4px; border-radius: 4px; "
                                        "background: #4a2424; color: #ffd0cc;")
        self.notice_label.hide()
        root.addWidget(self.notice_label)

        self.calibration_label = QLabel("")
        self.calibration_label.setWordWrap(True)
        root.addWidget(self.calibration_label)

        # display only (measurements and cement read the film's values, never the screen)
        view_row = QHBoxLayout()
        view_row.addWidget(QLabel("Window"))
        self.window_buttons: dict[str, QPushButton] = {}
        for name, tip in (("film", "the film's own window (DICOM)"),
                          ("bone", "bone and soft tissue"),
                          ("cement", "the densest 3 %: the inside of the cement")):
            b = QPushButton(name.capitalize())
            b.setToolTip(f"Contrast: {tip}. Right-drag on the film: left/right = width, "
                         "up/down = level")
            b.clicked.connect(lambda _=False, n=name: self.set_window(n))
            self.window_buttons[name] = b
            view_row.addWidget(b)
        view_row.addStretch(1)
        self.reading_button = QPushButton("Reading mode")
        self.reading_button.setCheckable(True)
        self.reading_button.setToolTip("Hide napari's layer list and layer controls")
        self.reading_button.toggled.connect(self.set_reading_mode)
        view_row.addWidget(self.reading_button)
        root.addLayout(view_row)

        # next point, big and unmistakable
        self.prompt_label = QLabel("Open a film")
        f = QFont()
        f.setPointSize(f.pointSize() + 3)
        f.setBold(True)
        self.prompt_label.setFont(f)
        self.prompt_label.setWordWrap(True)
        self.prompt_label.setStyleSheet("padding: 6px; border-radius: 4px; "
                                        "background: #3a3320; color: #ffd27a;")
        root.addWidget(self.prompt_label)

        tabs = QTabWidget()
        tabs.addTab(self._landmarks_tab(), "Landmarks")
        tabs.addTab(self._findings_tab(), "Findings")
        tabs.addTab(self._calibration_cement_tab(), "Calibration · cement")
        self.review_panel = ReviewPanel(self)  # proposals: propose, review, refine clicks
        tabs.addTab(self.review_panel, "Proposals")
        tabs.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        root.addWidget(tabs)
        self.tabs = tabs

        table_box = QGroupBox("Measurements")
        tl = QVBoxLayout(table_box)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.setAlternatingRowColors(True)
        self.table.setStyleSheet("QTableWidget { alternate-background-color: #2b3138; "
                                 "background-color: #22272e; color: #e8eef2; }")
        self.table.setMinimumHeight(340)
        self.table.setWordWrap(False)
        small = QFont(self.table.font())
        small.setPointSizeF(max(small.pointSizeF() - 1.0, 7.0))
        self.table.setFont(small)
        self.table.horizontalHeader().setMinimumSectionSize(20)
        self.table.horizontalHeader().setFont(small)
        self.table.verticalHeader().setFont(small)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._table_menu)
        self.table.horizontalHeader().setContextMenuPolicy(
            Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.horizontalHeader().customContextMenuRequested.connect(self._table_menu)
        self.table.setToolTip("Right-click a vertebra's column: your own Genant grade/shape")
        self.table_box = table_box
        tl.addWidget(self.table)
        # vertebrae whose landmarks describe no vertebra (a drag turned one upside down):
        # kept in the table, with the reason here and in the status line
        self.refused_label = QLabel("")
        self.refused_label.setWordWrap(True)
        self.refused_label.setStyleSheet("color: #ff8a80;")
        self.refused_label.hide()
        tl.addWidget(self.refused_label)
        root.addWidget(table_box, 1)

        file_row = QHBoxLayout()
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Save the annotation file (Shift-S)")
        self.save_button.clicked.connect(lambda: self.save())
        self.load_button = QPushButton("Load…")
        self.load_button.clicked.connect(self._load_dialog)
        file_row.addWidget(self.save_button)
        file_row.addWidget(self.load_button)
        root.addLayout(file_row)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #9aa7b0;")
        root.addWidget(self.status_label)

        # buttons and check boxes never keep the keyboard; after a drop-down choice it goes
        # back to the canvas: the plugin's keys work wherever the reader clicked last
        for b in [*self.findChildren(QPushButton), *self.findChildren(QCheckBox)]:
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for combo in (self.film_combo, self.level_combo, self.direction_combo,
                      self.time_combo, self.genant_grade_combo, self.genant_shape_combo):
            combo.activated.connect(lambda *_: self._focus_canvas())

    def _landmarks_tab(self) -> QWidget:
        w = QWidget()
        lay = QGridLayout(w)
        lay.addWidget(QLabel("Level"), 0, 0)
        self.level_combo = QComboBox()
        self.level_combo.addItems(LEVELS)
        self.level_combo.currentTextChanged.connect(self._level_chosen)
        lay.addWidget(self.level_combo, 0, 1)
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(["then down (caudal)", "then up (cranial)"])
        self.direction_combo.currentIndexChanged.connect(
            lambda i: self._call(self.controller.set_direction, 1 if i == 0 else -1))
        lay.addWidget(self.direction_combo, 0, 2)

        self.mode_button = QPushButton("Placing points (E)")
        self.mode_button.setCheckable(True)
        self.mode_button.setChecked(True)
        self.mode_button.toggled.connect(self.set_placing)
        lay.addWidget(self.mode_button, 1, 0, 1, 3)

        self.skip_button = QPushButton("Skip point (K)")
        self.skip_button.clicked.connect(lambda: self.skip())
        self.nm_button = QPushButton("Not measurable (N)")
        self.nm_button.clicked.connect(lambda: self.mark_not_measurable())
        self.undo_button = QPushButton("Undo (U)")
        self.undo_button.clicked.connect(lambda: self.undo())
        lay.addWidget(self.skip_button, 2, 0)
        lay.addWidget(self.nm_button, 2, 1)
        lay.addWidget(self.undo_button, 2, 2)

        flags = QHBoxLayout()
        self.flag_boxes: dict[str, QCheckBox] = {}
        for flag in FLAGS:
            box = QCheckBox(flag)
            box.toggled.connect(lambda v, fl=flag: self._flag_toggled(fl, v))
            self.flag_boxes[flag] = box
            flags.addWidget(box)
        self.flags_label = QLabel("Flags of —")
        lay.addWidget(self.flags_label, 3, 0)
        lay.addLayout(flags, 3, 1, 1, 2)

        # the reader's own Genant grade / shape of the same vertebra (kept beside the
        # computed one; also: G key, right-click on the table)
        self.genant_label = QLabel("Genant (reader)")
        self.genant_label.setToolTip("Your own Genant grade and shape of this vertebra: "
                                     "saved beside the computed ones (computed = no override)")
        lay.addWidget(self.genant_label, 4, 0)
        self.genant_grade_combo = QComboBox()
        self.genant_grade_combo.addItems([t for t, _ in GENANT_GRADE_CHOICES])
        self.genant_grade_combo.setToolTip("Reader's Genant grade (G key: next grade of the "
                                           "vertebra under the mouse / just finished)")
        self.genant_grade_combo.currentIndexChanged.connect(
            lambda i: self._genant_chosen(grade=GENANT_GRADE_CHOICES[i][1]))
        self.genant_shape_combo = QComboBox()
        self.genant_shape_combo.addItems([t for t, _ in GENANT_SHAPE_CHOICES])
        self.genant_shape_combo.setToolTip("Reader's Genant shape")
        self.genant_shape_combo.currentIndexChanged.connect(
            lambda i: self._genant_chosen(shape=GENANT_SHAPE_CHOICES[i][1]))
        lay.addWidget(self.genant_grade_combo, 4, 1)
        lay.addWidget(self.genant_shape_combo, 4, 2)

        lay.addWidget(QLabel("Time point"), 5, 0)
        self.time_combo = QComboBox()
        self.time_combo.addItems(["from DICOM dates", "preop", "postop", "followup"])
        self.time_combo.currentIndexChanged.connect(
            lambda i: self._call(self.controller.set_time_point,
                                 None if i == 0 else self.time_combo.itemText(i)))
        lay.addWidget(self.time_combo, 5, 1, 1, 2)
        return w

    def _findings_tab(self) -> QWidget:
        w = QWidget()
        form = QFormLayout(w)
        self.finding_combos: dict[str, QComboBox] = {}
        for name, label in _FINDING_FLAGS:
            combo = QComboBox()
            combo.addItems([t for t, _ in _TRI])
            combo.currentIndexChanged.connect(
                lambda i, n=name: self._call(self.controller.set_finding, n, _TRI[i][1]))
            self.finding_combos[name] = combo
            form.addRow(label, combo)
        self.goutallier_combo = QComboBox()
        self.goutallier_combo.addItems(["unknown", "0", "1", "2", "3", "4"])
        self.goutallier_combo.currentIndexChanged.connect(
            lambda i: self._call(self.controller.set_finding, "goutallier_grade",
                                 None if i == 0 else i - 1))
        form.addRow("Goutallier grade (paraspinal fat)", self.goutallier_combo)
        self.fat_spin = QDoubleSpinBox()
        self.fat_spin.setRange(-1, 100)
        self.fat_spin.setSpecialValueText("unknown")
        self.fat_spin.setValue(-1)
        self.fat_spin.setSuffix(" %")
        self.fat_spin.editingFinished.connect(
            lambda: self._call(self.controller.set_finding, "muscle_fat_fraction",
                               None if self.fat_spin.value() < 0
                               else self.fat_spin.value() / 100.0))
        form.addRow("Muscle fat fraction (T1 MR ROI)", self.fat_spin)
        self.hu_spin = QDoubleSpinBox()
        self.hu_spin.setRange(-1001, 3000)
        self.hu_spin.setSpecialValueText("unknown")
        self.hu_spin.setValue(-1001)
        self.hu_spin.editingFinished.connect(self._hu_edited)
        self.hu_label = QLabel("CT HU of the current level")
        form.addRow(self.hu_label, self.hu_spin)
        return w

    def _calibration_cement_tab(self) -> QWidget:
        w = QWidget()
        lay = QGridLayout(w)
        self.draw_cal_button = QPushButton("Draw calibration line")
        self.draw_cal_button.setToolTip("Draw a line over an object of known size (ruler, "
                                        "calibration ball), then type its length")
        self.draw_cal_button.clicked.connect(self._start_calibration_line)
        lay.addWidget(self.draw_cal_button, 0, 0, 1, 2)
        lay.addWidget(QLabel("Known length"), 1, 0)
        self.length_spin = QDoubleSpinBox()
        self.length_spin.setRange(0.1, 1000)
        self.length_spin.setValue(25.0)
        self.length_spin.setSuffix(" mm")
        lay.addWidget(self.length_spin, 1, 1)
        self.apply_cal_button = QPushButton("Apply calibration")
        self.apply_cal_button.clicked.connect(self._apply_drawn_calibration)
        self.clear_cal_button = QPushButton("Use the film's own")
        self.clear_cal_button.clicked.connect(
            lambda: self._call(self.controller.clear_calibration))
        lay.addWidget(self.apply_cal_button, 2, 0)
        lay.addWidget(self.clear_cal_button, 2, 1)

        self.segment_button = QPushButton("Auto-segment cement")
        if self._segment is None:
            self.segment_button.setEnabled(False)
            self.segment_button.setToolTip("spine_measure.cement is not installed")
        else:
            self.segment_button.setToolTip("Find the cement of the vertebra flagged treated; "
                                           "then paint / erase in the 'cement' layer")
        self.segment_button.clicked.connect(lambda: self.auto_segment())
        lay.addWidget(self.segment_button, 3, 0, 1, 2)
        self.cement_label = QLabel("No cement mask")
        self.cement_label.setWordWrap(True)
        lay.addWidget(self.cement_label, 4, 0, 1, 2)
        lay.addWidget(QLabel("Landmark SD"), 5, 0)
        self.uncertainty_spin = QDoubleSpinBox()
        self.uncertainty_spin.setRange(0.0, 10.0)
        self.uncertainty_spin.setSingleStep(0.1)
        self.uncertainty_spin.setDecimals(2)
        self.uncertainty_spin.setSuffix(" mm")
        self.uncertainty_spin.setSpecialValueText("off")
        self.uncertainty_spin.setToolTip(
            "One reader's landmark SD: the table shows every value ± its standard uncertainty "
            "(docs/measurements.md, measurement uncertainty); off = 0")
        self.uncertainty_spin.valueChanged.connect(lambda *_: self._schedule_uncertainty())
        lay.addWidget(self.uncertainty_spin, 5, 1)
        # the uncertainty takes ~0.2 s per film: computed once the landmarks rest, never
        # during a drag (the table follows the mouse without it)
        self._u_timer = QTimer(self)
        self._u_timer.setSingleShot(True)
        self._u_timer.setInterval(UNCERTAINTY_DELAY_MS)
        self._u_timer.timeout.connect(self._fill_uncertainty)
        return w

    def _bind_keys(self, layer: Any = None) -> None:
        """Bind :data:`HOTKEYS` on the viewer, or on one layer (instance keymap: it wins
        over the layer type's own keys)."""
        actions = {
            "K": lambda _: self.skip(),
            # review mode: N rejects the proposal under review, Enter confirms it
            "N": lambda _: self.review_panel.key_n() or self.mark_not_measurable(),
            "Enter": lambda _: self.review_panel.key_enter(),
            "U": lambda _: self.undo(),
            "E": lambda _: self.set_placing(not self._placing_shown()),
            "]": lambda _: self.step_level(1),
            "[": lambda _: self.step_level(-1),
            "F": lambda _: self.flag_here("fractured"),
            "T": lambda _: self.flag_here("treated"),
            "X": lambda _: self.flag_here("excluded"),
            "G": lambda _: self.next_genant_here("grade"),
            "Shift-G": lambda _: self.next_genant_here("shape"),
            "Shift-S": lambda _: self.save(),
        }
        target = self.viewer if layer is None else layer
        for key, fn in actions.items():
            target.bind_key(key, self._guarded(fn), overwrite=True)

    def _guarded(self, fn: Any) -> Any:
        """A key's action; without a session (no film shown) it says so instead of
        raising inside napari's key handling."""

        def run(event: Any) -> Any:
            try:
                return fn(event)
            except SessionError as exc:
                self._status(str(exc), error=True)
                return None

        return run

    def _placing_shown(self) -> bool:
        lay = self.landmarks_layer
        return self._placing and lay is not None and str(lay.mode) == "add"

    def _layer_mode_changed(self, *_: Any) -> None:
        """napari's own keys (Z/4 pan, S/3 select ...) change the landmarks layer's mode:
        the button says what a click does now."""
        lay = self.landmarks_layer
        if lay is None:
            return
        mode = str(lay.mode)
        self._placing = mode == "add"
        self.mode_button.blockSignals(True)
        self.mode_button.setChecked(self._placing)
        self.mode_button.blockSignals(False)
        self.mode_button.setText(
            "Placing points (E)" if mode == "add" else
            "Correcting: drag points (E)" if mode == "select" else
            f"napari mode: {mode.replace('_', ' ')} — press E to place points")

    def _level_under_mouse(self) -> str | None:
        """The annotated vertebra whose body (its four corners) contains the cursor."""
        ctl, lay = self.controller, self.landmarks_layer
        if ctl is None or lay is None:
            return None
        try:
            pos = np.asarray(lay.world_to_data(self.viewer.cursor.position), dtype=float)[-2:]
        except (ValueError, TypeError, IndexError):
            return None
        for level, pts in ctl.points().items():
            if not all(n in pts for n in ("As", "Ps", "Pi", "Ai")):
                continue
            poly = np.array([pts["As"], pts["Ps"], pts["Pi"], pts["Ai"]], dtype=float)
            if _inside(poly, pos):
                return level
        return None

    def flag_here(self, flag: str) -> None:
        """Toggle ``flag`` of the vertebra under the mouse, else of the vertebra just
        finished (the guided sequence goes on where it was)."""
        ctl = self._require()
        level = self._level_under_mouse() or self._flag_level()
        if level is None:
            self._status("no vertebra to flag yet", error=True)
            return
        self._call(ctl.set_flag, level, flag, not ctl.flags(level)[flag])
        if self._error is None:
            ctl.last_message = f"{level} {flag}: {'yes' if ctl.flags(level)[flag] else 'no'}"
            self.refresh()

    def set_genant(self, level: str | None = None, **values: Any) -> str | None:
        """The reader's own Genant ``grade=`` and/or ``shape=`` of ``level`` (default: the
        vertebra the flags apply to); None = the computed value again."""
        ctl = self._require()
        level = level or self._flag_level()
        if level is None:
            self._status("no vertebra to grade yet", error=True)
            return None
        return self._call(ctl.set_genant_reader, level, **values)

    def next_genant_here(self, field: str) -> None:
        """G / Shift-G: the next reader grade (computed, 0, 1, 2, 3, computed ...) or shape
        (computed, none, wedge, biconcave, crush, computed ...) of the vertebra under the
        mouse, else of the vertebra just finished."""
        ctl = self._require()
        level = self._level_under_mouse() or self._flag_level()
        if level is None or not ctl.points(level):
            self._status("no vertebra to grade yet", error=True)
            return
        choices = GENANT_GRADE_CHOICES if field == "grade" else GENANT_SHAPE_CHOICES
        values = [v for _t, v in choices]
        now = ctl.genant_reader(level)[0 if field == "grade" else 1]
        self.set_genant(level, **{field: values[(values.index(now) + 1) % len(values)]})

    def _genant_chosen(self, **values: Any) -> None:
        if not self._syncing and self.controller is not None:
            self.set_genant(**values)

    def _table_menu(self, pos: Any) -> None:
        """Right-click on a vertebra's column of the table: the reader's Genant grade and
        shape of that vertebra."""
        ctl = self.controller
        header = self.table.horizontalHeader()
        j = header.logicalIndexAt(pos.x()) if self.sender() is header \
            else self.table.columnAt(pos.x())
        levels = self._cache.get("table_levels", [])
        if ctl is None or not 0 <= j < len(levels):
            return
        level = levels[j]
        menu = self._genant_menu(ctl, level)
        menu.setObjectName("spine_measure_genant_menu")
        widget = header if self.sender() is header else self.table.viewport()
        menu.exec(widget.mapToGlobal(pos))

    def _genant_menu(self, ctl: AnnotationController, level: str) -> QMenu:
        menu = QMenu(self)
        grade, shape = ctl.genant_reader(level)
        menu.addSection(f"{level}: Genant (reader)")
        for text, value in GENANT_GRADE_CHOICES:
            a = menu.addAction(f"Grade {text.replace('grade: ', '')}")
            a.setCheckable(True)
            a.setChecked(value == grade)
            a.triggered.connect(lambda _=False, v=value: self.set_genant(level, grade=v))
        menu.addSeparator()
        for text, value in GENANT_SHAPE_CHOICES:
            a = menu.addAction(f"Shape {text.replace('shape: ', '')}")
            a.setCheckable(True)
            a.setChecked(value == shape)
            a.triggered.connect(lambda _=False, v=value: self.set_genant(level, shape=v))
        return menu

    # ================================================================== films
    def _film_layers(self) -> list[Any]:
        return [ly for ly in self.viewer.layers
                if ly._type_string == "image" and "radiograph" in ly.metadata]

    def _films_changed(self, *_: Any) -> None:
        layers = self._film_layers()
        for ly in layers:  # the eye icon of the layer list switches films too
            if ly not in self._watched:
                self._watched.add(ly)
                ly.events.visible.connect(lambda _e=None, lay=ly: self._film_visibility(lay))
        names = [ly.name for ly in layers]
        if self._image_layer is not None and self._image_layer not in layers:
            # the film on screen was closed: its session stops receiving clicks
            self._detach()
        if names != [self.film_combo.itemText(i) for i in range(self.film_combo.count())]:
            self.film_combo.blockSignals(True)
            self.film_combo.clear()
            self.film_combo.addItems(names)
            if self._image_layer is not None:
                self.film_combo.setCurrentText(self._image_layer.name)
            self.film_combo.blockSignals(False)
        if names and self._image_layer is None:
            self.set_film(layers[0])

    def _film_visibility(self, layer: Any) -> None:
        """A film shown or hidden with the layer list's eye icon (or ``layer.visible``): the
        session follows the film the reader is looking at, by the same route as the Film
        box (:meth:`set_film`: per-film sessions, unreadable annotations asked about).
        Hiding the film on screen moves to the top visible film; with no film visible no
        session receives clicks until one is shown."""
        if self._switching or layer not in self._film_layers():
            return
        if layer.visible and (layer is not self._image_layer or self.controller is None):
            self.set_film(layer)
        elif not layer.visible and layer is self._image_layer:
            shown = [ly for ly in self._film_layers() if ly.visible]
            if shown:
                self.set_film(shown[-1])  # the top one: what the reader sees
            else:
                self.controller = None  # nothing on screen: clicks go nowhere
                self.prompt_label.setText("No film shown: show one (eye icon in the layer "
                                          "list) or choose it in the Film box")
                self._update_notice()

    def _layer_inserted(self, event: Any) -> None:
        """A layer was added (File > Open, drag and drop, the console). A film opened
        visible becomes the film being annotated; annotation layers stay on top and the
        landmarks layer stays active (done once napari has finished adding the layer)."""
        layer = getattr(event, "value", None)
        self._films_changed()
        if layer is None or layer in self._annotation_layers():
            return
        is_film = layer in self._film_layers()
        QTimer.singleShot(0, lambda: self._after_insert(layer, is_film))

    def _after_insert(self, layer: Any, is_film: bool) -> None:
        if layer not in self.viewer.layers:
            return
        if is_film and layer.visible and layer is not self._image_layer:
            self.set_film(layer)
        self._keep_annotation_layers_on_top()
        if self._placing and self.landmarks_layer in self.viewer.layers:
            self.viewer.layers.selection.active = self.landmarks_layer

    def _annotation_layers(self) -> list[Any]:
        return [ly for ly in (self.cement_layer, self.calibration_layer, self.endplates_layer,
                              self.labels_layer, self.preview_layer, self.landmarks_layer)
                if ly is not None]

    def _keep_annotation_layers_on_top(self) -> None:
        """Every film below every annotation layer (same relative order for both)."""
        layers = self.viewer.layers
        ours = [ly for ly in self._annotation_layers() if ly in layers]
        n = len(layers)
        if [layers[i] for i in range(n - len(ours), n)] == ours:
            return
        for ly in ours:  # in order: each one goes to the top
            layers.move(layers.index(ly), len(layers))

    def _film_selected(self, *_: Any) -> None:
        name = self.film_combo.currentText()
        layer = next((ly for ly in self._film_layers() if ly.name == name), None)
        if layer is not None and (layer is not self._image_layer or self.controller is None):
            self.set_film(layer)

    def _detach(self) -> None:
        """No film: no session receives clicks."""
        self.controller = None
        self._image_layer = None
        self.prompt_label.setText("Open a film")
        self._update_notice()

    def set_film(self, image_layer: Any) -> AnnotationController | None:
        """Annotate the film of ``image_layer``.

        The session always belongs to the film on screen: the previous one is detached
        first, so a film whose annotation cannot be read never receives the previous film's
        clicks. Its annotation file is loaded when there is one; an unreadable one (corrupt,
        newer schema, another image) opens read-only or, when the reader chooses, as an empty
        session with the unreadable file kept and backed up; an autosave is offered."""
        from napari_spine_measure._reader import decode_film_layer

        try:  # a film of a folder is decoded when it is first shown
            radiograph = decode_film_layer(image_layer)
        except SpineMeasureError as exc:
            self._status(f"cannot show this film: {exc}", error=True)
            if self._image_layer is not None and self.film_combo.currentText() != \
                    self._image_layer.name:  # the Film box goes back to the film on screen
                self.film_combo.blockSignals(True)
                self.film_combo.setCurrentText(self._image_layer.name)
                self.film_combo.blockSignals(False)
            return None
        key = radiograph.metadata.path
        self.controller = None  # nothing may reach the previous film's session any more
        self._image_layer = image_layer
        self._switching = True  # hiding the other films is part of this switch
        try:
            for ly in self._film_layers():
                ly.visible = ly is image_layer
        finally:
            self._switching = False
        if self.film_combo.currentText() != image_layer.name:
            self.film_combo.blockSignals(True)
            self.film_combo.setCurrentText(image_layer.name)
            self.film_combo.blockSignals(False)
        ctl = self._controllers.get(key)
        if ctl is None:
            ctl = self._open_session(radiograph)
            self._controllers[key] = ctl
        if ctl.reader is None and self.reader:
            ctl.reader = self.reader
        self.controller = ctl
        self._ensure_layers()
        self._keep_annotation_layers_on_top()
        self.refresh(force_points=True)
        self._update_notice()
        return ctl

    def _open_session(self, radiograph: Any) -> AnnotationController:
        ctl = AnnotationController.from_radiograph(
            radiograph, reader=self.reader, annotations_dir=self.annotations_dir,
            load_existing=False)
        ctl.subscribe(lambda c=ctl: self._controller_changed(c))
        path = ctl.annotation_path
        source = path
        if path is not None and not path.is_file() and self.annotations_dir is not None:
            side = sidecar_path(radiograph.metadata.path)
            source = side if side.is_file() else None  # read beside the film, save here
        if source is not None and source.is_file():
            try:
                ctl.load(source)
            except (SpineMeasureError, ValueError, OSError) as exc:
                ctl.annotation_path = source
                self._unreadable(ctl, exc)
            else:
                ctl.annotation_path = path
                if ctl.read_only is None:
                    ctl.last_message = f"loaded {source.name} (revision {ctl.revision})"
                    ctl.resume()  # next unannotated level
        if ctl.read_only is None and ctl.recovery_available() and self._confirm(
                "Recover unsaved work?",
                f"An autosave of {Path(radiograph.metadata.path).name} exists (a session "
                "ended without saving). Recover it?"):
            try:
                ctl.recover()
            except SessionError as exc:  # the autosave is kept as it is
                ctl.last_message = f"not recovered: {exc}"
        return ctl

    def _unreadable(self, ctl: AnnotationController, exc: Exception) -> None:
        """The film's annotation file cannot be read: read-only, or start over with the
        file kept untouched and backed up (the reader chooses; without asking: read-only)."""
        reason = str(exc)
        name = ctl.annotation_path.name if ctl.annotation_path else "the annotation"
        choice = self._choose(
            "Annotation cannot be read",
            f"The annotation of this film cannot be read:\n\n{reason}\n\n"
            f"{name} will not be changed. Open the film read-only (nothing can be placed "
            "or saved), or start an empty annotation (the unreadable file is copied to a "
            "backup first, and replaced only when you save)?",
            [("start", "Start over (keep a backup)"), ("read_only", "Open read-only")],
            default="read_only")
        if choice == "start":
            try:
                backup = ctl.start_over()
            except SessionError as err:
                ctl.open_read_only(f"{reason}; {err}")
            else:
                ctl.last_message = (f"{name} could not be read ({reason}); started over, "
                                    f"the file is kept as {backup.name}")
                return
        else:
            ctl.open_read_only(reason)

    def _controller_changed(self, ctl: AnnotationController) -> None:
        if ctl is not self.controller:
            return
        if self._dragging:  # coalesced: a redraw at most every DRAG_REDRAW_MS
            self._drag_pending = True
            wait = DRAG_REDRAW_MS - (time.perf_counter() - self._last_drag_redraw) * 1000.0
            if wait <= 0:
                self._drag_redraw()
            elif not self._drag_timer.isActive():
                self._drag_timer.start(max(1, math.ceil(wait)))
            return
        self.refresh()
        self._update_notice()

    def _drag_redraw(self) -> None:
        """One redraw during a drag: the moved point, endplates, labels and table."""
        self._drag_timer.stop()
        self._last_drag_redraw = time.perf_counter()
        if self._dragging:
            self.refresh(light=True)

    def _update_notice(self) -> None:
        ctl = self.controller
        lines = []
        if ctl is not None and ctl.read_only is not None:
            lines.append(f"Read-only: {ctl.read_only}")
        if ctl is not None and ctl.autosave_error is not None:
            lines.append(ctl.autosave_error.capitalize())
        elif ctl is not None and ctl.annotation_path is not None \
                and ctl.read_only is None and not _writable(ctl.annotation_path.parent):
            lines.append(f"{ctl.annotation_path.parent} is read-only: annotations cannot be "
                         "saved there. Choose an annotations folder.")
        self.notice_label.setText("\n".join(lines))
        self.notice_label.setVisible(bool(lines))

    def set_window(self, preset: str) -> None:
        """Contrast of the film on screen: ``film``, ``bone`` or ``cement`` (display only)."""
        if self._image_layer is None:
            return
        from napari_spine_measure._reader import window_preset

        lo, hi = window_preset(self._image_layer.metadata["radiograph"], preset)
        self._set_contrast(lo, hi)

    def _set_contrast(self, lo: float, hi: float) -> None:
        layer = self._image_layer
        rng = layer.contrast_limits_range
        if lo < rng[0] or hi > rng[1]:
            layer.contrast_limits_range = (min(lo, rng[0]), max(hi, rng[1]))
        layer.contrast_limits = (float(lo), float(hi))

    def set_reading_mode(self, on: bool) -> None:
        """Reading mode: napari's layer list and layer controls hidden (the film, the widget
        and the plugin's keys only)."""
        qt_viewer = getattr(getattr(self.viewer, "window", None), "_qt_viewer", None)
        for name in ("dockLayerList", "dockLayerControls"):
            dock = getattr(qt_viewer, name, None)
            if dock is not None:
                dock.setVisible(not on)
        if self.reading_button.isChecked() != bool(on):
            self.reading_button.blockSignals(True)
            self.reading_button.setChecked(bool(on))
            self.reading_button.blockSignals(False)
        _settings().setValue("reading_mode", bool(on))

    def _window_level_drag(self, event: Any) -> Any:
        """Right-drag: horizontal = window width, vertical = level (centre), as on a PACS
        workstation; on the film's modality values, display only."""
        layer = self._image_layer
        lo, hi = layer.contrast_limits
        rng = layer.contrast_limits_range
        span = max(float(rng[1] - rng[0]), 1e-6)
        x0, y0 = np.asarray(event.pos, dtype=float)[:2]
        yield
        while event.type == "mouse_move":
            x, y = np.asarray(event.pos, dtype=float)[:2]
            centre = (lo + hi) / 2.0 - (y - y0) * span / 500.0
            width = max((hi - lo) + (x - x0) * span / 500.0, span / 1000.0)
            self._set_contrast(centre - width / 2.0, centre + width / 2.0)
            yield

    def set_reader(self, reader: str | None) -> None:
        """Reader id written into the annotations saved from now on (remembered)."""
        reader = (reader or "").strip() or None
        self.reader = reader
        _settings().setValue("reader", reader or "")
        for ctl in self._controllers.values():
            ctl.reader = reader
        if self.reader_edit.text() != (reader or ""):
            self.reader_edit.setText(reader or "")

    def set_annotations_dir(self, folder: str | os.PathLike[str] | None) -> None:
        """Save annotations and autosaves of this session's films in ``folder`` (the films'
        own folders when None). Films already open keep their unsaved work, which is now
        saved and autosaved there."""
        self.annotations_dir = None if folder is None else Path(folder)
        for film, ctl in self._controllers.items():
            if ctl.read_only is not None:
                continue
            side = sidecar_path(film)
            ctl.annotation_path = side if self.annotations_dir is None \
                else self.annotations_dir / side.name
            ctl.autosave_error = None
            if ctl.dirty:
                ctl.autosave()
        where = str(self.annotations_dir) if self.annotations_dir else "beside each film"
        self.folder_button.setToolTip(f"Annotations and autosaves go to: {where}")
        self._status(f"annotations and autosaves now go to {where}")
        self._update_notice()

    def _choose_annotations_dir(self) -> None:
        start = str(self.annotations_dir or Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Annotations folder", start)
        if folder:
            self.set_annotations_dir(folder)

    def _ensure_layers(self) -> None:
        scale = tuple(self._image_layer.scale)
        units = tuple(self._image_layer.units)  # given at creation: no mixed-units warning
        rows, cols = self._image_layer.data.shape[:2]
        if self.cement_layer is None or self.cement_layer not in self.viewer.layers:
            self.cement_layer = self.viewer.add_labels(
                np.zeros((rows, cols), dtype=np.uint8), name="cement", scale=scale, units=units,
                opacity=0.45)
            self.cement_layer.events.paint.connect(self._cement_painted)
        if self.calibration_layer is None or self.calibration_layer not in self.viewer.layers:
            self.calibration_layer = self.viewer.add_shapes(
                name="calibration line", scale=scale,
                units=units, edge_color="#ffb347", edge_width=2,
                shape_type="line")
        if self.endplates_layer is None or self.endplates_layer not in self.viewer.layers:
            # endplate polylines as segments of a Vectors layer: cheap to redraw while a
            # point is dragged (a Shapes layer re-triangulates every path, ~50 ms)
            self.endplates_layer = self.viewer.add_vectors(
                np.zeros((0, 2, 2)), name="endplates", scale=scale, units=units, edge_width=1.6,
                vector_style="line", opacity=0.95)
        if self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            self.labels_layer = self.viewer.add_points(
                np.zeros((0, 2)), name="levels", scale=scale, units=units, size=1,
                face_color="transparent", border_color="transparent", border_width=0,
                text={"string": "{label}", "size": 11, "color": "#e8eef2"},
                features={"label": np.array([], dtype=str),
                          "colour": np.array([], dtype=str)})
        if self.preview_layer is None or self.preview_layer not in self.viewer.layers:
            self.preview_layer = self.viewer.add_points(
                np.zeros((0, 2)), name="next point", scale=scale,
                units=units, symbol="ring", size=14,
                face_color="#ffc24d", border_width=0,
                text={"string": "{name}", "size": 9, "color": "#ffc24d",
                      "anchor": "upper_left", "translation": (-10, 8)},
                features={"name": np.array([], dtype=str)})
        if self.landmarks_layer is None or self.landmarks_layer not in self.viewer.layers:
            # a click adds a point styled as the vertebra being placed (napari gives it the
            # layer's current colours and feature defaults): nothing to restyle afterwards
            self.landmarks_layer = self.viewer.add_points(
                np.zeros((0, 2)), name="landmarks", scale=scale,
                units=units, size=7, border_width=0.1,
                border_color=READING_BORDER, face_color=_layers.CURRENT_COLOUR,
                features={"level": np.array([], dtype=str), "point": np.array([], dtype=str),
                          "label": np.array([], dtype=str)},
                text={"string": "{label}", "size": 9, "color": "#ffd27a",
                      "anchor": "upper_left", "translation": (-5, 5)})
            self.landmarks_layer.events.data.connect(self._landmarks_data_event)
            self.landmarks_layer.events.mode.connect(self._layer_mode_changed)
            self.landmarks_layer.mouse_drag_callbacks.append(self._drag_point)
        for ly in (self.endplates_layer, self.labels_layer, self.preview_layer,
                   self.landmarks_layer):
            # these layers lie on the film, so their points never change the viewer's
            # dims: napari's dims update after each of their data changes (twice a change,
            # a few ms each) is not needed
            ly.events.data.disconnect(self.viewer._on_layers_change)
        for ly in (self.cement_layer, self.calibration_layer, self.endplates_layer,
                   self.labels_layer, self.preview_layer, self.landmarks_layer):
            if tuple(ly.scale) != scale:
                ly.scale = scale
            if tuple(ly.units) != units:
                ly.units = units
        for ly in [*self._annotation_layers(), *self._film_layers()]:
            self._bind_keys(ly)
        self._cache: dict[str, Any] = {}
        if self.cement_layer.data.shape != (rows, cols):
            self.cement_layer.data = np.zeros((rows, cols), dtype=np.uint8)
        self.set_placing(self._placing)

    # ================================================================== actions
    def _require(self) -> AnnotationController:
        if self.controller is None:
            raise SessionError("no film being annotated: open one (File > Open, or the sample "
                               "data) or show one (Film box, eye icon in the layer list)")
        return self.controller

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Forward to the controller; errors become a status message, never a crash."""
        if self._syncing or self.controller is None:
            return None
        self._error = None
        try:
            return fn(*args, **kwargs)
        except (SessionError, SpineMeasureError, ValueError) as exc:
            self._status(str(exc), error=True)
            return None

    def place_point(self, row: float, col: float) -> tuple[str, str] | None:
        """Place the next guided point at ``(row, col)`` pixels (what a click does)."""
        return self._call(self._require().place, row, col)

    def move_point(self, level: str, name: str, row: float, col: float) -> None:
        """Move a placed point (what a drag does)."""
        self._call(self._require().move, level, name, row, col)

    def skip(self) -> str | None:
        """Skip the next point (optional) or mark the vertebra not measurable (required)."""
        return self._call(self._require().skip)

    def mark_not_measurable(self) -> str | None:
        return self._call(self._require().mark_not_measurable)

    def undo(self) -> bool:
        return bool(self._call(self._require().undo))

    def select_level(self, level: str) -> None:
        self._call(self._require().select_level, level)

    def step_level(self, step: int) -> None:
        ctl = self._require()
        level = ctl.level or ("S1" if step < 0 else "C2")
        i = min(max(LEVELS.index(level) + step, 0), len(LEVELS) - 1)
        self.select_level(LEVELS[i])

    def set_flag(self, flag: str, value: bool, level: str | None = None) -> None:
        """Set a flag of ``level`` (default: the current level, else the last annotated)."""
        ctl = self._require()
        self._call(ctl.set_flag, level or self._flag_level(), flag, value)

    def set_finding(self, name: str, value: Any) -> None:
        self._call(self._require().set_finding, name, value)

    def set_time_point(self, time_point: str | None) -> None:
        self._call(self._require().set_time_point, time_point)

    def set_placing(self, placing: bool) -> None:
        """Placing: a click adds the next point. Correcting: drag points to move them."""
        self._placing = bool(placing)
        if self.mode_button.isChecked() != self._placing:
            self.mode_button.blockSignals(True)
            self.mode_button.setChecked(self._placing)
            self.mode_button.blockSignals(False)
        self.mode_button.setText("Placing points (E)" if self._placing
                                 else "Correcting: drag points (E)")
        if self.landmarks_layer is not None:
            self.viewer.layers.selection.active = self.landmarks_layer
            self.landmarks_layer.mode = "add" if self._placing else "select"
            self._layer_mode_changed()
            self._focus_canvas()

    def _focus_canvas(self) -> None:
        """Give the keyboard back to the canvas (after a button or a drop-down choice), so
        the plugin's keys keep working."""
        qt_viewer = getattr(getattr(self.viewer, "window", None), "_qt_viewer", None)
        native = getattr(getattr(qt_viewer, "canvas", None), "native", None)
        if native is not None:
            native.setFocus()

    def calibrate(self, p0: tuple[float, float], p1: tuple[float, float],
                  length_mm: float) -> Any:
        """Reader calibration: the line ``p0``-``p1`` (pixels) is ``length_mm`` long."""
        return self._call(self._require().set_calibration, p0, p1, length_mm)

    def auto_segment(self) -> str | None:
        """Segment the cement of the treated vertebra into the ``cement`` labels layer."""
        ctl = self._require()
        if self._segment is None:
            self._status("automatic cement segmentation is not available", error=True)
            return None
        level = ctl.treated_level()
        if level is None:
            self._status("flag the treated vertebra first (Landmarks tab)", error=True)
            return None
        radiograph = self._image_layer.metadata["radiograph"]
        try:
            seg = self._segment(radiograph.density, ctl.landmarks(), level,
                                ctl.calibration.spacing)
        except (SpineMeasureError, ValueError) as exc:
            self._status(str(exc), error=True)
            return None
        if not seg.found:
            self._status(f"{level}: {seg.reason}", error=True)
            return None
        return self._call(ctl.set_cement_mask, level, seg.mask, source="auto",
                          params_hash=seg.params_hash)

    def save(self, path: str | Path | None = None) -> Path | None:
        """Save the annotation. A file someone else saved since it was loaded is never
        replaced silently: the reader is told who saved it and when, and chooses to save
        this session as a copy, reload theirs, or replace it."""
        ctl = self._require()
        try:
            return ctl.save(path)
        except AnnotationConflictError as exc:
            return self._resolve_conflict(ctl, Path(path) if path else ctl.annotation_path, exc)
        except (SessionError, SpineMeasureError, OSError) as exc:
            self._status(str(exc), error=True)
            return None

    def _resolve_conflict(self, ctl: AnnotationController, target: Path | None,
                          exc: AnnotationConflictError) -> Path | None:
        assert target is not None
        try:
            theirs = load_annotation(target)
            who = theirs.reader or "a reader without a reader id"
            when = format_timestamp(theirs.modified)
            about = f"{who} saved {target.name} at {when} (revision {theirs.revision})"
        except (SpineMeasureError, ValueError, OSError):
            about = f"{target.name} was changed on disk (revision {exc.file_revision})"
        copy = self.copy_path(target)
        text = (f"{about}, after you opened it (you started from revision "
                f"{exc.loaded_revision}).\n\n"
                f"• Save mine as a copy: your work goes to {copy.name}; theirs stays.\n"
                "• Reload theirs: your unsaved changes here are dropped.\n"
                "• Replace: your work replaces theirs (theirs is lost).")
        self._status(f"not saved: {about}", error=True)
        choice = self._choose("Someone else saved this annotation", text,
                              [("copy", "Save mine as a copy"), ("reload", "Reload theirs"),
                               ("replace", "Replace"), ("cancel", "Cancel")],
                              default="cancel")
        try:
            if choice == "copy":
                return ctl.save(copy)
            if choice == "reload":
                ctl.discard_recovery()
                ctl.load(target)
                ctl.resume()
                return None
            if choice == "replace":
                return ctl.save(target, overwrite=True)
        except (SessionError, SpineMeasureError, OSError) as err:
            self._status(str(err), error=True)
        return None

    def copy_path(self, target: Path) -> Path:
        """``X.sm.json`` -> ``X.<reader>-<UTC time>.sm.json`` (a new file beside it)."""
        stem = target.name[: -len(".sm.json")] if target.name.endswith(".sm.json") \
            else target.stem
        who = "".join(c if c.isalnum() or c in "-_" else "_" for c in (self.reader or "copy"))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return target.with_name(f"{stem}.{who}-{stamp}.sm.json")

    def load(self, path: str | Path) -> None:
        """Load an annotation file into the current film's session; unsaved work is kept
        unless the reader agrees to drop it."""
        ctl = self._require()
        if not self._may_drop(ctl, f"Load {Path(path).name}"):
            return
        try:
            ctl.load(path)
        except (SessionError, SpineMeasureError, ValueError, OSError) as exc:
            self._status(f"not loaded: {exc}", error=True)
            return
        ctl.discard_recovery()
        ctl.resume()

    def _may_drop(self, ctl: AnnotationController, action: str) -> bool:
        """True when ``ctl`` has no unsaved work, or the reader chose to save or drop it."""
        if not ctl.dirty:
            return True
        choice = self._choose(
            "Unsaved changes",
            f"{action}: the annotation of this film has unsaved changes (and their undo "
            "history). Save them first?",
            [("save", "Save"), ("discard", "Discard"), ("cancel", "Cancel")],
            default="cancel")
        if choice == "save":
            return self.save() is not None
        if choice == "discard":
            ctl.discard_recovery()
            return True
        return False

    def may_close(self) -> bool:
        """The window may close: no unsaved work, or the reader chose to save or drop it
        (read-only sessions hold none). Without asking, unsaved work stays in the autosave."""
        if not self.ask:
            return True
        for ctl in list(self._controllers.values()):
            if ctl.dirty and ctl.read_only is None:
                name = ctl.image.file_name or "a film"
                prev = self.controller
                self.controller = ctl
                try:
                    if not self._may_drop(ctl, f"Closing the window ({name})"):
                        return False
                finally:
                    self.controller = prev
        return True

    # ================================================================== event plumbing
    def _level_chosen(self, level: str) -> None:
        if not self._syncing and self.controller is not None:
            self.select_level(level)

    def _flag_level(self) -> str | None:
        """The current vertebra once it has a point; before that the one just finished."""
        ctl = self._require()
        if ctl.level is not None and ctl.points(ctl.level):
            return ctl.level
        if ctl.last_completed is not None:
            return ctl.last_completed
        if ctl.level is not None:
            return ctl.level
        pts = ctl.points()
        return max(pts, key=LEVELS.index) if pts else None

    def _flag_toggled(self, flag: str, value: bool) -> None:
        if not self._syncing and self.controller is not None:
            self.set_flag(flag, value)

    def _hu_edited(self) -> None:
        ctl = self.controller
        level = None if ctl is None else self._flag_level()
        if ctl is None or level is None:
            return
        hu = dict(ctl.findings.ct_hu)
        v = self.hu_spin.value()
        if v <= -1001:
            hu.pop(level, None)
        else:
            hu[level] = v
        self.set_finding("ct_hu", hu)

    def _landmarks_data_event(self, event: Any) -> None:
        if self._syncing:
            return
        action = str(getattr(event, "action", ""))
        layer = self.landmarks_layer
        if self.controller is None:
            if action.endswith("ADDED") or action == "added":  # no session: not a landmark
                self._syncing = True
                try:
                    layer.data = layer.data[:-1]
                finally:
                    self._syncing = False
            return
        if action.endswith("ADDING") or action == "adding":
            # the row napari is about to add carries the next point's name already (napari
            # takes the defaults of the point selected last, so they are set here)
            nxt = self.controller.next_point()
            if nxt is not None and not self.review_panel.active:
                layer.feature_defaults = {"level": nxt[0], "point": nxt[1], "label": nxt[1]}
        elif action.endswith("ADDED") or action == "added":
            pos = np.asarray(layer.data[-1], dtype=float)
            if self.place_point(float(pos[0]), float(pos[1])) is None:
                self.refresh(force_points=True)  # refused (read-only, outside): drop it
        elif action.endswith("CHANGED") or action == "changed":
            for i in getattr(event, "data_indices", ()):
                i = int(i)
                if 0 <= i < len(self._keys) and i < len(layer.data):
                    level, name = self._keys[i]
                    r, c = map(float, layer.data[i])
                    self.move_point(level, name, r, c)
        elif action.endswith("REMOVED") or action == "removed":
            self.refresh(force_points=True)  # points are deleted with N / undo, not here

    def _drag_point(self, layer: Any, event: Any) -> Any:
        """Mouse drag on the landmarks layer: a press on an existing point drags that point,
        in placing mode as well (no need to switch with E). napari's own callback of the
        mode (add a point / select and move) is held back for this press, and every mouse
        move goes to the controller, so the endplate lines and the table follow the mouse
        (napari's select-drag reports a move only on release). The release closes the undo
        step: one drag is one undo."""
        if getattr(event, "button", 1) == 2 and self._image_layer is not None:
            mode_cb = layer._drag_modes[layer._mode]
            held = mode_cb in layer.mouse_drag_callbacks
            if held:
                layer.mouse_drag_callbacks.remove(mode_cb)  # no point on a right-drag
            try:
                yield from self._window_level_drag(event)
            finally:
                if held and mode_cb not in layer.mouse_drag_callbacks \
                        and layer._drag_modes[layer._mode] is mode_cb:
                    layer.mouse_drag_callbacks.append(mode_cb)
            return
        ctl = self.controller
        grabbed = None
        mode_cb = None
        if ctl is not None and ctl.read_only is None and str(layer.mode) in ("add", "select") \
                and not event.modifiers:
            idx = layer.get_value(event.position, world=True)
            if idx is not None and 0 <= int(idx) < len(self._keys):
                grabbed = self._keys[int(idx)]
                start = np.asarray(layer.world_to_data(event.position), dtype=float)[-2:]
                origin = np.asarray(layer.data[int(idx)], dtype=float)
                mode_cb = layer._drag_modes[layer._mode]
                if mode_cb in layer.mouse_drag_callbacks:
                    layer.mouse_drag_callbacks.remove(mode_cb)
                else:
                    mode_cb = None
                self._last_drag_redraw = 0.0  # the first move of a drag shows at once
        try:
            yield
            while event.type == "mouse_move":
                if grabbed is not None:
                    self._dragging = True
                    now = np.asarray(layer.world_to_data(event.position), dtype=float)[-2:]
                    r, c = origin + (now - start)
                    self._call(ctl.move, grabbed[0], grabbed[1], float(r), float(c),
                               autosave=False)  # written once, at the release
                yield
        finally:
            if mode_cb is not None and mode_cb not in layer.mouse_drag_callbacks \
                    and layer._drag_modes[layer._mode] is mode_cb:
                layer.mouse_drag_callbacks.append(mode_cb)
            self._dragging = False
            self._drag_timer.stop()
            if self.controller is not None:
                self.controller.end_move()  # may refine the point: redraws when it does
                if self._drag_pending:  # the release shows the final points exactly
                    self.refresh()
                self._update_notice()  # the autosave was written at the release

    def _cement_painted(self, *_: Any) -> None:
        ctl = self.controller
        if ctl is None or self._syncing:
            return
        level = ctl.treated_level() or ctl.level
        if level is None:
            self._status("flag the treated vertebra before painting cement", error=True)
            return
        self._call(ctl.set_cement_mask, level, np.asarray(self.cement_layer.data) > 0,
                   source="edited")

    def _start_calibration_line(self) -> None:
        if self.calibration_layer is None:
            return
        self.calibration_layer.data = []
        self.viewer.layers.selection.active = self.calibration_layer
        self.calibration_layer.mode = "add_line"
        self._status("Draw the line over the object of known size, type its length, "
                     "then Apply calibration")

    def _apply_drawn_calibration(self) -> None:
        layer = self.calibration_layer
        if layer is None or len(layer.data) == 0:
            self._status("draw the calibration line first", error=True)
            return
        line = np.asarray(layer.data[-1], dtype=float)
        self.calibrate(tuple(line[0]), tuple(line[-1]), self.length_spin.value())
        self.set_placing(self._placing)

    def _load_dialog(self) -> None:
        ctl = self._require()
        start = str(ctl.annotation_path.parent) if ctl.annotation_path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Load annotation", start,
                                              "spine_measure annotation (*.sm.json)")
        if path:
            self.load(path)

    def _confirm(self, title: str, text: str) -> bool:
        if not self.ask:
            return False
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def _choose(self, title: str, text: str, choices: list[tuple[str, str]], *,
                default: str) -> str:
        """A question with named buttons; returns the chosen key (``default`` without
        asking, or when the dialog is closed)."""
        if not self.ask:
            return default
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(title)
        box.setText(text)
        buttons = {}
        for key, label in choices:
            role = (QMessageBox.ButtonRole.RejectRole if key == "cancel"
                    else QMessageBox.ButtonRole.AcceptRole)
            buttons[box.addButton(label, role)] = key
            if key == default:
                box.setDefaultButton(next(reversed(buttons)))
        box.setObjectName("spine_measure_question")
        box.exec()
        return buttons.get(box.clickedButton(), default)

    def _status(self, text: str, *, error: bool = False) -> None:
        if error:
            self._error = text  # shown until the next action, not hidden by a redraw
        self.status_label.setText(text)
        style = "color: #ff8a80;" if error else "color: #9aa7b0;"
        if self.status_label.styleSheet() != style:  # a new style sheet re-polishes the label
            self.status_label.setStyleSheet(style)
        if error:
            log.info("%s", text)

    # ================================================================== redraw
    def refresh(self, *, force_points: bool = False, light: bool = False) -> None:
        """Redraw layers, labels and the table from the controller; only what changed is
        handed to napari (each layer change costs napari a re-slice and a redraw).

        ``light``: a redraw during a drag (:meth:`_drag_point`): the moved point, the
        endplates, the level labels and the table follow; the next-point ring, the cement
        summary and the proposal panel wait for the release, which redraws everything."""
        ctl = self.controller
        if ctl is None or self._syncing:
            return
        t0 = time.perf_counter()
        self._syncing = True
        try:
            fm = ctl.measurements()  # once per redraw: table and on-film grades
            self._refused = refused_levels(fm)
            self._refresh_layers(ctl, force_points, fm, light=light)
            self._refresh_controls(ctl)
            self._refresh_table(ctl, fm)
            if not light:
                self._drag_pending = False
                self.review_panel.refresh(ctl)
        finally:
            self._syncing = False
        self.last_refresh_ms = (time.perf_counter() - t0) * 1000.0

    def _refresh_layers(self, ctl: AnnotationController, force_points: bool,
                        fm: Any, *, light: bool = False) -> None:
        data, features, colours, keys = _layers.landmark_arrays(ctl)
        lay = self.landmarks_layer
        # a click: napari already holds the new point where the controller put it, so the
        # data are not assigned again (each assignment redraws the layer)
        same = (len(lay.data) == len(data) and np.allclose(lay.data, data)) if len(data) \
            else len(lay.data) == 0
        # point names only on the vertebra being annotated: the rest stays uncluttered
        features["label"] = [p if lv == ctl.level else ""
                             for lv, p in zip(features["level"], features["point"], strict=True)]
        # proposals hollow, with their confidence (_review.py)
        colours, borders, widths, features["label"] = self.review_panel.point_style(
            ctl, keys, colours, features["label"])
        todo: dict[str, Any] = {}
        if force_points or not same:
            if len(lay.data) != len(data):
                self._cache.pop("point_style", None)  # napari styled new rows its way
            todo["data"] = data
        # the style is handed over only when it changed (a click of a new vertebra, a level
        # switch, proposals), and only the part that changed
        if len(data) and self._changed_cache("point_style", (keys, features["label"],
                                                             colours, borders, widths)):
            if len(lay.data) != len(data) or \
                    list(lay.features.get("label", [])) != list(features["label"]) or \
                    list(lay.features.get("level", [])) != list(features["level"]):
                todo["features"] = features
            for name, value in (("face_color", colours), ("border_color", borders),
                                ("border_width", widths)):
                cur = np.asarray(getattr(lay, name))
                if len(lay.data) != len(data) or cur.shape != np.shape(value) \
                        or not np.allclose(cur, value):
                    todo[name] = value
        _assign(lay, todo)
        self._keys = keys

        # every layer is redrawn only when its content changed: a napari data assignment
        # costs several ms (layer refresh, redraw), too much to do for all on each move
        paths, _kinds, edge = _layers.endplate_paths(ctl)
        segs = [np.stack([p[k], p[k + 1] - p[k]]) for p in paths for k in range(len(p) - 1)]
        seg_colours = [c for p, c in zip(paths, edge, strict=True) for _ in range(len(p) - 1)]
        vec = np.array(segs, dtype=float).reshape(-1, 2, 2)
        if self._changed_cache("endplates", vec):
            todo = {"data": vec}
            if len(vec) and (self._changed_cache("endplate_colours", seg_colours)
                             or len(vec) != len(self.endplates_layer.data)):
                todo["edge_color"] = np.array(seg_colours)
            _assign(self.endplates_layer, todo)

        pos, text = _layers.level_label_points(ctl)
        grades = _layers.grade_labels(fm, [t.split()[0] for t in text],
                                      {lv: ctl.genant_reader(lv) for lv in ctl.points()})
        text = [f"{t} {g}".rstrip() if t.split()[0] not in self._refused
                else f"{t} {REFUSED_MARK} not measured"
                for t, (g, _c) in zip(text, grades, strict=True)]
        text = self.review_panel.level_texts(ctl, text)
        colours = [c for _g, c in grades]
        # level names sit beside the body: moved only when the body moved by >= 8 px, so a
        # drag redraws the endplates and the table, not the labels (the text follows)
        todo = {}
        if self._changed_cache("labels", np.round(pos / 8.0)) or len(pos) != len(
                self.labels_layer.data):
            todo["data"] = pos
            self._cache.pop("label_text", None)
        recolour = self._changed_cache("label_text", (text, colours))
        if recolour:
            todo["features"] = {"label": np.array(text, dtype=str),
                                "colour": np.array(colours, dtype=str)}
        _assign(self.labels_layer, todo)
        if recolour:  # one colour per label (Genant grade); new rows get the plain colour
            self.labels_layer.text.color = {
                "array": np.array([to_rgba(c) for c in colours]).reshape(-1, 4),
                "default": "#e8eef2"}
        if light:
            return  # the ring, the calibration line and the cement wait for the release

        prev = ctl.preview()
        nxt = ctl.next_point()
        if ctl.level != self._cache.get("followed_level", _MISSING):
            self._cache["followed_level"] = ctl.level
            if prev is not None:
                self._follow(prev)
        pv = (np.array([prev]) if prev is not None and nxt is not None else np.zeros((0, 2)),
              [f"next: {nxt[0]} {nxt[1]}"] if prev is not None and nxt is not None else [])
        if self._changed_cache("preview", pv):
            _assign(self.preview_layer, {"data": pv[0],
                                         "features": {"name": np.array(pv[1], dtype=str)}})

        cal = ctl.calibration_line
        if self._changed_cache("calibration", cal):
            if cal is not None:
                self.calibration_layer.data = [np.array([cal.p0, cal.p1])]
                self.calibration_layer.shape_type = ["line"]
            elif self.calibration_layer.mode != "add_line":
                self.calibration_layer.data = []

        level = ctl.treated_level() or ctl.level
        mask = ctl.cement_mask(level) if level else None
        masks = tuple(ctl.cement_mask(lv) for lv in ctl.cement_levels)
        if self._changed_cache("cement", masks):
            cement = np.zeros(self.cement_layer.data.shape, dtype=np.uint8)
            for m in masks:
                cement[m.to_array()] = 1
            if not np.array_equal(cement, self.cement_layer.data):
                self.cement_layer.data = cement
            self._cement_px = int(cement.sum())
        self._show_cement_layer()
        text = "No cement mask"
        if mask is not None and level is not None:
            text = (f"{level}: cement mask, {getattr(self, '_cement_px', 0):,} px "
                    f"({mask.source}); paint or erase in the 'cement' layer to correct\n"
                    + self._cement_features_text(ctl, level, mask))
        self.cement_label.setText(text)

    def _show_cement_layer(self, *_: Any) -> None:
        """The cement layer is shown when there is cement to see or paint: a mask, a
        vertebra flagged treated, or the layer made active to paint. An empty labels layer
        over the whole film would double the cost of drawing every frame (software OpenGL);
        the reader's own eye toggle is kept until this changes."""
        ctl, layer = self.controller, self.cement_layer
        if layer is None or layer not in self.viewer.layers:
            return
        want = layer is self.viewer.layers.selection.active or (
            ctl is not None and (bool(ctl.cement_levels) or ctl.treated_level() is not None))
        if self._changed_cache("cement_visible", want):
            layer.visible = want

    def _follow(self, point: tuple[float, float]) -> None:
        """Auto-pan: when the next point (a new vertebra) is off screen or near its edge,
        centre the view on it; the zoom is kept."""
        camera = getattr(getattr(self.viewer, "scene", None), "camera", None) or \
            self.viewer.camera
        qt_viewer = getattr(getattr(self.viewer, "window", None), "_qt_viewer", None)
        native = getattr(getattr(qt_viewer, "canvas", None), "native", None)
        if native is None or camera.zoom <= 0:
            return
        world = np.asarray(point, dtype=float) * np.asarray(self.landmarks_layer.scale)
        centre = np.asarray(camera.center, dtype=float)[-2:]
        half = np.array([native.height(), native.width()], dtype=float) / 2.0 / camera.zoom
        if np.all(np.abs(world - centre) <= 0.7 * half):
            return
        new = list(camera.center)
        new[-2:] = world.tolist()
        camera.center = tuple(new)

    def _cement_features_text(self, ctl: AnnotationController, level: str, mask: Any) -> str:
        """:func:`cement_summary` of ``level``'s mask, recomputed only when the mask, the
        landmarks or the calibration changed."""
        key = (level, ctl.points(), tuple(sorted(ctl.not_measurable)), ctl.calibration.spacing)
        old = self._cement_features_key
        if old is None or old[0] is not mask or old[1] != key:
            try:
                summary = cement_summary(ctl.cement_features(level))
            except (SpineMeasureError, ValueError) as exc:
                summary = f"features: {exc}"
            self._cement_features_key = (mask, key, summary)
        return self._cement_features_key[2]

    def _changed_cache(self, key: str, value: Any) -> bool:
        """True (and remember ``value``) when ``value`` differs from the last one drawn."""
        old = self._cache.get(key, _MISSING)
        same = old is not _MISSING and _equal(old, value)
        if not same:
            self._cache[key] = value
        return not same

    def _refresh_controls(self, ctl: AnnotationController) -> None:
        self.prompt_label.setText(ctl.prompt())
        if ctl.level is not None:
            self.level_combo.setCurrentText(ctl.level)
        self.direction_combo.setCurrentIndex(0 if ctl.direction == 1 else 1)
        level = self._flag_level()
        self.flags_label.setText(f"Flags of {level or '—'}")
        for flag, box in self.flag_boxes.items():
            box.setChecked(bool(level) and ctl.flags(level)[flag])
            box.setEnabled(level is not None)
        grade, shape = ctl.genant_reader(level) if level else (None, None)
        self.genant_label.setText(f"Genant of {level or '—'} (reader)")
        self.genant_grade_combo.setCurrentIndex(
            [v for _t, v in GENANT_GRADE_CHOICES].index(grade))
        self.genant_shape_combo.setCurrentIndex(
            [v for _t, v in GENANT_SHAPE_CHOICES].index(shape))
        has_points = bool(level) and bool(ctl.points(level))
        self.genant_grade_combo.setEnabled(has_points)
        self.genant_shape_combo.setEnabled(has_points)
        tp = ctl.time_point
        self.time_combo.setCurrentIndex(0 if tp is None else
                                        ["preop", "postop", "followup"].index(tp) + 1)
        fnd = ctl.findings
        for name, combo in self.finding_combos.items():
            value = getattr(fnd, name)
            combo.setCurrentIndex([v for _, v in _TRI].index(value))
        g = fnd.goutallier_grade
        self.goutallier_combo.setCurrentIndex(0 if g is None else g + 1)
        self.fat_spin.setValue(-1 if fnd.muscle_fat_fraction is None
                               else fnd.muscle_fat_fraction * 100.0)
        self.hu_label.setText(f"CT HU of {level or 'the current level'}")
        hu = fnd.ct_hu.get(level) if level else None
        self.hu_spin.setValue(-1001 if hu is None else hu)
        self.undo_button.setEnabled(ctl.can_undo)
        cal = ctl.calibration
        src = _SOURCE_LONG.get(cal.source.value, cal.source.value)
        if cal.spacing is None:
            text = "<b>Uncalibrated</b>: lengths in px (draw a calibration line)"
        else:
            text = (f"Calibration: <b>{src}</b> · {cal.spacing[0]:.4g} × {cal.spacing[1]:.4g}"
                    " mm/px")
        self.calibration_label.setText(text)
        self.calibration_label.setToolTip(cal.detail)
        saved = ("unsaved changes" if ctl.dirty else
                 f"saved, revision {ctl.revision}" if ctl.revision else "not saved yet")
        where = ctl.annotation_path.name if ctl.annotation_path else "no file"
        refused = "; ".join(f"{lv} not measured: {why}" for lv, why in self._refused.items())
        if self._error:
            self._status(self._error, error=True)
        elif refused:  # in red while it lasts (not kept after a fix, not logged per move)
            self.status_label.setText(
                f"{ctl.last_message} · {refused} · {where}: {saved}".strip(" ·"))
            self.status_label.setStyleSheet("color: #ff8a80;")
        else:
            self._status(f"{ctl.last_message} · {where}: {saved}".strip(" ·"))

    def _refresh_table(self, ctl: AnnotationController, fm: Any = None) -> None:
        """The measurement table from ``fm`` (default: measured now). Cells are updated in
        place, and only those whose text, colour or tooltip changed (a drag changes the
        moved vertebra and the ones using it as a reference); rebuilt when proposals mark
        it (:meth:`ReviewPanel.mark_table` restyles cells)."""
        if fm is None:
            fm = ctl.measurements()
        levels = list(fm.vertebrae)
        cal_src = _SOURCE_LONG.get(fm.calibration_source, fm.calibration_source)
        unit = "px" if ctl.calibration.spacing is None else "mm"
        title = f"Measurements · lengths in {unit} ({cal_src})"
        if self.table_box.title() != title:
            self.table_box.setTitle(title)
        t = self.table
        marked = bool(ctl.unconfirmed_levels())
        if marked or self._cache.get("table_marked", False):
            t.clearContents()  # mark_table restyled cells: start afresh
            self._cell_colours: dict[tuple[int, int], str | None] = {}
        self._cache["table_marked"] = marked
        if t.rowCount() != len(TABLE_ROWS):
            t.setRowCount(len(TABLE_ROWS))
        if t.columnCount() != len(levels):
            t.setColumnCount(len(levels))
        headers = []
        flag_tips = []
        for lv in levels:
            fl = ctl.flags(lv)
            # a flag a machine set on a proposal (still unconfirmed) carries "?" and says why
            machine = (dict(ctl.review_of(lv).flag_source)
                       if lv in ctl.unconfirmed_levels() else {})
            marks = "".join(m + ("?" if f in machine else "")
                            for f, m in (("treated", " ●T"), ("fractured", " F"),
                                         ("excluded", " ✕")) if fl[f])
            headers.append(lv + marks)
            flag_tips.append("; ".join(f"{f}: {_FLAG_SOURCE_TEXT.get(src, src)}"
                                       for f, src in sorted(machine.items()) if fl.get(f)))
        shown = [(h.text() if (h := t.horizontalHeaderItem(j)) is not None else None)
                 for j in range(len(levels))]
        if shown != headers:
            t.setHorizontalHeaderLabels(headers)
        for j, tip in enumerate(flag_tips):
            h = t.horizontalHeaderItem(j)
            if h is not None and h.toolTip() != tip:
                h.setToolTip(tip)
        colours = getattr(self, "_cell_colours", None)
        if colours is None:
            colours = self._cell_colours = {}
        labels = []
        # the cells change quietly and the view hears once: every change would otherwise
        # re-measure all columns (ResizeToContents), ~0.5 ms per cell
        model = t.model()
        changed = False
        model.blockSignals(True)
        try:
            for i, (name, label) in enumerate(TABLE_ROWS):
                unit = ""
                if name in _READER_ROWS:  # not measurements: _mark_reader_and_refused
                    labels.append(label)
                    continue
                for j, lv in enumerate(levels):
                    r = fm.vertebrae[lv].get(name)
                    if r is None:
                        if t.item(i, j) is not None:
                            t.takeItem(i, j)
                            changed = True
                        continue
                    unit = r.unit
                    text = _fmt(r.value, r.unit)
                    if name == "genant_shape":
                        text = _SHAPE_SHORT.get(str(r.value), text) if r.value else "—"
                    colour = None
                    if name in ("genant_grade", "genant_shape"):
                        g = fm.vertebrae[lv].get("genant_grade")
                        colour = _layers.grade_colour(None if g is None else g.value)
                    tip = r.reason or ""
                    if r.neighbours:
                        tip = (tip + "; " if tip else "") + f"reference: {', '.join(r.neighbours)}"
                    item = t.item(i, j)
                    if item is None:
                        item = QTableWidgetItem(text)
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter)
                        colours.pop((i, j), None)
                        t.setItem(i, j, item)
                        changed = True
                    elif item.text() != text:
                        item.setText(text)
                        changed = True
                    if colours.get((i, j)) != colour:
                        colours[(i, j)] = colour
                        item.setData(Qt.ItemDataRole.ForegroundRole,
                                     None if colour is None else QColor(colour))
                        changed = True
                    if item.toolTip() != tip:
                        item.setToolTip(tip)
                u = _UNIT_TEXT.get(unit, unit)
                labels.append(f"{label}" + (f" ({u})" if u and unit not in ("grade",) else ""))
        finally:
            model.blockSignals(False)
        if changed and t.rowCount() and t.columnCount():
            model.dataChanged.emit(model.index(0, 0),
                                   model.index(t.rowCount() - 1, t.columnCount() - 1))
        shown = [(h.text() if (h := t.verticalHeaderItem(i)) is not None else None)
                 for i in range(len(labels))]
        if shown != labels:
            t.setVerticalHeaderLabels(labels)
        self._mark_reader_and_refused(ctl, levels)
        self.review_panel.mark_table(ctl, fm, [name for name, _label in TABLE_ROWS])
        self._schedule_uncertainty()

    def _mark_reader_and_refused(self, ctl: AnnotationController, levels: list[str]) -> None:
        """The table's reader rows (the reader's own Genant grade and shape, from the
        annotation) and the vertebrae not measured: ``⚠`` in red in the header, the reason
        in its tooltip and under the table."""
        t = self.table
        self._cache["table_levels"] = levels
        rows = {name: i for i, (name, _label) in enumerate(TABLE_ROWS) if name in _READER_ROWS}
        for j, lv in enumerate(levels):
            own = ctl.genant_reader(lv)
            for name, i in rows.items():
                value = own[_READER_ROWS[name]]
                text = "—" if value is None else (
                    _SHAPE_SHORT.get(str(value), str(value))
                    if name == "genant_shape_reader" else str(value))
                item = t.item(i, j)
                if item is None:
                    item = QTableWidgetItem(text)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                    item.setToolTip("your own value (—: none, the computed one stands); "
                                    "right-click to change")
                    t.setItem(i, j, item)
                elif item.text() != text:
                    item.setText(text)
                item.setData(Qt.ItemDataRole.ForegroundRole, None if own[0] is None
                             else QColor(_layers.grade_colour(own[0])))
        refused = self._refused
        for j, lv in enumerate(levels):
            h = t.horizontalHeaderItem(j)
            if h is None:
                continue
            if lv in refused:
                h.setText(f"{h.text()} {REFUSED_MARK}")
                h.setForeground(QColor("#ff8a80"))
                tip = h.toolTip()
                h.setToolTip(f"{lv} not measured: {refused[lv]}" + (f"; {tip}" if tip else ""))
            elif h.data(Qt.ItemDataRole.ForegroundRole) is not None:
                # measured again (header items are reused): drop the red and the reason
                h.setData(Qt.ItemDataRole.ForegroundRole, None)
                tip = h.toolTip()
                if " not measured: " in tip:
                    h.setToolTip(tip.split("; ", 1)[1] if "; " in tip else "")
        self.refused_label.setText("\n".join(f"{REFUSED_MARK} {lv} not measured: {why}"
                                             for lv, why in refused.items()))
        self.refused_label.setVisible(bool(refused))

    def _schedule_uncertainty(self) -> None:
        """(Re)start the delay after which the table gets its "± u" (landmark SD set)."""
        if self.uncertainty_spin.value() > 0 and self.controller is not None:
            self._u_timer.start()
        else:
            self._u_timer.stop()
            if self.controller is not None and any(
                    "±" in (it.text() if (it := self.table.item(i, j)) else "")
                    for i in range(self.table.rowCount())
                    for j in range(self.table.columnCount())):
                self._refresh_table(self.controller)

    def _fill_uncertainty(self) -> None:
        """Append "± u" (first-order standard uncertainty from the landmark SD) to every
        numeric value of the table."""
        from spine_measure.measurements.registry import REGISTRY
        from spine_measure.measurements.uncertainty import (
            LandmarkErrorModel,
            film_uncertainty,
        )

        ctl = self.controller
        sd = self.uncertainty_spin.value()
        if ctl is None or sd <= 0:
            return
        fm = ctl.measurements()
        fu = film_uncertainty(fm, LandmarkErrorModel.isotropic(
            sd, source="napari landmark SD"))
        levels = list(fm.vertebrae)
        for i, (name, _label) in enumerate(TABLE_ROWS):
            if name not in REGISTRY or REGISTRY[name].kind not in ("length", "angle", "ratio"):
                continue
            for j, lv in enumerate(levels):
                item = self.table.item(i, j)
                it = fu.items.get((lv, name))
                if item is None or it is None or "±" in item.text():
                    continue
                if it.ok:
                    item.setText(f"{item.text()} ± {it.u:.1f}")
                elif it.reason and math.isfinite(it.value):
                    tip = item.toolTip()
                    item.setToolTip((tip + "; " if tip else "") + f"no ±: {it.reason}")
