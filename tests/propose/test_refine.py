"""Click refinement: corners and mid-endplate points move to the image's edges, never
further than the radius, never when the image gives no clear answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_measure.cli import main
from spine_measure.io.annotation import load_annotation
from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks
from spine_measure.propose.refine import refine_landmark, refine_point

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_dicoms"


def _box(angle_deg: float = 0.0, size: int = 160):
    """A bright rotated rectangle (a vertebral body) on a dark field, blurred; returns the
    image and its four corners (row, col): As (top-left), Ai, Pi, Ps."""
    from scipy import ndimage

    rr, cc = np.mgrid[0:size, 0:size].astype(float)
    c = (size - 1) / 2
    a = np.radians(angle_deg)
    u = (rr - c) * np.cos(a) + (cc - c) * np.sin(a)     # rotated row coordinate
    v = -(rr - c) * np.sin(a) + (cc - c) * np.cos(a)
    img = ((np.abs(u) < 30) & (np.abs(v) < 40)).astype(float)
    img = ndimage.gaussian_filter(img, 0.8)
    corners = {}
    for name, (du, dv) in {"As": (-30, -40), "Ai": (30, -40), "Pi": (30, 40),
                           "Ps": (-30, 40)}.items():
        corners[name] = (c + du * np.cos(a) - dv * np.sin(a),
                         c + du * np.sin(a) + dv * np.cos(a))
    return img, corners


def test_corner_is_found_on_a_rotated_body():
    img, corners = _box(7.0)
    truth = np.array(corners["As"])
    click = truth + (3.0, -2.5)
    pts = {**corners, "As": tuple(click)}
    r = refine_landmark(img, pts, "As", radius_px=8)
    assert r.ok, r.reason
    # the edge of a blurred step of width 60 centred on c lies half a pixel outside
    assert np.hypot(*(np.array(r.point) - truth)) < 0.9
    assert r.distance <= 8


def test_mid_endplate_point_moves_onto_the_endplate_only():
    img, corners = _box(0.0)
    pts = dict(corners)
    ms = np.array([(corners["As"][0] + corners["Ps"][0]) / 2, 80.0]) + (3.0, 0.0)
    pts["Ms"] = tuple(ms)
    r = refine_landmark(img, pts, "Ms", radius_px=8)
    assert r.ok, r.reason
    assert r.point[1] == pytest.approx(ms[1], abs=0.3)        # along the endplate: kept
    assert r.point[0] == pytest.approx(corners["As"][0] - 0.5, abs=0.6)


def test_no_clear_answer_keeps_the_click():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (120, 120))
    r = refine_point(noise, (60.0, 60.0), endplate_dir=np.array([0.0, 1.0]),
                     wall_dir=np.array([1.0, 0.0]), radius_px=8)
    assert not r.ok and r.reason and r.point == (60.0, 60.0) and r.distance == 0
    flat = np.zeros((120, 120))
    r = refine_point(flat, (60.0, 60.0), endplate_dir=np.array([0.0, 1.0]),
                     wall_dir=np.array([1.0, 0.0]), radius_px=8)
    assert not r.ok


def test_edge_beyond_the_radius_is_not_taken():
    img, corners = _box(0.0)
    truth = np.array(corners["As"])
    pts = {**corners, "As": tuple(truth + (6.0, 6.0))}
    r = refine_landmark(img, pts, "As", radius_px=4)
    assert not r.ok and r.reason and r.point == pts["As"]


@settings(max_examples=40, deadline=None)
@given(dr=st.floats(-12, 12), dc=st.floats(-12, 12), angle=st.floats(-20, 20),
       radius=st.floats(1.0, 10.0))
def test_never_further_than_the_radius(dr, dc, angle, radius):
    img, corners = _box(angle)
    click = np.array(corners["Ai"]) + (dr, dc)
    r = refine_landmark(img, {**corners, "Ai": tuple(click)}, "Ai", radius_px=radius)
    moved = float(np.hypot(*(np.array(r.point) - click)))
    assert moved <= radius + 1e-9
    if not r.ok:
        assert moved == 0 and r.reason


def test_refinement_improves_perturbed_corners_on_sample_films():
    rng = np.random.default_rng(5)
    before, after = [], []
    for tp in ("preop", "postop"):
        film = load_radiograph(SAMPLE / "SM002" / f"SM002_{tp}.dcm")
        truth = SpineLandmarks.from_dict(json.loads(
            (SAMPLE / "SM002" / f"SM002_{tp}.truth.json").read_text()))
        img = film.density
        for v in truth:
            if v.level == "S1":
                continue
            noisy = {n: tuple(v.point(n) + rng.normal(0, 2.0, 2)) for n in v.points}
            for n in ("As", "Ai", "Ps", "Pi"):
                r = refine_landmark(img, noisy, n, radius_px=6)
                before.append(np.hypot(*(np.array(noisy[n]) - v.point(n))))
                after.append(np.hypot(*(np.array(r.point) - v.point(n))))
    before, after = np.array(before), np.array(after)
    assert np.median(after) < 0.6 * np.median(before)
    assert np.mean(after <= before + 0.5) >= 0.9


def test_refine_command(tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(SAMPLE / "SM001" / "SM001_preop.dcm", films)
    shutil.copy(SAMPLE / "SM001" / "SM001_preop.sm.json", films)
    out = tmp_path / "out"
    rc = main(["refine", str(films / "SM001_preop.dcm"), "--out", str(out), "--radius-mm",
               "1.5", "--no-progress"])
    assert rc == 0
    ann = load_annotation(out / "SM001_preop.sm.json")
    src = load_annotation(films / "SM001_preop.sm.json")
    moved = [(v.level, n) for v in ann.landmarks for n in v.points
             if v.points[n] != src.landmarks[v.level].points[n]]
    assert moved
    for lv, n in moved:
        assert ann.review_of(lv).source(n) == "refined"
        assert lv in ann.unconfirmed_levels()
    rows = list(__import__("csv").DictReader(open(out / "refinement.csv")))
    assert sum(r["status"] == "refined" for r in rows) == len(moved)
    # the reader's truth-exact points barely move (they already sit on the edges)
    assert max(float(r["distance_px"]) for r in rows if r["status"] == "refined") < 5.6
    assert main(["refine", str(films / "SM001_preop.dcm"), "--out", str(out),
                 "--no-progress"]) == 3
    assert "exists; not replaced" in capsys.readouterr().err


def test_a_short_edge_is_not_an_answer():
    """A strong edge shorter than half the sampled length (on AP films: a pedicle ring or a
    rib crossing the corner) is refused; the same corner of a long body is found."""
    from scipy import ndimage

    from spine_measure.propose.refine import MIN_EDGE_PROFILES, N_PROFILES

    assert MIN_EDGE_PROFILES > N_PROFILES // 2
    kw = {"endplate_dir": np.array([0.0, 1.0]), "wall_dir": np.array([1.0, 0.0]),
          "radius_px": 8}
    for side, answers in ((12, False), (40, True)):
        img = np.zeros((120, 120))
        img[40:40 + side, 40:40 + side] = 1.0
        img = ndimage.gaussian_filter(img, 0.8)
        r = refine_point(img, (42.0, 38.0), **kw)
        assert r.ok is answers, (side, r.reason)
        if answers:
            assert np.allclose(r.point, (39.5, 39.5), atol=0.3)
        else:
            assert r.point == (42.0, 38.0) and "no clear" in r.reason


def test_refine_refuses_two_radii(tmp_path, capsys):
    """--radius-px and --radius-mm together: one usage line, exit 2, nothing written (the
    mm radius used to win silently)."""
    film = tmp_path / "SM001_preop.dcm"
    shutil.copy(SAMPLE / "SM001" / "SM001_preop.dcm", film)
    shutil.copy(SAMPLE / "SM001" / "SM001_preop.sm.json", tmp_path)
    out = tmp_path / "out"
    rc = main(["refine", str(film), "--out", str(out), "--radius-px", "5", "--radius-mm",
               "1.5", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--radius-px 5 and --radius-mm 1.5" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
