"""The OpenCV fast paths of the cement code equal the library definitions they replace.

Each helper is checked against the scipy / scikit-image function whose definition it keeps,
on random masks (hypothesis), so a speed-up can never change a feature silently.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold
from skimage.measure import perimeter as sk_perimeter

from spine_measure.cement.features import (
    _gap,
    _gap_candidates,
    convex_hull_mask,
    fill_holes,
    perimeter,
)
from spine_measure.cement.frame import body_frame
from spine_measure.cement.segment import drop_small_components, hysteresis, within
from spine_measure.landmarks import Vertebra

masks = arrays(bool, st.tuples(st.integers(3, 40), st.integers(3, 40)),
               elements=st.booleans())


def _blobs(seed: int, shape=(60, 70), fill=0.45) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    return noise > np.quantile(noise, 1 - fill)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_perimeter_is_skimage_perimeter(mask):
    assert perimeter(mask) == sk_perimeter(mask, neighborhood=8)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_fill_holes_is_scipy_binary_fill_holes(mask):
    np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(2, 30)),
              elements=st.floats(0, 10)), st.floats(0, 5), st.floats(5, 10))
def test_hysteresis_is_skimage_hysteresis(x, low, high):
    np.testing.assert_array_equal(hysteresis(x, low, high),
                                  apply_hysteresis_threshold(x, low, high))


@settings(max_examples=40, deadline=None)
@given(masks, st.integers(1, 6), st.sampled_from([1, 2]))
def test_drop_small_components_is_the_scipy_label_definition(mask, min_px, connectivity):
    lab, n = ndimage.label(mask, ndimage.generate_binary_structure(2, connectivity))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    want = (sizes >= min_px)[lab] & mask if min_px > 1 else mask
    np.testing.assert_array_equal(drop_small_components(mask, min_px,
                                                        connectivity=connectivity), want)


@settings(max_examples=40, deadline=None)
@given(masks, st.floats(0.3, 4.0), st.sampled_from([(1.0, 1.0), (0.5, 0.5), (0.3, 0.7)]))
def test_within_is_an_edt_threshold(mask, radius, spacing):
    if not mask.any():
        assert not within(mask, radius, spacing).any()
        return
    edt = ndimage.distance_transform_edt(~mask, sampling=spacing)
    np.testing.assert_array_equal(within(mask, radius, spacing), edt <= radius + 1e-12)


@settings(max_examples=40, deadline=None)
@given(masks)
def test_convex_hull_from_the_boundary_equals_hull_of_every_pixel(mask):
    import cv2

    from spine_measure.cement.frame import fill_polygon

    rr, cc = np.nonzero(mask)
    if rr.size < 3:
        return
    hull = cv2.convexHull(np.stack([rr, cc], 1).astype(np.float32))[:, 0, :]
    want = fill_polygon(hull.astype(float), mask.shape) | mask
    np.testing.assert_array_equal(convex_hull_mask(mask), want)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(-0.3, 0.3), st.floats(0.2, 0.8),
       st.sampled_from([(0.5, 0.5), (1.0, 1.0)]))
def test_gap_from_boundary_and_band_equals_gap_from_every_pixel(seed, tilt, fill, spacing):
    """The superior / inferior gap from the candidate pixels equals the brute-force gap,
    also when the endplate line runs through the cement (gap 0)."""
    cem = _blobs(seed, fill=fill)
    if not cem.any():
        return
    v = Vertebra("L1", "lateral", {"Ps": (10.0, 5.0), "As": (10.0 + 60 * tilt, 65.0),
                                   "Pi": (50.0, 5.0), "Ai": (50.0 - 30 * tilt, 65.0)})
    frame = body_frame(v, spacing)
    rr, cc = np.nonzero(cem)
    every = np.stack([rr, cc], 1).astype(float)
    for which, poly in (("superior", frame.superior_px), ("inferior", frame.inferior_px)):
        fast = _gap(_gap_candidates(cem, poly, 0, 0, spacing), frame, which)
        slow = _gap(every, frame, which)
        assert fast[0] == slow[0]


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 300), st.just(2)), elements=st.floats(-20, 20)),
       arrays(np.float64, st.tuples(st.integers(2, 4), st.just(2)), elements=st.floats(-20, 20)))
def test_nearest_point_to_a_polyline_is_the_brute_force_argmin(pts, poly):
    from spine_measure.cement.features import _nearest
    from spine_measure.cement.frame import polyline_distance

    d = polyline_distance(pts, poly)
    i, gap = _nearest(pts, poly)
    assert gap == pytest.approx(d.min(), abs=1e-12)
    assert d[i] == pytest.approx(d.min(), abs=1e-12)
