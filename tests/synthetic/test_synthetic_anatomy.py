"""Geometry of the synthetic spine: exact dimensions, corners, curve, distances, cement."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import points_in_poly

from spine_measure.synthetic.anatomy import (
    CementSpec,
    LeakSpec,
    build_ap_spine,
    build_lateral_spine,
    cement_indicator,
    default_ap_levels,
    default_lateral_levels,
    polyline_distance,
    signed_distance,
)


def _dist(a, b) -> float:
    return float(np.hypot(*(np.asarray(a) - np.asarray(b))))


def _line_distance(p, a, b) -> float:
    """Distance of p from the infinite line a-b: |cross(b - a, p - a)| / |b - a|."""
    d, q = np.asarray(b) - a, np.asarray(p) - a
    return abs(d[0] * q[1] - d[1] * q[0]) / float(np.hypot(*d))


@pytest.fixture(scope="module")
def spine():
    specs = default_lateral_levels("T10", "S1")
    return specs, build_lateral_spine(specs)


def test_body_dimensions_are_exact(spine):
    specs, g = spine
    for spec, v in zip(specs, g.vertebrae, strict=True):
        lm = v.landmarks
        if spec.level == "S1":
            assert set(lm) == {"As", "Ps"}
            assert _dist(lm["As"], lm["Ps"]) == pytest.approx(spec.depth, abs=1e-9)
            continue
        assert _dist(lm["As"], lm["Ai"]) == pytest.approx(spec.ha, abs=1e-9)
        assert _dist(lm["Ps"], lm["Pi"]) == pytest.approx(spec.hp, abs=1e-9)
        assert _dist(lm["As"], lm["Ps"]) == pytest.approx(spec.depth, abs=1e-9)
        # Ms / Mi sit cs / ci away from the endplate chord, in the middle
        assert _line_distance(lm["Ms"], lm["Ps"], lm["As"]) == pytest.approx(spec.cs, abs=1e-9)
        assert _line_distance(lm["Mi"], lm["Pi"], lm["Ai"]) == pytest.approx(spec.ci, abs=1e-9)
        assert _dist(lm["Ms"], lm["Ps"]) == pytest.approx(_dist(lm["Ms"], lm["As"]), abs=1e-9)


def test_corners_are_outline_vertices(spine):
    _, g = spine
    for v in g.vertebrae:
        for name, p in v.landmarks.items():
            d = np.hypot(*(v.outline - p).T).min()
            assert d < 1e-12, f"{v.level} {name} is not a vertex of the outline"


def test_discs_have_the_specified_heights(spine):
    specs, g = spine
    for i in range(len(specs) - 1):
        up, lo = g.vertebrae[i].landmarks, g.vertebrae[i + 1].landmarks
        assert _line_distance(lo["Ps"], up["Pi"], up["Ai"]) == pytest.approx(
            specs[i].disc_posterior, abs=1e-9)


def test_curve_is_kyphotic_then_lordotic(spine):
    _, g = spine
    # endplate direction angles (deg) of the superior endplates, posterior -> anterior
    ang = []
    for v in g.vertebrae:
        d = v.landmarks["As"] - v.landmarks["Ps"]
        ang.append(np.degrees(np.arctan2(d[0], -d[1])))
    assert max(ang) - min(ang) > 15.0  # endplates are not parallel
    # upright: first and last Ps on one vertical line
    assert g.vertebrae[0].landmarks["Ps"][1] == pytest.approx(
        g.vertebrae[-1].landmarks["Ps"][1], abs=1e-9)
    # canonical film faces left: anterior is -x
    for v in g.vertebrae:
        assert v.landmarks["As"][1] < v.landmarks["Ps"][1]


def test_signed_distance_square():
    sq = np.array([[0.0, 0.0], [0.0, 4.0], [4.0, 4.0], [4.0, 0.0]])
    pts = np.array([[2.0, 2.0], [1.0, 2.0], [2.0, 7.0], [-3.0, -4.0], [0.0, 2.0]])
    # inside centre: -2; inside 1 from the top edge: -1; outside 3 right; corner 5 (3-4-5)
    np.testing.assert_allclose(signed_distance(pts, sq), [-2.0, -1.0, 3.0, 5.0, 0.0])


def test_signed_distance_sign_matches_points_in_poly(spine):
    _, g = spine
    poly = g.vertebrae[3].outline
    rng = np.random.default_rng(0)
    lo, hi = poly.min(0) - 3, poly.max(0) + 3
    pts = rng.uniform(lo, hi, (400, 2))
    sd = signed_distance(pts, poly)
    inside = points_in_poly(pts, poly)
    keep = np.abs(sd) > 1e-6
    assert np.array_equal((sd < 0)[keep], inside[keep])
    # |sd| is the distance to the closed polyline
    closed = np.concatenate([poly, poly[:1]])
    np.testing.assert_allclose(np.abs(sd), polyline_distance(pts, closed), atol=1e-12)


def test_ap_spine_has_a_scoliotic_curve():
    g = build_ap_spine(default_ap_levels())
    angles = []
    for v in g.vertebrae:
        lm = v.landmarks
        assert set(lm) == {"SL", "SR", "IL", "IR"}
        for a, b in (("SL", "SR"), ("IL", "IR")):
            d = lm[b] - lm[a]
            angles.append(np.degrees(np.arctan2(d[0], d[1])))
    cobb = max(angles) - min(angles)
    assert 15.0 <= cobb <= 25.0


def _cement_points(g, level, step=0.1):
    v = g.vertebra(level)
    lo, hi = v.outline.min(0) - 8, v.outline.max(0) + 8
    yy, xx = np.mgrid[lo[0]:hi[0]:step, lo[1]:hi[1]:step]
    pts = np.stack([yy.ravel(), xx.ravel()], 1)
    return pts[cement_indicator(g, pts)]


def test_cement_gap_and_contact_follow_the_spec():
    specs = default_lateral_levels("L1", "L3")
    spec = CementSpec("blocky", (0.1, 0.8), gap_superior=3.0, gap_inferior=0.0)
    g = build_lateral_spine(specs, cement_level="L2", cement=spec)
    pts = _cement_points(g, "L2")
    v = g.vertebra("L2")
    assert polyline_distance(pts, v.superior_curve).min() >= 3.0 - 0.1
    assert polyline_distance(pts, v.inferior_curve).min() <= 0.1
    # no leak: every cement point inside the body
    assert (signed_distance(pts, v.outline) <= 1e-9).all()


def test_cement_leak_leaves_the_body():
    specs = default_lateral_levels("L1", "L3")
    spec = CementSpec("spongy", gap_superior=0.0, gap_inferior=0.0, seed=4,
                      leaks=(LeakSpec("superior_disc", "spike", 0.5, 5.0),))
    g = build_lateral_spine(specs, cement_level="L2", cement=spec)
    pts = _cement_points(g, "L2")
    v = g.vertebra("L2")
    outside = pts[signed_distance(pts, v.outline) > 0.5]
    assert len(outside) > 0
    # all of it cranial to the superior endplate (towards L1), up to the spike length
    d = polyline_distance(outside, v.superior_curve)
    assert d.max() <= 5.0 + 0.2
    assert (polyline_distance(outside, v.inferior_curve) > 15.0).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="levels"):
        build_lateral_spine([])
    with pytest.raises(ValueError, match="levels"):
        build_ap_spine([])
