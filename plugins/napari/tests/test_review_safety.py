"""Saving in napari keeps the review state of proposals (annotation schema 2): an
unconfirmed proposal stays unconfirmed, a point the reader drags becomes ``reader``, a
deleted vertebra leaves no review entry. Real viewer under Xvfb, real Qt mouse events."""

from __future__ import annotations

import math

import pytest
from napari_gui import drag, focus_canvas, open_film
from napari_proposals import film_with_proposals

from napari_spine_measure.controller import AnnotationController
from spine_measure.io.annotation import load_annotation
from spine_measure.io.radiograph import load_radiograph
from spine_measure.propose.review import move_point


def test_controller_round_trip_keeps_review_state(tmp_path):
    film = film_with_proposals(tmp_path)
    side = film.with_suffix(".sm.json")
    before = load_annotation(side)
    assert before.unconfirmed_levels() == ("T10", "T11", "T12", "L1", "L2", "L3", "L4")
    ctl = AnnotationController.from_radiograph(load_radiograph(film))
    assert ctl.unconfirmed_levels() == before.unconfirmed_levels()
    ctl.save()  # nothing changed: the same review state comes back
    again = load_annotation(side)
    assert dict(again.review) == dict(before.review)
    assert again.revision == before.revision + 1

    p = ctl.points("L2")["As"]
    ctl.move("L2", "As", p[0] + 4.0, p[1] - 2.0)
    ctl.move("L3", "Ai", *ctl.points("L3")["Ai"], refined=False)  # same place: no change
    ctl.delete_level("T10")
    ctl.confirm("T11")
    ctl.save()
    after = load_annotation(side)
    # the library's own move_point gives the same review state for L2
    expected = move_point(before, "L2", "As", (p[0] + 4.0, p[1] - 2.0))
    assert after.review_of("L2") == expected.review_of("L2")
    assert after.review_of("L2").source("As") == "reader"
    assert "As" not in after.review_of("L2").confidence
    assert after.review_of("L2").source("Ai") == "propagated"
    assert after.review_of("L3") == before.review_of("L3")
    assert "T10" not in after.review and "T10" not in after.landmarks
    assert after.review_of("T11").confirmed
    assert after.review_of("T11").source("As") == "propagated"  # confirmed, never moved
    assert after.unconfirmed_levels() == ("T12", "L1", "L2", "L3", "L4")
    # undo brings the deleted vertebra back with its review state
    assert ctl.undo() and ctl.undo()  # confirm, delete
    assert ctl.review_of("T10") == before.review_of("T10")


def test_autosave_recovery_keeps_review_state(tmp_path):
    film = film_with_proposals(tmp_path)
    ctl = AnnotationController.from_radiograph(load_radiograph(film))
    p = ctl.points("L3")["Ps"]
    ctl.move("L3", "Ps", p[0] + 3.0, p[1])
    ctl.confirm("L4")
    again = AnnotationController.from_radiograph(load_radiograph(film))
    assert again.recovery_available()
    again.recover()
    assert again.review_of("L3").source("Ps") == "reader"
    assert again.review_of("L4").confirmed
    assert again.unconfirmed_levels() == ("T10", "T11", "T12", "L1", "L2", "L3")


@pytest.mark.gui
def test_drag_and_save_in_napari_keep_proposals_unconfirmed(make_napari_viewer, qtbot,
                                                              tmp_path):
    film = film_with_proposals(tmp_path)
    side = film.with_suffix(".sm.json")
    before = load_annotation(side)
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, film)
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    ctl = widget.controller
    assert ctl.unconfirmed_levels() == before.unconfirmed_levels()
    start = tuple(ctl.points("L2")["As"])
    drag(qtbot, viewer, widget.landmarks_layer, start, (start[0] + 8, start[1]), steps=10)
    assert ctl.points("L2")["As"][0] == pytest.approx(start[0] + 8, abs=1.5)
    widget.save()
    after = load_annotation(side)
    assert after.unconfirmed_levels() == before.unconfirmed_levels()  # nothing turned reader
    assert after.review_of("L2").source("As") == "reader"
    assert after.review_of("L2").source("Ps") == "propagated"
    for lv in ("T10", "T11", "T12", "L1", "L3", "L4"):
        assert after.review_of(lv) == before.review_of(lv)
        assert after.landmarks[lv].points == before.landmarks[lv].points
    # and the measuring commands still leave them out
    measured, left_out = after.for_measurement()
    assert measured.landmarks.levels() == () and len(left_out) == 7
    widget.ask = False


def test_click_refinement_in_the_controller(postop_film):
    """With the refiner on, a click whose neighbours are placed goes onto the corner the
    image shows (the sample's truth), is marked refined, and the vertebra stays confirmed
    (the reader watched it land); the first click of a vertebra cannot be refined yet."""
    from napari_samples import truth_points

    from spine_measure.propose.refine import refine_landmark

    rg = load_radiograph(postop_film)
    ctl = AnnotationController.from_radiograph(rg)
    ctl.refiner = lambda level, name, pts: refine_landmark(rg.density, pts, name,
                                                           radius_px=8.0)
    truth = truth_points(postop_film, "L2")
    ctl.select_level("L2")
    while ctl.level == "L2":
        name = ctl.next_point()[1]
        t = truth[name]
        click = (t[0] - 3.0, t[1] + 2.0) if name == "Ai" else (t[0], t[1])
        ctl.place(*click)
    ai = ctl.points("L2")["Ai"]  # the last click: every neighbour placed
    assert math.hypot(ai[0] - truth["Ai"][0], ai[1] - truth["Ai"][1]) < 1.0
    assert ctl.review_of("L2").source("Ai") == "refined"
    assert ctl.review_of("L2").confirmed
    path = ctl.save(postop_film.with_suffix(".sm.json"))
    saved = load_annotation(path)
    assert saved.review_of("L2").source("Ai") == "refined"
    assert saved.unconfirmed_levels() == ()
    assert ctl.undo()  # the click and its refinement: one step
    assert "Ai" not in ctl.points("L2")
