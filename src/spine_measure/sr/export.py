"""Write the measurements of one film as a DICOM Comprehensive 3D SR (TID 1500).

The document tree (``docs/sr_export.md``)::

    Imaging Measurement Report (TID 1500)
      observer context: person = annotation reader, device = spine_measure
      Imaging Measurements
        Measurement Group "film" (TID 1501): pixel spacing, calibration method, image size,
                                             film-level results (Cobb angles, scoliosis)
        Measurement Group "calibration line" (TID 1410): POLYLINE p0-p1 + its length (mm)
        Measurement Group "<level>" (TID 1410), one per annotated vertebra:
            Image Region = the landmarks as a POLYLINE (body outline), finding site =
            the vertebra (SNOMED CT), landmark-set code, flags, calibration method, every
            single-film measurement of the vertebra (NUM) and the Genant grade/shape (CODE)
        Measurement Group "<level> cement" (TID 1501), per treated vertebra with cement
            features (post-op / follow-up films)

Coordinates: spine_measure points are ``(row, col)`` with ``(0, 0)`` at the centre of the
top-left pixel; DICOM SCOORD lists ``(column, row)`` with the same origin, so the conversion
is a swap of the two columns and nothing else (:func:`to_scoord`, :func:`from_scoord`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spine_measure import __version__
from spine_measure.errors import FileError, SpineMeasureError
from spine_measure.landmarks import LEVELS
from spine_measure.sr import codes as C

__all__ = [
    "SR_SERIES_NUMBER",
    "SrExportError",
    "SrWritten",
    "build_sr",
    "film_sr",
    "from_scoord",
    "sr_file_name",
    "to_scoord",
    "write_film_sr",
]

log = logging.getLogger(__name__)

SR_SERIES_NUMBER = 9901
"""Series Number of every SR spine_measure writes (one SR series per study)."""

_UID_ROOT = "spine_measure.sr/1"


class SrExportError(SpineMeasureError, ValueError):
    """Content that cannot be written as SR (names the vertebra / measurement)."""


# ----------------------------------------------------------------------- coordinates


def to_scoord(points_rc: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``(row, col)`` points -> DICOM SCOORD ``(column, row)`` graphic data.

    Both conventions put ``(0, 0)`` at the centre of the top-left pixel
    (``docs/conventions.md``; PS3.3 C.18.6.1.2), so ``x = col`` and ``y = row`` exactly.

    >>> to_scoord([[10.0, 2.5]]).tolist()
    [[2.5, 10.0]]
    """
    a = np.asarray(points_rc, dtype=float)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f'Argument "points_rc" must have shape (N, 2); got {a.shape}')
    return a[:, ::-1].copy()


def from_scoord(graphic_data: np.ndarray | Sequence[float]) -> np.ndarray:
    """SCOORD graphic data (flat ``x0, y0, x1, y1...`` or ``(N, 2)``) -> ``(row, col)``.

    >>> from_scoord([2.5, 10.0]).tolist()
    [[10.0, 2.5]]
    """
    a = np.asarray(graphic_data, dtype=float).reshape(-1, 2)
    return a[:, ::-1].copy()


# ----------------------------------------------------------------------- helpers


def _uid(*parts: object) -> str:
    """A UID derived deterministically from ``parts`` (pydicom's root, SHA-512 entropy)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[_UID_ROOT, *(str(p) for p in parts)]))


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def _yes_no(flag: bool) -> Any:
    return C.YES if flag else C.NO


def _person_name(text: str) -> str:
    """A reader id as a DICOM PN: a single-component name gets the trailing ``^`` that
    marks it as a family name (PS3.5 6.2.1.2); the reader strips it again."""
    return text if "^" in text or "=" in text else text + "^"


def _content_digest(annotation: Any, fm: Any, cement: Mapping[str, Any] | None) -> str:
    """Digest of everything the SR content depends on (for a stable SOPInstanceUID)."""
    payload = {
        "landmarks": annotation.landmarks.to_dict(),
        "calibration": None if annotation.calibration is None
        else annotation.calibration.to_dict(),
        "reader": annotation.reader,
        "spacing": fm.spacing, "calibration_source": fm.calibration_source,
        "cobb": [f"{a},{b}" for a, b in fm.options.cobb] + list(fm.options.cobb_keywords),
        "cement": sorted(cement or {}),
        "version": __version__,
    }
    marks = {lv: annotation.landmark_source(lv) for lv in annotation.unconfirmed_levels()}
    if marks:  # confirming a proposal changes the content (its mark goes): a new UID
        payload["unconfirmed"] = marks
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def sr_file_name(sop_instance_uid: str) -> str:
    """Output name of the SR of a film: the film's SOP Instance UID + ``.sr.dcm`` (as
    ``batch --sr`` names them): unique across folders where file names are not."""
    uid = str(sop_instance_uid or "").strip()
    if not uid or not all(part.isdigit() for part in uid.split(".")):
        raise SrExportError(f"not a SOP Instance UID: {uid!r}")
    return f"{uid}.sr.dcm"


def _parse_endplate(text: str) -> tuple[str, str | None]:
    level, _, endplate = str(text).partition(":")
    return level, (endplate or None)


def _endplate_site(text: str) -> Any:
    from highdicom.sr import FindingSite

    level, endplate = _parse_endplate(text)
    modifier = {"superior": C.SUPERIOR, "inferior": C.INFERIOR, None: None}.get(endplate)
    if level not in LEVELS or (endplate is not None and modifier is None):
        raise SrExportError(f'end vertebra "{text}" is not LEVEL or LEVEL:superior/inferior')
    return FindingSite(C.vertebra_code(level), topographical_modifier=modifier)


# ----------------------------------------------------------------------- groups


def _measurement(name: Any, value: float | int, unit: str, sites: Sequence[Any] = (),
                 u: float | None = None) -> Any:
    """A NUM (TID 300). With a standard uncertainty ``u``, its expanded uncertainty
    ``1.96 u`` (95 %, in the measurement's unit) as the TID 310 "+, range of upper" and
    "-, range of lower measurement uncertainty" properties."""
    from highdicom.sr import Measurement, MeasurementProperties

    if unit not in C.UNITS:
        raise SrExportError(f'unit "{unit}" has no UCUM code')
    v: float | int = value if isinstance(value, int) else float(value)
    props = None
    if u is not None and math.isfinite(u):
        expanded = float(UNCERTAINTY_COVERAGE * u)
        props = MeasurementProperties(upper_measurement_uncertainty=expanded,
                                      lower_measurement_uncertainty=expanded)
    return Measurement(name=name, value=v, unit=C.UNITS[unit],
                       finding_sites=list(sites) or None, properties=props)


#: Coverage factor of the uncertainty written into the SR (95 %, normal).
UNCERTAINTY_COVERAGE = 1.959963984540054


def _qual(name: Any, value: Any) -> Any:
    from highdicom.sr import QualitativeEvaluation

    return QualitativeEvaluation(name=name, value=value)


def _tracking(source_uid: str, label: str) -> Any:
    from highdicom.sr import TrackingIdentifier

    return TrackingIdentifier(uid=_uid(source_uid, "tracking", label), identifier=label)


def _region(points_rc: np.ndarray, source_image: Any) -> Any:
    from highdicom.sr import GraphicTypeValues, ImageRegion

    xy = to_scoord(points_rc)
    if len(xy) == 1:
        return ImageRegion(GraphicTypeValues.POINT, xy, source_image)
    if len(xy) >= 3:  # a closed polyline: the first vertex repeated at the end
        xy = np.vstack([xy, xy[:1]])
    return ImageRegion(GraphicTypeValues.POLYLINE, xy, source_image)


def _vertebra_group(vertebra: Any, results: Mapping[str, Any], source: Any,
                    calibration_source: str, source_uid: str,
                    u: Mapping[str, float] | None = None,
                    landmark_source: str | None = None) -> Any:
    from highdicom.sr import FindingSite, PlanarROIMeasurementsAndQualitativeEvaluations

    names = frozenset(vertebra.points)
    order = C.landmark_order(vertebra.view, names)
    points = np.array([vertebra.points[n] for n in order], dtype=float)
    measurements = []
    quals = [_qual(C.LANDMARK_SET, C.landmark_set_code(vertebra.view, names))]
    quals += [_qual(C.FLAG_CONCEPTS[f], _yes_no(getattr(vertebra, f)))
              for f in ("fractured", "treated", "excluded")]
    quals.append(_qual(C.CALIBRATION_METHOD, C.calibration_code(calibration_source)))
    if landmark_source is not None:  # an unconfirmed proposal, measured as asked
        quals.append(_qual(C.LANDMARK_SOURCE, C.LANDMARK_SOURCES[landmark_source]))
    for name, r in results.items():
        if name not in C.MEASUREMENT_CONCEPTS:
            raise SrExportError(f'{vertebra.level}: measurement "{name}" has no SR code '
                                "(add it to spine_measure.sr.codes.MEASUREMENT_CONCEPTS)")
        if not r.ok:
            continue  # missing values are omitted (docs/sr_export.md)
        concept = C.MEASUREMENT_CONCEPTS[name]
        if name in C.VALUE_CODES:
            try:
                quals.append(_qual(concept, C.VALUE_CODES[name][r.value]))
            except KeyError:
                raise SrExportError(f'{vertebra.level}: {name} value {r.value!r} has no '
                                    "code") from None
        elif _finite(r.value):
            measurements.append(_measurement(concept, r.value, r.unit,
                                             u=(u or {}).get(name)))
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(source_uid, vertebra.level),
        referenced_region=_region(points, source),
        finding_type=C.REGION_NAMES["vertebra"],
        finding_sites=[FindingSite(C.vertebra_code(vertebra.level))],
        measurements=measurements or None,
        qualitative_evaluations=quals,
    )


def _film_group(fm: Any, rows: int, cols: int, source_uid: str,
                film_u: Sequence[float | None] | None = None) -> Any:
    from highdicom.sr import FindingSite, MeasurementsAndQualitativeEvaluations

    measurements = [_measurement(C.IMAGE_ROWS, int(rows), "px"),
                    _measurement(C.IMAGE_COLUMNS, int(cols), "px")]
    if fm.spacing is not None:
        measurements += [_measurement(C.VERTICAL_PIXEL_SPACING, float(fm.spacing[0]), "mm"),
                         _measurement(C.HORIZONTAL_PIXEL_SPACING, float(fm.spacing[1]), "mm")]
    quals = [_qual(C.CALIBRATION_METHOD, C.calibration_code(fm.calibration_source))]
    for i, r in enumerate(fm.film):
        if r.name not in C.MEASUREMENT_CONCEPTS:
            raise SrExportError(f'film measurement "{r.name}" has no SR code')
        if not r.ok:
            continue
        concept = C.MEASUREMENT_CONCEPTS[r.name]
        if isinstance(r.value, bool):
            quals.append(_qual(concept, _yes_no(r.value)))
        elif _finite(r.value):
            sites = [_endplate_site(r.detail[k]) for k in ("upper", "lower")
                     if r.detail.get(k)]
            measurements.append(_measurement(concept, r.value, r.unit, sites,
                                             u=film_u[i] if film_u else None))
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(source_uid, "film"),
        finding_type=C.REGION_NAMES["film"],
        finding_sites=[FindingSite(C.SPINE)],
        measurements=measurements,
        qualitative_evaluations=quals,
    )


def _calibration_group(line: Any, source: Any, source_uid: str) -> Any:
    from highdicom.sr import PlanarROIMeasurementsAndQualitativeEvaluations

    pts = np.array([line.p0, line.p1], dtype=float)
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(source_uid, "calibration line"),
        referenced_region=_region(pts, source),
        finding_type=C.REGION_NAMES["calibration"],
        measurements=[_measurement(C.CALIBRATION_LINE_LENGTH, float(line.length_mm), "mm")],
    )


_UNIT_SUFFIX = re.compile(r"_(mm|px)(2?)$")


def cement_column_parts(column: str) -> tuple[str, str | None]:
    """``cement_gap_superior_mm`` -> ``("cement_gap_superior", "mm")``; no unit -> None."""
    m = _UNIT_SUFFIX.search(column)
    if m is None:
        return column, None
    return column[: m.start()], m.group(1) + m.group(2)


def _cement_group(level: str, row: Mapping[str, Any], calibration_source: str,
                  source_uid: str, skipped: list[str]) -> Any:
    from highdicom.sr import FindingSite, MeasurementsAndQualitativeEvaluations

    measurements = []
    quals = [_qual(C.CALIBRATION_METHOD, C.calibration_code(calibration_source))]
    for column, value in row.items():
        if column in ("cement_status", "cement_reasons"):
            continue  # free text, not coded (docs/sr_export.md)
        base, unit = cement_column_parts(column)
        if base not in C.CEMENT_CONCEPTS:
            skipped.append(f"{level}: cement column {column} has no SR code")
            continue
        concept, kind = C.CEMENT_CONCEPTS[base]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if kind == "flag":
            quals.append(_qual(concept, _yes_no(bool(value))))
        elif kind == "category":
            code = C.CEMENT_CATEGORIES[base].get(value)
            if code is None:
                skipped.append(f"{level}: {column} value {value!r} has no SR code")
                continue
            quals.append(_qual(concept, code))
        elif kind == "locations":
            for loc in (s for s in str(value).split(";") if s):
                code = C.CEMENT_CATEGORIES[base].get(loc)
                if code is None:
                    skipped.append(f"{level}: leak location {loc!r} has no SR code")
                    continue
                quals.append(_qual(concept, code))
        elif _finite(value):
            if kind in ("len", "area"):
                if unit is None:
                    skipped.append(f"{level}: cement column {column} lacks its unit")
                    continue
                u = unit
            else:
                u = kind
            measurements.append(_measurement(concept, value, u))
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(source_uid, f"{level} cement"),
        finding_type=C.REGION_NAMES["cement"],
        finding_sites=[FindingSite(C.vertebra_code(level))],
        measurements=measurements or None,
        qualitative_evaluations=quals,
    )


# ----------------------------------------------------------------------- document


def _evidence(header: Any) -> Any:
    """The source header with the Type 2 patient/study attributes highdicom reads."""
    import copy

    ds = copy.copy(header)
    for kw in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
               "AccessionNumber", "StudyID", "StudyDate", "StudyTime"):
        if kw not in ds:
            setattr(ds, kw, None)
    return ds


def build_sr(header: Any, fm: Any, annotation: Any, *,
             cement: Mapping[str, Mapping[str, Any]] | None = None,
             cement_calibration_source: str | None = None,
             skipped: list[str] | None = None, uncertainty: Any = None) -> Any:
    """Build the Comprehensive 3D SR of one measured film.

    Parameters
    ----------
    header : pydicom.Dataset
        The source image's header (pixels not needed): UIDs, patient and study modules.
    fm : FilmMeasurements
        ``measure_radiograph``/``measure_annotation`` output for this film.
    annotation : Annotation
        The annotation measured (landmarks, calibration line, reader). A vertebra it holds
        unconfirmed (measured with ``accept_proposed``) gets a ``LANDMARK-SOURCE`` item
        naming where its points come from.
    cement : Mapping, optional
        Level -> cement row (``spine_measure.service.FilmResult.cement``); rows holding
        ``cement_error`` are left out.
    cement_calibration_source : str, optional
        Calibration source of the cement lengths (the header's; default ``fm``'s).
    skipped : list, optional
        Receives one line per value that could not be coded.
    uncertainty : FilmUncertainty, optional
        :func:`spine_measure.measurements.uncertainty.film_uncertainty` of ``fm``: each NUM
        with an uncertainty gets ``1.96 u`` as its TID 310 upper and lower measurement
        uncertainty (in the NUM's unit), and the SOPInstanceUID changes with the model.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        SOPInstanceUID derived from the source SOPInstanceUID and a digest of the content
        (same inputs -> same UID); tracking UIDs from the source UID and the group label.
    """
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from highdicom.sr import (
        Comprehensive3DSR,
        DeviceObserverIdentifyingAttributes,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
        PersonObserverIdentifyingAttributes,
        SourceImageForRegion,
    )
    from pydicom.sr.codedict import codes

    source_uid = str(header.get("SOPInstanceUID", "") or "")
    sop_class = str(header.get("SOPClassUID", "") or "")
    if not source_uid or not sop_class:
        raise SrExportError("source image has no SOPInstanceUID/SOPClassUID")
    for kw in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not header.get(kw):
            raise SrExportError(f"source image has no {kw}")
    sink = skipped if skipped is not None else []
    rows, cols = int(header.get("Rows") or annotation.image.rows), \
        int(header.get("Columns") or annotation.image.cols)
    source = SourceImageForRegion(referenced_sop_class_uid=sop_class,
                                  referenced_sop_instance_uid=source_uid)
    per_level: dict[str, dict[str, float]] = {}
    film_u: list[float | None] | None = None
    if uncertainty is not None:
        from spine_measure.measurements.uncertainty import film_result_u

        for (lv, name), it in uncertainty.items.items():
            if lv is not None and it.ok:
                per_level.setdefault(lv, {})[name] = it.u
        film_u = film_result_u(uncertainty)
    groups: list[Any] = [_film_group(fm, rows, cols, source_uid, film_u)]
    if annotation.calibration is not None:
        groups.append(_calibration_group(annotation.calibration, source, source_uid))
    empty: Mapping[str, Any] = {}
    unconfirmed = set(annotation.unconfirmed_levels())
    for v in fm.landmarks:
        groups.append(_vertebra_group(v, fm.vertebrae.get(v.level, empty), source,
                                      fm.calibration_source, source_uid,
                                      per_level.get(v.level),
                                      annotation.landmark_source(v.level)
                                      if v.level in unconfirmed else None))
    for level, row in (cement or {}).items():
        if "cement_error" in row or level not in LEVELS:
            sink.append(f"{level}: cement not exported ({row.get('cement_error', 'no level')})")
            continue
        groups.append(_cement_group(level, row, cement_calibration_source
                                    or fm.calibration_source, source_uid, sink))

    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=_uid("device", "spine_measure"), name="spine_measure",
            manufacturer_name="spine_measure project", model_name="spine_measure",
        ))
    person = None
    if annotation.reader:
        person = ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=PersonObserverIdentifyingAttributes(
                name=_person_name(str(annotation.reader))))
    report = MeasurementReport(
        observation_context=ObservationContext(observer_person_context=person,
                                               observer_device_context=device),
        procedure_reported=C.PROCEDURE,
        imaging_measurements=groups,
    )
    digest = _content_digest(annotation, fm, cement)
    if uncertainty is not None:
        digest = hashlib.sha256(f"{digest}|{uncertainty.model.describe()}".encode()
                                ).hexdigest()
    when = annotation.modified.astimezone(dt.UTC)
    scheme = CodingSchemeIdentificationItem(
        designator=C.SCHEME, name=C.SCHEME_NAME, version="1",
        responsible_organization="spine_measure project")
    study_uid = str(header.StudyInstanceUID)
    sr = Comprehensive3DSR(
        evidence=[_evidence(header)],
        content=report,
        series_instance_uid=_uid("series", study_uid),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid("instance", source_uid, digest),
        instance_number=int(header.get("InstanceNumber") or 1),
        manufacturer="spine_measure project",
        is_complete=True,
        series_description="spine_measure measurements",
        coding_schemes=[scheme],
        content_date=when.date(),
        content_time=when.time().replace(tzinfo=None),
        software_versions=__version__,
    )
    return sr


# ----------------------------------------------------------------------- files


@dataclass(frozen=True)
class SrWritten:
    """One SR written: ``path``, its ``sop_instance_uid``, the values not coded and the
    unconfirmed levels left out."""

    image: Path
    path: Path
    sop_instance_uid: str
    skipped: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()


def film_sr(result: Any, *, pseudonym: str | None = None,
            uncertainty: Any = None) -> tuple[Any, list[str]]:
    """The SR of a measured film (:class:`spine_measure.service.FilmResult`): the one way
    ``export-sr`` and ``batch --sr`` build it.

    The film's header is read again without pixels. With ``pseudonym``, the patient's name
    and ID become the pseudonym and birth date and accession number are emptied. With
    ``uncertainty`` (a ``LandmarkErrorModel``) every NUM carries its 95 % measurement
    uncertainty (:func:`build_sr`). Returns the SR dataset and the values that could not be
    coded.

    Raises
    ------
    FileError
        The film is not DICOM or its header cannot be read, or the SR cannot be built.
    """
    import pydicom

    from spine_measure.io.radiograph import looks_like_dicom

    path = Path(result.path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise FileError(path, f"cannot read ({exc.strerror or exc})") from None
    if not looks_like_dicom(head):
        raise FileError(path, "not a DICOM image; an SR can only reference a DICOM SOP "
                              "instance")
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True,
                                 force=head[128:132] != b"DICM")
    except Exception as exc:
        raise FileError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})") \
            from None
    if pseudonym is not None:
        header.PatientName = pseudonym
        header.PatientID = pseudonym
        for kw in ("PatientBirthDate", "AccessionNumber"):
            if kw in header:
                setattr(header, kw, None)
    skipped = [f"{level}: cement not exported ({reason})"
               for level, reason in result.cement_errors.items()]
    fu = None
    if uncertainty is not None:
        from spine_measure.measurements.uncertainty import film_uncertainty

        fu = film_uncertainty(result.measurements, uncertainty)
    try:
        with warnings.catch_warnings():
            # a pseudonym is a one-component name on purpose; highdicom would warn per film
            warnings.filterwarnings("ignore", category=UserWarning,
                                    message=r'The string "P[0-9a-f]{16}" is unlikely to '
                                            r'represent the intended person name')
            sr = build_sr(header, result.measurements, result.annotation,
                          cement=result.cement, skipped=skipped, uncertainty=fu)
    except Exception as exc:  # noqa: BLE001 - highdicom/pydicom: one line, user terms
        from spine_measure.io.radiograph import explain_exception

        raise FileError(path, f"cannot build the SR: {explain_exception(exc)}") from None
    return sr, skipped


def write_film_sr(image_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                  annotations_dir: str | os.PathLike[str] | None = None,
                  finder: Any = None,
                  cobb: Iterable[str] = (), with_cement: bool = True,
                  file_name: str | None = None,
                  taken: Mapping[str, Any] | None = None,
                  include_identifiers: bool = False,
                  pseudonym_key: bytes | None = None,
                  uncertainty: Any = None, accept_proposed: bool = False) -> SrWritten:
    """Measure one DICOM film with its annotation and write its SR into ``out_dir``.

    The SR is pseudonymised unless ``include_identifiers``: the patient's name and ID become
    the keyed pseudonym ``batch`` gives the same PatientID with the same key
    (:func:`spine_measure.batch.pseudonym.pseudonym`), birth date and accession number are
    emptied. ``pseudonym_key`` defaults to the key ``batch`` would use
    (:func:`spine_measure.batch.pseudonym.resolve_key`: the environment variables, else the
    user's key file, generated once); it is never written into ``out_dir``.

    The film is measured by :func:`spine_measure.service.measure_film_file`, as
    ``spine-measure measure`` and ``batch`` measure it (same annotation precedence, same
    identity check); the SR is named after the film's SOP Instance UID
    (:func:`sr_file_name`) unless ``file_name`` is given. ``taken`` maps the names already
    written in this run to their films: a film whose name is taken is refused (two copies of
    one SOP instance).

    Vertebrae a reader has not confirmed (proposals, ``docs/propagation.md``) are left out
    and listed in :attr:`SrWritten.unconfirmed`, unless ``accept_proposed``: then they are
    in the SR, each marked with its landmark source (:func:`build_sr`).

    Raises
    ------
    FileError
        Every vertebra is an unconfirmed proposal (and not ``accept_proposed``): no SR.
        Not a DICOM image, no annotation or another image's, unreadable file, the SR
        cannot be written, or the pseudonymisation key cannot be used
        (:class:`~spine_measure.batch.pseudonym.PseudonymKeyError`; one line naming the
        file).
    """
    from spine_measure.io.radiograph import looks_like_dicom
    from spine_measure.service import AnnotationFinder, measure_film_file

    path = Path(image_path)
    out = Path(out_dir)
    if path.is_file():
        with open(path, "rb") as fh:
            if not looks_like_dicom(fh.read(132)):
                raise FileError(path, "not a DICOM file; an SR can only reference a DICOM "
                                      "SOP instance")
    if finder is None:
        finder = AnnotationFinder(annotations_dir)
    result = measure_film_file(path, finder=finder, cobb=list(cobb), cement=with_cement,
                               accept_proposed=accept_proposed)
    if result.unconfirmed and not result.annotation.landmarks.levels():
        # an SR with no vertebra would look like a reading of nothing: none is written
        levels = ", ".join(lv for lv, _ in result.unconfirmed)
        raise FileError(path, f"every vertebra ({levels}) is an unconfirmed proposal: no SR "
                              "written; confirm them, or pass --accept-proposed")
    pseudo = None
    if not include_identifiers:
        from spine_measure.batch.pseudonym import pseudonym, resolve_key

        if pseudonym_key is None:
            pseudonym_key = resolve_key(None, out).key
        pseudo = pseudonym(result.metadata.patient_id or "", pseudonym_key)
    sr, skipped = film_sr(result, pseudonym=pseudo, uncertainty=uncertainty)
    if not out.is_dir():
        raise FileError(out, "output folder does not exist")
    name = file_name or sr_file_name(str(result.metadata.sop_instance_uid or ""))
    if taken is not None and name in taken:
        raise FileError(path, f"its SR {name} was already written for {taken[name]} in this "
                              "run (same SOPInstanceUID: two copies of one image)")
    target = out / name
    import io

    from spine_measure.batch.journal import atomic_write_bytes
    from spine_measure.io.files import describe_os_error
    from spine_measure.io.radiograph import explain_exception

    buf = io.BytesIO()
    try:  # encode first: a value DICOM cannot hold never leaves a partial file
        sr.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - pydicom's encoders: one line, user terms
        raise FileError(path, f"cannot encode its SR: {explain_exception(exc)}") from None
    try:
        atomic_write_bytes(target, buf.getvalue())
    except OSError as exc:
        raise FileError(target, f"cannot write ({describe_os_error(exc)})") from None
    for s in skipped:
        log.warning("%s: %s", path, s)
    return SrWritten(path, target, str(sr.SOPInstanceUID), tuple(skipped),
                     tuple(lv for lv, _ in result.unconfirmed))
