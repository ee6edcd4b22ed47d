"""Plausibility checks: landmarks no reader can have meant are refused or reported, never
measured silently (upside-down or front-to-back vertebrae, crossing endplates, level names
out of order, points outside the image, an AP film with negative coordinates)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.measurements import measure_film
from spine_measure.measurements.plausibility import check_landmarks, segments_cross

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"
LEVELS4 = ("T12", "L1", "L2", "L3")


def _spine(**changes) -> SpineLandmarks:
    """Four 25 x 30 px boxes facing +col, cranial = smaller row; ``changes[level]`` maps a
    point name to the name whose coordinates it takes (a swap) or to coordinates."""
    verts = []
    for i, lv in enumerate(LEVELS4):
        top = 40.0 + 32.0 * i
        pts = {"Ps": (top, 10.0), "As": (top, 40.0), "Pi": (top + 25, 10.0),
               "Ai": (top + 25, 40.0)}
        new = {k: (pts[v] if isinstance(v, str) else v)
               for k, v in changes.get(lv, {}).items()}
        verts.append(Vertebra(lv, "lateral", {**pts, **new}))
    return SpineLandmarks("lateral", tuple(verts))


def test_a_plausible_film_passes():
    assert check_landmarks(_spine(), (300, 200)).ok
    for truth in SAMPLES.glob("*/*.truth.json"):
        d = json.loads(truth.read_text())
        assert check_landmarks(SpineLandmarks.from_dict(d)).ok, truth.name


def test_upside_down_vertebra_is_refused_and_never_a_reference():
    spine = _spine(L1={"As": "Ai", "Ai": "As", "Ps": "Pi", "Pi": "Ps"})
    p = check_landmarks(spine)
    assert list(p.refused) == ["L1"] and "upside down" in p.refused["L1"]
    fm = measure_film(spine, spacing=(1.0, 1.0), calibration_source="pixel_spacing")
    for name, r in fm.vertebrae["L1"].items():
        assert r.value is None or math.isnan(r.value), name
        assert "implausible landmarks" in r.reason
    # T12's lower reference skips L1: L2 (and the angles through L1's endplates refuse)
    assert fm.get("T12", "cr_anterior").neighbours == ("L2",)
    assert "implausible" in fm.get("L2", "regional_kyphotic_angle").reason
    assert fm.get("L3", "wedge_angle").value == pytest.approx(0.0)


def test_front_to_back_vertebra_is_refused():
    spine = _spine(L2={"As": "Ps", "Ps": "As", "Ai": "Pi", "Pi": "Ai"})
    p = check_landmarks(spine)
    assert list(p.refused) == ["L2"] and "front to back" in p.refused["L2"]


@pytest.mark.parametrize(("change", "words"), [
    ({"Pi": (72 + 25, 40.0), "Ai": (72 + 25, 10.0)}, "walls cross"),           # Ai/Pi swapped
    ({"Pi": (72 - 10, 10.0)}, "endplates cross"),                               # Pi above As-Ps
])
def test_crossing_walls_or_endplates_are_refused(change, words):
    p = check_landmarks(_spine(L1=change))
    assert words in p.refused.get("L1", ""), p


def test_two_vertebrae_that_disagree_are_a_warning_not_a_guess():
    spine = SpineLandmarks("lateral", tuple(v for v in _spine(
        L1={"As": "Ai", "Ai": "As", "Ps": "Pi", "Pi": "Ps"}) if v.level in ("T12", "L1")))
    p = check_landmarks(spine)
    assert not p.refused and any("do not agree" in w for w in p.warnings)


def test_level_names_out_of_order_and_points_outside_the_image_are_warnings():
    good = _spine()
    swapped = SpineLandmarks("lateral", (
        Vertebra("T12", "lateral", dict(good["L1"].points)),
        Vertebra("L1", "lateral", dict(good["T12"].points)), good["L2"], good["L3"]))
    p = check_landmarks(swapped, (300, 200))
    assert p.warnings == ("T12 does not lie above L1 along the spine (level names in the "
                          "wrong order?)",)
    p = check_landmarks(_spine(L3={"Pi": (-3.0, 10.0)}), (300, 200))
    assert any("L3 Pi (-3, 10) lies outside the 300 x 200 image" in w for w in p.warnings)


def test_ap_film_with_negative_coordinates_gives_no_cobb_178():
    """The fuzzing case: one AP vertebra's columns negated. Measured as is, the endplate
    method gave ~178 deg and 'degenerative scoliosis'; now the vertebra is refused and the
    coronal Cobb angle is NaN with the reason, the flag unknown."""
    d = json.loads((SAMPLES / "SM005" / "SM005_preop_ap.truth.json").read_text())
    spine = SpineLandmarks.from_dict(d)
    clean = measure_film(spine, spacing=None, calibration_source="uncalibrated")
    assert clean.film_result("coronal_cobb_angle")[0].value < 45
    lv = spine.levels()[2]
    bad = spine.replace(lv, Vertebra(lv, "ap", {k: (r, -c) for k, (r, c) in
                                                spine[lv].points.items()}))
    naive = max(abs(math.degrees(math.atan2(
        (q[0] - p[0]), (q[1] - p[1])))) for p, q in ((bad[lv].points["SL"],
                                                      bad[lv].points["SR"]),))
    assert naive > 170  # the reversed endplate direction that made the 178 deg
    fm = measure_film(bad, spacing=None, calibration_source="uncalibrated")
    cobb = fm.film_result("coronal_cobb_angle")[0]
    assert math.isnan(cobb.value) and "implausible landmarks" in cobb.reason
    assert fm.film_result("degenerative_scoliosis")[0].value is None
    warn = check_landmarks(bad, (d.get("rows", 2000), d.get("cols", 2000)))
    assert lv in warn.refused and any("outside" in w for w in warn.warnings)


def test_segments_cross_is_proper_crossing_only():
    assert segments_cross((0, 0), (4, 4), (0, 4), (4, 0))
    assert not segments_cross((0, 0), (4, 4), (4, 4), (8, 0))     # touching ends
    assert not segments_cross((0, 0), (4, 0), (1, 1), (3, 1))     # parallel


def test_measure_command_reports_and_refuses(tmp_path, capsys):
    """The command's real output: one warning line per problem naming the annotation, the
    coronal Cobb angle empty with its reason (no 178 deg, no scoliosis flag)."""
    import shutil

    from spine_measure.cli import main

    for name in ("SM005_preop_ap.dcm", "SM005_preop_ap.sm.json"):
        shutil.copy(SAMPLES / "SM005" / name, tmp_path / name)
    sidecar = tmp_path / "SM005_preop_ap.sm.json"
    d = json.loads(sidecar.read_text())
    v = d["landmarks"]["vertebrae"][2]
    v["points"] = {k: [r, -c] for k, (r, c) in v["points"].items()}
    sidecar.write_text(json.dumps(d))
    code = main(["measure", str(tmp_path / "SM005_preop_ap.dcm"), "--json", "--no-cement"])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err
    warnings = [x for x in out.err.splitlines() if "implausible landmarks" in x]
    assert any(f"{v['level']}: placed mirrored left to right" in w for w in warnings)
    assert any("lies outside" in w for w in warnings)
    assert all("SM005_preop_ap.sm.json" in w for w in warnings)
    rows = [json.loads(x) for x in out.out.splitlines() if x.strip()]
    cobb = next(r for r in rows if "coronal_cobb_angle_deg" in r)
    assert cobb["coronal_cobb_angle_deg"] is None and "implausible" in cobb["reasons"]
    flag = next(r for r in rows if "degenerative_scoliosis" in r)
    assert flag["degenerative_scoliosis"] is None
