"""Cement features and segmentation on hand-built images with values worked out by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from spine_measure.cement import (
    CementError,
    FeatureParams,
    SegmentationParams,
    analyze_cement,
    cement_features,
    cement_volume_ratio,
    segment_cement,
    shape_features,
)
from spine_measure.cement.api import analyze_film
from spine_measure.landmarks import SpineLandmarks, Vertebra

SP = (0.5, 0.5)


def lateral_body(level="L1", top=40.0, bottom=100.0, post=40.0, ant=110.0, treated=True):
    """A rectangular body facing +col: rows top..bottom (30 mm), cols post..ant (35 mm)."""
    return Vertebra(level, "lateral", {"As": (top, ant), "Ai": (bottom, ant),
                                       "Ps": (top, post), "Pi": (bottom, post)},
                    treated=treated)


def spine(*verts):
    return SpineLandmarks(verts[0].view, verts)


def test_gaps_npec_fill_by_hand():
    v = lateral_body()
    m = np.zeros((160, 160), bool)
    m[46:95, 50:100] = True      # 6 px below the superior endplate and above the inferior
    f = cement_features(m, v, "L1", SP)
    # gap = 6 px * 0.5 mm = 3.0 mm; local height 60 px = 30 mm -> 10 %
    assert f.gap_superior == pytest.approx(3.0) and f.gap_superior_pct == pytest.approx(10.0)
    # last cement row 94, inferior endplate row 100: 6 px = 3.0 mm
    assert f.gap_inferior == pytest.approx(3.0) and f.gap_inferior_pct == pytest.approx(10.0)
    assert f.npec == "both" and f.contacts_both is False
    # body polygon holds rows 40..100 x cols 40..110 (pixel centres on the edges count):
    # 61 * 71 pixels; cement 49 * 50
    assert f.fill_pct == pytest.approx(100 * 49 * 50 / (61 * 71))
    assert f.cement_area == pytest.approx(49 * 50 * 0.25)
    assert f.leaks == () and f.has_leak is False


@pytest.mark.parametrize(("rows", "npec"), [((40, 101), "none"), ((42, 101), "none"),
                                             ((43, 101), "superior"), ((40, 97), "inferior"),
                                             ((44, 96), "both")])
def test_contact_tolerance_one_mm(rows, npec):
    # tolerance 1 mm = 2 px: a first cement row 2 px from the endplate touches, 3 px does not
    v = lateral_body()
    m = np.zeros((160, 160), bool)
    m[rows[0]:rows[1], 60:90] = True
    assert cement_features(m, v, "L1", SP).npec == npec


def test_uncalibrated_tolerance_in_px_from_nominal_scale():
    v = lateral_body()                         # depth 70 px -> nominal 33/70 mm per px
    m = np.zeros((160, 160), bool)
    m[43:98, 60:90] = True                     # 3 px gaps
    f = cement_features(m, v, "L1", None)
    assert f.length_unit == "px" and f.tolerance == pytest.approx(70 / 33)
    assert f.gap_superior == pytest.approx(3.0) and f.npec == "both"
    f2 = cement_features(m, v, "L1", None, params=FeatureParams(contact_tolerance_px=3.0))
    assert f2.npec == "none"


def _leak_mask(kind):
    m = np.zeros((200, 200), bool)
    m[60:121, 60:131] = True                   # fills the body 60..120 x 60..130
    if kind == "superior_spike":               # tapered tongue 16 px long into the upper disc
        for k in range(16):
            half = max(0, 3 - k // 5)
            m[59 - k, 95 - half:96 + half] = True
    elif kind == "superior_round":             # a disc of radius 6 px above the endplate
        rr, cc = np.mgrid[:200, :200]
        m |= np.hypot(rr - 52, cc - 95) <= 6
    elif kind == "inferior_round":
        rr, cc = np.mgrid[:200, :200]
        m |= np.hypot(rr - 128, cc - 95) <= 6
    elif kind == "anterior":
        m[80:100, 131:140] = True
    elif kind == "posterior":
        m[80:100, 51:60] = True
    return m


@pytest.mark.parametrize(("kind", "location", "typ"), [
    ("superior_spike", "superior_disc", "spike"), ("superior_round", "superior_disc", "round"),
    ("inferior_round", "inferior_disc", "round"), ("anterior", "anterior", None),
    ("posterior", "posterior", None)])
@pytest.mark.parametrize("mirror", [False, True])
def test_leak_location_and_type(kind, location, typ, mirror):
    v = lateral_body(top=60, bottom=120, post=60, ant=130)
    m = _leak_mask(kind)
    if mirror:  # a film facing the other way: columns mirrored with the landmarks
        m = m[:, ::-1]
        v = v.transformed(lambda p: np.stack([p[:, 0], 199 - p[:, 1]], 1))
    f = cement_features(m, v, "L1", SP)
    assert [(lk.location, lk.type) for lk in f.leaks] == [(location, typ)]
    lk = f.leaks[0]
    assert lk.touches_adjacent_endplate is None and "not annotated" in lk.reason


def test_leak_touching_the_adjacent_endplate():
    up = Vertebra("T12", "lateral", {"As": (10, 130), "Ai": (40, 130), "Ps": (10, 60),
                                     "Pi": (40, 60)})
    v = lateral_body(top=60, bottom=120, post=60, ant=130)
    m = _leak_mask("superior_round")           # reaches row 46: 6 px = 3 mm below T12's Pi-Ai
    f = cement_features(m, spine(up, v), "L1", SP)
    assert f.leaks[0].touches_adjacent_endplate is False and f.leaks[0].reason is None
    m[43:47, 94:97] = True                     # reaches row 43: 1.5 mm > 1 mm
    assert cement_features(m, spine(up, v), "L1", SP).leaks[0].touches_adjacent_endplate \
        is False
    m[42:47, 94:97] = True                     # reaches row 42: 1.0 mm -> touches
    assert cement_features(m, spine(up, v), "L1", SP).leaks[0].touches_adjacent_endplate


def test_shape_features_by_hand():
    # a disc of radius 10 px: elongation ~1, solidity ~1, max width ~ 2 * 10 px
    rr, cc = np.mgrid[:41, :41]
    disc = np.hypot(rr - 20, cc - 20) <= 10
    f = shape_features(disc, (0.2, 0.2))
    assert f["elongation"] == pytest.approx(1.0, abs=0.02)
    assert f["solidity"] > 0.9  # hull of the pixel squares
    assert f["max_width"] == pytest.approx(2 * 10 * 0.2, abs=2 * 0.2)
    assert f["area"] == pytest.approx(disc.sum() * 0.04)
    # anisotropic pixels: a 4 x 4 px square at (0.5, 2.0) mm is 2 mm x 8 mm -> elongation 4
    sq = np.zeros((8, 8), bool)
    sq[2:6, 2:6] = True
    assert shape_features(sq, (0.5, 2.0))["elongation"] == pytest.approx(4.0)


def test_blocky_and_spongy():
    v = lateral_body()
    block = np.zeros((160, 160), bool)
    block[45:95, 50:100] = True
    f = cement_features(block, v, "L1", SP)
    assert f.distribution == "blocky"
    assert f.distribution_features["solidity"] == pytest.approx(1.0)
    assert f.distribution_features["components"] == 1
    # interdigitating: the block minus a deterministic comb of trabecular gaps
    sponge = block.copy()
    for r in range(47, 93, 6):
        sponge[r:r + 2, 50:96] = False
    sponge[45:95, 52:54] = True               # a spine keeps the comb connected
    g = cement_features(sponge, v, "L1", SP)
    assert g.distribution == "spongy"
    assert g.distribution_features["roughness"] > 1.5


def ap_body(level="L1"):
    return Vertebra(level, "ap", {"SL": (40, 40), "SR": (40, 120), "IL": (100, 40),
                                  "IR": (100, 120)}, treated=True)


def test_ap_h_and_o():
    v = ap_body()
    h = np.zeros((160, 160), bool)
    h[45:95, 50:70] = True
    h[45:95, 90:110] = True
    h[65:75, 70:90] = True                     # the bar of the H
    fh = cement_features(h, v, "L1", SP)
    assert fh.distribution == "H"
    assert fh.distribution_features["left_fraction"] == pytest.approx(0.5)
    o = np.zeros((160, 160), bool)
    o[50:90, 50:85] = True                     # one lump, mostly left, crossing the midline
    fo = cement_features(o, v, "L1", SP)
    assert fo.distribution == "O"
    # AP leaks beyond the side walls are "lateral"
    o[60:70, 30:50] = True
    assert [lk.location for lk in cement_features(o, v, "L1", SP).leaks] == ["lateral"]


def _phantom(shift_cols=0.0, cement_cols=(60, 100), extra=None):
    img = np.full((200, 220), 100.0)
    img[40:101, 40:111] += 60.0                # bone
    img[46:95, cement_cols[0]:cement_cols[1]] += 600.0
    if extra is not None:
        img[extra] += 600.0
    rng = np.random.default_rng(0)
    img += rng.normal(0, 3.0, img.shape)
    v = lateral_body(post=40 + shift_cols, ant=110 + shift_cols)
    return img, v


def test_segmentation_of_a_phantom_is_exact():
    img, v = _phantom()
    seg = segment_cement(img, v, "L1", SP)
    truth = np.zeros(img.shape, bool)
    truth[46:95, 60:100] = True
    assert seg.found and np.array_equal(seg.mask, truth)
    res = analyze_cement(img, spine(v), "L1", SP)
    assert res.features.npec == "both" and res.source == "auto"


def test_cement_beyond_the_search_box_is_followed():
    # cement continues 14 mm in front of the anterior wall (margin is 8 mm): the box grows
    img, v = _phantom(extra=(slice(60, 80), slice(111, 139)))
    seg = segment_cement(img, v, "L1", SP)
    assert seg.grown >= 1
    assert seg.mask[60:80, 111:139].all()
    no_grow = segment_cement(img, v, "L1", SP, params=SegmentationParams(max_grow=0))
    assert not no_grow.mask[60:80, 138].any()


def test_no_cement_is_a_value():
    img, v = _phantom(cement_cols=(60, 60))
    res = analyze_cement(img, spine(v), "L1", SP)
    assert res.features.found is False
    assert res.features.status.startswith("no cement found")
    assert res.features.to_dict()["npec"] is None
    assert "cement_gap_superior" in res.features.reasons


def test_errors_name_the_vertebra_and_the_rest_is_measured():
    img, v = _phantom()
    other = Vertebra("L3", "lateral", {"As": (150, 500), "Ai": (190, 500), "Ps": (150, 430),
                                       "Pi": (190, 430)}, treated=True)  # outside the image
    lm = spine(v, other)
    with pytest.raises(CementError, match=r"^L2: treated vertebra has no landmarks"):
        segment_cement(img, lm, "L2", SP)
    with pytest.raises(CementError, match=r"^L3: vertebral body lies outside the image"):
        segment_cement(img, lm, "L3", SP)
    with pytest.raises(CementError, match=r"^L1: cement mask is 10x10 but the image"):
        analyze_cement(img, lm, "L1", SP, mask=np.zeros((10, 10), bool))
    out = analyze_film(img, lm, SP)
    assert isinstance(out["L3"], CementError)
    assert out["L1"].features.npec == "both"


def test_edited_mask_wins_and_params_hash():
    img, v = _phantom()
    edit = np.zeros(img.shape, bool)
    edit[40:101, 60:100] = True
    res = analyze_cement(img, spine(v), "L1", SP, mask=edit)
    assert res.source == "edited" and res.params_hash is None
    assert res.features.npec == "none"
    assert SegmentationParams().params_hash() != SegmentationParams(low_fraction=0.4) \
        .params_hash()
    with pytest.raises(ValueError, match="low_fraction"):
        SegmentationParams(low_fraction=0.9, high_fraction=0.8)


def test_volume_ratio_by_hand():
    lat = Vertebra("L1", "lateral", {"As": (0, 60), "Ai": (50, 60), "Ps": (0, 0),
                                     "Pi": (56, 0)})
    ap = Vertebra("L1", "ap", {"SL": (0, 0), "SR": (0, 80), "IL": (50, 0), "IR": (50, 84)})
    # depth (60 + hypot(6, 60)) / 2 * 0.5 mm; height (50 + 56) / 2 * 0.5; width (80 + 82...)
    depth = (60 + math.hypot(6, 60)) / 2 * 0.5
    height = (50 + 56) / 2 * 0.5
    width = (80 + math.hypot(50 - 50, 84)) / 2 * 0.5
    vol_ml = math.pi / 4 * depth * width * height / 1000
    r = cement_volume_ratio(2.0, lat, (0.5, 0.5), ap, (0.5, 0.5))
    assert r.ratio_pct == pytest.approx(100 * 2.0 / vol_ml)
    assert r.above_threshold is (100 * 2.0 / vol_ml > 13.82)
    missing = cement_volume_ratio(2.0, lat, (0.5, 0.5), None, None)
    assert math.isnan(missing.ratio_pct) and missing.above_threshold is None
    assert "AP" in missing.reason
    assert "calibrated" in cement_volume_ratio(2.0, lat, None, ap, (0.5, 0.5)).reason


def test_core_imports_without_io_or_gui():
    code = ("import sys\n"
            "for m in ('pydicom', 'napari', 'PyQt6', 'SimpleITK'):\n"
            "    sys.modules[m] = None\n"
            "import spine_measure.cement\n"
            "assert not any(k.startswith('spine_measure.io') for k in sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
