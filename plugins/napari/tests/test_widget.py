"""The dock widget in a real napari viewer (Xvfb + Mesa OpenGL): a whole annotation of a
sample film through the widget's public actions, then save, reload and compare with the
ground truth; the figure script run into a temporary folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from napari_samples import REPO, load_truth, truth_cement, truth_points

from spine_measure.io.annotation import load_annotation
from spine_measure.landmarks import SpineLandmarks
from spine_measure.measurements.api import measure_film

pytestmark = pytest.mark.gui

FIGURE = REPO / "docs" / "figures" / "napari_widget.png"
FIGURE_CEMENT = REPO / "docs" / "figures" / "napari_cement_tab.png"
LEVELS3 = ("T12", "L1", "L2")


def _open(viewer, film: Path):
    from napari_spine_measure._reader import read_paths
    from napari_spine_measure._widget import SpineAnnotationWidget

    for data, kwargs, kind in read_paths(str(film)):
        assert kind == "image"
        viewer.add_image(data, **kwargs)
    widget = SpineAnnotationWidget(viewer, ask=False)
    viewer.window.add_dock_widget(widget, name="Spine annotation", area="right")
    return widget


def _annotate_three_levels(widget, film: Path, *, via_layer: bool) -> None:
    widget.select_level(LEVELS3[0])
    for level in LEVELS3:
        pts = truth_points(film, level)
        for _ in range(6):
            nxt = widget.controller.next_point()
            assert nxt is not None and nxt[0] == level
            p = pts[nxt[1]]
            if via_layer:  # the path a mouse click takes: napari adds, the widget assigns
                widget.landmarks_layer.add(np.array([p]))
            else:
                widget.place_point(*p)
    assert widget.controller.level == "L3"  # auto-advanced down the spine


def test_full_annotation_save_reload_matches_truth(make_napari_viewer, postop_film, tmp_path):
    viewer = make_napari_viewer()
    widget = _open(viewer, postop_film)
    ctl = widget.controller
    _annotate_three_levels(widget, postop_film, via_layer=True)
    truth = load_truth(postop_film)

    # flags, findings, time point through the widget
    widget.set_flag("treated", True, level="L1")
    widget.set_flag("fractured", True, level="L1")
    widget.set_finding("posterior_fascia_oedema", True)
    widget.set_finding("goutallier_grade", 1)
    widget.set_time_point("postop")
    assert widget.table.horizontalHeaderItem(1).text().startswith("L1 ●T")

    # calibrate on a line of 200 px drawn in the image = 50 mm: the same 0.25 mm/px as the
    # header, so the ground-truth lengths stay the reference
    widget.calibration_layer.add_lines(np.array([[900.0, 50.0], [900.0, 250.0]]))
    widget.length_spin.setValue(50.0)
    widget._apply_drawn_calibration()
    assert ctl.calibration.source.value == "reader"
    assert ctl.calibration.spacing == pytest.approx((0.25, 0.25))
    assert "reader line" in widget.calibration_label.text()

    # cement: automatic, then a reader's stroke makes it "edited"
    action = widget.auto_segment()
    assert action == "added", widget.status_label.text()
    auto = ctl.cement_mask("L1").to_array()
    truth_mask = truth_cement(postop_film)
    dice = 2 * (auto & truth_mask).sum() / (auto.sum() + truth_mask.sum())
    assert dice > 0.8
    assert widget.cement_layer.data.sum() == auto.sum()
    # the cement tab shows the docs/cement.md features of the mask (the sample's ground truth)
    c = truth["cement"]
    text = widget.cement_label.text()
    assert f"NPEC {c['npec']}:" in text and f"distribution {c['distribution']}" in text
    assert ("leaks: none" in text) == (not c["leaks"])
    # a reader's edit that takes the cement 3 mm off the superior endplate updates them
    edited = auto.copy()
    rows = np.flatnonzero(edited.any(axis=1))
    edited[: rows[0] + 12] = False
    ctl.set_cement_mask("L1", edited, source="edited")
    assert "NPEC superior:" in widget.cement_label.text()
    ctl.undo()
    assert widget.cement_label.text() == text

    path = widget.save()
    assert path == postop_film.with_suffix(".sm.json") and path.is_file()
    assert not ctl.autosave_path.exists()  # saved: nothing to recover

    # reload from disk in a fresh widget on a fresh viewer
    viewer2 = make_napari_viewer()
    widget2 = _open(viewer2, postop_film)
    ann = load_annotation(path)
    assert ann.revision == 1 and ann.time_point == "postop"
    assert ann.findings.posterior_fascia_oedema is True and ann.findings.goutallier_grade == 1
    assert ann.calibration.length_mm == 50.0
    assert ann.landmarks["L1"].treated and ann.landmarks["L1"].fractured
    assert np.array_equal(ann.cement_mask("L1").to_array(), auto)
    got = widget2.controller.measurements()
    ref = measure_film(
        SpineLandmarks.from_dict({"view": "lateral",
                                  "vertebrae": [v for v in truth["vertebrae"]
                                                if v["level"] in LEVELS3]}),
        spacing=(truth["calibration"]["row_mm"], truth["calibration"]["col_mm"]),
        calibration_source="reader")
    for level in LEVELS3:
        for name, r in ref.vertebrae[level].items():
            g = got.vertebrae[level][name]
            if isinstance(r.value, float) and math.isnan(r.value):
                assert math.isnan(g.value), (level, name)
            elif isinstance(r.value, float):
                assert g.value == pytest.approx(r.value, abs=1e-9), (level, name)
            elif name not in ("genant_grade", "genant_shape"):  # flags differ from truth
                assert g.value == r.value, (level, name)
    # hand check of one length: ha(L1) = |As - Ai| * 0.25 mm
    p = truth_points(postop_film, "L1")
    ha = math.hypot((p["As"][0] - p["Ai"][0]) * 0.25, (p["As"][1] - p["Ai"][1]) * 0.25)
    assert got.get("L1", "ha").value == pytest.approx(ha, abs=1e-9)
    assert got.get("L1", "ha").calibration_source == "reader"
    # the table shows it, with the calibration source next to the length
    col = [widget2.table.horizontalHeaderItem(j).text().split()[0]
           for j in range(widget2.table.columnCount())].index("L1")
    assert widget2.table.item(0, col).text() == f"{ha:.1f}"
    assert "mm (reader line)" in widget2.table_box.title()
    assert widget2.table.verticalHeaderItem(0).text() == "ha anterior (mm)"


def test_cement_summary_by_hand():
    """A 40 x 40 px block 10 px below the superior and 10.5 px above the inferior endplate at
    0.5 mm, and a 10 x 3 px strip beyond the superior endplate: NPEC both, gaps 5.0 and
    5.25 mm (the strip ends 11 px = 5.5 mm above), one superior-disc leak of 30 x 0.25 =
    7.5 mm2, elongation sqrt(100 / 9) = 3.3 (a spike), no neighbour annotated."""
    from napari_spine_measure._widget import cement_summary
    from spine_measure.cement.features import cement_features
    from spine_measure.landmarks import Vertebra

    v = Vertebra("L1", "lateral", {"As": (20, 89.5), "Ai": (79.5, 89.5),
                                   "Ps": (20, 30), "Pi": (79.5, 30)})
    m = np.zeros((120, 120), bool)
    m[30:70, 40:80] = True
    m[0:10, 58:61] = True
    lines = cement_summary(cement_features(m, v, "L1", (0.5, 0.5))).splitlines()
    assert lines[0] == "NPEC both: gap superior 5.0 mm, inferior 5.2 mm (contact ≤ 1 mm)"
    assert lines[2] == "leaks: superior disc spike 7.5 mm², adjacent endplate not annotated"
    m[:] = False
    assert cement_summary(cement_features(m, v, "L1", (0.5, 0.5))) == "no cement found"


def test_drag_updates_table_live_and_undo(make_napari_viewer, postop_film):
    viewer = make_napari_viewer()
    widget = _open(viewer, postop_film)
    _annotate_three_levels(widget, postop_film, via_layer=False)
    ctl = widget.controller
    before = ctl.measurements().get("L1", "ha").value
    widget.set_placing(False)
    assert widget.landmarks_layer.mode == "select"
    # a drag: napari moves the point in the layer and emits CHANGED; the widget follows
    i = widget._keys.index(("L1", "Ai"))
    data = widget.landmarks_layer.data.copy()
    for _k in range(1, 6):
        data[i, 0] += 2.0
        widget.landmarks_layer.data = data  # emits CHANGED for all indices
    ctl.end_move()
    after = ctl.measurements().get("L1", "ha").value
    assert after == pytest.approx(before + 10.0 * 0.25 * abs(
        (np.subtract(truth_points(postop_film, "L1")["Ai"], truth_points(postop_film, "L1")["As"]))
        [0]) / np.hypot(*np.subtract(truth_points(postop_film, "L1")["Ai"],
                                     truth_points(postop_film, "L1")["As"])), rel=0.02)
    col = [widget.table.horizontalHeaderItem(j).text().split()[0]
           for j in range(widget.table.columnCount())].index("L1")
    assert widget.table.item(0, col).text() == f"{after:.1f}"
    # speed is measured by benchmarks/bench_napari.py, not asserted here
    # the five steps of one drag are one undo step
    assert widget.undo()
    assert ctl.measurements().get("L1", "ha").value == pytest.approx(before, abs=1e-9)
    # undo of the last placement of L2 removes Ai of L2
    assert widget.undo()
    assert "Ai" not in ctl.points("L2") and ctl.level == "L2"


def test_screenshot_script_draws_the_film_and_the_cement_tab(make_napari_viewer, tmp_path):
    """scripts/napari_screenshots.py (which regenerates the figures of
    docs/napari_plugin.md) run into a temporary folder: the tracked figures are untouched."""
    import runpy

    script = runpy.run_path(str(REPO / "scripts" / "napari_screenshots.py"))
    before = FIGURE.read_bytes() if FIGURE.is_file() else None
    paths = script["make_screenshots"](tmp_path, make_napari_viewer(show=True))
    from PIL import Image

    widget_png = np.asarray(Image.open(paths["widget"]))
    assert widget_png.shape[0] > 500 and widget_png[..., :3].std() > 20  # film drawn
    assert paths["cement"].stat().st_size > 10_000
    assert (FIGURE.read_bytes() if FIGURE.is_file() else None) == before
