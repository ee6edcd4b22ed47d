"""What a measurement function sees: the landmarks of one film, its spacing and the options."""

from __future__ import annotations

import math
import re
import types
from dataclasses import dataclass, field
from typing import Any

from spine_measure.geometry import DegenerateGeometryError, Seg, _spacing_pair, segment
from spine_measure.landmarks import LEVELS, LandmarkError, SpineLandmarks, Vertebra
from spine_measure.measurements.plausibility import check_landmarks
from spine_measure.measurements.registry import KINDS, Result

__all__ = [
    "COBB_KEYWORDS",
    "Endplate",
    "FilmContext",
    "MeasureOptions",
    "parse_endplate",
    "parse_cobb_spec",
    "parse_endplate_pair",
    "resolve_cobb_keyword",
    "usable_reference",
]

SITES = ("anterior", "middle", "posterior")
_SITE_POINTS = {"anterior": ("As", "Ai"), "middle": ("Ms", "Mi"), "posterior": ("Ps", "Pi")}
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}
_ENDPLATE_CORNERS = {"superior": ("Ps", "As"), "inferior": ("Pi", "Ai")}
_ENDPLATE_ALIASES = {"superior": "superior", "sup": "superior", "s": "superior",
                     "upper": "superior", "inferior": "inferior", "inf": "inferior",
                     "i": "inferior", "lower": "inferior"}


@dataclass(frozen=True, order=True)
class Endplate:
    """One endplate, ``level`` and ``which`` (``"superior"``/``"inferior"``)."""

    level: str
    which: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            import difflib

            close = difflib.get_close_matches(self.level.upper(), LEVELS, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            raise LandmarkError(f'endplate level "{self.level}" is not a vertebral level{hint}')
        if self.which not in ("superior", "inferior"):
            raise LandmarkError(f'{self.level}: endplate must be "superior" or "inferior"; '
                                f'got "{self.which}"')
        object.__setattr__(self, "_key", (_LEVEL_INDEX[self.level],
                                          0 if self.which == "superior" else 1))

    @property
    def key(self) -> tuple[int, int]:
        """Cranio-caudal order: level index, superior before inferior."""
        return self._key  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"{self.level}:{self.which}"


_ENDPLATES: dict[tuple[str, str], Endplate] = {
    (lv, w): Endplate(lv, w) for lv in LEVELS for w in ("superior", "inferior")}


def endplate(level: str, which: str) -> Endplate:
    """The (shared, immutable) :class:`Endplate` ``level:which``; validated like the class."""
    ep = _ENDPLATES.get((level, which))
    return ep if ep is not None else Endplate(level, which)


def parse_endplate(text: str) -> Endplate:
    """Parse ``"T10:superior"`` (also ``T10:sup``, ``T10:s``, ``T10s``) into an Endplate."""
    m = re.fullmatch(r"\s*([A-Za-z]\d{1,2})\s*[:_ ]?\s*([A-Za-z]+)\s*", str(text))
    if not m:
        raise LandmarkError(f'endplate "{text}" must look like "T10:superior" or "L2:inferior"')
    level, which = m.group(1).upper(), m.group(2).lower()
    if which not in _ENDPLATE_ALIASES:
        raise LandmarkError(f'endplate "{text}": "{m.group(2)}" must be superior or inferior')
    return Endplate(level, _ENDPLATE_ALIASES[which])


def parse_endplate_pair(text: str | tuple[Any, Any]) -> tuple[Endplate, Endplate]:
    """Parse ``"T10:superior,L2:inferior"`` (also ``"T10s-L2i"``, or a pair) into two
    endplates, cranial first."""
    if isinstance(text, str):
        sep = "," if "," in text else "-"
        parts = [p for p in text.split(sep) if p.strip()]
        if len(parts) != 2:
            raise LandmarkError(f'Cobb endplates "{text}" must be two endplates separated by a '
                                'comma or a dash, e.g. "T10:superior,L2:inferior" or '
                                '"T10s-L2i", or one of ' + ", ".join(COBB_KEYWORDS))
    else:
        parts = list(text)
        if len(parts) != 2:
            raise LandmarkError(f"Cobb endplates {text!r} must be a pair")
    a, b = (p if isinstance(p, Endplate) else parse_endplate(p) for p in parts)
    return (a, b) if a.key <= b.key else (b, a)


#: Cobb specifications resolved on each film from its flags (:func:`resolve_cobb_keyword`).
COBB_KEYWORDS = ("treated", "treated+1")
_COBB_ALIASES = {"treated": "treated", "treated-segment": "treated",
                 "treated+1": "treated+1", "treated-segment+1": "treated+1"}


def parse_cobb_spec(text: str | tuple[Any, Any]) -> str | tuple[Endplate, Endplate]:
    """A Cobb specification: a keyword of :data:`COBB_KEYWORDS` (``"treated-segment"`` is
    accepted for ``"treated"``), or an endplate pair (:func:`parse_endplate_pair`)."""
    if isinstance(text, str) and text.strip().lower() in _COBB_ALIASES:
        return _COBB_ALIASES[text.strip().lower()]
    return parse_endplate_pair(text)


def resolve_cobb_keyword(keyword: str, landmarks: SpineLandmarks
                         ) -> tuple[Endplate, Endplate]:
    """The endplates a Cobb keyword names on one film.

    The segment is the film's vertebrae flagged ``treated``; on a film where none is (a
    pre-operative film), the vertebrae flagged ``fractured``. ``"treated"``: the superior
    endplate of the segment's cranial vertebra and the inferior endplate of its caudal one
    (for one vertebra: its wedge angle). ``"treated+1"``: the superior endplate of the vertebra
    directly above the segment and the inferior endplate of the vertebra directly below it
    (S1: its superior endplate), the regional kyphotic angle of the whole segment.

    Raises DegenerateGeometryError when the film has no such vertebra or the segment has no
    vertebra above or below on the chart of levels.
    """
    if keyword not in COBB_KEYWORDS:
        raise LandmarkError(f'Cobb keyword "{keyword}" must be one of '
                            f"{', '.join(COBB_KEYWORDS)}")
    segment_levels = [v.level for v in landmarks if v.treated and v.level != "S1"] or \
        [v.level for v in landmarks if v.fractured and v.level != "S1"]
    if not segment_levels:
        raise DegenerateGeometryError(f'Cobb "{keyword}": no vertebra flagged treated (or, '
                                      "before treatment, fractured) on this film")
    top, bottom = _LEVEL_INDEX[segment_levels[0]], _LEVEL_INDEX[segment_levels[-1]]
    if keyword == "treated":
        return endplate(LEVELS[top], "superior"), endplate(LEVELS[bottom], "inferior")
    if top == 0:
        raise DegenerateGeometryError(f'Cobb "{keyword}": no vertebra above {LEVELS[top]}')
    below = LEVELS[bottom + 1]
    return (endplate(LEVELS[top - 1], "superior"),
            endplate(below, "superior" if below == "S1" else "inferior"))


@dataclass(frozen=True)
class MeasureOptions:
    """Options of single-film measurements.

    Attributes
    ----------
    cobb : tuple of (Endplate, Endplate)
        Endplate pairs for ``cobb_angle`` (e.g. ``parse_endplate_pair("T10:s,L2:i")``).
    cobb_keywords : tuple of str
        Cobb angles whose endplates each film's flags decide (:data:`COBB_KEYWORDS`,
        :func:`resolve_cobb_keyword`), measured after the fixed pairs.
    check_plausibility : bool
        Refuse vertebrae whose landmarks describe no vertebra (``plausibility``). Only
        simulations switch it off: their error model, not a reader, moved the points.
    scoliosis_threshold_deg : float
        ``coronal_cobb_angle`` at or above this flags degenerative scoliosis (Zeng 2025: 10).
    """

    cobb: tuple[tuple[Endplate, Endplate], ...] = ()
    scoliosis_threshold_deg: float = 10.0
    cobb_keywords: tuple[str, ...] = ()
    check_plausibility: bool = True

    def __post_init__(self) -> None:
        pairs = tuple(parse_endplate_pair(p) for p in self.cobb)
        object.__setattr__(self, "cobb", pairs)
        keywords = []
        for k in self.cobb_keywords:
            spec = parse_cobb_spec(k)
            if not isinstance(spec, str):
                raise LandmarkError(f'Cobb keyword "{k}" must be one of '
                                    f"{', '.join(COBB_KEYWORDS)}")
            if spec not in keywords:
                keywords.append(spec)
        object.__setattr__(self, "cobb_keywords", tuple(keywords))
        if not (math.isfinite(self.scoliosis_threshold_deg) and self.scoliosis_threshold_deg > 0):
            raise ValueError('Argument "scoliosis_threshold_deg" must be a positive number; '
                             f"got {self.scoliosis_threshold_deg!r}")


#: Every unit a Result may carry (``registry.KINDS``), for the fast constructor below.
_UNITS = frozenset(u for units in KINDS.values() for u in units)
_EMPTY: types.MappingProxyType[str, Any] = types.MappingProxyType({})


def _result_template() -> dict[str, Any] | None:
    probe = Result("probe", 0.0, "mm")
    return dict(vars(probe)) if hasattr(probe, "__dict__") else None


_new = object.__new__

#: Attribute defaults of a Result (so fields added to Result later keep their defaults).
_RESULT_TEMPLATE = _result_template()
_RESULT_FIELDS = ("name", "value", "unit", "reason", "calibration_source", "neighbours",
                  "detail")
#: Defaults of fields beyond the seven set here (empty today); copied into every Result.
_RESULT_EXTRA = {k: v for k, v in (_RESULT_TEMPLATE or {}).items() if k not in _RESULT_FIELDS}


def make_result(name: str, value: Any, unit: str, reason: str | None = None,
                calibration_source: str | None = None, neighbours: tuple[str, ...] = (),
                detail: Any = None) -> Result:
    """A :class:`Result` exactly as its constructor builds it, without the per-call overhead.

    Same normalisation as ``Result.__post_init__``: unknown unit -> ValueError, neighbours as
    a tuple, detail as a read-only copy, no reason on a present value. Falls back to the
    constructor if ``Result`` ever stops being a plain ``__dict__`` dataclass.
    """
    if _RESULT_TEMPLATE is None or unit not in _UNITS:
        return Result(name, value, unit, reason, calibration_source, tuple(neighbours),
                      detail if detail is not None else {})
    if reason is not None and value is not None and not (
            isinstance(value, float) and value != value):
        reason = None
    r = _new(Result)
    d = r.__dict__
    if _RESULT_EXTRA:
        d.update(_RESULT_EXTRA)
    d["name"] = name
    d["value"] = value
    d["unit"] = unit
    d["reason"] = reason
    d["calibration_source"] = calibration_source
    d["neighbours"] = neighbours if type(neighbours) is tuple else tuple(neighbours)
    d["detail"] = types.MappingProxyType(dict(detail)) if detail else _EMPTY
    return r


def usable_reference(v: Vertebra) -> bool:
    """True when ``v`` may serve as a reference neighbour: a normal vertebra, i.e. not
    flagged ``excluded``, ``fractured`` or ``treated``, and not S1 (which has no heights)."""
    return not (v.excluded or v.fractured or v.treated) and v.level != "S1"


@dataclass
class FilmContext:
    """Landmarks of one film with its spacing, and the per-film work shared by measurements.

    Everything derived from the landmarks alone is computed once per film and memoised here:
    the physical heights of each vertebra (:meth:`height`), the endplate lines in physical
    space (:meth:`endplate_segment`), the reference neighbours of each level
    (:meth:`reference_neighbours`) and their mean height per site
    (:meth:`neighbour_reference`), and results other measurements reuse (:meth:`memo`). A
    context belongs to one film: do not mutate its landmarks or spacing after the first call.
    """

    landmarks: SpineLandmarks
    spacing: tuple[float, float] | None
    calibration_source: str
    options: MeasureOptions = field(default_factory=MeasureOptions)
    _heights: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False,
                                   compare=False)

    def __post_init__(self) -> None:
        if self.spacing is not None:
            sp = tuple(float(s) for s in self.spacing)
            if len(sp) != 2 or not all(math.isfinite(s) and s > 0 for s in sp):
                raise ValueError('Argument "spacing" must be two positive finite numbers '
                                 f"(row_mm, col_mm) or None; got {self.spacing!r}")
            self.spacing = (sp[0], sp[1])
        if self.spacing is None and self.calibration_source not in ("uncalibrated",):
            # px lengths must say so, whatever the caller passed
            self.calibration_source = "uncalibrated"
        self._sr, self._sc = _spacing_pair(self.spacing)
        self._by_level = {v.level: v for v in self.landmarks.vertebrae}
        self._lines: dict[tuple[str, str], Seg | str] = {}
        self._site_h: dict[str, dict[str, float]] = {}
        self._refs: dict[str, dict[str, tuple[float, tuple[str, ...], str]]] = {}
        self._nbrs: dict[str, tuple[Vertebra | None, Vertebra | None]] = {}
        #: level -> measurement name -> Result, filled by the per-vertebra batch of
        #: ``single_film`` (one pass per level).
        self.vertebra_cache: dict[str, dict[str, Result]] = {}
        #: level -> why its landmarks describe no vertebra (``plausibility``): such a vertebra
        #: is measured as NaN with that reason and is never a reference or an endplate.
        self.refused: dict[str, str] = (check_landmarks(self.landmarks).refused
                                        if self.options.check_plausibility else {})

    def refused_reason(self, level: str) -> str | None:
        """Why ``level``'s measurements are refused (implausible landmarks), or None."""
        why = self.refused.get(level)
        return None if why is None else f"{level}: implausible landmarks: {why}"

    @property
    def length_unit(self) -> str:
        """``"mm"`` when calibrated, ``"px"`` otherwise."""
        return "mm" if self.spacing is not None else "px"

    def result(self, name: str, value: Any, unit: str, reason: str | None = None,
               neighbours: tuple[str, ...] = (), detail: Any = None, **kw: Any) -> Result:
        """A :class:`Result` stamped with this film's calibration source (built as
        :func:`make_result` does; further keyword arguments go to the Result constructor)."""
        if kw:
            return Result(name, value, unit, reason, self.calibration_source,
                          tuple(neighbours), detail if detail is not None else {}, **kw)
        return make_result(name, value, unit, reason, self.calibration_source, neighbours,
                           detail)

    @property
    def pixel_scale(self) -> tuple[float, float]:
        """``(row_mm, col_mm)``, or ``(1.0, 1.0)`` when uncalibrated (lengths in px)."""
        return (self._sr, self._sc)

    def vertebra(self, level: str) -> Vertebra:
        """The annotated vertebra at ``level`` (LandmarkError as ``landmarks[level]``)."""
        try:
            return self._by_level[level]
        except KeyError:
            return self.landmarks[level]

    def memo(self, key: Any) -> Any:
        """A value stored with :meth:`remember`, or None."""
        return self._cache.get(key)

    def remember(self, key: Any, value: Any) -> Any:
        """Store ``value`` under ``key`` for this film and return it."""
        self._cache[key] = value
        return value

    # -- heights ----------------------------------------------------------------------
    def site_heights(self, v: Vertebra) -> dict[str, float]:
        """Physical heights of ``v`` by site, for the sites whose two points are annotated.

        ``{"anterior": |As-Ai|, "middle": |Ms-Mi|, "posterior": |Ps-Pi|}`` with
        ``|p-q| = hypot((r1 - r0) * row_mm, (c1 - c0) * col_mm)``; memoised per level (do not
        modify the returned dict).
        """
        hs = self._site_h.get(v.level)
        if hs is None:
            hs = {}
            pts = v.points
            sr, sc = self._sr, self._sc
            for site, (top, bottom) in _SITE_POINTS.items():
                if top in pts and bottom in pts:
                    (r0, c0), (r1, c1) = pts[top], pts[bottom]
                    hs[site] = h = math.hypot((r1 - r0) * sr, (c1 - c0) * sc)
                    self._heights[(v.level, site)] = h
            self._site_h[v.level] = hs
        return hs

    def height_reason(self, v: Vertebra, site: str) -> str:
        """Why ``v`` has no height at ``site`` (the message :meth:`height` raises)."""
        if v.level == "S1":
            return "S1 has only its superior endplate"
        top, bottom = _SITE_POINTS[site]
        return f"{v.level}: {top}/{bottom} not annotated"

    def height(self, v: Vertebra, site: str) -> float:
        """Height of ``v`` at ``site``: ``|As-Ai|``, ``|Ms-Mi|`` or ``|Ps-Pi|`` (physical).

        ``hypot((r1 - r0) * row_mm, (c1 - c0) * col_mm)``, memoised per level
        (:meth:`site_heights`).

        Raises DegenerateGeometryError when the points of that site are not annotated.
        """
        hs = self._site_h.get(v.level)
        if hs is None:
            hs = self.site_heights(v)
        try:
            return hs[site]
        except KeyError:
            _SITE_POINTS[site]  # KeyError for an unknown site, as before
            raise DegenerateGeometryError(self.height_reason(v, site)) from None

    def try_height(self, v: Vertebra, site: str) -> float:
        """:meth:`height` or NaN."""
        hs = self._site_h.get(v.level)
        if hs is None:
            hs = self.site_heights(v)
        return hs.get(site, math.nan)

    # -- endplates --------------------------------------------------------------------
    def endplate_segment(self, level: str, which: str) -> Seg:
        """Endplate line of ``level`` in physical space, posterior -> anterior (memoised).

        The plain-float form (:func:`spine_measure.geometry.segment`) of
        :func:`spine_measure.geometry.endplate_line`: ``Ps -> As`` (superior) or ``Pi -> Ai``
        (inferior), with the same checks and messages in the same order.

        Raises
        ------
        DegenerateGeometryError
            Level not annotated, S1 inferior, corners missing or coincident.
        """
        key = (level, which)
        line = self._lines.get(key)
        if line is None:
            try:
                line = self._endplate_segment(level, which)
            except DegenerateGeometryError as exc:
                line = str(exc)
            self._lines[key] = line
        if type(line) is str:
            raise DegenerateGeometryError(line)
        return line  # type: ignore[return-value]

    def _endplate_segment(self, level: str, which: str) -> Seg:
        v = self._by_level.get(level)
        if v is None:
            raise DegenerateGeometryError(f"{level} not annotated (needed for its {which} "
                                          "endplate)")
        if level in self.refused:
            raise DegenerateGeometryError(self.refused_reason(level))
        if level == "S1" and which == "inferior":
            raise DegenerateGeometryError("S1 has only its superior endplate")
        post, ant = _ENDPLATE_CORNERS[which]
        pts = v.points
        if post not in pts or ant not in pts:
            raise DegenerateGeometryError(f"{level}: {which} endplate needs {post} and {ant}")
        (r0, c0), (r1, c1) = pts[post], pts[ant]
        sr, sc = self._sr, self._sc
        r0, c0, r1, c1 = r0 * sr, c0 * sc, r1 * sr, c1 * sc
        dr, dc = r1 - r0, c1 - c0
        n = math.hypot(dr, dc)
        if n <= 1e-9 * max(1.0, abs(r0), abs(c0), abs(r1), abs(c1)):
            segment(r0, c0, r1, c1, f"{level} {which} endplate")  # raises with the message
        return (r0, c0, r1, c1, dr / n, dc / n)

    # -- neighbours ---------------------------------------------------------------------
    def reference_neighbours(self, level: str) -> tuple[Vertebra | None, Vertebra | None]:
        """Nearest annotated usable reference vertebrae above and below ``level``.

        Walks up (and down) the annotated levels and takes the first one that can serve as a
        reference (:func:`usable_reference`): not flagged ``excluded``, ``fractured`` or
        ``treated``, and not S1 (it has no heights). A fractured or cemented neighbour never
        serves as the normal height another vertebra is compared with. Memoised per level.
        """
        try:
            return self._nbrs[level]
        except KeyError:
            if level not in self._by_level:
                self.landmarks.levels().index(level)  # ValueError, as a list lookup
            # one pass over the film: the last usable vertebra seen above each level...
            verts = self.landmarks.vertebrae
            ups: list[Vertebra | None] = []
            last: Vertebra | None = None
            for v in verts:
                ups.append(last)
                if usable_reference(v) and v.level not in self.refused:
                    last = v
            # ... and below it
            last = None
            for i in range(len(verts) - 1, -1, -1):
                v = verts[i]
                self._nbrs[v.level] = (ups[i], last)
                if usable_reference(v) and v.level not in self.refused:
                    last = v
            return self._nbrs[level]

    def neighbour_reference(self, level: str, site: str) -> tuple[float, tuple[str, ...], str]:
        """Mean height at ``site`` of the usable reference neighbours.

        Returns ``(reference, levels_used, reason)``; reference is NaN (and reason set) when
        no neighbour has that height. ``reference = (h_up + h_down) / 2`` with two usable
        neighbours, the single height with one. Memoised per level (all sites at once, see
        :meth:`neighbour_references`).
        """
        refs = self._refs.get(level)
        if refs is None:
            refs = self.neighbour_references(level)
        return refs[site]

    def neighbour_references(self, level: str) -> dict[str, tuple[float, tuple[str, ...], str]]:
        """:meth:`neighbour_reference` for every site of ``level``: site -> tuple (memoised;
        do not modify the returned dict)."""
        refs = self._refs.get(level)
        if refs is not None:
            return refs
        nbs = []
        for nb in self.reference_neighbours(level):
            if nb is not None:
                hs = self._site_h.get(nb.level)
                nbs.append((nb.level, hs if hs is not None else self.site_heights(nb)))
        refs = {}
        isfinite = math.isfinite
        for site in SITES:
            used_levels: list[str] = []
            heights: list[float] = []
            for nb_level, hs in nbs:
                h = hs.get(site)
                if h is not None and isfinite(h):
                    used_levels.append(nb_level)
                    heights.append(h)
            if not heights:
                refs[site] = (float("nan"), (), (f"{level}: no normal neighbour (not fractured, "
                                                 f"treated or excluded) with a {site} height "
                                                 "to serve as reference"))
            else:
                # numpy's mean of one or two values, bit for bit: (h0 [+ h1]) / n
                total = heights[0] + heights[1] if len(heights) == 2 else heights[0]
                refs[site] = (total / len(heights), tuple(used_levels), "")
        self._refs[level] = refs
        return refs
