"""The session follows the film the reader is looking at when films are shown and hidden
with the eye icon of napari's layer list (real Qt clicks on the icon), by the same rules as
the Film box: one session per film, kept while another is shown; a film with an unreadable
annotation opens read-only and its file is never touched; with no film shown no session
receives a click. Checked in each film's autosave file."""

from __future__ import annotations

import json

import pytest
from napari_gui import click, click_eye, focus_canvas, key, open_film
from napari_samples import copy_film, truth_points

pytestmark = pytest.mark.gui

CORRUPT = b'{"schema": "spine_measure.annotation/1", "image": {'  # cut short


def _layer(viewer, film):
    return next(ly for ly in viewer.layers if ly.name.endswith(film.name))


def _autosaved(film):
    p = film.with_suffix(".sm.json").with_name(film.with_suffix(".sm.json").name
                                               + ".autosave.json")
    return json.loads(p.read_text())["points"] if p.is_file() else None


def test_eye_icon_switches_the_session_to_the_film_shown(make_napari_viewer, qtbot, tmp_path):
    pre = copy_film(tmp_path, "SM001", "SM001_preop")
    post = copy_film(tmp_path, "SM001", "SM001_postop")
    fup = copy_film(tmp_path, "SM001", "SM001_followup")
    fup.with_suffix(".sm.json").write_bytes(CORRUPT)  # cannot be read
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    widget = open_film(viewer, pre.parent)  # the folder: the pre-op film shown first
    viewer.reset_view()
    assert widget.controller.image.file_name == pre.name
    lay_pre, lay_post, lay_fup = (_layer(viewer, f) for f in (pre, post, fup))
    assert lay_pre.visible and not lay_post.visible

    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    click(qtbot, viewer, widget.landmarks_layer, *truth_points(pre, "L1")["As"])
    assert set(_autosaved(pre)["L1"]) == {"As"}
    assert _autosaved(pre)["L1"]["As"] == pytest.approx(truth_points(pre, "L1")["As"], abs=1.0)

    # the eye icon of the post-op film: the session follows it, the pre-op film is hidden
    click_eye(qtbot, viewer, lay_post)
    assert lay_post.visible and not lay_pre.visible
    assert widget.controller.image.file_name == post.name
    assert widget.film_combo.currentText() == lay_post.name
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    pts = truth_points(post, "L1")
    click(qtbot, viewer, widget.landmarks_layer, *pts["As"])
    click(qtbot, viewer, widget.landmarks_layer, *pts["Ms"])
    assert set(_autosaved(post)["L1"]) == {"As", "Ms"}
    assert set(_autosaved(pre)["L1"]) == {"As"}  # never the other film's clicks

    # hiding the film on screen with no other shown: no session takes a click
    click_eye(qtbot, viewer, lay_post)
    assert not any(ly.visible for ly in (lay_pre, lay_post, lay_fup))
    assert widget.controller is None
    assert widget.prompt_label.text().startswith("No film shown")
    focus_canvas(qtbot, viewer)
    click(qtbot, viewer, widget.landmarks_layer, *pts["Ps"])
    assert set(_autosaved(post)["L1"]) == {"As", "Ms"}
    assert set(_autosaved(pre)["L1"]) == {"As"}
    key(qtbot, viewer, "U")  # a key says why nothing happens (no traceback)
    assert widget.status_label.text().startswith("no film being annotated")
    assert set(_autosaved(post)["L1"]) == {"As", "Ms"}

    # the follow-up film, whose annotation cannot be read: read-only, the file untouched
    click_eye(qtbot, viewer, lay_fup)
    ctl = widget.controller
    assert ctl.image.file_name == fup.name and ctl.read_only is not None
    assert widget.notice_label.isVisible()
    focus_canvas(qtbot, viewer)
    click(qtbot, viewer, widget.landmarks_layer, *truth_points(fup, "L1")["As"])
    assert ctl.points() == {} and fup.with_suffix(".sm.json").read_bytes() == CORRUPT
    assert _autosaved(fup) is None

    # the pre-op film shown again: its own session, with its point, takes the next click
    click_eye(qtbot, viewer, lay_pre)
    assert widget.controller.image.file_name == pre.name
    assert not lay_fup.visible
    assert set(widget.controller.points("L1")) == {"As"}
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    click(qtbot, viewer, widget.landmarks_layer, *truth_points(pre, "L1")["Ms"])
    assert set(_autosaved(pre)["L1"]) == {"As", "Ms"}
    assert set(_autosaved(post)["L1"]) == {"As", "Ms"}
    for c in widget._controllers.values():
        c.dirty = False
