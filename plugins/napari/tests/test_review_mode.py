"""The napari review of proposals in a real window (Xvfb), by Qt key and mouse events on
the canvas: Propose from the patient's other film, proposals drawn hollow with their
confidence, Enter confirms, a drag fixes, N rejects, the table marks what unconfirmed points
feed, and the saved file says all of it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from napari_gui import drag, focus_canvas, key, open_film, shown_film
from napari_proposals import film_with_proposals, proposed_postop
from napari_samples import SAMPLES, copy_film, truth_points
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_spine_measure._review import PROPOSAL_COLOUR, UNCONFIRMED_MARK
from spine_measure.io.annotation import load_annotation

pytestmark = pytest.mark.gui


def _window(make_napari_viewer, qtbot, film):
    return shown_film(make_napari_viewer, qtbot, film)


def _click_tab(qtbot, widget, page):
    """A mouse click on the tab of ``page`` (the Proposals tab)."""
    bar = widget.tabs.tabBar()
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     bar.tabRect(widget.tabs.indexOf(page)).center())
    qtbot.waitUntil(lambda: widget.tabs.currentWidget() is page, timeout=2000)


def test_review_walks_with_enter_drag_and_n(make_napari_viewer, qtbot, tmp_path):
    film = film_with_proposals(tmp_path)
    side = film.with_suffix(".sm.json")
    before = load_annotation(side)
    viewer, widget = _window(make_napari_viewer, qtbot, film)
    ctl, panel, lay = widget.controller, widget.review_panel, widget.landmarks_layer
    todo = list(before.unconfirmed_levels())
    assert todo == ["T10", "T11", "T12", "L1", "L2", "L3", "L4"]
    # drawn hollow in the proposal colour; level labels say proposed with a confidence
    assert np.all(lay.face_color[:, 3] == 0)
    assert all(t.split()[1:3] == [UNCONFIRMED_MARK, "proposed"]
               for t in widget.labels_layer.features["label"])
    # the table marks every value: all come from unconfirmed points
    hdr = widget.table.horizontalHeaderItem(0).text()
    assert hdr.endswith(UNCONFIRMED_MARK)
    assert UNCONFIRMED_MARK in widget.table.item(0, 0).toolTip()

    panel.review_button.click()
    assert panel.active and panel.current == "T10" and ctl.level == "T10"
    assert lay.mode == "select"  # a click does not add points while reviewing
    assert widget.prompt_label.text().startswith("Reviewing T10 (proposed, ")
    # the reviewed vertebra's points show their confidence
    labels = [lb for lb, (lv, _n) in zip(lay.features["label"], widget._keys, strict=True)
              if lv == "T10"]
    assert all(lb.endswith("%") for lb in labels), labels

    focus_canvas(qtbot, viewer)
    key(qtbot, viewer, Qt.Key.Key_Return)  # Enter: T10 confirmed, on to T11
    assert ctl.review_of("T10").confirmed and panel.current == "T11"
    key(qtbot, viewer, "U")  # one undo: T10 unconfirmed again and under review
    assert not ctl.review_of("T10").confirmed and panel.current == "T10"
    assert ctl.level == "T10"
    key(qtbot, viewer, Qt.Key.Key_Return)
    assert ctl.review_of("T10").confirmed and panel.current == "T11"
    # T10 is drawn as a reading now; T11 still hollow
    idx = {k: i for i, k in enumerate(widget._keys)}
    assert lay.face_color[idx[("T10", "As")], 3] == 1
    assert lay.face_color[idx[("T11", "As")], 3] == 0
    # drag T11 Ai 6 px down with the mouse: fixed, becomes a reader point, still unconfirmed
    ai = tuple(ctl.points("T11")["Ai"])
    drag(qtbot, viewer, lay, ai, (ai[0] + 6, ai[1]), steps=8)
    assert ctl.points("T11")["Ai"][0] == pytest.approx(ai[0] + 6, abs=1.5)
    assert ctl.review_of("T11").source("Ai") == "reader"
    assert panel.current == "T11" and not ctl.review_of("T11").confirmed
    focus_canvas(qtbot, viewer)
    key(qtbot, viewer, Qt.Key.Key_Enter)  # keypad Enter as well
    assert panel.current == "T12"
    key(qtbot, viewer, "N")  # T12 not measurable: rejected, removed
    assert "T12" not in ctl.points() and panel.current == "L1"
    assert ctl.not_measurable == set()  # rejected, not kept as a "not measurable" vertebra
    assert widget.review_panel.review_label.text().startswith("4 unconfirmed")
    # 6 levels x 6 points, one of them dragged by the reader
    assert widget.review_panel.review_label.text().endswith("points: 35 propagated, 1 reader")
    widget.save()
    after = load_annotation(side)
    assert after.review_of("T10").confirmed and after.review_of("T11").confirmed
    assert after.review_of("T10").source("As") == "propagated"
    assert after.review_of("T11").source("Ai") == "reader"
    assert after.landmarks["T11"].points["Ai"][0] == pytest.approx(ai[0] + 6, abs=1.5)
    assert "T12" not in after.landmarks
    assert after.unconfirmed_levels() == ("L1", "L2", "L3", "L4")
    for lv in ("L1", "L2", "L3", "L4"):
        assert after.review_of(lv) == before.review_of(lv)
    # walk the rest with Enter: review mode ends by itself; nothing is marked any more
    for _ in range(4):
        key(qtbot, viewer, Qt.Key.Key_Return)
    assert not panel.active and ctl.unconfirmed_levels() == ()
    assert "reviewed" in widget.status_label.text()
    assert lay.mode == "add"  # placing again, as before the review
    assert not any(UNCONFIRMED_MARK in widget.table.horizontalHeaderItem(j).text()
                   for j in range(widget.table.columnCount()))
    assert np.all(lay.face_color[:, 3] == 1)
    # undo brings the last confirmation back
    key(qtbot, viewer, "U")
    assert ctl.unconfirmed_levels() == ("L4",)
    widget.ask = False


def test_propose_from_other_time_point(make_napari_viewer, qtbot, tmp_path):
    film = copy_film(tmp_path, "SM001", "SM001_postop")
    pre = copy_film(tmp_path, "SM001", "SM001_preop")
    shutil.copy(SAMPLES / "SM001" / "SM001_preop.sm.json", pre.with_suffix(".sm.json"))
    viewer, widget = _window(make_napari_viewer, qtbot, film)
    panel = widget.review_panel
    _click_tab(qtbot, widget, panel)
    # the patient's other annotated film is listed, with its date
    assert panel.source_combo.count() == 1
    assert panel.source_combo.itemText(0).startswith("SM001_preop.dcm")
    # a mouse click on Propose: the registration runs in a worker thread, a busy bar shows
    QTest.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    assert panel.busy and panel.busy_bar.isVisible()
    assert not panel.propose_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.busy, timeout=120_000)
    assert not panel.busy_bar.isVisible()
    result = panel.last_result
    expected = proposed_postop()[0]
    ctl = widget.controller
    assert ctl.unconfirmed_levels() == expected.unconfirmed_levels()
    for lv in expected.landmarks.levels():
        # the session holds exactly what the propagation proposed ...
        got = ctl.points(lv)
        assert got == dict(result.annotation.landmarks[lv].points)
        assert ctl.review_of(lv) == result.annotation.review_of(lv)
        assert {ctl.review_of(lv).source(n) for n in got} == {"propagated"}
        # ... which is what an independent call gives (the propagation is repeatable)
        assert got == dict(expected.landmarks[lv].points)
    assert result.n_proposed == 7
    assert panel.result_label.text().startswith("From SM001_preop.dcm: proposed T10 (")
    assert panel.active and panel.current == "T10"  # review starts by itself
    border = widget.landmarks_layer.border_color
    assert any(np.allclose(b, PROPOSAL_COLOUR) for b in border)
    # the proposal is one undo step: U takes all of it back, review ends, placing resumes
    focus_canvas(qtbot, viewer)
    key(qtbot, viewer, "U")
    assert ctl.points() == {} and ctl.unconfirmed_levels() == ()
    assert not panel.active and widget.landmarks_layer.mode == "add"
    widget.ask = False


def test_propose_without_other_film_says_why(make_napari_viewer, qtbot, tmp_path):
    film = copy_film(tmp_path, "SM001", "SM001_postop")
    viewer, widget = _window(make_napari_viewer, qtbot, film)
    panel = widget.review_panel
    _click_tab(qtbot, widget, panel)
    assert panel.source_combo.count() == 0
    assert "no other annotated film of patient" in panel.result_label.text()
    assert panel.propose() is None
    assert "no film to propose from" in widget.status_label.text()
    other = copy_film(tmp_path, "SM001", "SM001_followup")  # not annotated
    assert panel.propose(other) is None
    assert widget.status_label.text() == ("SM001_followup.dcm: has no annotation "
                                          "(annotate it first)")
    assert widget.controller.points() == {}
    widget.ask = False


def test_refine_toggle_marks_refined(make_napari_viewer, qtbot, tmp_path):
    film = film_with_proposals(tmp_path)
    truth = truth_points(film, "L2")
    viewer, widget = _window(make_napari_viewer, qtbot, film)
    ctl, lay = widget.controller, widget.landmarks_layer
    widget.review_panel.refine_box.click()
    assert ctl.refiner is not None
    widget.review_panel.review_button.click()
    # L2 As dropped 5 px off the true corner: refinement puts it back on the corner
    p0 = tuple(ctl.points("L2")["As"])
    off = (truth["As"][0] - 4, truth["As"][1] - 3)
    drag(qtbot, viewer, lay, p0, off, steps=6)
    p1 = ctl.points("L2")["As"]
    assert np.hypot(p1[0] - truth["As"][0], p1[1] - truth["As"][1]) < 1.5
    assert ctl.review_of("L2").source("As") == "refined"
    assert "refined by" in ctl.last_message
    assert not ctl.review_of("L2").confirmed  # the reader still confirms (Enter)
    assert ctl.undo() and ctl.points("L2")["As"] == p0  # drag and refinement: one undo step
    # toggled off: a drop stays where it is, a reader point
    widget.review_panel.refine_box.click()
    assert ctl.refiner is None
    drag(qtbot, viewer, lay, p0, off, steps=6)
    p2 = ctl.points("L2")["As"]
    assert np.hypot(p2[0] - off[0], p2[1] - off[1]) < 2.5  # a screen pixel is ~1 px here
    assert ctl.review_of("L2").source("As") == "reader"
    widget.ask = False


def test_chain_propagate_review_measure(make_napari_viewer, qtbot, tmp_path, capsys):
    """`spine-measure propagate` -> review in napari -> `spine-measure measure`: only what
    the reader confirmed is measured."""
    import json

    from spine_measure.cli import main

    films = tmp_path / "films"
    films.mkdir()
    for stem in ("SM001_preop", "SM001_postop"):
        shutil.copy(SAMPLES / "SM001" / f"{stem}.dcm", films)
    shutil.copy(SAMPLES / "SM001" / "SM001_preop.sm.json", films)
    out = tmp_path / "proposed"
    assert main(["propagate", str(films / "SM001_preop.dcm"), str(films / "SM001_postop.dcm"),
                 "--out", str(out)]) == 0
    film = films / "SM001_postop.dcm"
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, film, annotations_dir=out)
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    ctl = widget.controller
    assert ctl.unconfirmed_levels()[:2] == ("T10", "T11")
    widget.review_panel.review_button.click()
    focus_canvas(qtbot, viewer)
    key(qtbot, viewer, Qt.Key.Key_Return)  # T10 confirmed
    key(qtbot, viewer, "N")                # T11 not measurable
    key(qtbot, viewer, "S", Qt.KeyboardModifier.ShiftModifier)  # save
    saved = load_annotation(out / "SM001_postop.sm.json")
    assert saved.review_of("T10").confirmed and "T11" not in saved.landmarks
    capsys.readouterr()
    assert main(["measure", str(film), "--annotations", str(out), "--json",
                 "--no-cement"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {x["level"] for x in lines if "wedge_angle_deg" in x} == {"T10"}
    widget.ask = False


def test_machine_set_flags_are_marked_until_confirmed(make_napari_viewer, qtbot, tmp_path):
    """A flag propagation set (L1 treated: cement seen in the post-op body; fractured: carried
    from the pre-op film) shows "?" in the table header with why, and the review prompt asks
    the reader to check it; confirming with Enter makes it the reader's flag."""
    film = film_with_proposals(tmp_path)
    viewer, widget = _window(make_napari_viewer, qtbot, film)
    ctl, panel = widget.controller, widget.review_panel
    col = list(widget.controller.points()).index("L1")

    def header():
        h = widget.table.horizontalHeaderItem(col)
        return h.text(), h.toolTip()

    text, tip = header()
    assert "●T?" in text and " F?" in text, text
    assert "cement seen in the body" in tip and "carried from the other film" in tip, tip
    assert "not confirmed yet" in tip  # the review's own note is kept beside it
    t10 = widget.table.horizontalHeaderItem(0)
    assert "?" not in t10.text() and "cement" not in t10.toolTip()

    panel.review_button.click()
    focus_canvas(qtbot, viewer)
    for lv in ("T10", "T11", "T12"):
        assert panel.current == lv
        assert "check the flag" not in widget.prompt_label.text()
        key(qtbot, viewer, Qt.Key.Key_Return)
    assert panel.current == "L1"
    assert widget.prompt_label.text().endswith("check the flag fractured, treated")
    key(qtbot, viewer, Qt.Key.Key_Return)
    assert ctl.review_of("L1").confirmed
    qtbot.waitUntil(lambda: "?" not in header()[0], timeout=3000)
    text, tip = header()
    assert "●T" in text and " F" in text and "cement" not in tip
