"""Rendering: determinism, options, landmarks on the anatomy, cement visibility."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from spine_measure.synthetic.anatomy import (
    CementSpec,
    build_lateral_spine,
    default_lateral_levels,
)
from spine_measure.synthetic.render import RenderOptions, render_film


@pytest.fixture(scope="module")
def geom():
    spec = CementSpec("spongy", (0.1, 0.85), 0.0, 0.0, seed=3)
    return build_lateral_spine(default_lateral_levels("T12", "L3"), cement_level="L1",
                               cement=spec)


OPTS = RenderOptions(spacing_mm=0.4, seed=7)


def test_same_seed_same_pixels_different_seed_differs(geom):
    a = render_film(geom, OPTS)
    b = render_film(geom, OPTS)
    c = render_film(geom, RenderOptions(spacing_mm=0.4, seed=8))
    assert np.array_equal(a.pixels, b.pixels)
    assert np.array_equal(a.cement_mask, b.cement_mask)
    assert a.pixels.shape == c.pixels.shape
    assert np.abs(a.pixels.astype(int) - c.pixels.astype(int)).mean() > 1.0
    # the cement mask is geometry, not noise: independent of the seed
    assert np.array_equal(a.cement_mask, c.cement_mask)


def test_monochrome1_is_the_inverse(geom):
    a = render_film(geom, OPTS)
    b = render_film(geom, RenderOptions(spacing_mm=0.4, seed=7, polarity="MONOCHROME1",
                                        bits_stored=12))
    assert np.array_equal(b.pixels.astype(int), 4095 - a.pixels.astype(int))


def test_landmarks_scale_with_spacing(geom):
    a = render_film(geom, RenderOptions(spacing_mm=0.4, noise=0))
    b = render_film(geom, RenderOptions(spacing_mm=0.25, noise=0, rotation_deg=4.0,
                                        facing="right"))
    for v_mm, va, vb in zip(geom.vertebrae, a.geometry_px.vertebrae, b.geometry_px.vertebrae,
                            strict=True):
        d_mm = np.hypot(*(v_mm.landmarks["As"] - v_mm.landmarks["Pi"]))
        assert np.hypot(*(va.landmarks["As"] - va.landmarks["Pi"])) * 0.4 == pytest.approx(d_mm)
        assert np.hypot(*(vb.landmarks["As"] - vb.landmarks["Pi"])) * 0.25 == pytest.approx(d_mm)
        # facing left: anterior is on the left; facing right: on the right
        assert va.landmarks["As"][1] < va.landmarks["Ps"][1]
        assert vb.landmarks["As"][1] > vb.landmarks["Ps"][1]


def test_given_shape_centres_the_anatomy(geom):
    f = render_film(geom, RenderOptions(spacing_mm=0.5, shape=(500, 400), seed=1))
    assert f.pixels.shape == (500, 400)
    pts = f.geometry_px.all_points()  # bodies and posterior elements
    mid = 0.5 * (pts.min(0) + pts.max(0))
    np.testing.assert_allclose(mid, [249.5, 199.5], atol=1e-9)


def test_noise_and_blur_options_act(geom):
    clean = render_film(geom, RenderOptions(spacing_mm=0.4, noise=0.0, seed=2)).pixels
    noisy = render_film(geom, RenderOptions(spacing_mm=0.4, noise=3.0, seed=2)).pixels
    blurred = render_film(geom, RenderOptions(spacing_mm=0.4, noise=0.0, blur_mm=1.5,
                                              seed=2)).pixels

    def hf(x):  # high-frequency energy: mean squared Laplacian-like difference
        x = x.astype(float)
        return float(np.mean((x[1:-1, 1:-1] * 4 - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2]
                              - x[1:-1, 2:]) ** 2))

    assert hf(noisy) > hf(clean)
    assert np.std(noisy.astype(float) - clean) > 10.0  # DN of 4095
    assert hf(blurred) < 0.5 * hf(clean)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="spacing_mm"):
        RenderOptions(spacing_mm=0)
    with pytest.raises(ValueError, match="facing"):
        RenderOptions(facing="up")
    with pytest.raises(ValueError, match="polarity"):
        RenderOptions(polarity="RGB")


def _disc(img, p, r):
    rr, cc = np.mgrid[: img.shape[0], : img.shape[1]]
    return float(img[(rr - p[0]) ** 2 + (cc - p[1]) ** 2 <= r * r].mean())


def test_corners_sit_on_the_rendered_body(geom):
    f = render_film(geom, RenderOptions(spacing_mm=0.3, seed=5))
    img = f.pixels.astype(float)
    r = 1.0 / 0.3
    vs = f.geometry_px.vertebrae
    for up, lo in zip(vs[:-1], vs[1:], strict=True):
        lm, nx = up.landmarks, lo.landmarks
        centre = np.mean([lm[k] for k in ("As", "Ai", "Pi", "Ps")], axis=0)
        disc = np.mean([lm["Ai"], lm["Pi"], nx["As"], nx["Ps"]], axis=0)
        d_val = _disc(img, disc, r)
        for k in ("As", "Ai", "Ps", "Pi"):
            inward = lm[k] + (centre - lm[k]) / np.hypot(*(centre - lm[k])) * 2.0 / 0.3
            outward = lm[k] - (centre - lm[k]) / np.hypot(*(centre - lm[k])) * 2.0 / 0.3
            assert _disc(img, inward, r) > d_val + 50, f"{up.level} {k}"
            assert _disc(img, inward, r) > _disc(img, outward, r) + 50, f"{up.level} {k}"


def test_cement_is_the_bright_region(geom):
    f = render_film(geom, RenderOptions(spacing_mm=0.3, seed=5))
    m = f.cement_mask
    assert m.sum() > 500
    rr, cc = np.nonzero(m)
    box = np.s_[rr.min() - 30 : rr.max() + 30, cc.min() - 30 : cc.max() + 30]
    sub = f.pixels[box].astype(float)
    seg = sub > threshold_otsu(sub)
    dice = 2 * (seg & m[box]).sum() / (seg.sum() + m[box].sum())
    assert dice >= 0.95
    # cement is clearly denser than cortical bone anywhere on the film
    bone = f.pixels[~m].astype(float)
    assert np.median(f.pixels[m]) > np.percentile(bone, 99.9)
