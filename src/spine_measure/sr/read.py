"""Read a spine_measure SR back: landmarks, flags, calibration and every stored value.

Tolerant reading (highdicom's rule: strict when writing, tolerant when reading): the
content tree is walked with pydicom, groups are recognised by their ``Finding`` code, and
items that are not understood are ignored. Numeric values come from ``FloatingPointValue``
(FD, the exact float64 written) when present, else from the decimal ``NumericValue``.

What comes back exactly and what to float32 precision: ``docs/sr_export.md``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spine_measure.errors import FileError
from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.sr import codes as C
from spine_measure.sr.export import from_scoord

__all__ = ["FilmValue", "SrContent", "read_sr"]

_FLAGS_BY_VALUE = {c.value: f for f, c in C.FLAG_CONCEPTS.items()}
_SOURCES_BY_VALUE = {c.value: s for s, c in C.LANDMARK_SOURCES.items()}
_MEAS_BY_VALUE = {c.value: n for n, c in C.MEASUREMENT_CONCEPTS.items()}
_CEMENT_BY_VALUE = {c.value: (n, kind) for n, (c, kind) in C.CEMENT_CONCEPTS.items()}
_UNIT_BY_CODE = {c.value: u for u, c in C.UNITS.items()}


@dataclass(frozen=True)
class FilmValue:
    """A film-level value: registry ``name``, ``value``, ``unit`` and the end vertebrae
    (``"T11:superior"``; ``None`` when not applicable)."""

    name: str
    value: Any
    unit: str
    upper: str | None = None
    lower: str | None = None
    u95: float | None = None     # expanded (95 %) measurement uncertainty, when exported


@dataclass(frozen=True)
class SrContent:
    """Everything :func:`read_sr` recovers from one SR.

    Attributes
    ----------
    sop_instance_uid : str
        The SR's own UID.
    source_sop_instance_uid, source_sop_class_uid : str
        The image the SR refers to.
    study_instance_uid : str
    rows, cols : int
        Size of the source image.
    landmarks : SpineLandmarks
        Points to float32 precision (SCOORD is FL), flags exact.
    calibration_line : CalibrationLine or None
        End points to float32 precision, length exact.
    spacing : (row_mm, col_mm) or None
        The spacing the measurements used (exact).
    calibration_source : str
    vertebrae : Mapping[str, Mapping[str, Any]]
        Level -> registry name -> value (exact), present values only.
    units : Mapping[str, Mapping[str, str]]
        Level -> registry name -> unit (``mm``, ``px``, ``deg``, ``pct``; ``grade``/``""``
        for coded values).
    film : tuple of FilmValue
        (``u95``: the expanded 95 % uncertainty when the SR was exported with one)
    cement : Mapping[str, Mapping[str, Any]]
        Level -> cement column (unit suffix restored) -> value.
    tracking : Mapping[str, str]
        Tracking identifier (``"L1"``, ``"film"``...) -> tracking UID.
    reader : str or None
    content_datetime : datetime or None
    uncertainty95 : Mapping[str, Mapping[str, float]]
        Level -> registry name -> expanded (95 %, ``1.96 u``) measurement uncertainty, for
        SRs exported with ``--uncertainty`` (empty otherwise).
    unconfirmed : Mapping[str, str]
        Level -> landmark source (``propagated``, ``refined``, ``mixed``, ``reader``) of the
        vertebrae exported unconfirmed (``--accept-proposed``); empty otherwise.
    """

    sop_instance_uid: str
    source_sop_instance_uid: str
    source_sop_class_uid: str
    study_instance_uid: str
    rows: int
    cols: int
    landmarks: SpineLandmarks
    calibration_line: Any
    spacing: tuple[float, float] | None
    calibration_source: str
    vertebrae: Mapping[str, Mapping[str, Any]]
    units: Mapping[str, Mapping[str, str]]
    film: tuple[FilmValue, ...]
    cement: Mapping[str, Mapping[str, Any]]
    tracking: Mapping[str, str]
    reader: str | None = None
    content_datetime: dt.datetime | None = None
    notes: tuple[str, ...] = field(default=())
    uncertainty95: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    unconfirmed: Mapping[str, str] = field(default_factory=dict)

    def to_annotation(self) -> Any:
        """An :class:`~spine_measure.io.annotation.Annotation` with the landmarks, flags,
        calibration line and reader (findings, time point and cement masks are not in
        the SR; ``created``/``modified`` are the SR content date and time)."""
        from spine_measure.io.annotation import Annotation, ImageRef

        when = self.content_datetime or dt.datetime.now(dt.UTC)
        return Annotation(
            image=ImageRef(rows=self.rows, cols=self.cols,
                           sop_instance_uid=self.source_sop_instance_uid,
                           study_instance_uid=self.study_instance_uid or None),
            landmarks=self.landmarks, calibration=self.calibration_line,
            reader=self.reader, created=when, modified=when)


# ----------------------------------------------------------------------- tree walking


def _name(item: Any) -> tuple[str, str]:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return "", ""
    c = seq[0]
    return str(c.get("CodeValue", c.get("LongCodeValue", ""))), \
        str(c.get("CodingSchemeDesignator", ""))


def _code_value(item: Any) -> tuple[str, str]:
    c = item.ConceptCodeSequence[0]
    return str(c.get("CodeValue", c.get("LongCodeValue", ""))), \
        str(c.get("CodingSchemeDesignator", ""))


def _num(item: Any) -> tuple[float, str]:
    mv = item.MeasuredValueSequence[0]
    value = float(mv.FloatingPointValue) if "FloatingPointValue" in mv \
        else float(mv.NumericValue)
    unit = mv.MeasurementUnitsCodeSequence[0]
    return value, _UNIT_BY_CODE.get(str(unit.CodeValue), str(unit.CodeValue))


def _children(item: Any) -> list[Any]:
    return list(item.get("ContentSequence", []) or [])


_UPPER_UNCERTAINTY = ("371886008", "SCT")


def _u95(item: Any) -> float | None:
    """The "+, range of upper measurement uncertainty" property of a NUM (``export-sr
    --uncertainty`` writes ``1.96 u`` there), or None."""
    for ch in _children(item):
        if ch.get("ValueType") == "NUM" and _name(ch) == _UPPER_UNCERTAINTY:
            return _num(ch)[0]
    return None


def _find_site(item: Any) -> tuple[str | None, str | None]:
    """Level and endplate (superior/inferior/None) of a Finding Site item."""
    level = C.level_of_code(*_code_value(item))
    endplate = None
    for ch in _children(item):
        if ch.get("ValueType") == "CODE":
            v, s = _code_value(ch)
            if (v, s) == (C.SUPERIOR.value, C.SUPERIOR.scheme_designator):
                endplate = "superior"
            elif (v, s) == (C.INFERIOR.value, C.INFERIOR.scheme_designator):
                endplate = "inferior"
    return level, endplate


_FINDING = ("121071", "DCM")
_FINDING_SITE = ("363698007", "SCT")
_TRACKING_ID = ("112039", "DCM")
_TRACKING_UID = ("112040", "DCM")
_IMAGING_MEASUREMENTS = ("126010", "DCM")
_PERSON_NAME = ("121008", "DCM")


def _is(item: Any, code: Any) -> bool:
    return _name(item) == (code.value, code.scheme_designator)


def read_sr(path: str | os.PathLike[str]) -> SrContent:
    """Read an SR written by :func:`~spine_measure.sr.export.write_film_sr`.

    Raises
    ------
    FileError
        Not a DICOM file, not an SR, or not a spine_measure measurement report (one line
        naming the file).
    """
    import pydicom

    from spine_measure.io.annotation import CalibrationLine

    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:
        raise FileError(p, f"not readable as DICOM ({type(exc).__name__}: {exc})") from None
    if "ContentSequence" not in ds:
        raise FileError(p, "not a structured report (no ContentSequence)")
    root = ds
    reader = None
    groups: list[Any] = []
    for item in _children(root):
        if _name(item) == _PERSON_NAME:
            reader = str(item.PersonName).rstrip("^") or None
        if _name(item) == _IMAGING_MEASUREMENTS:
            groups.extend(_children(item))
    if not groups:
        raise FileError(p, "no Imaging Measurements container (not a TID 1500 report)")

    vertebrae: dict[str, Vertebra] = {}
    values: dict[str, dict[str, Any]] = {}
    units: dict[str, dict[str, str]] = {}
    film: list[FilmValue] = []
    cement: dict[str, dict[str, Any]] = {}
    uncertainty: dict[str, dict[str, float]] = {}
    unconfirmed: dict[str, str] = {}
    tracking: dict[str, str] = {}
    spacing_r = spacing_c = None
    rows = cols = 0
    calibration_source = "uncalibrated"
    line = None
    source_uid = source_class = ""
    view = None
    for g in groups:
        items = _children(g)
        finding = next((_code_value(i)[0] for i in items if _name(i) == _FINDING), None)
        sites = [i for i in items if _name(i) == _FINDING_SITE]
        level = C.level_of_code(*_code_value(sites[0])) if sites else None
        label = next((str(i.TextValue) for i in items if _name(i) == _TRACKING_ID), None)
        uid = next((str(i.UID) for i in items if _name(i) == _TRACKING_UID), None)
        if label is not None and uid is not None:
            tracking[label] = uid
        region = next((i for i in items if i.get("ValueType") == "SCOORD"), None)
        if region is not None:
            ref = _children(region)[0].ReferencedSOPSequence[0]
            source_uid, source_class = str(ref.ReferencedSOPInstanceUID), \
                str(ref.ReferencedSOPClassUID)
        if finding == C.REGION_NAMES["film"].value:
            for i in items:
                vt = i.get("ValueType")
                if vt == "NUM":
                    v, u = _num(i)
                    if _is(i, C.IMAGE_ROWS):
                        rows = int(v)
                    elif _is(i, C.IMAGE_COLUMNS):
                        cols = int(v)
                    elif _is(i, C.VERTICAL_PIXEL_SPACING):
                        spacing_r = v
                    elif _is(i, C.HORIZONTAL_PIXEL_SPACING):
                        spacing_c = v
                    elif _name(i)[1] == C.SCHEME and _name(i)[0] in _MEAS_BY_VALUE:
                        ends = [_find_site(s) for s in _children(i)
                                if _name(s) == _FINDING_SITE]
                        txt = [f"{lv}:{ep}" if ep else str(lv) for lv, ep in ends]
                        film.append(FilmValue(_MEAS_BY_VALUE[_name(i)[0]], v, u,
                                              txt[0] if txt else None,
                                              txt[1] if len(txt) > 1 else None, _u95(i)))
                elif vt == "CODE":
                    if _is(i, C.CALIBRATION_METHOD):
                        calibration_source = C.calibration_source_of(_code_value(i)[0]) \
                            or calibration_source
                    elif _name(i)[1] == C.SCHEME and _name(i)[0] in _MEAS_BY_VALUE:
                        film.append(FilmValue(_MEAS_BY_VALUE[_name(i)[0]],
                                              _code_value(i)[0] == C.YES.value, ""))
        elif finding == C.REGION_NAMES["calibration"].value and region is not None:
            pts = from_scoord(region.GraphicData)
            length = next(_num(i)[0] for i in items if _is(i, C.CALIBRATION_LINE_LENGTH))
            line = CalibrationLine(tuple(pts[0]), tuple(pts[1]), length)
        elif finding == C.REGION_NAMES["vertebra"].value and level is not None \
                and region is not None:
            names: tuple[str, ...] = ()
            flags = {"fractured": False, "treated": False, "excluded": False}
            vals: dict[str, Any] = {}
            vunits: dict[str, str] = {}
            for i in items:
                vt = i.get("ValueType")
                nv, ns = _name(i)
                if vt == "CODE" and _is(i, C.LANDMARK_SET):
                    parsed = C.landmark_names_of(_code_value(i)[0])
                    if parsed is not None:
                        view, _, names = parsed
                elif vt == "CODE" and _is(i, C.LANDMARK_SOURCE):
                    src_code = _code_value(i)[0]
                    if src_code in _SOURCES_BY_VALUE:
                        unconfirmed[level] = _SOURCES_BY_VALUE[src_code]
                elif vt == "CODE" and ns == C.SCHEME and nv in _FLAGS_BY_VALUE:
                    flags[_FLAGS_BY_VALUE[nv]] = _code_value(i)[0] == C.YES.value
                elif vt == "CODE" and ns == C.SCHEME and nv in _MEAS_BY_VALUE:
                    mname = _MEAS_BY_VALUE[nv]
                    cv = _code_value(i)[0]
                    vals[mname] = next(k for k, c in C.VALUE_CODES[mname].items()
                                       if c.value == cv)
                    vunits[mname] = "grade" if mname == "genant_grade" else ""
                elif vt == "NUM" and ns == C.SCHEME and nv in _MEAS_BY_VALUE:
                    vals[_MEAS_BY_VALUE[nv]], vunits[_MEAS_BY_VALUE[nv]] = _num(i)
                    if (u95 := _u95(i)) is not None:
                        uncertainty.setdefault(level, {})[_MEAS_BY_VALUE[nv]] = u95
            pts = from_scoord(region.GraphicData)
            if len(pts) == len(names) + 1 and len(names) >= 3:
                pts = pts[:-1]  # closing vertex
            if len(pts) != len(names) or view is None:
                raise FileError(p, f"{level}: region has {len(pts)} points but its landmark "
                                   f"set names {len(names)}")
            pmap = {n: (float(r), float(c)) for n, (r, c) in zip(names, pts, strict=True)}
            vertebrae[level] = Vertebra(level, view, pmap, **flags)
            if vals:
                values[level] = vals
                units[level] = vunits
        elif finding == C.REGION_NAMES["cement"].value and level is not None:
            cement[level] = _read_cement(items)
    if view is None:
        view = "lateral"
    spacing = (spacing_r, spacing_c) if spacing_r is not None and spacing_c is not None \
        else None
    content_dt = None
    if ds.get("ContentDate") and ds.get("ContentTime"):
        content_dt = dt.datetime.combine(pydicom.valuerep.DA(ds.ContentDate),
                                         pydicom.valuerep.TM(ds.ContentTime), tzinfo=dt.UTC)
    return SrContent(
        sop_instance_uid=str(ds.SOPInstanceUID), source_sop_instance_uid=source_uid,
        source_sop_class_uid=source_class, study_instance_uid=str(ds.get("StudyInstanceUID",
                                                                        "")),
        rows=rows or 1, cols=cols or 1,
        landmarks=SpineLandmarks(view, tuple(vertebrae.values())),
        calibration_line=line, spacing=spacing, calibration_source=calibration_source,
        vertebrae=values, units=units, film=tuple(film), cement=cement, tracking=tracking,
        reader=reader, content_datetime=content_dt, uncertainty95=uncertainty,
        unconfirmed=unconfirmed,
    )


def _read_cement(items: list[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    locations: list[str] = []
    for i in items:
        nv, ns = _name(i)
        if ns != C.SCHEME or nv not in _CEMENT_BY_VALUE:
            continue
        base, kind = _CEMENT_BY_VALUE[nv]
        vt = i.get("ValueType")
        if vt == "NUM":
            v, u = _num(i)
            if kind == "len":
                row[f"{base}_{u}"] = v
            elif kind == "area":
                row[f"{base}_{'mm2' if u == 'mm2' else 'px2'}"] = v
            else:
                row[base] = v
        elif vt == "CODE":
            cv = _code_value(i)[0]
            if kind == "flag":
                row[base] = cv == C.YES.value
            elif kind == "locations":
                locations.extend(k for k, c in C.CEMENT_CATEGORIES[base].items()
                                 if c.value == cv)
            else:
                row[base] = next((k for k, c in C.CEMENT_CATEGORIES[base].items()
                                  if c.value == cv), cv)
    if row.get("cement_found") is True:
        row["leak_locations"] = ";".join(locations)
    elif row.get("cement_found") is False:
        row["leak_locations"] = None
    return row


def landmark_array(landmarks: SpineLandmarks) -> np.ndarray:
    """All points of ``landmarks`` as an ``(N, 2)`` array, in a fixed order (tests)."""
    return np.array([v.points[n] for v in landmarks for n in sorted(v.points)], dtype=float)
