"""The overlay's 8-bit film view and palette are exact and safe."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from spine_measure.batch.overlay import CEMENT, LEAK, grey8, palette, render_overlay
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
    idx = np.asarray(img)
    assert idx.max() < len(flat) // 3
    base = len(flat) // 3 - 32     # 16 cement tints, then 16 leak tints
    assert ((idx[280:320, 150:200] >= base) & (idx[280:320, 150:200] < base + 16)).all()
    assert (idx[152:168, 162:178] >= base + 16).all()
    assert (idx == ink[CEMENT]).any() and (idx == ink[LEAK]).any()   # legend text colours
