"""docs/measurements.md measurements across time points, against hand calculations."""

from __future__ import annotations

import math

import pytest

from spine_measure.landmarks import LEVELS, SpineLandmarks, Vertebra
from spine_measure.measurements import (
    REGISTRY,
    LongitudinalOptions,
    measure_film,
    measure_longitudinal,
)

DEPTH = 30.0


def column(spec: dict[str, tuple[float, float]], flags: dict[str, dict] | None = None):
    """Boxes 30 px deep, 25 px posterior height, 5 px discs, facing +col, 1 px = 1 mm.

    ``spec[level] = (drop, lift)``: the anterior-superior corner drops ``drop`` rows and the
    anterior-inferior corner rises ``lift`` rows, so ``ha = 25 - drop - lift``, ``hp = 25``.
    """
    flags = flags or {}
    verts, top = [], 0.0
    for level in ("T10", "T11", "T12", "L1", "L2", "L3"):
        drop, lift = spec.get(level, (0.0, 0.0))
        verts.append(Vertebra(level, "lateral", {
            "Ps": (top, 0.0), "As": (top + drop, DEPTH),
            "Pi": (top + 25.0, 0.0), "Ai": (top + 25.0 - lift, DEPTH)}, **flags.get(level, {})))
        top += 30.0
    return SpineLandmarks("lateral", tuple(verts))


def film(spec, flags=None, spacing=(1.0, 1.0)):
    return measure_film(column(spec, flags), spacing=spacing,
                        calibration_source="pixel_spacing" if spacing else "uncalibrated")


@pytest.fixture
def series():
    pre = film({"L1": (10, 0)}, {"L1": {"fractured": True}})
    post = film({"L1": (3, 0)}, {"L1": {"fractured": True, "treated": True}})
    last = film({"L1": (7, 0), "L2": (0, 4), "T10": (8, 0)},
                {"L1": {"fractured": True, "treated": True}, "L2": {"fractured": True}})
    return pre, post, last


def test_changes_hand_calculation(series):
    pre, post, last = series
    lm = measure_longitudinal(pre, post, [last])
    assert lm.level == "L1"  # found from the treated flag
    # ha: preop 25 - 10 = 15, postop 25 - 3 = 22, last 25 - 7 = 18 (neighbours 25 / 25; at the
    # last follow-up L2 is fractured (25 - 4 = 21 anteriorly), so it is no reference: the
    # nearest normal vertebra below is L3 and the reference stays (25 + 25) / 2 = 25)
    assert lm["avh_change"].value == pytest.approx(22 - 15)
    assert lm["avh_change"].column == "avh_change_mm"
    assert lm["avhr_recovery"].value == pytest.approx(22 / 25 * 100 - 15 / 25 * 100)
    assert lm["reduction_rate"].value == pytest.approx(28.0)
    assert lm["compression_rate_increase"].value == pytest.approx(22 / 25 * 100 - 18 / 25 * 100)
    assert lm["height_loss_pct"].value == pytest.approx((22 - 18) / 22 * 100)
    # KA(L1): T12 superior vs L2 inferior: flat (0) pre and post; at follow-up L2's Ai rises
    # 4 px over 30 -> converging anteriorly -> +atan(4/30)
    assert lm["reduction_angle"].value == pytest.approx(0.0, abs=1e-12)
    assert lm["kyphosis_progression"].value == pytest.approx(math.degrees(math.atan(4 / 30)))
    # WA(L1): atan(10/30) preop, atan(3/30) postop
    assert lm["wedge_angle_change"].value == pytest.approx(
        math.degrees(math.atan(10 / 30)) - math.degrees(math.atan(3 / 30)))
    assert set(lm.results) == {n for n, d in REGISTRY.items() if d.scope == "longitudinal"}
    row = lm.to_row()
    assert row["height_loss_pct"] == pytest.approx(18.181818181818183)
    assert row["recompression"] is True


def test_site_option():
    pre = film({"L1": (10, 0)})
    post = film({"L1": (3, 0)}, {"L1": {"treated": True}})
    lm = measure_longitudinal(pre, post, [], options=LongitudinalOptions(site="posterior"))
    # posterior heights are all 25: CR_post = 100 before and after
    assert lm["reduction_rate"].value == pytest.approx(0.0)
    assert lm["reduction_rate"].detail["site"] == "posterior"
    with pytest.raises(ValueError, match='Argument "site" must be one of'):
        LongitudinalOptions(site="front")


def test_recompression_thresholds(series):
    pre, post, last = series
    # height loss 18.2 % >= 15 -> True
    assert measure_longitudinal(pre, post, [last])["recompression"].value is True
    # thresholds 20 % / 10 deg: 18.2 < 20 and 7.6 < 10 -> False
    opts = LongitudinalOptions(height_loss_threshold_pct=20.0)
    assert measure_longitudinal(pre, post, [last], options=opts)["recompression"].value is False
    # kyphosis threshold 7 deg: 7.6 >= 7 -> True
    opts = LongitudinalOptions(height_loss_threshold_pct=20.0, kyphosis_threshold_deg=7.0)
    assert measure_longitudinal(pre, post, [last], options=opts)["recompression"].value is True


def test_refracture_is_unknown_without_oedema(series):
    pre, post, last = series
    r = measure_longitudinal(pre, post, [last])["refracture"]
    assert r.value is None and r.reason == "bone marrow oedema at follow-up not recorded"
    # CRI = 88 - 72 = 16 (the fractured L2 is no reference) >= 15 -> True with oedema; with a
    # threshold of 17 it is False even with oedema
    assert measure_longitudinal(pre, post, [last], bone_marrow_oedema=True)["refracture"].value \
        is True
    high = LongitudinalOptions(refracture_cri_threshold_pct=17.0)
    assert measure_longitudinal(pre, post, [last], bone_marrow_oedema=True,
                                options=high)["refracture"].value is False
    opts = LongitudinalOptions(refracture_cri_threshold_pct=9.0)
    assert measure_longitudinal(pre, post, [last], bone_marrow_oedema=True,
                                options=opts)["refracture"].value is True
    assert measure_longitudinal(pre, post, [last], bone_marrow_oedema=False,
                                options=opts)["refracture"].value is False


def test_adjacent_and_remote_fractures(series):
    pre, post, last = series
    lm = measure_longitudinal(pre, post, [last])
    # L2 flagged fractured at follow-up only -> adjacent to L1
    assert lm["adjacent_fracture"].value is True
    assert lm["adjacent_fracture"].detail["levels"] == "L2"
    # T10: ha 25 - 8 = 17 vs hp 25 (neighbour T11 hp 25): reduction 32 % -> genant 2, new;
    # T10 is 3 levels from L1 -> remote
    assert last.get("T10", "genant_grade").value == 2
    assert lm["remote_fracture"].value is True and lm["remote_fracture"].detail["levels"] == "T10"
    assert abs(LEVELS.index("T10") - LEVELS.index("L1")) >= 2
    # a follow-up identical to postop: no new fracture anywhere
    lm2 = measure_longitudinal(pre, post, [post])
    assert lm2["adjacent_fracture"].value is False and lm2["remote_fracture"].value is False


def test_missing_films_and_mixed_units():
    pre = film({"L1": (10, 0)}, spacing=None)  # uncalibrated: px
    post = film({"L1": (3, 0)}, {"L1": {"treated": True}})
    lm = measure_longitudinal(pre, post, [])
    r = lm["avh_change"]
    assert math.isnan(r.value)
    assert r.reason == "ha: postop is in mm but preop in px (calibrate both films)"
    # ratios and angles stay valid across units
    assert lm["avhr_recovery"].value == pytest.approx(28.0)
    # no follow-up: NaN / unknown with the reason
    assert lm["height_loss_pct"].reason == "no last follow-up film"
    assert lm["recompression"].value is None
    assert lm["adjacent_fracture"].value is None
    assert lm["adjacent_fracture"].reason == "no follow-up film"


def test_treated_level_required():
    f = film({})
    with pytest.raises(ValueError, match="no vertebra is flagged treated; pass level="):
        measure_longitudinal(f, f, [f])
    lm = measure_longitudinal(f, f, [f], level="L1")
    assert lm["avh_change"].value == 0.0
