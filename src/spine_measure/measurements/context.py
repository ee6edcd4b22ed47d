"""What a measurement function sees: the landmarks of one film, its spacing and the options."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_measure.geometry import DegenerateGeometryError, distance
from spine_measure.landmarks import LEVELS, LandmarkError, SpineLandmarks, Vertebra
from spine_measure.measurements.registry import Result

__all__ = [
    "Endplate",
    "FilmContext",
    "MeasureOptions",
    "parse_endplate",
    "parse_endplate_pair",
]

SITES = ("anterior", "middle", "posterior")
_SITE_POINTS = {"anterior": ("As", "Ai"), "middle": ("Ms", "Mi"), "posterior": ("Ps", "Pi")}
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

    @property
    def key(self) -> tuple[int, int]:
        """Cranio-caudal order: level index, superior before inferior."""
        return (LEVELS.index(self.level), 0 if self.which == "superior" else 1)

    def __str__(self) -> str:
        return f"{self.level}:{self.which}"


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
    """Parse ``"T10:superior,L2:inferior"`` (or a pair) into two endplates, cranial first."""
    if isinstance(text, str):
        parts = [p for p in text.split(",") if p.strip()]
        if len(parts) != 2:
            raise LandmarkError(f'Cobb endplates "{text}" must be two endplates separated by a '
                                'comma, e.g. "T10:superior,L2:inferior"')
    else:
        parts = list(text)
        if len(parts) != 2:
            raise LandmarkError(f"Cobb endplates {text!r} must be a pair")
    a, b = (p if isinstance(p, Endplate) else parse_endplate(p) for p in parts)
    return (a, b) if a.key <= b.key else (b, a)


@dataclass(frozen=True)
class MeasureOptions:
    """Options of single-film measurements.

    Attributes
    ----------
    cobb : tuple of (Endplate, Endplate)
        Endplate pairs for ``cobb_angle`` (e.g. ``parse_endplate_pair("T10:s,L2:i")``).
    scoliosis_threshold_deg : float
        ``coronal_cobb_angle`` at or above this flags degenerative scoliosis (Zeng 2025: 10).
    """

    cobb: tuple[tuple[Endplate, Endplate], ...] = ()
    scoliosis_threshold_deg: float = 10.0

    def __post_init__(self) -> None:
        pairs = tuple(parse_endplate_pair(p) for p in self.cobb)
        object.__setattr__(self, "cobb", pairs)
        if not (math.isfinite(self.scoliosis_threshold_deg) and self.scoliosis_threshold_deg > 0):
            raise ValueError('Argument "scoliosis_threshold_deg" must be a positive number; '
                             f"got {self.scoliosis_threshold_deg!r}")


@dataclass
class FilmContext:
    """Landmarks of one film with its spacing; caches heights for the neighbour rules."""

    landmarks: SpineLandmarks
    spacing: tuple[float, float] | None
    calibration_source: str
    options: MeasureOptions = field(default_factory=MeasureOptions)
    _heights: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

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

    @property
    def length_unit(self) -> str:
        """``"mm"`` when calibrated, ``"px"`` otherwise."""
        return "mm" if self.spacing is not None else "px"

    def result(self, name: str, value: Any, unit: str, reason: str | None = None,
               **kw: Any) -> Result:
        """A :class:`Result` stamped with this film's calibration source."""
        return Result(name, value, unit, reason, self.calibration_source, **kw)

    # -- heights ----------------------------------------------------------------------
    def height(self, v: Vertebra, site: str) -> float:
        """Height of ``v`` at ``site``: ``|As-Ai|``, ``|Ms-Mi|`` or ``|Ps-Pi|`` (physical).

        Raises DegenerateGeometryError when the points of that site are not annotated.
        """
        key = (v.level, site)
        if key not in self._heights:
            top, bottom = _SITE_POINTS[site]
            if not (v.has(top) and v.has(bottom)):
                if v.level == "S1":
                    raise DegenerateGeometryError("S1 has only its superior endplate")
                raise DegenerateGeometryError(f"{v.level}: {top}/{bottom} not annotated")
            self._heights[key] = distance(v.points[top], v.points[bottom], self.spacing)
        return self._heights[key]

    def try_height(self, v: Vertebra, site: str) -> float:
        """:meth:`height` or NaN."""
        try:
            return self.height(v, site)
        except DegenerateGeometryError:
            return float("nan")

    def reference_neighbours(self, level: str) -> tuple[Vertebra | None, Vertebra | None]:
        """Nearest annotated, non-excluded vertebrae above and below ``level`` (never S1).

        Walks up (and down) the annotated levels and takes the first one not flagged
        ``excluded``; S1 cannot serve (it has no heights).
        """
        levels = self.landmarks.levels()
        i = levels.index(level)
        up = next((self.landmarks[lv] for lv in reversed(levels[:i])
                   if not self.landmarks[lv].excluded and lv != "S1"), None)
        down = next((self.landmarks[lv] for lv in levels[i + 1:]
                     if not self.landmarks[lv].excluded and lv != "S1"), None)
        return up, down

    def neighbour_reference(self, level: str, site: str) -> tuple[float, tuple[str, ...], str]:
        """Mean height at ``site`` of the usable reference neighbours.

        Returns ``(reference, levels_used, reason)``; reference is NaN (and reason set) when
        no neighbour has that height.
        """
        up, down = self.reference_neighbours(level)
        used: list[tuple[str, float]] = []
        for nb in (up, down):
            if nb is None:
                continue
            h = self.try_height(nb, site)
            if math.isfinite(h):
                used.append((nb.level, h))
        if not used:
            return float("nan"), (), (f"{level}: no non-excluded neighbour with a {site} "
                                      "height to serve as reference")
        return float(np.mean([h for _, h in used])), tuple(lv for lv, _ in used), ""
