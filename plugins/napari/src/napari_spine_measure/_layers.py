"""Adapters between the controller's state and napari layer data (no Qt).

Layer data are ``(row, col)`` pixels of the stored image, exactly the controller's
coordinates; every layer gets the image layer's ``scale`` so the viewer shows millimetres
(``docs/conventions.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_spine_measure.controller import AnnotationController
from spine_measure.landmarks import LEVELS

__all__ = ["endplate_paths", "grade_colour", "grade_labels", "landmark_arrays",
           "level_label_points", "to_rgba"]

_INDEX = {name: i for i, name in enumerate(LEVELS)}

# calm palette: landmarks pale blue, the vertebra being annotated amber, endplates teal
LANDMARK_COLOUR = np.array([0.55, 0.80, 1.00, 1.0])
CURRENT_COLOUR = np.array([1.00, 0.76, 0.30, 1.0])
NOT_MEASURABLE_COLOUR = np.array([0.60, 0.60, 0.60, 1.0])
SUPERIOR_COLOUR = np.array([0.30, 0.85, 0.70, 0.95])
INFERIOR_COLOUR = np.array([0.95, 0.55, 0.45, 0.95])


def landmark_arrays(ctl: AnnotationController) -> tuple[np.ndarray, dict[str, list],
                                                        np.ndarray, list[tuple[str, str]]]:
    """Points layer content: data (N, 2), features (``level``, ``point``), face colours
    (N, 4) and the (level, point) key of each row, cranial to caudal in placement order."""
    keys: list[tuple[str, str]] = []
    rows: list[tuple[float, float]] = []
    colours = []
    pts = ctl.points()
    nm = ctl.not_measurable
    for level in sorted(pts, key=_INDEX.__getitem__):
        for name in ctl.order(level):
            if name in pts[level]:
                keys.append((level, name))
                rows.append(pts[level][name])
                colours.append(NOT_MEASURABLE_COLOUR if level in nm else
                               CURRENT_COLOUR if level == ctl.level else LANDMARK_COLOUR)
    data = np.array(rows, dtype=float).reshape(-1, 2)
    features = {"level": [k[0] for k in keys], "point": [k[1] for k in keys]}
    return data, features, np.array(colours).reshape(-1, 4), keys


def _endplate(pts: Mapping[str, tuple[float, float]], names: tuple[str, ...]) -> np.ndarray | None:
    have = [pts[n] for n in names if n in pts]
    if len(have) < 2 or names[0] not in pts or names[-1] not in pts:
        return None
    return np.array(have, dtype=float)


def endplate_paths(ctl: AnnotationController) -> tuple[list[np.ndarray], list[str],
                                                       np.ndarray]:
    """Shapes layer content: the superior (``Ps-Ms-As``) and inferior (``Pi-Mi-Ai``)
    endplate polylines of every vertebra that has both ends, their kinds and edge colours."""
    paths: list[np.ndarray] = []
    kinds: list[str] = []
    colours = []
    if ctl.view == "ap":
        sup_names, inf_names = ("SL", "SR"), ("IL", "IR")
    else:
        sup_names, inf_names = ("Ps", "Ms", "As"), ("Pi", "Mi", "Ai")
    for level, pts in sorted(ctl.points().items(), key=lambda kv: _INDEX[kv[0]]):
        if level in ctl.not_measurable:
            continue
        for kind, names, colour in (("superior", sup_names, SUPERIOR_COLOUR),
                                    ("inferior", inf_names, INFERIOR_COLOUR)):
            path = _endplate(pts, names)
            if path is not None:
                paths.append(path)
                kinds.append(f"{level} {kind}")
                colours.append(colour)
    return paths, kinds, np.array(colours).reshape(-1, 4)


def level_label_points(ctl: AnnotationController) -> tuple[np.ndarray, list[str]]:
    """One label position per vertebra: the body centre pushed anteriorly by half the
    depth, so the level name sits beside the body, not on it."""
    pos, text = [], []
    for level, pts in sorted(ctl.points().items(), key=lambda kv: _INDEX[kv[0]]):
        corners = [pts[n] for n in ("As", "Ai", "Ps", "Pi") if n in pts]
        if len(corners) < 2:
            continue
        centre = np.mean(corners, axis=0)
        ant = [pts[n] for n in ("As", "Ai") if n in pts]
        post = [pts[n] for n in ("Ps", "Pi") if n in pts]
        if ant and post:
            a, p = np.mean(ant, axis=0), np.mean(post, axis=0)
            centre = a + 0.45 * (a - p)
        pos.append(centre)
        suffix = " ✕" if level in ctl.not_measurable else ""
        text.append(level + suffix)
    return np.array(pos, dtype=float).reshape(-1, 2), text


#: Genant grade -> text colour on the film and in the table (0 normal: the plain text colour;
#: 1 mild yellow, 2 moderate orange, 3 severe red; not graded: grey)
GRADE_COLOURS = {0: "#e8eef2", 1: "#ffd54f", 2: "#ff9f43", 3: "#ff5c5c"}
_SHAPE_TEXT = {"wedge": "wedge", "biconcave": "biconcave", "crush": "crush"}


def to_rgba(colour: str) -> tuple[float, float, float, float]:
    """``"#rrggbb"`` -> RGBA floats in [0, 1]."""
    h = colour.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0)


def grade_colour(grade: object) -> str:
    """Colour of a Genant grade (grey when not graded)."""
    return GRADE_COLOURS.get(grade, "#9aa7b0") if isinstance(grade, int) else "#9aa7b0"


def grade_labels(fm: Any, levels: list[str],
                 reader: Mapping[str, tuple[int | None, str | None]] | None = None,
                 ) -> list[tuple[str, str]]:
    """``("G1 wedge", colour)`` for each of ``levels`` from the film's measurements ``fm``
    (the computed Genant grade and shape; empty text when the vertebra cannot be graded).

    ``reader`` maps a level to the reader's own ``(grade, shape)`` (either None: computed):
    the reader's values are shown instead, marked ``(reader)``, and the colour follows the
    grade shown.

    >>> from types import SimpleNamespace as R
    >>> fm = R(vertebrae={"L1": {"genant_grade": R(value=1), "genant_shape": R(value="wedge")}})
    >>> grade_labels(fm, ["L1"])
    [('G1 wedge', '#ffd54f')]
    >>> grade_labels(fm, ["L1"], {"L1": (2, "biconcave")})
    [('G2 biconcave (reader)', '#ff9f43')]
    >>> grade_labels(fm, ["L1"], {"L1": (0, "none")})
    [('G0 (reader)', '#e8eef2')]
    """
    out = []
    reader = reader or {}
    for level in levels:
        per = fm.vertebrae.get(level, {})
        g = per.get("genant_grade")
        shape = per.get("genant_shape")
        grade = None if g is None else g.value
        sh = None if shape is None else shape.value
        r_grade, r_shape = reader.get(level, (None, None))
        own = r_grade is not None or r_shape is not None
        if r_grade is not None:
            grade = r_grade
        if r_shape is not None:
            sh = r_shape
        if isinstance(grade, bool) or not isinstance(grade, int | np.integer):
            out.append((f"{r_shape} (reader)" if own else "", grade_colour(None)))
            continue
        if int(grade) == 0:  # normal: the level name alone, in the plain colour
            out.append(("G0 (reader)" if own else "", grade_colour(0)))
            continue
        text = f"G{int(grade)} {_SHAPE_TEXT.get(str(sh), '')}".rstrip()
        out.append((text + (" (reader)" if own else ""), grade_colour(int(grade))))
    return out
