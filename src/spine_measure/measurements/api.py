"""Measure films and series: the one entry point the CLI, the batch run and the plugin share.

>>> from spine_measure.landmarks import SpineLandmarks, Vertebra
>>> box = lambda lv, top, h: Vertebra(lv, "lateral", {"As": (top, 30), "Ai": (top + h, 30),
...                                                   "Ps": (top, 0), "Pi": (top + h, 0)})
>>> spine = SpineLandmarks("lateral", (box("T12", 0, 25), box("L1", 30, 20), box("L2", 55, 25)))
>>> fm = measure_film(spine, spacing=(0.5, 0.5), calibration_source="pixel_spacing")
>>> fm.get("L1", "ha").value, fm.get("L1", "ha").column, fm.get("L1", "cr_anterior").value
(10.0, 'ha_mm', 80.0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spine_measure.geometry import DegenerateGeometryError
from spine_measure.landmarks import LandmarkError, SpineLandmarks
from spine_measure.measurements.context import (
    FilmContext,
    MeasureOptions,
    parse_cobb_spec,
    resolve_cobb_keyword,
)
from spine_measure.measurements.longitudinal import LongitudinalOptions, SeriesContext
from spine_measure.measurements.registry import REGISTRY, Result, entries

__all__ = [
    "FilmMeasurements",
    "LongitudinalMeasurements",
    "measure_annotation",
    "measure_film",
    "measure_longitudinal",
    "measure_radiograph",
    "result_value_for_json",
]


def result_value_for_json(value: Any) -> Any:
    """``NaN`` -> ``None``; other values unchanged (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _record(r: Result) -> dict[str, Any]:
    return {
        "measurement": r.name,
        "column": r.column,
        "value": result_value_for_json(r.value),
        "unit": r.unit,
        "reason": r.reason,
        "calibration_source": r.calibration_source,
        "neighbours": ",".join(r.neighbours),
        "detail": json.dumps({k: result_value_for_json(v) for k, v in r.detail.items()},
                             sort_keys=True) if r.detail else "",
    }


@dataclass(frozen=True)
class FilmMeasurements:
    """Every single-film measurement of one film.

    Attributes
    ----------
    landmarks : SpineLandmarks
    spacing : (row_mm, col_mm) or None
    calibration_source : str
    options : MeasureOptions
    vertebrae : Mapping[str, Mapping[str, Result]]
        level -> measurement name -> result (lateral films; S1 is a reference only).
    film : tuple of Result
        Film-level results (sagittal Cobb angles asked for, coronal Cobb angles on AP films).
    metadata : Mapping
        Provenance copied into every record (``sop_instance_uid``, ``study_date``, ``image``).
    """

    landmarks: SpineLandmarks
    spacing: tuple[float, float] | None
    calibration_source: str
    options: MeasureOptions
    vertebrae: Mapping[str, Mapping[str, Result]]
    film: tuple[Result, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def view(self) -> str:
        """``"lateral"`` or ``"ap"``."""
        return self.landmarks.view

    @property
    def length_unit(self) -> str:
        """``"mm"`` when calibrated, else ``"px"``."""
        return "mm" if self.spacing is not None else "px"

    def get(self, level: str, name: str) -> Result:
        """Result ``name`` at ``level``; a NaN result with a reason when not measured."""
        if name not in REGISTRY:
            from spine_measure.measurements.registry import get as _get

            _get(name)  # raises KeyError with a suggestion
        per = self.vertebrae.get(level)
        if per is None or name not in per:
            why = (f"{level}: not measured on this film (annotated: "
                   f"{', '.join(self.vertebrae) or 'none'})")
            return Result(name, float("nan"), "pct", why, self.calibration_source) \
                if REGISTRY[name].kind == "ratio" else \
                Result(name, None if REGISTRY[name].kind in ("grade", "category", "flag")
                       else float("nan"),
                       {"length": self.length_unit, "angle": "deg"}.get(REGISTRY[name].kind, ""),
                       why, self.calibration_source)
        return per[name]

    def film_result(self, name: str) -> tuple[Result, ...]:
        """Film-level results called ``name`` (several for several Cobb pairs)."""
        return tuple(r for r in self.film if r.name == name)

    def _base(self) -> dict[str, Any]:
        return {k: (str(v) if v is not None and not isinstance(v, str | int | float) else v)
                for k, v in self.metadata.items()}

    def to_records(self) -> list[dict[str, Any]]:
        """Long table: one dict per (vertebra or film, measurement)."""
        out = []
        base = self._base()
        for level, per in self.vertebrae.items():
            v = self.landmarks[level]
            for r in per.values():
                out.append({**base, "view": self.view, "level": level,
                            "fractured": v.fractured, "treated": v.treated,
                            "excluded": v.excluded,
                            "genant_grade_reader": v.genant_grade_reader,
                            "genant_shape_reader": v.genant_shape_reader, **_record(r)})
        for r in self.film:
            out.append({**base, "view": self.view, "level": None, "fractured": None,
                        "treated": None, "excluded": None, "genant_grade_reader": None,
                        "genant_shape_reader": None, **_record(r)})
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """Wide table: one dict per vertebra, a column per measurement, plus ``reasons``."""
        rows = []
        base = self._base()
        for level, per in self.vertebrae.items():
            v = self.landmarks[level]
            row: dict[str, Any] = {**base, "view": self.view, "level": level,
                                   "fractured": v.fractured, "treated": v.treated,
                                   "excluded": v.excluded,
                                   "calibration_source": self.calibration_source}
            reasons = []
            neighbours: set[str] = set()
            for r in per.values():
                row[r.column] = result_value_for_json(r.value)
                if r.reason:
                    reasons.append(f"{r.name}: {r.reason}")
                neighbours.update(r.neighbours)
                if r.name == "genant_shape":  # the reader's reading beside the computed one
                    row["genant_grade_reader"] = v.genant_grade_reader
                    row["genant_shape_reader"] = v.genant_shape_reader
            row["reference_neighbours"] = ",".join(sorted(neighbours,
                                                          key=self.landmarks.levels().index))
            row["reasons"] = "; ".join(reasons)
            rows.append(row)
        return rows


def measure_film(
    landmarks: SpineLandmarks,
    *,
    spacing: tuple[float, float] | None,
    calibration_source: str,
    options: MeasureOptions | None = None,
    cobb: Iterable[str | tuple[Any, Any]] = (),
    metadata: Mapping[str, Any] | None = None,
) -> FilmMeasurements:
    """Measure every registered single-film measurement on one film.

    Parameters
    ----------
    landmarks : SpineLandmarks
    spacing : (row_mm, col_mm) or None
        ``None``: uncalibrated, lengths in px.
    calibration_source : str
        Where the spacing came from (``"uncalibrated"`` is forced when ``spacing`` is None).
    options : MeasureOptions, optional
    cobb : iterable of str or pairs, optional
        Extra sagittal Cobb angles: endplate pairs (``"T10:superior,L2:inferior"``,
        ``"T10s-L2i"``), added to ``options.cobb``, or keywords whose endplates the film's
        flags decide (``"treated"``, ``"treated+1"``; ``resolve_cobb_keyword``).
    metadata : Mapping, optional
        Provenance copied into every record.

    Returns
    -------
    FilmMeasurements
    """
    if not isinstance(landmarks, SpineLandmarks):
        raise TypeError(f'Argument "landmarks" must be SpineLandmarks; '
                        f"got {type(landmarks).__name__}")
    opts = options or MeasureOptions()
    specs = [parse_cobb_spec(c) for c in cobb]
    extra = tuple(s for s in specs if not isinstance(s, str))
    keywords = tuple(s for s in specs if isinstance(s, str))
    if extra or keywords:
        opts = MeasureOptions(cobb=opts.cobb + extra,
                              scoliosis_threshold_deg=opts.scoliosis_threshold_deg,
                              cobb_keywords=opts.cobb_keywords + keywords,
                              check_plausibility=opts.check_plausibility)
    ctx = FilmContext(landmarks, spacing, str(calibration_source), opts)
    view = landmarks.view
    per_vertebra = [d for d in entries() if d.scope == "vertebra" and d.view == view]
    vertebrae: dict[str, dict[str, Result]] = {}
    for v in landmarks:
        if v.level == "S1" or not per_vertebra:
            continue
        vertebrae[v.level] = {d.name: d.function(ctx, v.level) for d in per_vertebra}
    film: list[Result] = []
    for d in entries():
        if d.scope != "film" or d.view != view:
            continue
        if d.name == "cobb_angle":
            film.extend(d.function(ctx, a, b) for a, b in opts.cobb)
            film.extend(_keyword_cobb(ctx, d.function, k) for k in opts.cobb_keywords)
        else:
            film.append(d.function(ctx))
    return FilmMeasurements(landmarks, ctx.spacing, ctx.calibration_source, opts, vertebrae,
                            tuple(film), dict(metadata or {}))


def _keyword_cobb(ctx: FilmContext, fn: Any, keyword: str) -> Result:
    """The Cobb angle a keyword names on this film (its ``detail`` holds the keyword and the
    endplates used), or NaN with the reason the film's flags do not name one."""
    try:
        a, b = resolve_cobb_keyword(keyword, ctx.landmarks)
    except (DegenerateGeometryError, LandmarkError) as exc:
        return ctx.result("cobb_angle", float("nan"), "deg", str(exc), detail={"spec": keyword})
    r = fn(ctx, a, b)
    return ctx.result(r.name, r.value, r.unit, r.reason, r.neighbours,
                      {**dict(r.detail), "upper": str(a), "lower": str(b), "spec": keyword})


def _radiograph_metadata(radiograph: Any) -> dict[str, Any]:
    md = getattr(radiograph, "metadata", None)
    out: dict[str, Any] = {}
    for key in ("path", "sop_instance_uid", "study_date", "acquisition_date"):
        val = md.get(key) if isinstance(md, Mapping) else getattr(md, key, None)
        if val is not None:
            out["image" if key == "path" else key] = val if isinstance(val, str) else str(val)
    return out


def measure_radiograph(
    radiograph: Any,
    landmarks: SpineLandmarks,
    *,
    calibration_line: Any = None,
    options: MeasureOptions | None = None,
    cobb: Iterable[str | tuple[Any, Any]] = (),
) -> FilmMeasurements:
    """Measure a loaded radiograph (``spine_measure.io.radiograph.Radiograph``).

    The spacing comes from ``radiograph.calibration`` unless a reader-drawn
    ``calibration_line`` (an object with ``p0``, ``p1``, ``length_mm``) is given: it comes
    first (docs/calibration.md rule 1) and keeps the header's pixel aspect ratio.
    """
    cal = radiograph.calibration
    spacing = cal.spacing if cal.calibrated else None
    source = str(getattr(cal.source, "value", cal.source))
    if calibration_line is not None:
        from spine_measure.io.calibration import calibration_from_line

        reader = calibration_from_line(calibration_line.p0, calibration_line.p1,
                                       calibration_line.length_mm,
                                       pixel_aspect=spacing or (1.0, 1.0))
        spacing, source = reader.spacing, str(getattr(reader.source, "value", reader.source))
    return measure_film(landmarks, spacing=spacing, calibration_source=source,
                        options=options, cobb=cobb, metadata=_radiograph_metadata(radiograph))


def measure_annotation(radiograph: Any, annotation: Any, *,
                       options: MeasureOptions | None = None,
                       cobb: Iterable[str | tuple[Any, Any]] = ()) -> FilmMeasurements:
    """Measure a radiograph with its annotation (landmarks and reader calibration line)."""
    return measure_radiograph(radiograph, annotation.landmarks,
                              calibration_line=getattr(annotation, "calibration", None),
                              options=options, cobb=cobb)


@dataclass(frozen=True)
class LongitudinalMeasurements:
    """Every longitudinal measurement of one treated level: name -> :class:`Result`."""

    level: str
    results: Mapping[str, Result]

    def __getitem__(self, name: str) -> Result:
        return self.results[name]

    def to_row(self) -> dict[str, Any]:
        """One wide row: ``level``, a column per measurement and ``reasons``."""
        row: dict[str, Any] = {"level": self.level}
        reasons = []
        for r in self.results.values():
            row[r.column] = result_value_for_json(r.value)
            if r.reason:
                reasons.append(f"{r.name}: {r.reason}")
        row["reasons"] = "; ".join(reasons)
        return row

    def to_records(self) -> list[dict[str, Any]]:
        """Long table: one dict per measurement."""
        return [{"level": self.level, **_record(r)} for r in self.results.values()]


def measure_longitudinal(
    preop: FilmMeasurements | None,
    postop: FilmMeasurements | None,
    followups: Sequence[FilmMeasurements] = (),
    *,
    level: str | None = None,
    bone_marrow_oedema: bool | None = None,
    options: LongitudinalOptions | None = None,
) -> LongitudinalMeasurements:
    """Every docs/measurements.md measurement of one treated level.

    Parameters
    ----------
    preop, postop : FilmMeasurements or None
    followups : sequence of FilmMeasurements
        Chronological; the last one is the "last follow-up".
    level : str, optional
        The treated level; default: the level flagged ``treated`` on the postop film (else any
        film). Exactly one must be flagged when not given.
    bone_marrow_oedema : bool or None
        Reader finding at follow-up (``refracture`` is unknown without it).
    options : LongitudinalOptions, optional
    """
    films = [f for f in (postop, preop, *followups) if f is not None]
    if level is None:
        for f in films:
            treated = [v.level for v in f.landmarks if v.treated]
            if len(treated) == 1:
                level = treated[0]
                break
            if len(treated) > 1:
                raise ValueError(f"several treated levels ({', '.join(treated)}); pass level=")
        if level is None:
            raise ValueError("no vertebra is flagged treated; pass level=")
    sc = SeriesContext(level, preop, postop, tuple(followups), bone_marrow_oedema,
                       options or LongitudinalOptions())
    results = {d.name: d.function(sc) for d in entries() if d.scope == "longitudinal"}
    return LongitudinalMeasurements(level, results)
