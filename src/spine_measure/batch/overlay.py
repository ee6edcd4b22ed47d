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

__all__ = ["ABBREVIATIONS", "MAX_SIDE", "body_polygon", "header_height", "render_overlay"]

MAX_SIDE = 1400
SUPERIOR = (0, 200, 255)
INFERIOR = (255, 210, 0)
POINT = (0, 255, 120)
TREATED = (255, 60, 200)
CEMENT = (255, 140, 0)
LEAK = (70, 90, 255)
COBB = (255, 255, 255)
TEXT_BG = (0, 0, 0)
WHITE = (255, 255, 255)
GREY_LEVELS = 192
TINT_LEVELS = 16
#: Share of the colour in a tinted pixel: cement is translucent (the film shows through,
#: with a solid outline), a leak is nearly opaque in a colour far from the cement's.
TINT_WEIGHT = {CEMENT: 0.35, LEAK: 0.75}
_SOLID = (SUPERIOR, INFERIOR, POINT, TREATED, CEMENT, LEAK)
_TINTED = (CEMENT, LEAK)
#: What the labels beside each vertebra mean (printed under the film).
ABBREVIATIONS = ("T = treated (cemented)", "fx = flagged fractured",
                 "excl = excluded from neighbour references",
                 "(fractured and treated levels are never references either)",
                 "WA = wedge angle (deg)",
                 "CR = anterior compression rate vs the references (%)",
                 "G = Genant grade/shape (reader's in brackets)")


@functools.lru_cache(maxsize=1)
def palette() -> tuple[list[int], dict[tuple[int, int, int], int], np.ndarray]:
    """The overlay palette: ``(flat RGB list, solid colour -> index, grey -> index LUT)``.

    Indices ``0..191`` are a grey ramp, then one entry per solid colour, then for each tinted
    colour (cement, leak) 16 entries ``(1 - w) grey + w colour`` over the grey range, ``w``
    from :data:`TINT_WEIGHT` (cement translucent, leak nearly opaque).

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
        w = TINT_WEIGHT[colour]
        for k in range(TINT_LEVELS):
            grey = (k + 0.5) * 256 / TINT_LEVELS
            flat += [int((1 - w) * grey + w * c) for c in colour]
    lut = (np.arange(256) * (GREY_LEVELS - 1) // 255).astype(np.uint8)
    return flat, ink, lut


def _tint_base(colour: tuple[int, int, int]) -> int:
    return GREY_LEVELS + len(_SOLID) + TINT_LEVELS * _TINTED.index(colour)


def body_polygon(points: Mapping[str, Sequence[float]]) -> list[tuple[float, float]]:
    """Body outline ``As, Ai, (Mi), Pi, Ps, (Ms)`` as (row, col) points
    (docs/annotation_format.md)."""
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
    if isinstance(v, str | int):
        return f"{v}{unit}"
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


_ENDPLATE_POINTS = {("lateral", "superior"): ("Ps", "As"),
                    ("lateral", "inferior"): ("Pi", "Ai"),
                    ("ap", "superior"): ("SL", "SR"), ("ap", "inferior"): ("IL", "IR")}


def _wrap(items: Sequence[str], width: int, scale: float, gap: int) -> list[list[str]]:
    """Legend items in rows that fit ``width`` pixels."""
    rows: list[list[str]] = [[]]
    used = 4
    for it in items:
        w = _text_width(it, scale) + gap
        if rows[-1] and used + w > width:
            rows.append([])
            used = 4
        rows[-1].append(it)
        used += w
    return rows


def text_metrics(film_rows: int) -> tuple[int, int]:
    """(font height, line height) in pixels for a film shown ``film_rows`` rows high."""
    font_px = max(11, min(18, max(film_rows, 600) // 60))
    return font_px, font_px + 8


def header_height(film_rows: int, n_lines: int) -> int:
    """Height of the header band above the film (the film starts at this row)."""
    return 6 + text_metrics(film_rows)[1] * n_lines


def render_overlay(radiograph: Any, landmarks: SpineLandmarks, *,
                   values: Mapping[str, Mapping[str, Any]] | None = None,
                   cement: Mapping[str, np.ndarray] | None = None,
                   title: Sequence[str] = (),
                   cobb: Sequence[tuple[str, str, str]] = ()) -> bytes:
    """PNG bytes of the review overlay.

    The film is shown whole: the header (``title``) sits in a band above it and the legend
    (colours and the abbreviations of the labels, :data:`ABBREVIATIONS`) in a band below it,
    so neither hides an endplate or a label.

    Parameters
    ----------
    radiograph : Radiograph
        The decoded film (its display window is used; MONOCHROME1 shows inverted).
    landmarks : SpineLandmarks
    values : Mapping, optional
        level -> {"WA": (value, unit), ...} printed beside each body.
    cement : Mapping, optional
        level -> boolean mask (rows, cols) of the film; pixels outside that level's body outline
        are drawn as leak. Cement is tinted translucently with a solid outline, leaks nearly
        opaque in a colour of their own, outlined too.
    title : sequence of str
        Lines of the header band (pseudonym, date, view, calibration, film-level angles).
    cobb : sequence of (label, upper, lower)
        Cobb angles to draw: their two endplates (``"T11:superior"``), extended, in white,
        with ``label`` at the upper one; the end vertebrae's labels say "end".
    """
    rows, cols = radiograph.shape
    f = max(1, math.ceil(max(rows, cols) / MAX_SIDE))
    grey = grey8(radiograph, f)
    flat, ink, lut = palette()
    idx = lut[grey]

    def fxy(p: Sequence[float]) -> tuple[float, float]:  # (row, col) -> film (x, y)
        return ((float(p[1]) + 0.5) / f - 0.5, (float(p[0]) + 0.5) / f - 0.5)

    outlines: list[tuple[np.ndarray, tuple[int, int, int]]] = []
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
                                              (fxy(p) for p in
                                               body_polygon(landmarks[level].points))], fill=1)
                inside = np.asarray(poly, dtype=bool)
            ib, gb = idx[box], grey[box]
            for sel, colour in ((mb & inside, CEMENT), (mb & ~inside, LEAK)):
                ib[sel] = _tint_base(colour) + gb[sel] // (256 // TINT_LEVELS)
                if sel.any():
                    contours, _ = cv2.findContours(sel.astype(np.uint8), cv2.RETR_EXTERNAL,
                                                   cv2.CHAIN_APPROX_NONE)
                    for c in contours:
                        outlines.append((c.reshape(-1, 2) + (x0, y0), colour))
    for pts, colour in outlines:  # solid outlines, drawn after every tint
        idx[pts[:, 1], pts[:, 0]] = ink[colour]
    fh, fw = idx.shape
    font_px, line_h = text_metrics(fh)
    scale = font_px / 28.0   # Hershey simplex: cap height ~ 22 x scale px
    width = max(fw, 360)
    legend_items = [("superior endplate", SUPERIOR), ("inferior endplate", INFERIOR),
                    ("cement", CEMENT), ("leak", LEAK), ("treated body", TREATED)]
    if cobb:
        legend_items.append(("Cobb endplates", COBB))
    legend_rows = _wrap([t for t, _c in legend_items], width, scale, 14)
    abbrev_rows = _wrap([f"{a};" for a in ABBREVIATIONS[:-1]] + [ABBREVIATIONS[-1]],
                        width, scale, 10)
    head = header_height(fh, len(title))
    foot = 6 + line_h * (len(legend_rows) + len(abbrev_rows))
    canvas = np.zeros((head + fh + foot, width), np.uint8)   # black bands around the film
    canvas[head:head + fh, :fw] = idx
    img = Image.fromarray(canvas, "P")
    img.putpalette(flat)
    draw = ImageDraw.Draw(img)

    def xy(p: Sequence[float]) -> tuple[float, float]:  # (row, col) -> canvas (x, y)
        x, y = fxy(p)
        return x, y + head

    labels: list[tuple[tuple[float, float], str, tuple[int, int, int]]] = []
    r = max(2.0, fh / 300)
    view = landmarks.view
    ends: set[str] = set()
    for label, upper, lower in cobb:
        for k, ep in enumerate((upper, lower)):
            level, _, which = ep.partition(":")
            if level not in landmarks:
                continue
            pts = landmarks[level].points
            a, b = _ENDPLATE_POINTS.get((view, which), ("", ""))
            if a not in pts or b not in pts:
                continue
            ends.add(level)
            (x1, y1), (x2, y2) = xy(pts[a]), xy(pts[b])
            dx, dy = (x2 - x1) * 0.35, (y2 - y1) * 0.35
            draw.line([(x1 - dx, y1 - dy), (x2 + dx, y2 + dy)], fill=ink[COBB], width=2)
            if k == 0:  # a short tag at the end of the upper line (the full label is in
                # the header): beyond the line's right end, else before its left end
                tag = label.split("°")[0] + "°" if "°" in label else label
                tw = _text_width(tag, scale) + 10
                right_end, left_end = max(x1 - dx, x2 + dx), min(x1 - dx, x2 + dx)
                lx = right_end + 4 if right_end + 4 + tw <= width else left_end - tw - 4
                ly = (y1 - dy if right_end == x1 - dx else y2 + dy) if lx > left_end else \
                    (y1 - dy if left_end == x1 - dx else y2 + dy)
                labels.append(((max(2.0, lx), ly - line_h / 2), tag, COBB))
    for v in landmarks:
        pts = v.points
        lw = 3 if v.treated else 2
        if view == "lateral":
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
        flags = [n for n, on in (("T", v.treated), ("fx", v.fractured and not v.treated),
                                 ("excl", v.excluded), ("end", v.level in ends)) if on]
        head_text = v.level + (f" {' '.join(flags)}" if flags else "")
        vals = [f"{k} {_fmt(val, u)}" for k, (val, u) in ((values or {}).get(v.level, {})
                                                          .items())]
        colour = TREATED if v.treated else WHITE
        arr = np.array([xy(p) for p in pts.values()])
        # beside the body on the anterior side (lateral) / right side (AP), else on the other
        # side; when neither side has room on one line, on two or more lines
        if view == "lateral" and "As" in pts and "Ps" in pts:
            right = xy(pts["As"])[0] > xy(pts["Ps"])[0]
        else:
            right = True
        lo, hi = arr[:, 0].min() - 10, arr[:, 0].max() + 10
        layouts = [[" ".join([head_text, *vals])], [head_text, " ".join(vals)],
                   [head_text, *vals]] if vals else [[head_text]]
        placed = None
        for lines in layouts:
            w = max(_text_width(t, scale) for t in lines if t) + 10
            sides = [(hi, hi + w <= width), (lo - w, lo - w >= 0)]
            for x, fits in (sides if right else sides[::-1]):
                if fits:
                    placed = (x, lines)
                    break
            if placed:
                break
        if placed is None:
            lines = layouts[-1]
            w = max(_text_width(t, scale) for t in lines if t) + 10
            placed = (hi if right else lo - w, lines)
        x, lines = placed
        y0 = arr[:, 1].mean() - 8 - (len(lines) - 1) * line_h / 2
        for i, t in enumerate(lines):
            if t:
                labels.append(((x, y0 + i * line_h), t, colour))
    arr = np.array(img)
    for (x, y), text, colour in labels:   # kept inside the film's band
        _label(arr, (x, min(max(y, head + 2.0), head + fh - line_h)), text, colour, scale)
    y = 4.0
    for line in title:
        while len(line) > 8 and _text_width(line, scale) > width - 14:
            line = line[:4] + "..." + line[8:]
        _label(arr, (4, y), line, WHITE, scale)
        y += line_h
    y = head + fh + 4.0
    colour_of = dict(legend_items)
    for row in legend_rows:
        x = 4.0
        for name in row:
            _label(arr, (x, y), name, colour_of[name], scale)
            x += _text_width(name, scale) + 14
        y += line_h
    for row in abbrev_rows:
        _label(arr, (4, y), "  ".join(row), WHITE, scale)
        y += line_h
    img = Image.fromarray(arr, "P")
    img.putpalette(flat)
    buf = io.BytesIO()
    # zlib level 1, Huffman coding only (strategy 2): ~1.5x faster than the default
    # strategy on a noisy film for a ~20 % larger file
    img.save(buf, format="PNG", compress_level=1, compress_type=2)
    return buf.getvalue()
