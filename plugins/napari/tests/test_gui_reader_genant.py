"""The reader's own Genant grade and shape, and vertebrae a drag made implausible, in a real
napari window (Xvfb) driven by Qt mouse and key events: the override set from the widget's
drop-downs, the table's right-click menu and the G key, drawn on the film as the reader's,
saved and autosaved, exported by ``measure`` and ``batch`` beside the computed values, and
undone; a vertebra dragged upside down stays in the table with the reason."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from napari_gui import drag, focus_canvas, key, place_level, shown_film, to_canvas
from napari_samples import truth_points
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QContextMenuEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QMenu

from napari_spine_measure._layers import GRADE_COLOURS
from spine_measure.io.annotation import load_annotation

pytestmark = pytest.mark.gui


@pytest.fixture
def window(make_napari_viewer, qtbot, postop_film):
    viewer, widget = shown_film(make_napari_viewer, qtbot, postop_film, size=(1500, 1000))
    widget.select_level("T12")
    for lv in ("T12", "L1", "L2"):
        place_level(qtbot, viewer, widget, postop_film, lv)
    assert widget.controller.level == "L3"
    yield viewer, widget
    widget.ask = False


def _label(widget, level):
    return next(t for t in widget.labels_layer.features["label"] if t.split()[0] == level)


def _cell(widget, row_label, level):
    t = widget.table
    rows = [t.verticalHeaderItem(r).text() for r in range(t.rowCount())]
    cols = [t.horizontalHeaderItem(j).text().split()[0] for j in range(t.columnCount())]
    return t.item(rows.index(row_label), cols.index(level))


def _choose_in_combo(qtbot, combo, text):
    """Open ``combo`` with a mouse click and pick ``text`` in its list with the keyboard."""
    QTest.mouseClick(combo, Qt.MouseButton.LeftButton)
    view = combo.view()
    qtbot.waitUntil(view.isVisible, timeout=2000)
    target = combo.findText(text)
    assert target >= 0, text
    steps = target - combo.currentIndex()
    for _ in range(abs(steps)):
        QTest.keyClick(view, Qt.Key.Key_Down if steps > 0 else Qt.Key.Key_Up)
    QTest.keyClick(view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not view.isVisible(), timeout=2000)


def _right_click_menu(qtbot, widget, level, action_text):
    """Right-click on ``level``'s column of the table, click ``action_text`` in the menu."""
    t = widget.table
    cols = [t.horizontalHeaderItem(j).text().split()[0] for j in range(t.columnCount())]
    j = cols.index(level)
    pos = t.visualRect(t.model().index(0, j)).center()
    chosen: list[str] = []

    def pick():
        menu = QApplication.activePopupWidget()
        if not isinstance(menu, QMenu):
            QTimer.singleShot(20, pick)
            return
        action = next(a for a in menu.actions() if a.text() == action_text)
        chosen.append(menu.actions()[0].text())
        QTest.mouseClick(menu, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         menu.actionGeometry(action).center())

    QTimer.singleShot(20, pick)
    # a right button click on the cell; the window system then sends the context-menu
    # event (QTest's synthetic clicks bypass it, so it is sent here as xcb would)
    QTest.mouseClick(t.viewport(), Qt.MouseButton.RightButton,
                     Qt.KeyboardModifier.NoModifier, pos)
    QApplication.sendEvent(t.viewport(), QContextMenuEvent(
        QContextMenuEvent.Reason.Mouse, pos, t.viewport().mapToGlobal(pos)))
    qtbot.waitUntil(lambda: bool(chosen), timeout=3000)
    return chosen[0]


def test_reader_genant_override_drawn_saved_exported_and_undone(window, qtbot, capsys,
                                                                postop_film, tmp_path):
    viewer, widget = window
    ctl = widget.controller
    film = postop_film
    fm = ctl.measurements()
    computed = {lv: (fm.get(lv, "genant_grade").value, fm.get(lv, "genant_shape").value)
                for lv in ("T12", "L1", "L2")}
    assert widget.genant_label.text() == "Genant of L2 (reader)"  # the vertebra just done

    # drop-down: L2 grade 3 (severe) by the reader; the shape stays computed
    _choose_in_combo(qtbot, widget.genant_grade_combo, "3 severe")
    assert ctl.genant_reader("L2") == (3, None)
    shape = computed["L2"][1] if computed["L2"][1] != "none" else ""
    assert _label(widget, "L2") == f"L2 G3 {shape}".rstrip() + " (reader)"
    i = [t.split()[0] for t in widget.labels_layer.features["label"]].index("L2")
    assert widget.labels_layer.features["colour"][i] == GRADE_COLOURS[3]
    # the table shows both: the computed grade and the reader's
    assert _cell(widget, "Genant grade", "L2").text() == str(computed["L2"][0])
    assert _cell(widget, "Grade (reader)", "L2").text() == "3"
    assert _cell(widget, "Shape (reader)", "L2").text() == "—"
    auto = json.loads(ctl.autosave_path.read_text())
    assert auto["genant"] == {"L2": [3, None]}  # autosaved at once

    # the table's right-click menu: L1 shape biconcave
    header = _right_click_menu(qtbot, widget, "L1", "Shape biconcave")
    assert header == "L1: Genant (reader)"
    assert ctl.genant_reader("L1") == (None, "biconcave")
    assert _cell(widget, "Shape (reader)", "L1").text() == "bicon."

    # G with the mouse over T12: its grade goes computed -> 0, which means shape none
    p = truth_points(film, "T12")
    centre = np.mean([p[n] for n in ("As", "Ps", "Pi", "Ai")], axis=0)
    canvas = viewer.window._qt_viewer.canvas.native
    QTest.mouseMove(canvas, to_canvas(viewer, widget.landmarks_layer, *centre))
    qtbot.wait(20)
    key(qtbot, viewer, "G")
    assert ctl.genant_reader("T12") == (0, "none")
    assert "shape none" in widget.status_label.text()
    assert _label(widget, "T12") == "T12 G0 (reader)"
    # Shift-G: the shape goes none -> wedge, so the grade 0 is computed again; U undoes it
    key(qtbot, viewer, "G", Qt.KeyboardModifier.ShiftModifier)
    assert ctl.genant_reader("T12") == (None, "wedge")
    assert "grade computed again" in widget.status_label.text()
    key(qtbot, viewer, "U")
    assert ctl.genant_reader("T12") == (0, "none")
    assert ctl.level == "L3" and ctl.next_point() == ("L3", "As")  # the sequence goes on

    # saved with Shift-S: the file keeps the reader's values beside the points
    key(qtbot, viewer, "S", Qt.KeyboardModifier.ShiftModifier)
    assert not ctl.dirty
    ann = load_annotation(ctl.annotation_path)
    got = {v.level: (v.genant_grade_reader, v.genant_shape_reader) for v in ann.landmarks}
    assert got == {"T12": (0, "none"), "L1": (None, "biconcave"), "L2": (3, None)}

    # the chain: `measure` and `batch` on the film export reader and computed side by side
    from spine_measure.cli import main

    capsys.readouterr()
    assert main(["measure", str(film), "--json", "--no-cement"]) == 0
    rows = {d["level"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())
            if d.get("level")}
    for lv, (g, s) in got.items():
        assert (rows[lv]["genant_grade_reader"], rows[lv]["genant_shape_reader"]) == (g, s)
        assert (rows[lv]["genant_grade"], rows[lv]["genant_shape"]) == computed[lv]
    out = tmp_path / "out"
    assert main(["batch", str(film.parent), "--out", str(out), "--no-progress",
                 "--no-overlays"]) == 0
    long = {r["level"]: r for r in csv.DictReader((out / "measurements_long.csv").open())
            if r["level"]}
    for lv, (g, s) in got.items():
        assert (long[lv]["genant_grade_reader"], long[lv]["genant_shape_reader"]) == \
            ("" if g is None else str(g), s or "")
        assert long[lv]["genant_grade"] == str(computed[lv][0])

    # undo, one step at a time: T12's grade, then L1's shape, then L2's grade
    focus_canvas(qtbot, viewer)
    key(qtbot, viewer, "U")
    assert ctl.genant_reader("T12") == (None, None) and _label(widget, "T12") == \
        ("T12" if computed["T12"][0] == 0 else _label(widget, "T12"))
    key(qtbot, viewer, "U")
    assert ctl.genant_reader("L1") == (None, None)
    key(qtbot, viewer, "U")
    assert ctl.genant_reader("L2") == (None, None)
    assert "(reader)" not in " ".join(widget.labels_layer.features["label"])
    assert _cell(widget, "Grade (reader)", "L2").text() == "—"
    assert widget.genant_grade_combo.currentText() == "grade: computed"
    ctl.dirty = False


def test_a_drag_that_makes_a_vertebra_implausible_keeps_it_with_the_reason(window, qtbot):
    viewer, widget = window
    ctl = widget.controller
    lay = widget.landmarks_layer
    p = ctl.points("L1")
    # L1's anterior-inferior corner dragged 30 px above its superior endplate
    drag(qtbot, viewer, lay, p["Ai"], (p["As"][0] - 30, p["Ai"][1]), steps=10)
    assert ctl.points("L1")["Ai"][0] == pytest.approx(p["As"][0] - 30, abs=1.5)
    t = widget.table
    headers = [t.horizontalHeaderItem(j).text() for j in range(t.columnCount())]
    assert headers == ["T12", "L1 ⚠", "L2"]  # still in the table, marked
    why = "its superior and inferior endplates cross"
    assert t.horizontalHeaderItem(1).toolTip() == f"L1 not measured: {why}"
    assert widget.refused_label.isVisible()
    assert widget.refused_label.text() == f"⚠ L1 not measured: {why}"
    assert f"L1 not measured: {why}" in widget.status_label.text()
    assert _label(widget, "L1") == "L1 ⚠ not measured"
    assert _cell(widget, "ha anterior (mm)", "L1").text() == "—"
    assert why in _cell(widget, "ha anterior (mm)", "L1").toolTip()
    # the neighbours are still measured (L1 is no reference for them)
    assert _cell(widget, "ha anterior (mm)", "L2").text() != "—"
    # undo (U): measured again, the notice gone
    key(qtbot, viewer, "U")
    assert ctl.points("L1")["Ai"] == p["Ai"]
    assert [t.horizontalHeaderItem(j).text() for j in range(t.columnCount())] == \
        ["T12", "L1", "L2"]
    assert not widget.refused_label.isVisible()
    assert t.horizontalHeaderItem(1).toolTip() == ""
    assert t.horizontalHeaderItem(1).data(Qt.ItemDataRole.ForegroundRole) is None
    assert "not measured" not in widget.status_label.text()
    assert _cell(widget, "ha anterior (mm)", "L1").text() != "—"
    ctl.dirty = False
