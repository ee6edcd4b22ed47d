"""Every single-film measurement against a hand calculation written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from core_builders import lat

from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.measurements import (
    REGISTRY,
    MeasureOptions,
    measure_film,
    parse_endplate,
    parse_endplate_pair,
)
from spine_measure.measurements.single_film import genant_from_heights

ATOL = 1e-9


def _fm(spine, spacing=(1.0, 1.0), source="pixel_spacing", **kw):
    return measure_film(spine, spacing=spacing, calibration_source=source, **kw)


def test_heights_and_units(wedge_spine):
    fm = _fm(wedge_spine)
    # L1: ha = 55 - 40 = 15, hm = 55 - 35 = 20, hp = 55 - 30 = 25 (1 mm pixels)
    assert fm.get("L1", "ha").value == pytest.approx(15.0, abs=ATOL)
    assert fm.get("L1", "hm").value == pytest.approx(20.0, abs=ATOL)
    assert fm.get("L1", "hp").value == pytest.approx(25.0, abs=ATOL)
    r = fm.get("L1", "ha")
    assert (r.unit, r.column, r.calibration_source) == ("mm", "ha_mm", "pixel_spacing")
    # anisotropic 0.5 (row) x 0.25 (col) mm: L2 anterior points (60,30) -> (84,30): 24 rows
    fm2 = _fm(wedge_spine, spacing=(0.5, 0.25))
    assert fm2.get("L2", "ha").value == pytest.approx(12.0, abs=ATOL)
    # uncalibrated: px, column ha_px, source forced to "uncalibrated"
    fm3 = _fm(wedge_spine, spacing=None, source="pixel_spacing")
    r3 = fm3.get("L1", "ha")
    assert (r3.value, r3.unit, r3.column, r3.calibration_source) == (15.0, "px", "ha_px",
                                                                    "uncalibrated")


def test_hm_missing_is_nan_with_reason():
    spine = SpineLandmarks("lateral", (lat("L1", (0, 0), (0, 30), (25, 0), (25, 30)),))
    r = _fm(spine).get("L1", "hm")
    assert math.isnan(r.value) and r.reason == "L1: Ms/Mi not annotated" and not r.ok


def test_wedge_angle_hand_calculation(wedge_spine):
    fm = _fm(wedge_spine)
    # L1 superior Ps(30,0)->As(40,30) drops 10 over 30, inferior flat: +atan(10/30)
    assert fm.get("L1", "wedge_angle").value == pytest.approx(math.degrees(math.atan(1 / 3)),
                                                              abs=ATOL)
    assert fm.get("T12", "wedge_angle").value == pytest.approx(0.0, abs=ATOL)
    # L2 inferior Pi(87,0)->Ai(84,30) rises 3 over 30, superior flat: anterior wedge, +atan(0.1)
    assert fm.get("L2", "wedge_angle").value == pytest.approx(math.degrees(math.atan(0.1)),
                                                              abs=ATOL)


def test_wedge_angle_anisotropic_pixels():
    # rows 0.5 mm, cols 0.25 mm. Superior Ps(0,0)->As(10,40): 5 mm drop over 10 mm depth.
    spine = SpineLandmarks("lateral", (lat("L1", (0, 0), (10, 40), (50, 0), (50, 40)),))
    fm = _fm(spine, spacing=(0.5, 0.25))
    assert fm.get("L1", "wedge_angle").value == pytest.approx(math.degrees(math.atan(5 / 10)),
                                                              abs=ATOL)
    # pixel-space angle would be atan(10/40) = 14.04 deg: make sure we did not compute that
    assert abs(fm.get("L1", "wedge_angle").value - math.degrees(math.atan(0.25))) > 10


def test_regional_kyphotic_angle_and_cobb(wedge_spine):
    fm = _fm(wedge_spine, cobb=["T12:superior,L2:inferior", "L2:i,L1:s"])
    # KA(L1) = T12 superior (flat) vs L2 inferior (rises 3 over 30 anteriorly):
    # lines converge anteriorly -> +atan(3/30)
    ka = fm.get("L1", "regional_kyphotic_angle")
    assert ka.value == pytest.approx(math.degrees(math.atan(0.1)), abs=ATOL)
    assert dict(ka.detail) == {"upper": "T12:superior", "lower": "L2:inferior"}
    cobbs = fm.film_result("cobb_angle")
    assert cobbs[0].value == pytest.approx(ka.value, abs=ATOL)
    assert cobbs[0].detail["upper"] == "T12:superior"
    # L1 superior drops 10/30 (tilted toward caudal anteriorly), L2 inferior rises 3/30:
    # total convergence = atan(1/3) + atan(0.1) = atan((1/3 + 0.1)/(1 - 1/30)) = atan(13/29)
    assert cobbs[1].value == pytest.approx(math.degrees(math.atan(13 / 29)), abs=ATOL)
    assert cobbs[1].detail["upper"] == "L1:superior"  # reordered cranial first
    # T12 and L2 have no vertebra above / below -> NaN with reason
    r = fm.get("T12", "regional_kyphotic_angle")
    assert math.isnan(r.value) and "T11 not annotated" in r.reason


def _lumbosacral(l4_excluded=False):
    """L3, L4, L5, S1; 1 mm px; S1 superior endplate tilted 30 deg (rises anteriorly... down)."""
    s = 30 * math.sin(math.radians(30))
    return SpineLandmarks("lateral", (
        lat("L3", (0, 0), (0, 30), (28, 0), (28, 30)),
        lat("L4", (36, 0), (36, 30), (62, 0), (62, 30), excluded=l4_excluded),
        lat("L5", (70, 0), (70, 30), (92, 0), (92, 30)),
        lat("S1", (100, 0), (100 + s, 30 * math.cos(math.radians(30)))),
    ))


def test_l5_rules_use_s1_superior_and_upper_neighbour_only():
    fm = _fm(_lumbosacral())
    # KA(L5) = L4 superior (flat) vs S1 superior (anterior end 15 rows lower): S1 line tilts
    # caudally going anteriorly, so the lines diverge anteriorly: -30 deg (lordosis)
    assert fm.get("L5", "regional_kyphotic_angle").value == pytest.approx(-30.0, abs=ATOL)
    # CR(L5): S1 has no body heights -> the upper neighbour L4 alone: 22 / 26
    cr = fm.get("L5", "cr_anterior")
    assert cr.value == pytest.approx(22 / 26 * 100, abs=ATOL) and cr.neighbours == ("L4",)
    assert "S1" not in fm.vertebrae  # S1 is a reference, not measured


def test_excluded_neighbour_is_skipped_for_the_next_one():
    fm = _fm(_lumbosacral(l4_excluded=True))
    cr = fm.get("L5", "cr_anterior")
    # L4 excluded -> nearest non-excluded upper is L3 (ha 28): 22 / 28
    assert cr.value == pytest.approx(22 / 28 * 100, abs=ATOL) and cr.neighbours == ("L3",)


def test_compression_rates_and_ratios(wedge_spine):
    fm = _fm(wedge_spine)
    # neighbours of L1: T12 (ha 25, hm 25, hp 25) and L2 (ha 24, hm 25.5, hp 27)
    cra = fm.get("L1", "cr_anterior")
    assert cra.value == pytest.approx(15 / ((25 + 24) / 2) * 100, abs=ATOL)
    assert cra.neighbours == ("T12", "L2") and cra.column == "cr_anterior_pct"
    assert fm.get("L1", "cr_middle").value == pytest.approx(20 / 25.25 * 100, abs=ATOL)
    assert fm.get("L1", "cr_posterior").value == pytest.approx(25 / 26 * 100, abs=ATOL)
    assert fm.get("L1", "compression_pct").value == pytest.approx(100 - 15 / 24.5 * 100, abs=ATOL)
    assert fm.get("L1", "wedge_ratio").value == pytest.approx(60.0, abs=ATOL)     # 15/25
    assert fm.get("L1", "biconcavity_ratio").value == pytest.approx(80.0, abs=ATOL)  # 20/25
    assert fm.get("L1", "crush_ratio").value == pytest.approx(25 / 26 * 100, abs=ATOL)
    # T12: nothing above; L1 below is flagged fractured, so it never serves as a reference:
    # the nearest normal vertebra below is L2 (ha 24): 25 / 24
    t12 = fm.get("T12", "cr_anterior")
    assert t12.neighbours == ("L2",) and t12.value == pytest.approx(25 / 24 * 100, abs=ATOL)
    assert fm.get("L2", "cr_anterior").neighbours == ("T12",)


def test_no_usable_neighbour_gives_nan_with_reason():
    spine = SpineLandmarks("lateral", (lat("L1", (0, 0), (0, 30), (25, 0), (25, 30)),))
    r = _fm(spine).get("L1", "cr_anterior")
    assert math.isnan(r.value)
    assert r.reason == ("L1: no normal neighbour (not fractured, treated or excluded) with a "
                        "anterior height to serve as reference")


def test_genant_grade_and_shape(wedge_spine):
    fm = _fm(wedge_spine)
    # L1: min(15, 20, 25) = 15, reference max(hp 25, mean neighbour hp (25 + 27)/2 = 26) = 26
    # reduction = 1 - 15/26 = 42.3 % > 40 -> grade 3, smallest is ha -> wedge
    g = fm.get("L1", "genant_grade")
    assert g.value == 3 and g.column == "genant_grade" and g.unit == "grade"
    assert g.detail["height_reduction_pct"] == pytest.approx((1 - 15 / 26) * 100, abs=ATOL)
    assert fm.get("L1", "genant_shape").value == "wedge"
    # T12: min 25 vs max(25, L1 hp 25) -> 0 % -> grade 0, shape none
    assert fm.get("T12", "genant_grade").value == 0
    assert fm.get("T12", "genant_shape").value == "none"


@pytest.mark.parametrize(("ha", "hm", "hp", "ref", "grade", "shape"), [
    (81.0, 100.0, 100.0, math.nan, 0, "none"),     # 19 %
    (80.0, 100.0, 100.0, math.nan, 1, "wedge"),    # 20 % exactly -> grade 1
    (75.0, 100.0, 100.0, math.nan, 2, "wedge"),    # 25 % exactly -> grade 2
    (60.0, 100.0, 100.0, math.nan, 2, "wedge"),    # 40 % exactly -> still grade 2
    (59.0, 100.0, 100.0, math.nan, 3, "wedge"),    # 41 %
    (90.0, 70.0, 95.0, math.nan, 2, "biconcave"),  # 1 - 70/95 = 26.3 %
    (70.0, 80.0, 70.0, 100.0, 2, "crush"),         # 1 - 70/max(70,100) = 30 %, hp is min
    (78.0, math.nan, 100.0, 90.0, 1, "wedge"),     # hm absent: 1 - 78/100 = 22 %
])
def test_genant_thresholds(ha, hm, hp, ref, grade, shape):
    g, s, _ = genant_from_heights(ha, hm, hp, ref)
    assert (g, s) == (grade, shape)


def _rect(level, center, width, height, tilt_sup, tilt_inf=None):
    """AP vertebra: superior / inferior endplates tilted (deg, counter-clockwise as drawn with
    cranial up), centred on ``center`` (row, col); left = smaller col."""
    tilt_inf = tilt_sup if tilt_inf is None else tilt_inf
    r0, c0 = center
    pts = {}
    for name, tilt, dr in (("S", tilt_sup, -height / 2), ("I", tilt_inf, height / 2)):
        t = math.radians(tilt)
        # the endplate runs left -> right; rising to the right = smaller row
        dx, dy = math.cos(t) * width / 2, -math.sin(t) * width / 2
        pts[name + "L"] = (r0 + dr - dy, c0 - dx)
        pts[name + "R"] = (r0 + dr + dy, c0 + dx)
    return Vertebra(level, "ap", pts)


def test_coronal_cobb_both_methods():
    spine = SpineLandmarks("ap", (
        _rect("T12", (0, 0), 40, 25, 0.0),
        _rect("L1", (40, 5), 42, 26, 10.0),
        _rect("L2", (80, 12), 44, 27, 15.0, 20.0),   # wedged: inferior endplate at 20 deg
        _rect("L3", (120, 12), 46, 28, -5.0),
        _rect("L4", (160, 5), 48, 28, -12.0),
    ))
    fm = _fm(spine, spacing=(0.2, 0.2), source="imager_pixel_spacing")
    assert fm.vertebrae == {}  # no per-vertebra measurement on AP films
    (ep,) = fm.film_result("coronal_cobb_angle")
    # endplate method: largest difference of endplate tilts: L2 inferior 20 vs L4 -12 = 32 deg
    assert ep.value == pytest.approx(32.0, abs=1e-9)
    assert (ep.detail["upper"], ep.detail["lower"]) == ("L2:inferior", "L4:superior")
    assert ep.column == "coronal_cobb_angle_deg"
    (ml,) = fm.film_result("coronal_cobb_angle_midline")
    # mid-line method, computed independently: tilt of (mid right side - mid left side)
    def tilt(v):
        left = (np.array(v.points["SL"]) + v.points["IL"]) / 2
        right = (np.array(v.points["SR"]) + v.points["IR"]) / 2
        d = right - left
        return math.degrees(math.atan2(-d[0], d[1]))
    tilts = {v.level: tilt(v) for v in spine}
    assert tilts["L2"] == pytest.approx(17.5, abs=0.1)  # between 15 and 20 (unequal sides)
    want = max(abs(a - b) for a in tilts.values() for b in tilts.values())
    assert ml.value == pytest.approx(want, abs=1e-9)
    assert (ml.detail["upper"], ml.detail["lower"]) == ("L2", "L4")
    (flag,) = fm.film_result("degenerative_scoliosis")
    assert flag.value is True and flag.column == "degenerative_scoliosis"
    fm_hi = _fm(spine, options=MeasureOptions(scoliosis_threshold_deg=33.0))
    assert fm_hi.film_result("degenerative_scoliosis")[0].value is False


def test_coronal_needs_two_vertebrae():
    spine = SpineLandmarks("ap", (_rect("L1", (0, 0), 40, 25, 3.0),))
    (r,) = _fm(spine).film_result("coronal_cobb_angle")
    assert math.isnan(r.value) and "at least two" in r.reason
    (flag,) = _fm(spine).film_result("degenerative_scoliosis")
    assert flag.value is None and "at least two" in flag.reason


def test_degenerate_geometry_never_raises():
    # L1 with coincident posterior corners and a zero-height neighbour
    spine = SpineLandmarks("lateral", (
        lat("T12", (0, 0), (0, 30), (0, 0), (0, 30)),          # zero heights
        lat("L1", (30, 0), (30, 30), (30, 0), (55, 30)),       # Ps == Pi
        lat("L2", (60, 5), (60, 5), (85, 0), (85, 30)),        # Ps == As
    ))
    fm = _fm(spine, cobb=["L2:superior,L2:superior"])
    assert fm.get("L1", "hp").value == 0.0
    wr = fm.get("L1", "wedge_ratio")
    assert math.isnan(wr.value) and wr.reason == "L1 ha/hp: reference height is zero"
    wa = fm.get("L2", "wedge_angle")
    assert math.isnan(wa.value) and "L2 superior endplate: its two points coincide" in wa.reason
    cobb = fm.film_result("cobb_angle")[0]
    assert math.isnan(cobb.value) and "against itself" in cobb.reason
    # every registered per-vertebra measurement produced a Result for every vertebra
    per = [n for n, d in REGISTRY.items() if d.scope == "vertebra"]
    for level in ("T12", "L1", "L2"):
        assert set(fm.vertebrae[level]) == set(per)


def test_endplate_parsing():
    assert str(parse_endplate("t10:sup")) == "T10:superior"
    assert str(parse_endplate("L2 inferior")) == "L2:inferior"
    a, b = parse_endplate_pair("L2:i, T10:s")
    assert (str(a), str(b)) == ("T10:superior", "L2:inferior")
    with pytest.raises(ValueError, match='must be superior or inferior'):
        parse_endplate("L2:middle")
    with pytest.raises(ValueError, match='did you mean "L2"'):
        parse_endplate("L22:s")
    with pytest.raises(ValueError, match="two endplates separated by a comma"):
        parse_endplate_pair("T10:s")


def test_records_and_rows(wedge_spine):
    fm = _fm(wedge_spine, metadata={"sop_instance_uid": "1.2.3"}, cobb=["T12:s,L2:i"])
    recs = fm.to_records()
    n_per = sum(1 for d in REGISTRY.values() if d.scope == "vertebra")
    assert len(recs) == 3 * n_per + 1
    ha = next(r for r in recs if r["level"] == "L1" and r["measurement"] == "ha")
    assert ha["value"] == pytest.approx(15.0) and ha["column"] == "ha_mm"
    assert ha["sop_instance_uid"] == "1.2.3" and ha["fractured"] is True
    rows = fm.to_rows()
    assert [r["level"] for r in rows] == ["T12", "L1", "L2"]
    assert rows[1]["cr_anterior_pct"] == pytest.approx(15 / 24.5 * 100)
    assert rows[1]["reference_neighbours"] == "T12,L2"
    assert "regional_kyphotic_angle: T11 not annotated" in rows[0]["reasons"]
