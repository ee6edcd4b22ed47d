"""The Qt-free controller: guided sequence, skip, undo, calibration, autosave and crash
recovery, conflict-safe saving. No napari, no Qt."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from napari_samples import load_truth, truth_cement, truth_points

from napari_spine_measure._predict import predict_point
from napari_spine_measure.controller import AnnotationController, SessionError
from spine_measure.io.annotation import (
    AnnotationConflictError,
    AnnotationFileError,
    load_annotation,
    save_annotation,
)
from spine_measure.io.radiograph import load_radiograph


@pytest.fixture
def ctl(postop_film):
    return AnnotationController.from_radiograph(load_radiograph(postop_film))


def _place_level(ctl, film, level):
    pts = truth_points(film, level)
    while ctl.level == level and ctl.next_point() is not None:
        ctl.place(*pts[ctl.next_point()[1]])


def test_guided_order_and_auto_advance(ctl, postop_film):
    ctl.select_level("L1")
    seen = []
    pts = truth_points(postop_film, "L1")
    for _ in range(6):
        level, name = ctl.next_point()
        seen.append(name)
        assert ctl.place(*pts[name]) == ("L1", name)
    assert seen == ["As", "Ms", "Ps", "Pi", "Mi", "Ai"]
    assert ctl.level == "L2" and ctl.next_point() == ("L2", "As")
    ctl.set_direction(-1)
    ctl.select_level("T12")
    _place_level(ctl, postop_film, "T12")
    assert ctl.level == "T11"  # cranially now; L1 already complete is never revisited
    assert "T11 · As — anterior-superior corner" == ctl.prompt()


def test_measurements_equal_hand_calculation(ctl, postop_film):
    ctl.select_level("T12")
    for lv in ("T12", "L1", "L2"):
        _place_level(ctl, postop_film, lv)
    fm = ctl.measurements()
    p = truth_points(postop_film, "L1")
    h = lambda a, b: math.hypot((p[a][0] - p[b][0]) * 0.25, (p[a][1] - p[b][1]) * 0.25)  # noqa: E731
    assert fm.get("L1", "ha").value == pytest.approx(h("As", "Ai"), abs=1e-9)
    assert fm.get("L1", "hp").value == pytest.approx(h("Ps", "Pi"), abs=1e-9)
    assert fm.get("L1", "ha").calibration_source == "imager_pixel_spacing_ermf"
    t, b = truth_points(postop_film, "T12"), truth_points(postop_film, "L2")
    ref = np.mean([math.hypot((v["As"][0] - v["Ai"][0]) * 0.25, (v["As"][1] - v["Ai"][1]) * 0.25)
                   for v in (t, b)])
    assert fm.get("L1", "cr_anterior").value == pytest.approx(100 * h("As", "Ai") / ref)


def test_skip_optional_then_required(ctl, postop_film):
    ctl.select_level("L1")
    pts = truth_points(postop_film, "L1")
    ctl.place(*pts["As"])
    assert "optional" in ctl.skip()  # Ms skipped
    assert ctl.next_point() == ("L1", "Ps")
    for name in ("Ps", "Pi"):
        ctl.place(*pts[name])
    ctl.skip()  # Mi
    ctl.place(*pts["Ai"])
    assert ctl.level == "L2"
    fm = ctl.measurements()
    assert not math.isnan(fm.get("L1", "ha").value)
    assert math.isnan(fm.get("L1", "hm").value)  # middle height not reported
    # a required point skipped: the vertebra is not measurable, the sequence moves on
    ctl.place(*truth_points(postop_film, "L2")["As"])
    ctl.skip()  # Ms (optional)
    assert "not measurable" in ctl.skip()  # Ps is required
    assert "L2" in ctl.not_measurable and ctl.level == "L3"
    assert ctl.landmarks().levels() == ("L1",)


def test_undo_restores_each_step(ctl, postop_film):
    ctl.select_level("L1")
    pts = truth_points(postop_film, "L1")
    for name in ("As", "Ms", "Ps"):
        ctl.place(*pts[name])
    ctl.move("L1", "As", pts["As"][0] + 1, pts["As"][1])
    ctl.move("L1", "As", pts["As"][0] + 2, pts["As"][1])  # same drag: one undo step
    ctl.end_move()
    ctl.set_flag("L1", "treated", True)
    assert ctl.undo() and not ctl.flags("L1")["treated"]
    assert ctl.undo() and ctl.points("L1")["As"] == tuple(pts["As"])
    assert ctl.undo() and "Ps" not in ctl.points("L1")
    assert ctl.next_point() == ("L1", "Ps")
    assert ctl.undo() and ctl.undo() and ctl.points("L1") == {}
    assert ctl.undo()  # the level selection
    assert not ctl.undo()


def test_outside_point_and_bad_calibration_are_errors(ctl):
    with pytest.raises(SessionError, match="outside the image"):
        ctl.place(-20, 10)
    with pytest.raises(SessionError, match="zero length"):
        ctl.set_calibration((10, 10), (10, 10), 20)


def test_reader_calibration_scales_lengths(ctl, postop_film):
    ctl.select_level("L1")
    _place_level(ctl, postop_film, "L1")
    ha_header = ctl.measurements().get("L1", "ha").value
    # 100 px drawn = 30 mm: 0.3 mm/px instead of 0.25
    cal = ctl.set_calibration((10, 10), (10, 110), 30.0)
    assert cal.source.value == "reader" and cal.spacing == pytest.approx((0.3, 0.3))
    r = ctl.measurements().get("L1", "ha")
    assert r.value == pytest.approx(ha_header * 0.3 / 0.25) and r.calibration_source == "reader"


def test_save_never_overwrites_newer_file(ctl, postop_film):
    ctl.select_level("L1")
    _place_level(ctl, postop_film, "L1")
    path = ctl.save()
    assert load_annotation(path).revision == 1
    # another reader saves revision 2 meanwhile
    other = load_annotation(path).replace(reader="someone-else")
    save_annotation(other, path)
    ctl.set_flag("L1", "fractured", True)
    before = path.read_text()
    with pytest.raises(AnnotationConflictError, match="revision 2"):
        ctl.save()
    assert path.read_text() == before
    ctl.save(overwrite=True)
    assert load_annotation(path).revision == 3 and load_annotation(path).landmarks["L1"].fractured


def test_autosave_after_crash_loses_nothing(postop_film):
    """A session killed with os._exit (no save, no cleanup) is recovered point for point."""
    script = textwrap.dedent(f"""
        import os, json
        from spine_measure.io.radiograph import load_radiograph
        from napari_spine_measure.controller import AnnotationController
        truth = json.load(open({str(postop_film.with_suffix('.truth.json'))!r}))
        pts = {{v["level"]: v["points"] for v in truth["vertebrae"]}}
        ctl = AnnotationController.from_radiograph(load_radiograph({str(postop_film)!r}))
        ctl.select_level("L1")
        for name in ("As", "Ms", "Ps", "Pi", "Mi", "Ai"):
            ctl.place(*pts["L1"][name])
        ctl.place(*pts["L2"]["As"])           # a partial vertebra
        ctl.set_flag("L1", "treated", True)
        ctl.set_finding("ivc", True)
        ctl.set_calibration((5, 5), (5, 105), 25.0)
        os._exit(3)                           # crash: nothing saved
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert not postop_film.with_suffix(".sm.json").exists()
    ctl = AnnotationController.from_radiograph(load_radiograph(postop_film))
    assert ctl.recovery_available()
    ctl.recover()
    truth = {lv: truth_points(postop_film, lv) for lv in ("L1", "L2")}
    assert ctl.points("L1") == {k: tuple(v) for k, v in truth["L1"].items()}
    assert ctl.points("L2") == {"As": tuple(truth["L2"]["As"])}
    assert ctl.next_point() == ("L2", "Ms")
    assert ctl.flags("L1")["treated"] and ctl.findings.ivc is True
    assert ctl.calibration.spacing == pytest.approx((0.25, 0.25))
    path = ctl.save()
    assert not ctl.autosave_path.exists()
    assert load_annotation(path).landmarks.levels() == ("L1",)  # L2 incomplete: not saved
    assert "incomplete: L2" in ctl.last_message


def test_cement_reader_edit_survives_auto_rerun(ctl):
    shape = (ctl.image.rows, ctl.image.cols)
    auto = np.zeros(shape, bool)
    auto[100:120, 100:130] = True
    assert ctl.set_cement_mask("L1", auto, source="auto", params_hash="a") == "added"
    edited = auto.copy()
    edited[100:105] = False
    assert ctl.set_cement_mask("L1", edited, source="edited") == "replaced"
    assert ctl.set_cement_mask("L1", auto, source="auto", params_hash="a") == "kept_edit"
    assert np.array_equal(ctl.cement_mask("L1").to_array(), edited)


def test_cement_features_of_a_reader_mask(ctl, postop_film):
    """The ground-truth mask, given as a reader's edit, gives the sample's ground-truth
    features; a mask without landmarks gives a clear error."""
    c = load_truth(postop_film)["cement"]
    mask = truth_cement(postop_film)
    ctl.set_cement_mask("L1", mask, source="edited")
    with pytest.raises(ValueError, match="L1: treated vertebra has no landmarks"):
        ctl.cement_features("L1")
    assert ctl.cement_features("L2") is None   # no mask there
    ctl.select_level("T12")
    for lv in ("T12", "L1", "L2"):
        _place_level(ctl, postop_film, lv)
    f = ctl.cement_features("L1")
    assert f.found and f.length_unit == "mm"
    assert (f.npec, f.distribution) == (c["npec"], c["distribution"])
    assert [(lk.location, lk.type) for lk in f.leaks] == \
        [(lk["location"], lk["type"]) for lk in c["leaks"]]
    assert f.gap_superior == pytest.approx(c["gap_superior_mm"], abs=0.3)
    assert f.gap_inferior == pytest.approx(c["gap_inferior_mm"], abs=0.3)
    # fill: cement pixels inside the body outline over the outline's pixels, counted with
    # scikit-image's point-in-polygon raster; OpenCV's fill (the toolkit's) also counts the
    # pixels the outline passes through, ~1.5 % more body pixels here, hence the tolerance
    from skimage.draw import polygon2mask

    from spine_measure.cement.frame import body_frame

    outline = body_frame(ctl.landmarks().get("L1"), (0.25, 0.25)).polygon_px
    body = polygon2mask(mask.shape, outline)
    assert f.fill_pct == pytest.approx(100 * (mask & body).sum() / body.sum(), abs=1.0)


def test_prediction_from_neighbour_and_generic_template():
    # a neighbour 20 px tall, 40 px deep; the next vertebra's As goes one step below
    t12 = {"As": (100.0, 40.0), "Ai": (120.0, 40.0), "Ps": (100.0, 0.0), "Pi": (120.0, 0.0)}
    p = predict_point("L1", "As", {}, {"T12": t12})
    assert p == pytest.approx((125.0, 40.0))  # 1.25 x the 20 px extent
    # with two points placed, the neighbour's shape is carried over (here a pure shift)
    placed = {"As": (130.0, 40.0), "Ps": (130.0, 0.0)}
    assert predict_point("L1", "Pi", placed, {"T12": t12}) == pytest.approx((150.0, 0.0))
    # no neighbour: the generic body, caudal down the image, depth from As-Ms
    g = predict_point("L1", "Ai", {"As": (0.0, 0.0), "Ms": (0.0, -25.0)}, {})
    assert g == pytest.approx((40.0, 0.0))  # height 0.8 x depth 50, toward +row
    assert predict_point("L1", "Ms", {"As": (0.0, 0.0)}, {}) is None


def test_autosave_file_is_plain_json(ctl, postop_film):
    ctl.select_level("L1")
    ctl.place(*truth_points(postop_film, "L1")["As"])
    data = json.loads(ctl.autosave_path.read_text())
    assert data["schema"] == "napari_spine_measure.autosave/1"
    assert data["points"]["L1"]["As"] == list(truth_points(postop_film, "L1")["As"])


def test_drag_autosaves_once_at_the_release(ctl, postop_film):
    ctl.select_level("L1")
    _place_level(ctl, postop_film, "L1")
    before = ctl.autosave_path.read_text()
    r, c = ctl.points("L1")["Ai"]
    for k in range(1, 4):
        ctl.move("L1", "Ai", r + k, c, autosave=False)
    assert ctl.autosave_path.read_text() == before  # not at every mouse move
    ctl.end_move()
    saved = json.loads(ctl.autosave_path.read_text())
    assert saved["points"]["L1"]["Ai"] == [r + 3, c]
    assert ctl.undo() and ctl.points("L1")["Ai"] == (r, c)  # one drag, one undo step


def test_read_only_and_start_over_keep_the_unreadable_file(postop_film):
    side = postop_film.with_suffix(".sm.json")
    side.write_text("{not json")
    with pytest.raises(AnnotationFileError):
        AnnotationController.from_radiograph(load_radiograph(postop_film))
    ctl = AnnotationController.from_radiograph(load_radiograph(postop_film),
                                               load_existing=False)
    ctl.open_read_only("cannot be read")
    with pytest.raises(SessionError, match="read-only"):
        ctl.place(100.0, 100.0)
    with pytest.raises(SessionError, match="read-only"):
        ctl.save()
    assert ctl.autosave() is None and side.read_text() == "{not json"
    backup = ctl.start_over()
    assert backup.read_text() == "{not json" and side.read_text() == "{not json"
    ctl.select_level("L1")
    _place_level(ctl, postop_film, "L1")
    side.write_text("{changed meanwhile")  # someone touched it: not replaced
    with pytest.raises(AnnotationFileError, match="changed on disk"):
        ctl.save()
    side.write_text("{not json")
    assert ctl.save() == side and load_annotation(side).landmarks["L1"]
    assert backup.read_text() == "{not json"


def test_reader_genant_rules_undo_autosave_and_file(postop_film, tmp_path):
    """The reader's Genant override: grade 0 <-> shape none kept consistent (said in the
    message), one undo step each, kept through a crash (autosave) and in the saved file,
    and measured beside the computed values."""
    ctl = AnnotationController.from_radiograph(load_radiograph(postop_film),
                                               annotation_path=tmp_path / "a.sm.json")
    ctl.select_level("T12")
    for lv in ("T12", "L1"):
        _place_level(ctl, postop_film, lv)
    with pytest.raises(SessionError, match="no points"):
        ctl.set_genant_reader("L3", grade=1)
    with pytest.raises(SessionError, match="0-3"):
        ctl.set_genant_reader("L1", grade=4)
    with pytest.raises(SessionError, match="one of none, wedge"):
        ctl.set_genant_reader("L1", shape="wedgy")
    assert "shape computed" in ctl.set_genant_reader("L1", grade=2)
    assert ctl.genant_reader("L1") == (2, None)
    assert ctl.set_genant_reader("L1", shape="crush").endswith("shape crush")
    assert ctl.set_genant_reader("L1", grade=0).endswith("(shape none: grade 0)")
    assert ctl.genant_reader("L1") == (0, "none")
    assert ctl.set_genant_reader("L1", shape="wedge").endswith("(grade computed again)")
    assert ctl.genant_reader("L1") == (None, "wedge")
    assert ctl.set_genant_reader("L1", shape="wedge") == ""  # no change, no undo step
    ctl.set_genant_reader("T12", shape="none")
    assert ctl.genant_reader("T12") == (0, "none")
    fm = ctl.measurements()
    row = {r["level"]: r for r in fm.to_rows()}
    assert (row["L1"]["genant_grade_reader"], row["L1"]["genant_shape_reader"]) == \
        (None, "wedge")
    assert row["L1"]["genant_grade"] == fm.get("L1", "genant_grade").value  # computed kept
    # a crash: the autosave brings the overrides back
    again = AnnotationController.from_radiograph(load_radiograph(postop_film),
                                                 annotation_path=tmp_path / "a.sm.json")
    again.recover()
    assert again.genant_reader("L1") == (None, "wedge")
    assert again.genant_reader("T12") == (0, "none")
    # saved and loaded
    ctl.save()
    ann = load_annotation(tmp_path / "a.sm.json")
    assert ann.landmarks["T12"].genant_grade_reader == 0
    assert ann.landmarks["L1"].genant_shape_reader == "wedge"
    loaded = AnnotationController.from_radiograph(load_radiograph(postop_film),
                                                  annotation_path=tmp_path / "a.sm.json")
    assert loaded.genant_reader("L1") == (None, "wedge")
    # undo walks back through every change of L1
    ctl.undo()  # T12
    assert ctl.genant_reader("T12") == (None, None)
    ctl.undo()
    assert ctl.genant_reader("L1") == (0, "none")
    ctl.undo()
    assert ctl.genant_reader("L1") == (2, "crush")
    ctl.undo()
    ctl.undo()
    assert ctl.genant_reader("L1") == (None, None)
    # a vertebra deleted takes its override with it
    ctl.set_genant_reader("L1", grade=3)
    ctl.delete_level("L1")
    assert ctl.genant_reader("L1") == (None, None)


def test_recovering_an_autosave_with_a_bad_genant_override_is_one_clear_error(
        postop_film, tmp_path):
    ctl = AnnotationController.from_radiograph(load_radiograph(postop_film),
                                               annotation_path=tmp_path / "a.sm.json")
    ctl.select_level("L1")
    _place_level(ctl, postop_film, "L1")
    ctl.set_genant_reader("L1", grade=2, shape="wedge")
    data = json.loads(ctl.autosave_path.read_text())
    assert data["genant"] == {"L1": [2, "wedge"]}
    for bad, why in (([0, "wedge"], "contradicts"), ([7, None], "0-3"),
                     (["x"], "Genant state")):
        data["genant"] = {"L1": bad}
        ctl.autosave_path.write_text(json.dumps(data))
        again = AnnotationController.from_radiograph(load_radiograph(postop_film),
                                                     annotation_path=tmp_path / "a.sm.json")
        with pytest.raises(SessionError, match=why):
            again.recover()
        assert again.points() == {}  # nothing half-recovered
