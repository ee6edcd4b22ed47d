"""The proposed flags of a proposal (``flag_source``, docs/propagation.md) survive the
plugin's review: confirming (Enter), a drag, saving and the autosave recovery keep them, like
the point sources."""

from __future__ import annotations

from napari_proposals import film_with_proposals

from napari_spine_measure.controller import AnnotationController
from spine_measure.io.annotation import load_annotation
from spine_measure.io.radiograph import load_radiograph

PROPOSED = {"fractured": "propagated", "treated": "cement"}


def test_confirm_drag_save_and_recovery_keep_the_proposed_flags(tmp_path):
    film = film_with_proposals(tmp_path)
    side = film.with_suffix(".sm.json")
    before = load_annotation(side)
    assert dict(before.review_of("L1").flag_source) == PROPOSED  # pre-op L1 was not treated
    ctl = AnnotationController.from_radiograph(load_radiograph(film))
    p = ctl.points("L1")["As"]
    ctl.move("L1", "As", p[0] + 2.0, p[1])
    ctl.confirm("L1")
    assert ctl.review_of("L1").confirmed
    assert dict(ctl.review_of("L1").flag_source) == PROPOSED
    again = AnnotationController.from_radiograph(load_radiograph(film))  # crash: recover
    assert again.recovery_available()
    again.recover()
    assert dict(again.review_of("L1").flag_source) == PROPOSED
    assert again.review_of("L1").confirmed and again.review_of("L1").source("As") == "reader"
    ctl.save()
    after = load_annotation(side)
    assert after.landmarks["L1"].treated and after.review_of("L1").confirmed
    assert dict(after.review_of("L1").flag_source) == PROPOSED
