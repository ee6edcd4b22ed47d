"""Review overlays: the film with landmarks, endplate lines, angle values and cement.

Drawn with Pillow (deterministic bytes for the same input, so a resumed run writes the same
files). Large films are reduced by an integer block mean to at most :data:`MAX_SIDE` pixels.

The overlay is an 8-bit palette PNG (:func:`palette`): a 192-level grey ramp for the film,
the solid drawing colours, and cement / leak tints blended with 16 grey levels. One byte per
pixel instead of three makes the PNG about 3x faster to encode (and smaller), which matters
because an overlay is drawn for every film of a batch; 192 grey levels are indistinguishable
from 256 on a review screen.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from spine_measure.landmarks import SpineLandmarks

__all__ = ["MAX_SIDE", "body_polygon", "render_overlay"]

MAX_SIDE = 1400
SUPERIOR = (0, 200, 255)
INFERIOR = (255, 210, 0)
POINT = (0, 255, 120)
TREATED = (255, 60, 200)
CEMENT = (255, 140, 0)
LEAK = (255, 30, 30)
TEXT_BG = (0, 0, 0)
WHITE = (255, 255, 255)
GREY_LEVELS = 192
TINT_LEVELS = 16
_SOLID = (SUPERIOR, INFERIOR, POINT, TREATED, CEMENT, LEAK)
_TINTED = (CEMENT, LEAK)


@functools.lru_cache(maxsize=1)
def palette() -> tuple[list[int], dict[tuple[int, int, int], int], np.ndarray]:
    """The overlay palette: ``(flat RGB list, solid colour -> index, grey -> index LUT)``.

    Indices ``0..191`` are a grey ramp, then one entry per solid colour, then for each tinted
    colour (cement, leak) 16 entries ``0.45 grey + 0.55 colour`` over the grey range.

    >>> flat, ink, lut = palette()
    >>> len(flat) <= 768, ink[(255, 255, 255)], int(lut[255]), flat[3 * ink[CEMENT]:][:3]
    (True, 191, 191, [255, 140, 0])
    """
    flat: list[int] = []
    for i in range(GREY_LEVELS):
        v = round(i * 255 / (GREY_LEVELS - 1))
        flat += [v, v, v]
    ink = {TEXT_BG: 0, WHITE: GREY_LEVELS - 1}
    for colour in _SOLID:
        ink[colour] = len(flat) // 3
        flat += list(colour)
    for colour in _TINTED:
        for k in range(TINT_LEVELS):
            grey = (k + 0.5) * 256 / TINT_LEVELS
            flat += [int(0.45 * grey + 0.55 * c) for c in colour]
    lut = (np.arange(256) * (GREY_LEVELS - 1) // 255).astype(np.uint8)
    return flat, ink, lut


def _tint_base(colour: tuple[int, int, int]) -> int:
    return GREY_LEVELS + len(_SOLID) + TINT_LEVELS * _TINTED.index(colour)


def body_polygon(points: Mapping[str, Sequence[float]]) -> list[tuple[float, float]]:
    """Body outline ``As, Ai, (Mi), Pi, Ps, (Ms)`` as (row, col) points (SPEC §1.3)."""
    order = ("As", "Ai", "Mi", "Pi", "Ps", "Ms")
    return [(float(points[k][0]), float(points[k][1])) for k in order if k in points]


def _reduce(arr: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return arr
    r, c = (arr.shape[0] // f) * f, (arr.shape[1] // f) * f
    return arr[:r, :c].reshape(r // f, f, c // f, f).mean(axis=(1, 3))


_FACE = cv2.FONT_HERSHEY_SIMPLEX


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only: degrees as "deg", anything else as "?"."""
    text = text.replace("°", "deg").replace("…", "...")
    return text.encode("ascii", "replace").decode("ascii")


def _text_width(text: str, scale: float) -> int:
    return int(cv2.getTextSize(_ascii(text), _FACE, scale, 1)[0][0])


def _label(arr: np.ndarray, xy: tuple[float, float], text: str, colour: tuple[int, int, int],
           scale: float) -> None:
    """Text on a black box at ``xy`` (x, y), kept inside the image. OpenCV renders the text
    into a mask (thresholded at half coverage, so anti-aliasing never leaves colours outside
    the palette); ~50x faster than Pillow's FreeType text."""
    text = _ascii(text)
    (tw, th), base = cv2.getTextSize(text, _FACE, scale, 1)
    w, h = tw + 6, th + base + 4
    rows, cols = arr.shape
    x = max(0, int(round(min(max(2.0, xy[0]), cols - w - 2))))
    y = max(0, int(round(min(max(2.0, xy[1]), rows - h - 2))))
    box = arr[y:y + h + 1, x:x + w + 1]
    box[...] = palette()[1][TEXT_BG]
    mask = np.zeros((h + 1, w + 1), np.uint8)
    cv2.putText(mask, text, (3, 2 + th), _FACE, scale, 255, 1, cv2.LINE_8)
    box[mask[:box.shape[0], :box.shape[1]] > 127] = palette()[1][colour]


def _fmt(v: Any, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    text = f"{v:.1f}"
    return ("0.0" if text == "-0.0" else text) + unit


def grey8(radiograph: Any, f: int) -> np.ndarray:
    """The film's display view (:attr:`Radiograph.display`) as 8-bit grey, reduced by an
    integer block mean ``f``.

    Unreduced films with unsigned stored values go through a look-up table: the display
    mapping (window or VOI LUT, MONOCHROME1) acts value by value, so mapping each possible
    stored value once and indexing gives the same bytes as converting the whole film to
    float, at a fraction of the cost.
    """
    px = np.asarray(radiograph.pixels)
    if f == 1 and px.dtype.kind == "u" and px.dtype.itemsize <= 2:
        window = radiograph.window or radiograph.default_window()
        ramp = np.arange(int(px.max()) + 1, dtype=px.dtype)
        disp = dataclasses.replace(radiograph, pixels=np.stack([ramp, ramp]),
                                   window=window).display[0]
        return (np.clip(disp, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)[px]
    small = _reduce(np.asarray(px, dtype=np.float32), f)
    if f > 1 and radiograph.voi_lut is not None:
        small = np.rint(small).astype(px.dtype)
    disp = dataclasses.replace(radiograph, pixels=small).display
    return (np.clip(disp, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_overlay(radiograph: Any, landmarks: SpineLandmarks, *,
                   values: Mapping[str, Mapping[str, Any]] | None = None,
                   cement: Mapping[str, np.ndarray] | None = None,
                   title: Sequence[str] = ()) -> bytes:
    """PNG bytes of the review overlay.

    Parameters
    ----------
    radiograph : Radiograph
        The decoded film (its display window is used; MONOCHROME1 shows inverted).
    landmarks : SpineLandmarks
    values : Mapping, optional
        level -> {"wedge_angle_deg": ..., "cr_anterior_pct": ..., ...} printed beside each body.
    cement : Mapping, optional
        level -> boolean mask (rows, cols) of the film; pixels outside that level's body outline
        are drawn as leak.
    title : sequence of str
        Lines of the header box (pseudonym, date, view, calibration).
    """
    rows, cols = radiograph.shape
    f = max(1, math.ceil(max(rows, cols) / MAX_SIDE))
    grey = grey8(radiograph, f)
    flat, ink, lut = palette()
    idx = lut[grey]

    def xy(p: Sequence[float]) -> tuple[float, float]:  # (row, col) -> PIL (x, y)
        return ((float(p[1]) + 0.5) / f - 0.5, (float(p[0]) + 0.5) / f - 0.5)

    if cement:
        for level, mask in sorted(cement.items()):
            m = np.asarray(mask, dtype=bool)
            m = (_reduce(m.astype(np.float32), f) > 0) if f > 1 else m
            m = m[: idx.shape[0], : idx.shape[1]]
            x0, y0, bw, bh = cv2.boundingRect(m.view(np.uint8))   # tint the mask's box only
            if bw == 0:
                continue
            box = (slice(y0, y0 + bh), slice(x0, x0 + bw))
            mb = m[box]
            inside = np.zeros(mb.shape, dtype=bool)
            if level in landmarks:
                poly = Image.new("L", (bw, bh), 0)
                ImageDraw.Draw(poly).polygon([(px - x0, py - y0) for px, py in
                                              (xy(p) for p in
                                               body_polygon(landmarks[level].points))], fill=1)
                inside = np.asarray(poly, dtype=bool)
            ib, gb = idx[box], grey[box]
            for sel, colour in ((mb & inside, CEMENT), (mb & ~inside, LEAK)):
                ib[sel] = _tint_base(colour) + gb[sel] // (256 // TINT_LEVELS)
    img = Image.fromarray(idx, "P")
    img.putpalette(flat)
    draw = ImageDraw.Draw(img)
    size = img.size
    font_px = max(11, min(18, size[1] // 60))
    scale = font_px / 28.0   # Hershey simplex: cap height ~ 22 x scale px
    labels: list[tuple[tuple[float, float], str, tuple[int, int, int]]] = []
    r = max(2.0, size[1] / 300)
    for v in landmarks:
        pts = v.points
        lw = 3 if v.treated else 2
        if landmarks.view == "lateral":
            sup = [xy(pts[k]) for k in ("Ps", "Ms", "As") if k in pts]
            inf = [xy(pts[k]) for k in ("Pi", "Mi", "Ai") if k in pts]
            draw.line(sup, fill=ink[SUPERIOR], width=lw)
            if len(inf) >= 2:
                draw.line(inf, fill=ink[INFERIOR], width=lw)
            if v.treated and len(pts) >= 4:
                draw.polygon([xy(p) for p in body_polygon(pts)], outline=ink[TREATED], width=2)
        else:
            draw.line([xy(pts["SL"]), xy(pts["SR"])], fill=ink[SUPERIOR], width=lw)
            draw.line([xy(pts["IL"]), xy(pts["IR"])], fill=ink[INFERIOR], width=lw)
        for p in pts.values():
            x, y = xy(p)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink[POINT], outline=ink[TEXT_BG])
        text = v.level + (" treated" if v.treated else " fx" if v.fractured else "") \
            + (" excl" if v.excluded else "")
        vals = (values or {}).get(v.level, {})
        if vals:
            text += "  " + "  ".join(f"{k} {_fmt(val, u)}" for k, (val, u) in vals.items())
        colour = TREATED if v.treated else WHITE
        w = _text_width(text, scale) + 8
        arr = np.array([xy(p) for p in pts.values()])
        # beside the body on the anterior side (lateral) / right side (AP); the other side
        # when it does not fit in the image
        if landmarks.view == "lateral" and "As" in pts and "Ps" in pts:
            right = xy(pts["As"])[0] > xy(pts["Ps"])[0]
        else:
            right = True
        x_right, x_left = arr[:, 0].max() + 10, arr[:, 0].min() - 10 - w
        if right:
            x = x_right if x_right + w <= size[0] else x_left
        else:
            x = x_left if x_left >= 0 else x_right
        anchor = np.array([x, arr[:, 1].mean()])
        labels.append(((anchor[0], anchor[1] - 8), text, colour))
    arr = np.array(img)
    for at, text, colour in labels:
        _label(arr, at, text, colour, scale)
    y = 4.0
    for line in title:
        while len(line) > 8 and _text_width(line, scale) > size[0] - 14:
            line = line[:4] + "..." + line[8:]
        _label(arr, (4, y), line, WHITE, scale)
        y += font_px + 8
    legend = "superior endplate", "inferior endplate", "cement", "leak"
    x = 4.0
    for name, colour in zip(legend, (SUPERIOR, INFERIOR, CEMENT, LEAK), strict=True):
        _label(arr, (x, size[1] - 24), name, colour, scale)
        x += _text_width(name, scale) + 14
    img = Image.fromarray(arr, "P")
    img.putpalette(flat)
    buf = io.BytesIO()
    # zlib level 1, Huffman coding only (strategy 2): ~1.5x faster than the default
    # strategy on a noisy film for a ~20 % larger file
    img.save(buf, format="PNG", compress_level=1, compress_type=2)
    return buf.getvalue()
