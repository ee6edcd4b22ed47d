"""The overlay's 8-bit film view and palette are exact and safe."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from spine_measure.batch.overlay import (
    ABBREVIATIONS,
    CEMENT,
    COBB,
    LEAK,
    grey8,
    header_height,
    palette,
    render_overlay,
)
from spine_measure.io.radiograph import Window, radiograph_from_array
from spine_measure.landmarks import SpineLandmarks


def _direct(rg) -> np.ndarray:
    return (np.clip(rg.display, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("monochrome1", [False, True])
@pytest.mark.parametrize("window", [None, Window(900.0, 1200.0, "file")])
@pytest.mark.parametrize("rescale", [(1.0, 0.0), (0.5, -100.0)])
def test_lookup_table_path_equals_the_display_conversion(dtype, monochrome1, window, rescale):
    rng = np.random.default_rng(3)
    hi = 255 if dtype is np.uint8 else 4095
    px = rng.integers(0, hi + 1, size=(60, 50)).astype(dtype)
    rg = dataclasses.replace(radiograph_from_array(px, monochrome1=monochrome1),
                             window=window, rescale=rescale)
    np.testing.assert_array_equal(grey8(rg, 1), _direct(rg))


def test_voi_lut_path_equals_the_display_conversion():
    px = np.arange(64 * 40, dtype=np.uint16).reshape(64, 40) % 3000
    lut = (np.sqrt(np.arange(2500)) * 40).astype(np.uint16)
    rg = dataclasses.replace(radiograph_from_array(px), voi_lut=(lut, 200))
    np.testing.assert_array_equal(grey8(rg, 1), _direct(rg))


def test_overlay_uses_only_palette_colours_and_tints_cement_and_leak():
    px = np.full((600, 500), 1000, np.uint16)
    px[200:400, 100:250] = 2000
    lm = SpineLandmarks.from_dict({"view": "lateral", "vertebrae": [
        {"level": "L1", "treated": True,
         "points": {"As": [200, 250], "Ai": [400, 250], "Ps": [200, 100], "Pi": [400, 100]}}]})
    mask = np.zeros(px.shape, bool)
    mask[260:340, 140:210] = True    # inside the body: cement
    mask[150:170, 160:180] = True    # above it: leak
    png = render_overlay(radiograph_from_array(px), lm, cement={"L1": mask},
                         title=["P1  2024-01-01  lateral", "calibration: given"],
                         values={"L1": {"WA": (3.14159, "°")}})
    img = Image.open(io.BytesIO(png))
    assert img.mode == "P"
    flat, ink, _ = palette()
    assert img.getpalette()[: len(flat)] == flat
    full = np.asarray(img)
    assert full.max() < len(flat) // 3
    h = header_height(600, 2)
    idx = full[h:h + 600, :500]      # the film band
    base = len(flat) // 3 - 32     # 16 cement tints, then 16 leak tints
    assert ((idx[280:320, 150:200] >= base) & (idx[280:320, 150:200] < base + 16)).all()
    assert (idx[152:168, 162:178] >= base + 16).all()
    # solid outlines on the mask borders, in the cement and leak colours
    assert (idx[260, 150:200] == ink[CEMENT]).all() and (idx[150, 162:178] == ink[LEAK]).all()


def test_cement_is_translucent_and_leaks_are_far_from_it_in_colour():
    flat, _ink, _ = palette()
    rgb = np.array(flat).reshape(-1, 3)
    base = len(rgb) - 32
    cement, leak = rgb[base + 8], rgb[base + 24]       # the same mid-grey, tinted
    grey = round((8 + 0.5) * 256 / 16)
    assert np.abs(cement - grey).max() < np.abs(leak - grey).max()  # cement shows the film
    assert np.abs(cement.astype(int) - leak).sum() > 200            # clearly distinct
    assert np.abs(np.array(CEMENT) - LEAK).sum() > 300


def _film_and_spine():
    px = np.full((600, 500), 1000, np.uint16)
    verts = []
    for i, lv in enumerate(("T11", "T12", "L1")):
        top = 30 + 180 * i
        verts.append({"level": lv, "fractured": lv == "T12", "excluded": lv == "T11",
                      "points": {"As": [top, 350], "Ai": [top + 140, 350], "Ps": [top, 150],
                                 "Pi": [top + 140, 150]}})
    return radiograph_from_array(px), SpineLandmarks.from_dict({"view": "lateral",
                                                                 "vertebrae": verts})


def test_the_header_sits_above_the_film_and_hides_nothing():
    film, lm = _film_and_spine()
    bare = np.asarray(Image.open(io.BytesIO(render_overlay(film, lm))))
    titled = np.asarray(Image.open(io.BytesIO(render_overlay(
        film, lm, title=["P1  2024-01-01  lateral", "calibration: given", "SOP 1.2.3",
                         "a fourth line"]))))
    h0, h4 = header_height(600, 0), header_height(600, 4)
    assert titled.shape[0] - bare.shape[0] == h4 - h0
    # the film band, endplate at row 30 included, is the same with or without the header
    np.testing.assert_array_equal(titled[h4:h4 + 600], bare[h0:h0 + 600])
    assert (titled[:h4] != bare[h0, 0]).any()   # the header is drawn in its own band


def test_cobb_endplates_are_drawn_extended_and_the_end_vertebrae_labelled():
    film, lm = _film_and_spine()
    _ink = palette()[1]
    png = render_overlay(film, lm, cobb=[("Cobb 5.0° T11 sup-L1 inf", "T11:superior",
                                           "L1:inferior")])
    idx = np.asarray(Image.open(io.BytesIO(png)))
    h = header_height(600, 0)
    white = _ink[COBB]
    # T11 superior runs from col 150 to 350 at row 30: extended by 35 % each way
    row = idx[h + 29:h + 32]
    assert (row[:, 90:140] == white).any() and (row[:, 360:410] == white).any()
    row = idx[h + 30 + 360 + 139:h + 30 + 360 + 142]   # L1 inferior at row 530
    assert (row[:, 90:140] == white).any()
    assert not (idx[h + 210:h + 213, 90:140] == white).any()  # T12 is no Cobb endplate


def test_the_legend_explains_every_label_abbreviation():
    joined = " ".join(ABBREVIATIONS)
    for abbr in ("T =", "fx =", "excl =", "WA =", "CR =", "G ="):
        assert abbr in joined
