"""The working grid: fine films are segmented and measured on ~0.3 mm blocks.

The helpers are checked against their numpy / scikit-image definitions, and the pipeline on
films rendered at 0.14 mm (where the grid is 2 x 2 blocks) against the exact truth, as the
sample films (0.25-0.29 mm, full resolution) are in ``test_cement_samples.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.filters import apply_hysteresis_threshold, threshold_otsu
from skimage.morphology import remove_small_objects

from spine_measure.cement import FeatureParams, SegmentationParams, analyze_cement
from spine_measure.cement.features import cement_features
from spine_measure.cement.segment import (
    block_expand,
    block_mean,
    grid_factor,
    hysteresis,
    otsu,
    segment_cement,
)
from spine_measure.landmarks import SpineLandmarks
from spine_measure.synthetic import CASES, render_case_film


@pytest.mark.parametrize(("spacing", "grid", "f"), [
    ((0.139, 0.139), 0.3, 2), ((0.25, 0.25), 0.3, 1), ((0.1, 0.1), 0.3, 3),
    ((0.15, 0.15), 0.3, 2), ((0.1, 0.2), 0.3, 1), ((0.05, 0.05), 0.3, 6),
    ((0.1, 0.1), 0.0, 1), ((0.6, 0.6), 0.3, 1),
])
def test_grid_factor(spacing, grid, f):
    assert grid_factor(spacing, grid) == f


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 30)),
              elements=st.floats(-100, 100, width=32)), st.integers(1, 5))
def test_block_mean_is_the_mean_of_edge_padded_blocks(img, f):
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(img.astype(np.float64), ((0, hp - h), (0, wp - w)), mode="edge")
    want = padded.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3))
    np.testing.assert_allclose(block_mean(img, f), want, rtol=1e-5, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 20), st.integers(1, 20)), elements=st.booleans()),
       st.integers(1, 6), st.integers(0, 5), st.integers(0, 5))
def test_block_expand_repeats_each_pixel(mask, f, cut_r, cut_c):
    want = np.kron(mask, np.ones((f, f), bool)).astype(bool)
    shape = (max(1, want.shape[0] - cut_r % f), max(1, want.shape[1] - cut_c % f))
    np.testing.assert_array_equal(block_expand(mask, f, shape), want[: shape[0], : shape[1]])


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(2, 400), elements=st.floats(-50, 50)))
def test_otsu_is_skimage_otsu_up_to_a_bin(values):
    if np.ptp(values) == 0:
        assert otsu(values) == values[0]
        return
    assume(np.ptp(values) > 1e-9)  # below that numpy cannot make skimage's 256 bins
    bin_width = np.ptp(values) / 256
    assert abs(otsu(values) - threshold_otsu(values)) <= bin_width * (1 + 1e-9)


def test_otsu_equals_skimage_on_a_bimodal_sample():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(10, 1, 5000), rng.normal(20, 2, 3000)])
    assert otsu(v) == pytest.approx(threshold_otsu(v), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(2, 30)),
              elements=st.floats(0, 10)), st.floats(0, 5), st.floats(5, 10), st.integers(1, 8))
def test_hysteresis_with_min_pixels_is_skimage_then_remove_small_objects(x, low, high, min_px):
    want = apply_hysteresis_threshold(x, low, high)
    if min_px > 1:
        want = remove_small_objects(want, max_size=min_px - 1, connectivity=1)
    np.testing.assert_array_equal(hysteresis(x, low, high, min_pixels=min_px), want)


FINE = 0.14  # mm: the grid factor is 2


@pytest.fixture(scope="module", params=["SM002", "SM003", "SM004", "SM005"])
def fine_film(request):
    case = next(c for c in CASES if c.patient_id == request.param)
    gen = render_case_film(case, case.films[1], spacing_mm=FINE)
    assert gen.calibration["row_mm"] == pytest.approx(FINE)  # the header tells the truth
    return gen


def _density(gen) -> np.ndarray:
    pix = gen.film.pixels.astype(np.float32)
    return -pix if gen.film.options.polarity == "MONOCHROME1" else pix


def test_fine_film_on_the_grid_matches_truth(fine_film):
    truth = fine_film.truth
    c = truth["cement"]
    lm = SpineLandmarks.from_dict(truth)
    res = analyze_cement(_density(fine_film), lm, c["level"], (FINE, FINE))
    gt = fine_film.film.cement_mask
    dice = 2 * (res.mask & gt).sum() / (res.mask.sum() + gt.sum())
    assert dice >= 0.95, f"Dice {dice:.3f}"
    f = res.features
    assert (f.npec, f.distribution) == (c["npec"], c["distribution"])
    assert [(lk.location, lk.type) for lk in f.leaks] == \
        [(lk["location"], lk["type"]) for lk in c["leaks"]]
    assert f.gap_superior == pytest.approx(c["gap_superior_mm"], abs=0.3)
    assert f.gap_inferior == pytest.approx(c["gap_inferior_mm"], abs=0.3)
    # the mask is stored at full resolution, its border placed finer than the 2 x 2 blocks:
    # whatever the blocks' alignment, some block is partly cement
    assert res.mask.shape == gt.shape
    for dr in (0, 1):
        for dc in (0, 1):
            m = res.mask[dr:, dc:]
            m = m[: m.shape[0] // 2 * 2, : m.shape[1] // 2 * 2]
            counts = m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).sum(axis=(1, 3))
            assert ((counts > 0) & (counts < 4)).any()


def test_grid_and_full_resolution_agree(fine_film):
    c = fine_film.truth["cement"]
    lm = SpineLandmarks.from_dict(fine_film.truth)
    img = _density(fine_film)
    grid = segment_cement(img, lm, c["level"], (FINE, FINE))
    full = segment_cement(img, lm, c["level"], (FINE, FINE),
                          params=SegmentationParams(grid_mm=0))
    a, b = grid.mask, full.mask
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.97
    fg = cement_features(grid, lm, c["level"], (FINE, FINE))
    ff = cement_features(grid, lm, c["level"], (FINE, FINE), params=FeatureParams(grid_mm=0))
    assert fg.cement_area == ff.cement_area and fg.fill_pct == ff.fill_pct  # pixel counts
    assert (fg.npec, fg.distribution) == (ff.npec, ff.distribution)
    assert fg.gap_superior == pytest.approx(ff.gap_superior, abs=FINE * 2)
    assert fg.gap_inferior == pytest.approx(ff.gap_inferior, abs=FINE * 2)
    # leaks: same list; areas differ by the grid's quantisation of the 1 mm tolerance band
    # (about half a block along the leak's border)
    assert len(fg.leaks) == len(ff.leaks)
    for lg, lf in zip(sorted(fg.leaks, key=lambda lk: lk.location),
                      sorted(ff.leaks, key=lambda lk: lk.location), strict=True):
        assert lg.location == lf.location and lg.type == lf.type
        border_mm = lf.shape["length"] * 2 + lf.shape["max_width"] * 2
        assert lg.area == pytest.approx(lf.area, abs=border_mm * FINE)
        assert np.hypot(lg.centroid_px[0] - lf.centroid_px[0],
                        lg.centroid_px[1] - lf.centroid_px[1]) < 2.0
