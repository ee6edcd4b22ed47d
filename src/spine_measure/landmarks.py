"""The landmark model: vertebrae with named points, validated once on construction.

This module is part of the pure core: it imports numpy only and knows nothing about files,
DICOM or screens. Points are ``(row, col)`` floats in pixels of the stored image, ``(0, 0)``
the centre of the top-left pixel (``docs/conventions.md``).

Lateral films carry six points per vertebral body (docs/annotation_format.md): ``As``
anterior-superior, ``Ai`` anterior-inferior, ``Ms``/``Mi`` middle of the superior/inferior endplate
(optional), ``Ps`` posterior-superior, ``Pi`` posterior-inferior. S1 carries only ``As`` and
``Ps`` (its superior endplate). AP films carry four points: ``SL``, ``SR``, ``IL``, ``IR``
(superior and inferior endplate ends, left and right as seen on the image).

Examples
--------
>>> v = Vertebra("L1", "lateral", {"As": (10, 40), "Ai": (30, 40), "Ps": (10, 10), "Pi": (30, 10)})
>>> spine = SpineLandmarks("lateral", (v,))
>>> spine["L1"].point("Ai").tolist()
[30.0, 40.0]
"""

from __future__ import annotations

import difflib
import math
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from spine_measure.errors import SpineMeasureError

__all__ = [
    "AP_POINTS",
    "GENANT_SHAPES",
    "LATERAL_POINTS",
    "LEVELS",
    "LandmarkError",
    "SpineLandmarks",
    "Vertebra",
    "View",
    "required_points",
]

LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(2, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    "S1",
)
"""Vertebral level labels, cranial to caudal."""

LATERAL_POINTS: tuple[str, ...] = ("As", "Ai", "Ms", "Mi", "Ps", "Pi")
"""Six-point morphometry landmarks of a lateral film (``Ms``/``Mi`` optional)."""

AP_POINTS: tuple[str, ...] = ("SL", "SR", "IL", "IR")
"""Four endplate-end landmarks of an AP (frontal) film."""

View = Literal["lateral", "ap"]
VIEWS: tuple[str, ...] = ("lateral", "ap")

_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}


class LandmarkError(SpineMeasureError, ValueError):
    """Landmarks that cannot describe a spine; the message names the vertebra and the point."""


def _suggest(name: str, valid: tuple[str, ...] | list[str]) -> str:
    """Return ``'; did you mean "X"?'`` for the nearest valid name, or ``''``."""
    by_case = [v for v in valid if v.lower() == str(name).lower()]
    if by_case:
        return f'; did you mean "{by_case[0]}"?'
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(str(name).lower(), [v.lower() for v in valid], n=1,
                                          cutoff=0.5)
        close = [v for v in valid if close and v.lower() == close[0]]
    return f'; did you mean "{close[0]}"?' if close else ""


def required_points(level: str, view: str) -> tuple[str, ...]:
    """Points a vertebra must carry: lateral ``As Ai Ps Pi`` (S1: ``As Ps``), AP all four."""
    if view == "ap":
        return AP_POINTS
    if level == "S1":
        return ("As", "Ps")
    return ("As", "Ai", "Ps", "Pi")


def _allowed_points(level: str, view: str) -> tuple[str, ...]:
    if view == "ap":
        return AP_POINTS
    if level == "S1":
        return ("As", "Ps")
    return LATERAL_POINTS


def _validate_level(level: Any) -> str:
    if not isinstance(level, str) or level not in _LEVEL_INDEX:
        raise LandmarkError(
            f'level "{level}" is not a vertebral level (C2-C7, T1-T12, L1-L5, S1)'
            + _suggest(str(level), LEVELS)
        )
    return level


def _validate_view(view: Any, where: str) -> str:
    if view not in VIEWS:
        raise LandmarkError(f'{where}: view "{view}" must be "lateral" or "ap"'
                            + _suggest(str(view), VIEWS))
    return view


def _fast_coord(x: Any) -> float | None:
    t = type(x)
    if t is float or t is np.float64 or (t is int and -(2 ** 53) <= x <= 2 ** 53):
        f = float(x)
        return f if math.isfinite(f) else None
    return None


def _as_point(level: str, name: str, value: Any) -> tuple[float, float]:
    # fast path for the common (row, col) pair of plain numbers; anything else (strings,
    # bools, arrays, bad shapes, non-finite values) takes the numpy path with its messages
    if type(value) is tuple or type(value) is list:
        if len(value) == 2:
            a, b = _fast_coord(value[0]), _fast_coord(value[1])
            if a is not None and b is not None:
                return (a, b)
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.shape != (2,) or not np.all(np.isfinite(arr)):
        shown = tuple(value) if isinstance(value, list | tuple | np.ndarray) else value
        raise LandmarkError(
            f'{level}: point "{name}" must be two finite numbers (row, col); got {shown!r}'
        )
    return (float(arr[0]), float(arr[1]))


def _as_flag(level: str, name: str, value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise LandmarkError(f'{level}: flag "{name}" must be true or false; got {value!r}')


#: Genant shapes a reader may record (as the computed ``genant_shape``).
GENANT_SHAPES: tuple[str, ...] = ("none", "wedge", "biconcave", "crush")
_READER_FIELDS = ("genant_grade_reader", "genant_shape_reader")


def _reader_genant(level: str, grade: Any, shape: Any) -> tuple[int | None, str | None]:
    """Validate a reader's Genant grade/shape override (either may be None)."""
    if grade is not None:
        if isinstance(grade, bool | np.bool_) or not isinstance(grade, int | np.integer) \
                or not 0 <= int(grade) <= 3:
            raise LandmarkError(f'{level}: "genant_grade_reader" must be an integer 0-3 or '
                                f"null; got {grade!r}")
        grade = int(grade)
    if shape is not None:
        if shape not in GENANT_SHAPES:
            raise LandmarkError(f'{level}: "genant_shape_reader" must be one of '
                                f"{', '.join(GENANT_SHAPES)} or null; got {shape!r}"
                                + _suggest(str(shape), GENANT_SHAPES))
        if grade is not None and (grade == 0) != (shape == "none"):
            raise LandmarkError(f'{level}: reader Genant grade {grade} and shape "{shape}" '
                                'contradict each other (shape "none" goes with grade 0 only)')
    return grade, shape


@dataclass(frozen=True)
class Vertebra:
    """One annotated vertebral body.

    Parameters
    ----------
    level : str
        Level label from :data:`LEVELS` (``"T12"``, ``"L1"``, ``"S1"``...).
    view : {"lateral", "ap"}
        The projection the points were placed on.
    points : Mapping[str, tuple[float, float]]
        Point name -> ``(row, col)`` in pixels of the stored image. Lateral: ``As Ai Ps Pi``
        required, ``Ms Mi`` optional; S1: ``As Ps`` only; AP: ``SL SR IL IR``.
    fractured, treated, excluded : bool
        Reader flags. A vertebra flagged with any of them never serves as a height reference
        for a neighbour (``excluded``: abnormal for another reason, e.g. a congenital
        anomaly or a fracture the reader does not want to flag).
    genant_grade_reader : int 0-3 or None
        The reader's own Genant grade, when it overrides the computed one (kept beside it).
    genant_shape_reader : {"none", "wedge", "biconcave", "crush"} or None
        The reader's own Genant shape, when it overrides the computed one.

    Raises
    ------
    LandmarkError
        Unknown level or point name (with the nearest valid one suggested), missing required
        point, non-finite coordinate, non-boolean flag.
    """

    level: str
    view: View
    points: Mapping[str, tuple[float, float]] = field(repr=False)
    fractured: bool = False
    treated: bool = False
    excluded: bool = False
    genant_grade_reader: int | None = None
    genant_shape_reader: str | None = None

    def __post_init__(self) -> None:
        level = _validate_level(self.level)
        view = _validate_view(self.view, level)
        if not isinstance(self.points, Mapping):
            raise LandmarkError(f"{level}: points must be a mapping name -> (row, col); "
                                f"got {type(self.points).__name__}")
        allowed = _allowed_points(level, view)
        clean: dict[str, tuple[float, float]] = {}
        for name, value in self.points.items():
            if name not in allowed:
                kind = "an AP" if view == "ap" else "a lateral"
                extra = " (S1 has only As, Ps)" if level == "S1" and name in LATERAL_POINTS \
                    else ""
                raise LandmarkError(
                    f'{level}: point "{name}" is not {kind} landmark{extra}'
                    + _suggest(str(name), allowed)
                )
            clean[name] = _as_point(level, name, value)
        missing = [p for p in required_points(level, view) if p not in clean]
        if missing:
            raise LandmarkError(f"{level}: missing required point(s) {', '.join(missing)} "
                                f"({view} view)")
        ordered = {name: clean[name] for name in allowed if name in clean}
        object.__setattr__(self, "points", types.MappingProxyType(ordered))
        for flag in ("fractured", "treated", "excluded"):
            object.__setattr__(self, flag, _as_flag(level, flag, getattr(self, flag)))
        if self.genant_grade_reader is not None or self.genant_shape_reader is not None:
            grade, shape = _reader_genant(level, self.genant_grade_reader,
                                          self.genant_shape_reader)
            object.__setattr__(self, "genant_grade_reader", grade)
            object.__setattr__(self, "genant_shape_reader", shape)

    def point(self, name: str) -> np.ndarray:
        """Return point ``name`` as a float array ``(row, col)`` of shape (2,)."""
        if name not in self.points:
            allowed = _allowed_points(self.level, self.view)
            if name in allowed:
                raise LandmarkError(f'{self.level}: point "{name}" was not annotated')
            raise LandmarkError(f'{self.level}: point "{name}" is not a {self.view} landmark'
                                + _suggest(str(name), allowed))
        return np.array(self.points[name], dtype=float)

    def has(self, name: str) -> bool:
        """True when point ``name`` was annotated."""
        return name in self.points

    @property
    def index(self) -> int:
        """Position of the level in :data:`LEVELS` (0 = C2)."""
        return _LEVEL_INDEX[self.level]

    def transformed(self, fn: Callable[[np.ndarray], np.ndarray]) -> Vertebra:
        """Return a copy with ``fn`` applied to the ``(N, 2)`` array of its points."""
        names = list(self.points)
        arr = np.array([self.points[n] for n in names], dtype=float).reshape(-1, 2)
        out = np.asarray(fn(arr), dtype=float)
        if out.shape != arr.shape:
            raise LandmarkError(f"{self.level}: transform must return shape {arr.shape}; "
                                f"got {out.shape}")
        return Vertebra(self.level, self.view, {n: tuple(out[i]) for i, n in enumerate(names)},
                        self.fractured, self.treated, self.excluded,
                        self.genant_grade_reader, self.genant_shape_reader)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict ``{"level", "fractured", "treated", "excluded", "points"}``, plus
        ``genant_grade_reader`` / ``genant_shape_reader`` when the reader set them."""
        out: dict[str, Any] = {
            "level": self.level,
            "fractured": self.fractured,
            "treated": self.treated,
            "excluded": self.excluded,
        }
        for name in _READER_FIELDS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["points"] = {n: [p[0], p[1]] for n, p in self.points.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], view: str) -> Vertebra:
        """Build from :meth:`to_dict` output (flags default to false)."""
        if not isinstance(data, Mapping):
            raise LandmarkError(f"vertebra entry must be an object; got {type(data).__name__}")
        known = ["level", "fractured", "treated", "excluded", *_READER_FIELDS, "points"]
        unknown = set(data) - {*known, "view"}
        level = data.get("level")
        if unknown:
            key = sorted(unknown)[0]
            raise LandmarkError(f'{level}: unknown vertebra field "{key}"' + _suggest(key, known))
        if "level" not in data:
            raise LandmarkError("vertebra entry has no \"level\"")
        if "points" not in data:
            raise LandmarkError(f'{level}: vertebra entry has no "points"')
        return cls(
            level=level,
            view=data.get("view", view),
            points=data["points"],
            fractured=data.get("fractured", False),
            treated=data.get("treated", False),
            excluded=data.get("excluded", False),
            genant_grade_reader=data.get("genant_grade_reader"),
            genant_shape_reader=data.get("genant_shape_reader"),
        )


@dataclass(frozen=True)
class SpineLandmarks:
    """All vertebrae annotated on one film, sorted cranial to caudal.

    Parameters
    ----------
    view : {"lateral", "ap"}
    vertebrae : iterable of Vertebra
        Any order; stored sorted by :data:`LEVELS`. Each must have ``view`` equal to the film's
        view; levels must be unique.
    """

    view: View
    vertebrae: tuple[Vertebra, ...] = ()

    def __post_init__(self) -> None:
        view = _validate_view(self.view, "landmarks")
        verts = tuple(self.vertebrae)
        seen: set[str] = set()
        for v in verts:
            if not isinstance(v, Vertebra):
                raise LandmarkError(f"vertebrae must be Vertebra objects; got {type(v).__name__}")
            if v.view != view:
                raise LandmarkError(f"{v.level}: vertebra is {v.view} but the film is {view}")
            if v.level in seen:
                raise LandmarkError(f"{v.level}: level annotated twice")
            seen.add(v.level)
        object.__setattr__(self, "view", view)
        ordered = tuple(sorted(verts, key=lambda v: v.index))
        object.__setattr__(self, "vertebrae", ordered)
        # lookup tables (not dataclass fields: equality, repr and replace() ignore them)
        object.__setattr__(self, "_by_level", {v.level: v for v in ordered})
        object.__setattr__(self, "_levels", tuple(v.level for v in ordered))

    def _lookup(self, level: object) -> Vertebra | None:
        try:
            return self._by_level.get(level)  # type: ignore[attr-defined,no-any-return]
        except TypeError:  # unhashable: cannot be a level
            return None

    def __getitem__(self, level: str) -> Vertebra:
        v = self._lookup(level)
        if v is not None:
            return v
        if level in _LEVEL_INDEX:
            raise LandmarkError(f"{level}: level not annotated on this film "
                                f"(annotated: {', '.join(self.levels()) or 'none'})")
        raise LandmarkError(f'level "{level}" is not a vertebral level'
                            + _suggest(str(level), LEVELS))

    def get(self, level: str) -> Vertebra | None:
        """Return the vertebra at ``level`` or None."""
        return self._lookup(level)

    def __contains__(self, level: object) -> bool:
        return self._lookup(level) is not None

    def __iter__(self) -> Iterator[Vertebra]:
        return iter(self.vertebrae)

    def __len__(self) -> int:
        return len(self.vertebrae)

    def levels(self) -> tuple[str, ...]:
        """Annotated level labels, cranial to caudal."""
        return self._levels  # type: ignore[attr-defined,no-any-return]

    def neighbours(self, level: str) -> tuple[Vertebra | None, Vertebra | None]:
        """Vertebrae at the anatomically adjacent levels above and below ``level``.

        Only the directly adjacent level counts (for L1: T12 above, L2 below); a missing one
        is None. Flags are not considered here (see ``measurements`` for reference choice).
        """
        _validate_level(level)
        i = _LEVEL_INDEX[level]
        above = self.get(LEVELS[i - 1]) if i > 0 else None
        below = self.get(LEVELS[i + 1]) if i + 1 < len(LEVELS) else None
        return above, below

    def transformed(self, fn: Callable[[np.ndarray], np.ndarray]) -> SpineLandmarks:
        """Return a copy with ``fn`` applied to the ``(N, 2)`` array of each vertebra's points."""
        return SpineLandmarks(self.view, tuple(v.transformed(fn) for v in self.vertebrae))

    def replace(self, level: str, vertebra: Vertebra) -> SpineLandmarks:
        """Return a copy with the vertebra at ``level`` replaced (or added) by ``vertebra``."""
        _validate_level(level)
        if vertebra.level != level:
            raise LandmarkError(f"{level}: replacement vertebra has level {vertebra.level}")
        rest = tuple(v for v in self.vertebrae if v.level != level)
        return SpineLandmarks(self.view, (*rest, vertebra))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict ``{"view": ..., "vertebrae": [...]}`` (same as the truth files)."""
        return {"view": self.view, "vertebrae": [v.to_dict() for v in self.vertebrae]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpineLandmarks:
        """Build from :meth:`to_dict` output or a ``*.truth.json`` mapping (extra keys ignored)."""
        if not isinstance(data, Mapping):
            raise LandmarkError(f"landmarks must be an object; got {type(data).__name__}")
        if "view" not in data:
            raise LandmarkError('landmarks have no "view" ("lateral" or "ap")')
        view = _validate_view(data["view"], "landmarks")
        entries = data.get("vertebrae", [])
        if not isinstance(entries, list | tuple):
            raise LandmarkError(f'"vertebrae" must be a list; got {type(entries).__name__}')
        return cls(view, tuple(Vertebra.from_dict(e, view) for e in entries))

