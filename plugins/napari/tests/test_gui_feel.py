"""Feel in a real napari window (Xvfb), by Qt mouse and key events on the canvas: keys with
another layer active, the mode display, flags of the vertebra just finished or under the
mouse, dragging a point while placing and a drag observed mid-way, resume on reopening."""

from __future__ import annotations

import numpy as np
import pytest
from napari_gui import drag, focus_canvas, key, open_film, place_level, shown_film
from napari_samples import truth_points
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

pytestmark = pytest.mark.gui


def test_keys_work_with_another_layer_active(window, qtbot, postop_film):
    viewer, widget = window
    ctl = widget.controller
    widget.select_level("L1")
    # the calibration (shapes) layer active: E is the plugin's, not the ellipse tool
    viewer.layers.selection.active = widget.calibration_layer
    shapes_mode = widget.calibration_layer.mode
    key(qtbot, viewer, "E")
    assert widget.calibration_layer.mode == shapes_mode
    assert widget.landmarks_layer.mode == "select"
    assert widget.mode_button.text().startswith("Correcting")
    key(qtbot, viewer, "E")
    assert widget.landmarks_layer.mode == "add" and widget.mode_button.isChecked()
    # the cement (labels) layer active: ] and [ step the level, not the brush size
    viewer.layers.selection.active = widget.cement_layer
    brush = widget.cement_layer.brush_size
    key(qtbot, viewer, "]")
    assert ctl.level == "L2" and widget.cement_layer.brush_size == brush
    key(qtbot, viewer, "[")
    assert ctl.level == "L1"
    # a film layer active (napari would pan on a click): U still undoes
    viewer.layers.selection.active = widget._image_layer
    key(qtbot, viewer, "U")
    assert ctl.level == "L2"  # the "[" step undone


def test_mode_display_follows_napari_keys_and_drop_downs_give_keys_back(window, qtbot,
                                                                         postop_film):
    viewer, widget = window
    key(qtbot, viewer, "Z")  # napari's pan/zoom key on the points layer
    assert widget.landmarks_layer.mode == "pan_zoom"
    assert "pan zoom" in widget.mode_button.text() and not widget.mode_button.isChecked()
    key(qtbot, viewer, "E")
    assert widget.landmarks_layer.mode == "add"
    assert widget.mode_button.text() == "Placing points (E)"
    # a drop-down choice with the keyboard, then a plugin key goes to the canvas
    combo = widget.level_combo
    combo.setFocus()
    QTest.keyClick(combo, Qt.Key.Key_Down)
    combo.activated.emit(combo.currentIndex())
    qtbot.wait(10)
    level = widget.controller.level
    key(qtbot, viewer, "]")
    assert widget.controller.level != level


def test_flags_go_to_the_vertebra_just_finished_or_under_the_mouse(window, qtbot,
                                                                   postop_film):
    viewer, widget = window
    ctl = widget.controller
    widget.select_level("T12")
    place_level(qtbot, viewer, widget, postop_film, "T12")
    place_level(qtbot, viewer, widget, postop_film, "L1")
    assert ctl.level == "L2" and not ctl.points("L2")
    # just finished: L1 (the sequence stays at L2)
    canvas = viewer.window._qt_viewer.canvas.native
    QTest.mouseMove(canvas, canvas.rect().topLeft())  # cursor off the vertebrae
    viewer.cursor.position = (0.0, 0.0)
    key(qtbot, viewer, "F")
    assert ctl.flags("L1")["fractured"] and ctl.level == "L2"
    assert widget.flags_label.text() == "Flags of L1"
    assert widget.table.horizontalHeaderItem(1).text() == "L1 F"
    # under the mouse: T12
    p = truth_points(postop_film, "T12")
    centre = np.mean([p[n] for n in ("As", "Ps", "Pi", "Ai")], axis=0)
    from napari_gui import to_canvas

    QTest.mouseMove(canvas, to_canvas(viewer, widget.landmarks_layer, *centre))
    qtbot.wait(20)
    key(qtbot, viewer, "T")
    assert ctl.flags("T12")["treated"] and not ctl.flags("L1")["treated"]
    assert ctl.level == "L2" and ctl.next_point() == ("L2", "As")


def test_drag_while_placing_and_table_follows_mid_drag(window, qtbot, postop_film):
    viewer, widget = window
    ctl = widget.controller
    widget.select_level("T12")
    for lv in ("T12", "L1", "L2"):
        place_level(qtbot, viewer, widget, postop_film, lv)
    col = [widget.table.horizontalHeaderItem(j).text().split()[0]
           for j in range(widget.table.columnCount())].index("L1")
    before = widget.table.item(0, col).text()
    ai = tuple(ctl.points("L1")["Ai"])
    seen: list[str] = []
    n_points = len(widget.landmarks_layer.data)

    def mid(k):
        if k % 5 == 0:  # the mouse rests a moment: the table catches up (redraws coalesced)
            qtbot.waitUntil(lambda: widget.table.item(0, col).text() ==
                            f"{ctl.measurements().get('L1', 'ha').value:.1f}", timeout=3000)
        seen.append(widget.table.item(0, col).text())

    # placing mode (no E): the press lands on L1 Ai, the drag moves it 12 px down
    assert widget.landmarks_layer.mode == "add"
    # 20 moves: a long drag keeps following (marking moves handled once froze it after 5)
    drag(qtbot, viewer, widget.landmarks_layer, ai, (ai[0] + 12, ai[1]), steps=20, during=mid)
    assert len(widget.landmarks_layer.data) == n_points  # no point added
    assert ctl.points("L1")["Ai"][0] == pytest.approx(ai[0] + 12, abs=1.5)
    assert seen[2] != before and len(set(seen)) >= 3  # the table moved before the release
    endplates = widget.endplates_layer.data.copy()
    assert ctl.undo()  # one drag, one undo step
    assert ctl.points("L1")["Ai"] == ai
    assert not np.array_equal(widget.endplates_layer.data, endplates)
    # correcting mode: napari's own select-and-drag, observed mid-way as well
    key(qtbot, viewer, "E")
    assert widget.landmarks_layer.mode == "select"
    seen.clear()
    drag(qtbot, viewer, widget.landmarks_layer, ai, (ai[0] - 10, ai[1]), steps=20, during=mid)
    assert ctl.points("L1")["Ai"][0] == pytest.approx(ai[0] - 10, abs=1.5)
    assert seen[2] != before and len(set(seen)) >= 3


def test_reopening_resumes_at_the_next_unannotated_level(make_napari_viewer, qtbot,
                                                         postop_film):
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, postop_film)
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    widget.select_level("T12")
    for lv in ("T12", "L1"):
        place_level(qtbot, viewer, widget, postop_film, lv)
    assert widget.save() is not None
    viewer2 = make_napari_viewer(show=True)
    widget2 = open_film(viewer2, postop_film)
    assert widget2.controller.level == "L2"
    assert widget2.prompt_label.text().startswith("L2 · As")
    prev = widget2.controller.preview()
    assert prev is not None and 0 <= prev[0] < 1008 and 0 <= prev[1] < 500


def test_seven_levels_fit_and_grades_show_on_the_film(make_napari_viewer, qtbot, postop_film):
    """Seven vertebrae clicked: the table shows all seven columns without a horizontal
    scroll bar in the docked widget, and the film shows the fractured vertebra's Genant grade
    and shape in the grade colour (normal ones: the level name alone)."""
    viewer, widget = shown_film(make_napari_viewer, qtbot, postop_film, size=(1500, 1000))
    widget.select_level("T10")
    for lv in ("T10", "T11", "T12", "L1", "L2", "L3", "L4"):
        place_level(qtbot, viewer, widget, postop_film, lv)
    # L1 anterior-superior corner dragged down by 30 % of its anterior height: a wedge
    p = widget.controller.points("L1")
    ha = p["Ai"][0] - p["As"][0]
    drag(qtbot, viewer, widget.landmarks_layer, p["As"], (p["As"][0] + 0.3 * ha, p["As"][1]))
    qtbot.wait(100)
    t = widget.table
    headers = [t.horizontalHeaderItem(j).text() for j in range(t.columnCount())]
    assert t.columnCount() == 7, (headers, widget.status_label.text())
    assert not t.horizontalScrollBar().isVisible()
    fm = widget.controller.measurements()
    worst = max(fm.vertebrae, key=lambda lv: fm.get(lv, "genant_grade").value or 0)
    g = fm.get(worst, "genant_grade").value
    shape = fm.get(worst, "genant_shape").value
    text = list(widget.labels_layer.features["label"])
    colours = list(widget.labels_layer.features["colour"])
    i = [x.split()[0] for x in text].index(worst)
    from napari_spine_measure._layers import GRADE_COLOURS

    assert g >= 1 and text[i] == f"{worst} G{g} {shape}" and colours[i] == GRADE_COLOURS[g]
    from napari_spine_measure._layers import to_rgba

    drawn = np.asarray(widget.labels_layer.text.color.array)
    assert np.allclose(drawn[i], to_rgba(GRADE_COLOURS[g]))
    normal = [x for x in text if
              fm.get(x.split()[0], "genant_grade").value == 0]
    assert normal and all(len(x.split()) == 1 for x in normal)
    row = [t.verticalHeaderItem(r).text() for r in range(t.rowCount())].index("Genant shape")
    col = [t.horizontalHeaderItem(j).text().split()[0] for j in range(7)].index(worst)
    assert t.item(row, col).text() == {"biconcave": "bicon."}.get(shape, shape)
    widget.controller.dirty = False


def _shades(layer, mask) -> float:
    """Share of the masked pixels drawn in the single most common of 256 grey shades."""
    lo, hi = layer.contrast_limits
    v = np.clip((np.asarray(layer.data)[mask] - lo) / (hi - lo), 0, 1)
    if layer.colormap.name == "gray_r":
        v = 1 - v
    counts = np.bincount(np.round(v * 255).astype(int), minlength=256)
    return counts.max() / counts.sum()


def test_window_level_on_modality_values_never_changes_measurements(window, qtbot,
                                                                     postop_film):
    from napari_gui import canvas, to_canvas
    from napari_samples import truth_cement
    from qtpy.QtCore import QEvent, QPointF
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    viewer, widget = window
    film = widget._image_layer
    r = film.metadata["radiograph"]
    c, w = r.window.center, r.window.width
    assert film.contrast_limits == pytest.approx([c - w / 2, c + w / 2], rel=1e-5)
    cement = truth_cement(postop_film)
    # the old pre-windowed display put most cement pixels in one shade; the cement preset
    # spreads them out
    old = np.round(r.display[cement] * 255).astype(int)
    assert np.bincount(old).max() / old.size > 0.5
    qtbot.mouseClick(widget.window_buttons["cement"], Qt.MouseButton.LeftButton)
    assert _shades(film, cement) < 0.2
    qtbot.mouseClick(widget.window_buttons["bone"], Qt.MouseButton.LeftButton)
    bone = tuple(film.contrast_limits)
    widget.select_level("L1")
    place_level(qtbot, viewer, widget, postop_film, "L1")
    before = widget.controller.measurements()
    n_points = len(widget.landmarks_layer.data)
    # a right-drag on the canvas: wider and lower; no point is placed
    native = canvas(viewer).native
    p0 = to_canvas(viewer, widget.landmarks_layer, 300, 200)

    def send(kind, pos, button, buttons):
        QApplication.sendEvent(native, QMouseEvent(
            kind, QPointF(pos), QPointF(native.mapToGlobal(pos)), button, buttons,
            Qt.KeyboardModifier.NoModifier))
        qtbot.wait(5)

    right = Qt.MouseButton.RightButton
    send(QEvent.Type.MouseButtonPress, p0, right, right)
    for k in range(1, 6):
        send(QEvent.Type.MouseMove, p0 + type(p0)(20 * k, 10 * k), Qt.MouseButton.NoButton,
             right)
    send(QEvent.Type.MouseButtonRelease, p0 + type(p0)(100, 50), right,
         Qt.MouseButton.NoButton)
    lo, hi = film.contrast_limits
    assert hi - lo > bone[1] - bone[0] and (lo + hi) / 2 < (bone[0] + bone[1]) / 2
    assert len(widget.landmarks_layer.data) == n_points
    after = widget.controller.measurements()
    for name, res in before.vertebrae["L1"].items():
        assert after.get("L1", name).value == res.value or (
            res.value != res.value and after.get("L1", name).value != after.get(
                "L1", name).value), name
    qtbot.mouseClick(widget.window_buttons["film"], Qt.MouseButton.LeftButton)
    assert film.contrast_limits == pytest.approx([c - w / 2, c + w / 2], rel=1e-5)


def test_reading_mode_and_preferred_dicom_reader(window, qtbot, postop_film, tmp_path):
    from napari.settings import get_settings

    viewer, widget = window
    qt_viewer = viewer.window._qt_viewer
    assert get_settings().plugins.extension2reader["*.dcm"] == "napari-spine-measure"
    qtbot.mouseClick(widget.reading_button, Qt.MouseButton.LeftButton)
    assert not qt_viewer.dockLayerList.isVisible()
    assert not qt_viewer.dockLayerControls.isVisible()
    key(qtbot, viewer, "]")  # the plugin's keys still work
    qtbot.mouseClick(widget.reading_button, Qt.MouseButton.LeftButton)
    assert qt_viewer.dockLayerList.isVisible()
    # File > Open of a .dcm without choosing a reader: this plugin reads it
    from napari_samples import copy_film

    other = copy_film(tmp_path, "SM002", "SM002_postop")
    viewer.window._qt_viewer._qt_open([str(other)], stack=False)  # File > Open, no reader chosen
    qtbot.waitUntil(lambda: widget.controller.image.file_name == other.name, timeout=5000)
    assert "radiograph" in widget._image_layer.metadata


def test_view_follows_to_the_next_vertebra(window, qtbot, postop_film):
    """Zoomed in on T12: once its six points are clicked the view pans to L1's ring."""
    viewer, widget = window
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    widget.select_level("T12")
    p = truth_points(postop_film, "T12")
    centre = np.mean([p[n] for n in ("As", "Ps", "Pi", "Ai")], axis=0)
    scale = np.asarray(widget.landmarks_layer.scale)
    camera.zoom *= 4
    camera.center = tuple(centre * scale)
    qtbot.wait(50)
    place_level(qtbot, viewer, widget, postop_film, "T12")
    ring = widget.controller.preview()
    assert widget.controller.level == "L1" and ring is not None
    assert np.allclose(np.asarray(camera.center)[-2:], np.asarray(ring) * scale, atol=1e-6)
    widget.controller.dirty = False
