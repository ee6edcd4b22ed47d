"""The "±" of the measurement table (issue 16 item 11): a landmark SD typed into the widget
with real key events gives every numeric value its standard uncertainty once the landmarks
rest; off removes it. Real napari window under Xvfb, landmarks placed by mouse clicks."""

from __future__ import annotations

import math

import pytest
from napari_gui import click, focus_canvas, open_film
from napari_samples import truth_points
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

pytestmark = pytest.mark.gui


def _type_sd(qtbot, spin, text: str) -> None:
    edit = spin.lineEdit()
    QTest.mouseClick(edit, Qt.MouseButton.LeftButton)
    QTest.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(edit, text)
    QTest.keyClick(edit, Qt.Key.Key_Return)
    qtbot.wait(20)


def test_landmark_sd_puts_plus_minus_in_the_table(make_napari_viewer, qtbot, postop_film):
    from spine_measure.measurements.uncertainty import LandmarkErrorModel, film_uncertainty

    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, postop_film)
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    widget.select_level("T12")
    for lv in ("T12", "L1", "L2"):
        pts = truth_points(postop_film, lv)
        for _ in range(6):
            click(qtbot, viewer, widget.landmarks_layer,
                  *pts[widget.controller.next_point()[1]])
    t = widget.table
    col = [t.horizontalHeaderItem(j).text().split()[0]
           for j in range(t.columnCount())].index("L1")
    ha = widget.controller.measurements().get("L1", "ha").value
    assert t.item(0, col).text() == f"{ha:.1f}"            # off by default: no ±
    assert widget.uncertainty_spin.text() == "off"

    widget.tabs.setCurrentIndex(2)                          # Calibration · cement
    _type_sd(qtbot, widget.uncertainty_spin, "1")
    assert widget.uncertainty_spin.value() == pytest.approx(1.0)
    qtbot.waitUntil(lambda: "±" in t.item(0, col).text(), timeout=5000)
    # a height with 1 mm per coordinate: sqrt(2) = 1.4 mm
    assert t.item(0, col).text() == f"{ha:.1f} ± {math.sqrt(2):.1f}"
    fu = film_uncertainty(widget.controller.measurements(), LandmarkErrorModel.isotropic(1.0))
    wedge_row = 3
    wa = fu.get("L1", "wedge_angle")
    assert t.item(wedge_row, col).text() == f"{wa.value:.1f} ± {wa.u:.1f}"
    genant_row = len([r for r in range(t.rowCount())]) - 1
    assert "±" not in t.item(genant_row, col).text()       # a grade has none

    _type_sd(qtbot, widget.uncertainty_spin, "0")
    assert widget.uncertainty_spin.text() == "off"
    qtbot.waitUntil(lambda: "±" not in t.item(0, col).text(), timeout=5000)
    assert t.item(0, col).text() == f"{ha:.1f}"
