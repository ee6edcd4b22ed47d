"""Measurements on the synthetic films: truth landmarks give the designed values.

Two sources: the committed ``sample_dicoms/*/*.truth.json`` (every film), and films rendered
here by ``spine_measure.synthetic`` from known body dimensions (always available). The
expected values are computed independently of ``spine_measure.geometry``: heights straight
from the coordinates, sagittal angles from line elevations in a frame fixed by the film's
recorded facing (the synthetic patients stand upright), and the designed heights of the
generator's level specifications.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spine_measure.landmarks import SpineLandmarks
from spine_measure.measurements import measure_film

ROOT = Path(__file__).resolve().parents[2] / "sample_dicoms"
TRUTHS = sorted(ROOT.glob("*/*.truth.json"))


def _phys(p, spacing):
    return np.asarray(p, float) * np.asarray(spacing or (1.0, 1.0), float)


def _elevation(p, q, spacing, facing):
    """Angle (deg) of the line p -> q above the anterior horizontal, patient upright."""
    d = _phys(q, spacing) - _phys(p, spacing)
    forward = d[1] if facing == "right" else -d[1]  # anterior = towards the facing side
    return math.degrees(math.atan2(-d[0], forward))  # up = smaller row


def _check_lateral(spine, spacing, facing, fm):
    n_checked = 0
    for v in spine:
        if v.level == "S1":
            continue
        pts = v.points
        for name, (a, b) in {"ha": ("As", "Ai"), "hp": ("Ps", "Pi"), "hm": ("Ms", "Mi")}.items():
            if a in pts and b in pts:
                want = float(np.linalg.norm(_phys(pts[a], spacing) - _phys(pts[b], spacing)))
                assert fm.get(v.level, name).value == pytest.approx(want, abs=1e-6)
                n_checked += 1
        # converging anteriorly (kyphosis) = superior line lower anteriorly than the inferior
        sup = _elevation(pts["Ps"], pts["As"], spacing, facing)
        inf = _elevation(pts["Pi"], pts["Ai"], spacing, facing)
        assert fm.get(v.level, "wedge_angle").value == pytest.approx(inf - sup, abs=1e-6)
        ka = fm.get(v.level, "regional_kyphotic_angle")
        if ka.ok:
            (ul, uw), (ll, lw) = (s.split(":") for s in (ka.detail["upper"],
                                                         ka.detail["lower"]))
            assert uw == "superior"
            top = _elevation(spine[ul].points["Ps"], spine[ul].points["As"], spacing, facing)
            key = ("Ps", "As") if lw == "superior" else ("Pi", "Ai")
            bot = _elevation(spine[ll].points[key[0]], spine[ll].points[key[1]], spacing,
                             facing)
            assert ka.value == pytest.approx(bot - top, abs=1e-6)
            n_checked += 1
    assert n_checked > 0


def _check_ap(spine, spacing, fm):
    tilts = []
    for v in spine:
        for a, b in (("SL", "SR"), ("IL", "IR")):
            d = _phys(v.points[b], spacing) - _phys(v.points[a], spacing)
            tilts.append((v.level, math.degrees(math.atan2(-d[0], d[1]))))
    want = max(abs(t1 - t2) for l1, t1 in tilts for l2, t2 in tilts if l1 != l2)
    assert fm.film_result("coronal_cobb_angle")[0].value == pytest.approx(want, abs=1e-6)


@pytest.mark.skipif(not TRUTHS, reason="sample_dicoms/ not generated yet")
@pytest.mark.parametrize("truth", TRUTHS, ids=[f"{t.parent.name}/{t.name}" for t in TRUTHS])
def test_every_sample_film_matches_its_ground_truth(truth):
    data = json.loads(truth.read_text())
    spine = SpineLandmarks.from_dict(data)
    cal = data.get("calibration") or {}
    spacing = (cal["row_mm"], cal["col_mm"]) if cal.get("row_mm") else None
    fm = measure_film(spine, spacing=spacing, calibration_source=cal.get("source",
                                                                          "uncalibrated"))
    assert fm.length_unit == ("mm" if spacing else "px")
    if data["view"] == "lateral":
        _check_lateral(spine, spacing, data["facing"], fm)
    else:
        _check_ap(spine, spacing, fm)


@pytest.fixture(scope="module")
def rendered():
    pytest.importorskip("cv2")
    from spine_measure.landmarks import Vertebra
    from spine_measure.synthetic.anatomy import build_lateral_spine, default_lateral_levels
    from spine_measure.synthetic.render import RenderOptions, render_film

    specs = [replace(s, ha=s.ha * 0.55, fractured=True) if s.level == "L1" else s
             for s in default_lateral_levels("T12", "S1")]
    out = {}
    for facing, spacing in (("left", 0.25), ("right", 0.3)):
        film = render_film(build_lateral_spine(specs),
                           RenderOptions(spacing_mm=spacing, facing=facing, rotation_deg=0.0,
                                         shape=None, seed=3))
        verts = tuple(Vertebra(lv, "lateral", pts) for lv, pts in film.landmarks.items())
        out[facing] = (SpineLandmarks("lateral", verts), (spacing, spacing))
    return specs, out


def test_rendered_films_give_the_designed_heights_and_equal_angles(rendered):
    specs, films = rendered
    by_level = {s.level: s for s in specs}
    fms = {}
    for facing, (spine, spacing) in films.items():
        fm = measure_film(spine, spacing=spacing, calibration_source="pixel_spacing")
        fms[facing] = fm
        _check_lateral(spine, spacing, facing, fm)
        for lv in ("T12", "L1", "L2", "L3"):
            # the generator builds Ai = As + ha * n and Pi = Ps + hp * n (mm): exact heights
            assert fm.get(lv, "ha").value == pytest.approx(by_level[lv].ha, abs=1e-6)
            assert fm.get(lv, "hp").value == pytest.approx(by_level[lv].hp, abs=1e-6)
        # designed fracture: L1 anterior height 55 % of 25.5 mm; neighbours T12 23.5, L2 27.0
        assert fm.get("L1", "cr_anterior").value == pytest.approx(
            0.55 * 25.5 / ((23.5 + 27.0) / 2) * 100, abs=1e-6)
        # wedge from the body design: inferior endplate turned by atan((hp - ha) / depth)
        s = by_level["L1"]
        assert fm.get("L1", "wedge_angle").value == pytest.approx(
            math.degrees(math.atan2(s.hp - s.ha, s.depth)), abs=1e-6)
    for lv in fms["left"].vertebrae:
        for name in ("wedge_angle", "regional_kyphotic_angle", "cr_anterior", "genant_grade"):
            a, b = fms["left"].get(lv, name), fms["right"].get(lv, name)
            assert a.ok == b.ok
            if a.ok:
                assert b.value == pytest.approx(a.value, abs=1e-6)
