"""*Propose from* runs in a worker thread: the window stays usable, and the result goes to
the film it was started for — also when the reader switched to another film before it was
done (real Qt clicks on the Propose button, the layer list's eye icons and the canvas).
The worker is held until the switch is made (no timing in the test)."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from napari_gui import click, click_eye, focus_canvas, open_film
from napari_proposals import proposed_postop
from napari_samples import SAMPLES, copy_film, truth_points
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_spine_measure import _review

pytestmark = pytest.mark.gui


def _layer(viewer, film):
    return next(ly for ly in viewer.layers if ly.name.endswith(film.name))


def _autosaved(film):
    side = film.with_suffix(".sm.json")
    p = side.with_name(side.name + ".autosave.json")
    return json.loads(p.read_text()) if p.is_file() else None


def test_propose_result_goes_to_its_own_film_after_a_switch(make_napari_viewer, qtbot,
                                                            tmp_path, monkeypatch):
    pre = copy_film(tmp_path, "SM001", "SM001_preop")
    shutil.copy(SAMPLES / "SM001" / "SM001_preop.sm.json", pre.with_suffix(".sm.json"))
    pre_bytes = pre.with_suffix(".sm.json").read_bytes()
    post = copy_film(tmp_path, "SM001", "SM001_postop")
    fup = copy_film(tmp_path, "SM001", "SM001_followup")

    release = threading.Event()
    started = threading.Event()
    real = _review._compute_proposal

    def held(*args):  # the real computation, once the test has switched films
        started.set()
        assert release.wait(120)
        return real(*args)

    monkeypatch.setattr(_review, "_compute_proposal", held)

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    widget = open_film(viewer, pre.parent)
    viewer.reset_view()
    panel = widget.review_panel
    lay_post, lay_fup = _layer(viewer, post), _layer(viewer, fup)
    click_eye(qtbot, viewer, lay_post)
    assert widget.controller.image.file_name == post.name
    bar = widget.tabs.tabBar()
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     bar.tabRect(widget.tabs.indexOf(panel)).center())
    qtbot.waitUntil(lambda: panel.source_combo.count() == 1, timeout=5000)
    assert panel.source_combo.itemText(0).startswith(pre.name)

    QTest.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    assert started.wait(30) and panel.busy and panel.busy_bar.isVisible()
    assert widget.controller.points() == {}  # nothing yet

    # the reader keeps working: shows the follow-up film and clicks a point on it
    click_eye(qtbot, viewer, lay_fup)
    assert widget.controller.image.file_name == fup.name
    assert panel.busy and "in the background" in panel.result_label.text()
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    click(qtbot, viewer, widget.landmarks_layer, *truth_points(fup, "L1")["As"])
    release.set()
    qtbot.waitUntil(lambda: not panel.busy, timeout=120_000)

    # the follow-up film got nothing: its session and autosave hold its own click only
    fup_ctl = widget.controller
    assert fup_ctl.image.file_name == fup.name
    assert {lv: set(p) for lv, p in fup_ctl.points().items()} == {"L1": {"As"}}
    assert fup_ctl.unconfirmed_levels() == ()
    assert set(_autosaved(fup)["points"]) == {"L1"}
    assert not panel.active  # no review started on the wrong film
    # the post-op film's own session has the proposals, autosaved beside it
    expected = proposed_postop()[0]
    post_ctl = widget._controllers[next(k for k in widget._controllers
                                        if str(k).endswith(post.name))]
    assert post_ctl.unconfirmed_levels() == expected.unconfirmed_levels()
    for lv in expected.landmarks.levels():
        assert post_ctl.points(lv) == dict(expected.landmarks[lv].points)
    assert set(_autosaved(post)["points"]) == set(expected.landmarks.levels())
    status = widget.status_label.text()
    assert status.startswith(f"{post.name} (not on screen): from {pre.name}: proposed "
                             "T10 ("), status
    assert status.endswith(f"show {post.name} to review")
    assert panel.result_label.text() == status
    assert pre.with_suffix(".sm.json").read_bytes() == pre_bytes  # the source untouched

    # shown again: the proposals are drawn hollow, waiting for review
    click_eye(qtbot, viewer, lay_post)
    assert widget.controller is post_ctl
    assert np.all(widget.landmarks_layer.face_color[:, 3] == 0)
    assert panel.review_label.text().startswith("7 unconfirmed")
    for c in widget._controllers.values():
        c.dirty = False


def _held_pair(tmp_path, monkeypatch):
    """SM001's annotated pre-op and bare post-op films; the proposal's computation waits
    for the returned event (no timing in the tests)."""
    pre = copy_film(tmp_path, "SM001", "SM001_preop")
    shutil.copy(SAMPLES / "SM001" / "SM001_preop.sm.json", pre.with_suffix(".sm.json"))
    post = copy_film(tmp_path, "SM001", "SM001_postop")
    release = threading.Event()
    real = _review._compute_proposal
    monkeypatch.setattr(_review, "_compute_proposal",
                        lambda *a: (release.wait(120), real(*a))[1])
    return pre, post, release


def test_propose_result_for_a_closed_film_is_dropped(make_napari_viewer, qtbot, tmp_path,
                                                     monkeypatch):
    pre, post, release = _held_pair(tmp_path, monkeypatch)
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, pre.parent)
    panel = widget.review_panel
    click_eye(qtbot, viewer, _layer(viewer, post))
    assert panel.propose(pre) is not None and panel.busy
    viewer.layers.remove(_layer(viewer, post))  # the film closed meanwhile
    release.set()
    qtbot.waitUntil(lambda: not panel.busy, timeout=120_000)
    assert "dropped: SM001_postop.dcm was closed" in widget.status_label.text()
    assert _autosaved(post) is None
    for c in widget._controllers.values():
        assert c.unconfirmed_levels() == ()
        c.dirty = False


def test_a_cancelled_proposal_adds_nothing(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """Cancel (a real click) while the worker runs: its result is discarded when it arrives,
    no session or autosave gets a point, a new Propose waits until the cancelled one is done
    (never two registrations at once) and then works."""
    pre, post, release = _held_pair(tmp_path, monkeypatch)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    widget = open_film(viewer, pre.parent)
    panel = widget.review_panel
    click_eye(qtbot, viewer, _layer(viewer, post))
    widget.tabs.setCurrentWidget(panel)
    assert panel.propose(pre) is not None and panel.busy
    qtbot.waitUntil(panel.cancel_button.isVisible, timeout=5000)
    QTest.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert "cancelled" in panel.result_label.text()
    assert panel.propose(pre) is None  # the cancelled registration is still running
    assert "still finishing" in widget.status_label.text()
    release.set()
    qtbot.waitUntil(lambda: not panel.busy, timeout=120_000)
    assert "discarded, nothing added" in widget.status_label.text()
    assert not panel.cancel_button.isVisible()
    assert widget.controller.points() == {} and _autosaved(post) is None
    # a new proposal is taken as usual
    assert panel.propose(pre) is not None
    qtbot.waitUntil(lambda: not panel.busy, timeout=120_000)
    assert widget.controller.unconfirmed_levels() == proposed_postop()[0].unconfirmed_levels()
    for c in widget._controllers.values():
        c.dirty = False
