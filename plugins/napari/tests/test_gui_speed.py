"""What makes the plugin fast, checked for behaviour (never for time) in a real napari window
(Xvfb) with Qt mouse and key events: a drag redraws at most every DRAG_REDRAW_MS yet the table
catches up with the mouse before the release and is exact after it; films of a folder are
decoded when first shown (measured on the decoded film); the empty cement layer stays hidden
until there is cement to paint.

The figures are measured by ``benchmarks/bench_napari.py`` (docs/performance.md)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from napari_gui import LEFT, _send, canvas, click, focus_canvas, key, open_film, to_canvas
from napari_samples import copy_film, truth_points
from qtpy.QtCore import QEvent, Qt
from qtpy.QtTest import QTest

from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.measurements.api import measure_film

pytestmark = pytest.mark.gui


def _place(qtbot, viewer, widget, film, level, n=6):
    pts = truth_points(film, level)
    for _ in range(n):
        click(qtbot, viewer, widget.landmarks_layer, *pts[widget.controller.next_point()[1]])


def _column(widget, level: str) -> int:
    heads = [widget.table.horizontalHeaderItem(j).text().split()[0]
             for j in range(widget.table.columnCount())]
    return heads.index(level)


def _independent(points: dict, spacing) -> dict:
    """measure_film on the controller's final points, built here (not by the widget)."""
    verts = tuple(Vertebra(lv, "lateral", dict(p)) for lv, p in points.items())
    return measure_film(SpineLandmarks("lateral", verts), spacing=spacing,
                        calibration_source="test").vertebrae


def _table_matches(widget, expected: dict) -> None:
    from napari_spine_measure._widget import TABLE_ROWS

    for lv, per in expected.items():
        j = _column(widget, lv)
        for i, (name, _label) in enumerate(TABLE_ROWS):
            r = per.get(name)
            item = widget.table.item(i, j)
            if r is None or isinstance(r.value, str | bool) or r.value is None:
                continue
            value = float(r.value)
            if np.isnan(value):
                assert item.text() == "—", (lv, name)
                continue
            digits = 1 if r.unit != "" else 2
            assert float(item.text().split()[0]) == pytest.approx(value, abs=0.51 * 10**-digits), \
                (lv, name, item.text(), value)


def test_drag_redraws_are_coalesced_yet_catch_up_and_the_release_is_exact(
        window, qtbot, postop_film):
    viewer, widget = window
    ctl = widget.controller
    widget.select_level("T12")
    for lv in ("T12", "L1", "L2"):
        _place(qtbot, viewer, widget, postop_film, lv)
    spacing = load_radiograph(postop_film).calibration.spacing
    lay = widget.landmarks_layer
    col = _column(widget, "L1")
    ai = tuple(ctl.points("L1")["Ai"])
    native = canvas(viewer).native
    _send(native, QEvent.Type.MouseButtonPress, to_canvas(viewer, lay, *ai), LEFT)
    qtbot.wait(5)
    for k in range(1, 31):  # 30 moves of 1 px, 5 ms apart: faster than a redraw each
        _send(native, QEvent.Type.MouseMove, to_canvas(viewer, lay, ai[0] + k, ai[1]), LEFT)
        qtbot.wait(5)
        if k in (10, 30):
            # the mouse rests, still pressed: the table and the endplates catch up with the
            # last move without another event (the coalescing timer), before any release
            qtbot.waitUntil(lambda k=k: abs(ctl.points("L1")["Ai"][0] - ai[0] - k) < 1.5,
                            timeout=3000)
            now = ctl.points("L1")["Ai"]
            want = f"{_independent(ctl.points(), spacing)['L1']['ha'].value:.1f}"
            qtbot.waitUntil(lambda w=want: widget.table.item(0, col).text() == w,
                            timeout=3000)
            qtbot.waitUntil(lambda n=now: any(np.allclose(seg[0] + seg[1], n) or
                                              np.allclose(seg[0], n)
                                              for seg in widget.endplates_layer.data),
                            timeout=3000)
            assert ctl.can_undo and lay.mode == "add"
    _send(native, QEvent.Type.MouseButtonRelease, to_canvas(viewer, lay, ai[0] + 30, ai[1]),
          Qt.MouseButton.NoButton)
    qtbot.wait(5)
    final = ctl.points()
    assert final["L1"]["Ai"][0] == pytest.approx(ai[0] + 30, abs=1.5)
    # after the release everything is exact: the points layer, every table cell
    for (lv, name), row in zip(widget._keys, lay.data, strict=True):
        assert tuple(row) == pytest.approx(final[lv][name])
    _table_matches(widget, _independent(final, spacing))
    assert ctl.undo() and ctl.points("L1")["Ai"] == ai  # still one drag, one undo step


def test_folder_films_are_decoded_when_shown_and_measured_decoded(
        make_napari_viewer, qtbot, study_folder):
    from napari_spine_measure._reader import LazyRadiograph, initial_window

    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, study_folder)
    films = widget._film_layers()
    assert len(films) == 3
    kinds = [type(ly.metadata["radiograph"]) for ly in films]
    assert kinds[0] is not LazyRadiograph and kinds[1:] == [LazyRadiograph] * 2
    assert not any(ly.metadata["radiograph"].decoded for ly in films[1:])  # header only
    # the reader picks the follow-up film in the Film box with the keyboard
    target = films[2]
    path = target.metadata["spine_measure"]["path"]
    decoded = load_radiograph(path)
    # the header's window is the layer's contrast from the start (shown right if made
    # visible in the layer list), before any decoding
    assert tuple(target.contrast_limits) == pytest.approx(initial_window(decoded))
    assert not target.metadata["radiograph"].decoded
    widget.film_combo.setFocus()
    QTest.keyClick(widget.film_combo, Qt.Key.Key_Down)
    QTest.keyClick(widget.film_combo, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: widget._image_layer is target, timeout=5000)
    assert type(target.metadata["radiograph"]) is type(decoded)
    assert target.visible and not films[0].visible
    assert tuple(target.contrast_limits) == pytest.approx(initial_window(decoded))
    assert tuple(target.scale) == pytest.approx(decoded.calibration.spacing)
    assert widget.controller.image.file_name == path.split("/")[-1]
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    film = study_folder / path.split("/")[-1]
    widget.select_level("L1")
    _place(qtbot, viewer, widget, film, "L1")
    _table_matches(widget, _independent(widget.controller.points(),
                                        decoded.calibration.spacing))
    widget.controller.dirty = False


def test_a_folder_film_without_a_window_in_its_header_is_decoded_at_once(tmp_path):
    from napari_spine_measure._reader import LazyRadiograph, initial_window, read_paths

    first = copy_film(tmp_path, "SM001", "SM001_preop")
    ds = pydicom.dcmread(copy_film(tmp_path, "SM001", "SM001_postop"))
    del ds.WindowCenter, ds.WindowWidth  # the window comes from the pixels' percentiles
    ds.save_as(first.parent / "SM001_postop.dcm")
    layers = read_paths(str(first.parent))
    assert [type(kw["metadata"]["radiograph"]) is LazyRadiograph for _d, kw, _k in layers] \
        == [False, False]
    decoded = load_radiograph(first.parent / "SM001_postop.dcm")
    assert layers[1][1]["contrast_limits"] == pytest.approx(initial_window(decoded))


def test_a_folder_film_that_cannot_be_decoded_keeps_the_session_on_screen(
        make_napari_viewer, qtbot, tmp_path):
    good = copy_film(tmp_path, "SM001", "SM001_preop")
    ds = pydicom.dcmread(copy_film(tmp_path, "SM001", "SM001_postop"))
    ds.PixelData = ds.PixelData[:1000]  # the header reads, the pixels do not decode
    ds.save_as(good.parent / "SM001_postop.dcm")
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, good.parent)
    films = widget._film_layers()
    assert len(films) == 2 and widget._image_layer is films[0]
    widget.film_combo.setFocus()
    QTest.keyClick(widget.film_combo, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: "cannot show this film" in widget.status_label.text(),
                    timeout=5000)
    assert "SM001_postop.dcm" in widget.status_label.text()
    assert widget._image_layer is films[0] and films[0].visible and not films[1].visible
    assert widget.controller.image.file_name == "SM001_preop.dcm"
    assert widget.film_combo.currentText() == films[0].name
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    _place(qtbot, viewer, widget, good, "L1", n=1)  # clicks still go to the film on screen
    assert widget.controller.points("L1") and widget.controller.image.file_name == \
        "SM001_preop.dcm"
    widget.controller.dirty = False


def test_cement_layer_hidden_until_there_is_cement_to_paint(window, qtbot, postop_film):
    viewer, widget = window
    assert not widget.cement_layer.visible  # an empty layer over the film: not drawn
    widget.select_level("L1")
    _place(qtbot, viewer, widget, postop_film, "L1")
    p = truth_points(postop_film, "L1")
    centre = np.mean([p["As"], p["Ai"], p["Ps"], p["Pi"]], axis=0)
    QTest.mouseMove(canvas(viewer).native, to_canvas(viewer, widget.landmarks_layer, *centre))
    qtbot.wait(20)
    key(qtbot, viewer, "T")  # L1 flagged treated: its cement can be painted and seen
    assert widget.controller.flags("L1")["treated"]
    assert widget.cement_layer.visible
    key(qtbot, viewer, "T")
    assert not widget.controller.flags("L1")["treated"] and not widget.cement_layer.visible
    viewer.layers.selection.active = widget.cement_layer  # chosen in the layer list to paint
    assert widget.cement_layer.visible
    widget.controller.dirty = False
