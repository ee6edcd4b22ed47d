"""The cement pipeline on every post-op and follow-up film of sample_dicoms/ against the truth."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spine_measure.cement import analyze_cement, segment_cement
from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"
TRUTHS = sorted(SAMPLES.glob("*/*.truth.json"))
CEMENT_FILMS = [p for p in TRUTHS if json.loads(p.read_text())["cement"] is not None]
PREOP_FILMS = [p for p in TRUTHS if json.loads(p.read_text())["time_point"] == "preop"
               and json.loads(p.read_text())["view"] == "lateral"]


def _load(truth_path: Path):
    truth = json.loads(truth_path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CR export with PixelSpacing 0\0 warns
        rg = load_radiograph(truth_path.with_name(truth["image"]))
    return truth, rg, SpineLandmarks.from_dict(truth)


def test_sample_set_has_the_expected_films():
    # 7 patients x (post-op + follow-up); fails loudly if the sample set changes
    assert len(CEMENT_FILMS) == 14
    assert len(PREOP_FILMS) == 7


@pytest.mark.parametrize("truth_path", CEMENT_FILMS, ids=lambda p: p.stem.split(".")[0])
def test_cement_matches_truth(truth_path):
    truth, rg, lm = _load(truth_path)
    c = truth["cement"]
    res = analyze_cement(rg.density, lm, c["level"], rg.spacing)
    gt = np.asarray(Image.open(truth_path.with_name(c["mask"]))) > 0
    dice = 2 * (res.mask & gt).sum() / (res.mask.sum() + gt.sum())
    assert dice >= 0.95, f"Dice {dice:.3f}"
    f = res.features
    assert f.found
    assert f.npec == c["npec"]
    assert f.contacts_superior == c["contacts_superior"]
    assert f.contacts_inferior == c["contacts_inferior"]
    assert f.distribution == c["distribution"]
    assert [(lk.location, lk.type) for lk in f.leaks] == \
        [(lk["location"], lk["type"]) for lk in c["leaks"]]
    if rg.spacing is not None:  # gaps in mm agree with the truth's exact-mask gaps
        assert f.gap_superior == pytest.approx(c["gap_superior_mm"], abs=0.3)
        assert f.gap_inferior == pytest.approx(c["gap_inferior_mm"], abs=0.3)
    else:
        assert f.length_unit == "px"


@pytest.mark.parametrize("truth_path", PREOP_FILMS, ids=lambda p: p.stem.split(".")[0])
def test_preop_fractured_level_has_no_cement(truth_path):
    truth, rg, lm = _load(truth_path)
    level = next(v["level"] for v in truth["vertebrae"] if v["fractured"] and not v["excluded"])
    res = analyze_cement(rg.density, lm, level, rg.spacing)
    assert not res.features.found
    assert res.features.status.startswith("no cement found")
    assert res.features.npec is None and np.isnan(res.features.fill_pct)
    assert not res.mask.any()


def test_same_input_same_mask_and_hash():
    truth, rg, lm = _load(CEMENT_FILMS[0])
    lv = truth["cement"]["level"]
    a = segment_cement(rg.density, lm, lv, rg.spacing)
    b = segment_cement(np.array(rg.density, copy=True), lm, lv, rg.spacing)
    assert np.array_equal(a.mask, b.mask)
    assert a.params_hash == b.params_hash and len(a.params_hash) == 16


def test_monochrome1_and_rescale_do_not_change_the_mask():
    from spine_measure.io.radiograph import radiograph_from_array

    truth, rg, lm = _load(CEMENT_FILMS[0])
    lv = truth["cement"]["level"]
    stored = np.asarray(rg.pixels).astype(np.int32)
    base = segment_cement(rg.density, lm, lv, rg.spacing).mask
    # the same film stored as MONOCHROME1 (4095 - value) and read back through the loader model
    m1 = radiograph_from_array((4095 - stored).astype(np.uint16), spacing=rg.spacing,
                               monochrome1=True)
    assert np.array_equal(segment_cement(m1.density, lm, lv, rg.spacing).mask, base)
    # a positive linear rescale (other bit depth / slope / intercept): same mask up to
    # floating-point ties at the threshold
    scaled = segment_cement(4.0 * np.asarray(rg.density, np.float64) + 1024.0, lm, lv,
                            rg.spacing).mask
    assert (scaled != base).sum() <= 0.001 * base.sum()
