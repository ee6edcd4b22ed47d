"""The synthetic series generator: chosen positioning, magnification and kyphosis change."""

from __future__ import annotations

import numpy as np
import pytest

from spine_measure.landmarks import SpineLandmarks
from spine_measure.measurements import measure_film
from spine_measure.synthetic import CASES
from spine_measure.synthetic.series import SeriesVariation, random_variation, render_series


def test_series_applies_the_variation():
    case = CASES[0]
    base = render_series(case, SeriesVariation())
    var = SeriesVariation(rotation_deg=(0.0, 6.0, 0.0), magnification=(1.0, 1.1, 1.0),
                          kyphosis_change_mm=3.0)
    films = render_series(case, var)
    assert [f.plan.time_point for f in films] == ["preop", "postop", "followup"]
    # magnification: the post-op film's spacing is 1/1.1 of the plan's
    assert films[1].film.options.spacing_mm == pytest.approx(
        base[1].film.options.spacing_mm / 1.1)
    assert films[1].film.options.rotation_deg == pytest.approx(
        base[1].film.options.rotation_deg + 6.0)
    # kyphosis change: the follow-up's regional kyphotic angle at the index level changes,
    # the pre-op film does not
    def kyph(f):
        lm = SpineLandmarks.from_dict(f.truth)
        sp = f.film.options.spacing_mm
        fm = measure_film(lm, spacing=(sp, sp), calibration_source="pixel_spacing")
        return fm.get(case.level, "regional_kyphotic_angle").value

    assert kyph(films[0]) == pytest.approx(kyph(base[0]), abs=1e-6)
    assert abs(kyph(films[2]) - kyph(base[2])) > 1.0


def test_random_variation_is_seeded_and_checked():
    a = random_variation(np.random.default_rng(3))
    b = random_variation(np.random.default_rng(3))
    assert a == b
    with pytest.raises(ValueError, match="magnification"):
        SeriesVariation(magnification=(1.0, 3.0, 1.0))
