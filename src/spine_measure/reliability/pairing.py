"""Pair two annotation sets of the same films and measure every film once per reader.

Two folders of ``*.sm.json`` files (two readers, or one reader twice) are paired by the image
they annotate: the SOPInstanceUID, else the pixel hash (``docs/annotation_format.md``). File
names are never used for matching. Unpaired and unreadable files become rows of
:attr:`Pairing.unpaired` / :attr:`Pairing.errors` with a one-line reason, never exceptions.

Each film is measured with :func:`spine_measure.measurements.measure_annotation`, exactly as
``spine-measure measure`` does: the spacing comes from the DICOM header when an images folder
is given (header-only scan), else the film is uncalibrated (lengths in px); a calibration line
the reader drew comes first either way (docs/calibration.md).

The result is a long table with one row per (film, level, measurement): both readers' values
and whether the pair is usable. Longitudinal measurements (docs/measurements.md) are paired
per (patient, treated level) when the images folder lets the films be grouped by patient and
placed at their time points (:func:`spine_measure.batch.timepoints.assign_time_points`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from spine_measure.errors import SpineMeasureError
from spine_measure.io.annotation import Annotation, index_annotations, load_annotation
from spine_measure.measurements import (
    REGISTRY,
    FilmMeasurements,
    LongitudinalOptions,
    measure_annotation,
    measure_longitudinal,
)
from spine_measure.measurements.registry import Result

__all__ = [
    "CONTINUOUS_KINDS",
    "CATEGORICAL_KINDS",
    "FilmPair",
    "IssueRow",
    "Pairing",
    "PairedValues",
    "measure_pairs",
    "pair_annotation_dirs",
]

log = logging.getLogger(__name__)

CONTINUOUS_KINDS = ("length", "angle", "ratio")
CATEGORICAL_KINDS = ("grade", "category", "flag")
READERS = ("a", "b")


@dataclass(frozen=True, order=True)
class IssueRow:
    """One row of ``unpaired.csv`` / ``errors.csv``."""

    reader: str        # "a", "b" or "" (both)
    file: str
    key: str           # SOPInstanceUID / pixel hash, when known
    reason: str


@dataclass(frozen=True)
class FilmPair:
    """The two annotations of one film."""

    key: str                       # SOPInstanceUID, else "sha256:<pixel hash>"
    sop_instance_uid: str | None
    file_name: str | None
    path_a: Path
    path_b: Path


@dataclass
class Pairing:
    """Films annotated in both folders, and the files that could not be paired."""

    dir_a: Path
    dir_b: Path
    films: list[FilmPair] = field(default_factory=list)
    unpaired: list[IssueRow] = field(default_factory=list)
    errors: list[IssueRow] = field(default_factory=list)


def _key(uid: str | None, pixel_hash: str | None) -> str | None:
    if uid:
        return uid
    if pixel_hash:
        return f"sha256:{pixel_hash}"
    return None


def pair_annotation_dirs(dir_a: str | os.PathLike[str],
                         dir_b: str | os.PathLike[str]) -> Pairing:
    """Pair the annotation files of two folders by image reference.

    A film is keyed by its SOPInstanceUID, else by its pixel hash. Files that cannot be read
    (index stage) go to :attr:`Pairing.errors`; films annotated in one folder only, and the
    extra files of an image annotated twice in the same folder, go to
    :attr:`Pairing.unpaired`.

    Raises
    ------
    spine_measure.io.annotation.AnnotationFileError
        A folder does not exist.
    """
    idx = {r: index_annotations(d) for r, d in zip(READERS, (dir_a, dir_b), strict=True)}
    out = Pairing(Path(dir_a), Path(dir_b))
    by_key: dict[str, dict[str, Any]] = {"a": {}, "b": {}}
    for r in READERS:
        for path, reason in idx[r].errors:
            out.errors.append(IssueRow(r, os.fspath(path), "", reason))
        for e in idx[r].entries:
            k = _key(e.sop_instance_uid, e.pixel_sha256)
            if k is None:  # the schema forbids it; kept for robustness
                out.errors.append(IssueRow(r, os.fspath(e.path), "",
                                           "no SOPInstanceUID and no pixel hash"))
                continue
            if k in by_key[r]:
                out.unpaired.append(IssueRow(
                    r, os.fspath(e.path), k,
                    f"image already annotated by {by_key[r][k].path.name} in the same folder; "
                    "that file is used"))
                continue
            by_key[r][k] = e
    for k in sorted(set(by_key["a"]) | set(by_key["b"])):
        ea, eb = by_key["a"].get(k), by_key["b"].get(k)
        if ea is not None and eb is not None:
            out.films.append(FilmPair(k, ea.sop_instance_uid or eb.sop_instance_uid,
                                      ea.file_name or eb.file_name, ea.path, eb.path))
        else:
            e, r, other = (ea, "a", "b") if ea is not None else (eb, "b", "a")
            out.unpaired.append(IssueRow(r, os.fspath(e.path), k,
                                         f"no annotation of this image in reader {other}'s "
                                         "folder"))
    out.films.sort(key=lambda f: (f.file_name or "", f.key))
    return out


# --------------------------------------------------------------------------- measuring


@dataclass
class PairedValues:
    """What :func:`measure_pairs` found: the long table and the problems."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[IssueRow] = field(default_factory=list)
    notes: list[IssueRow] = field(default_factory=list)
    n_films: int = 0
    longitudinal_status: str = ""
    n_patients: int | None = None   # None: patients unknown (no headers)
    landmark_rows: list[dict[str, Any]] = field(default_factory=list)


def _film_measurements(ann: Annotation, header: Any | None) -> FilmMeasurements:
    from spine_measure.io.calibration import Calibration

    if header is not None:
        film = SimpleNamespace(calibration=header.calibration, metadata=header.metadata)
    else:
        film = SimpleNamespace(calibration=Calibration.uncalibrated(),
                               metadata={"sop_instance_uid": ann.image.sop_instance_uid})
    return measure_annotation(film, ann)


def _value(r: Result) -> Any:
    if not r.ok:
        return None
    v = r.value
    if isinstance(v, bool) or isinstance(v, str):
        return v
    return float(v) if isinstance(v, float) else int(v)  # type: ignore[arg-type]


def _pair_row(base: Mapping[str, Any], name: str, ra: Result, rb: Result) -> dict[str, Any]:
    d = REGISTRY[name]
    va, vb = _value(ra), _value(rb)
    why = ""
    if va is None or vb is None:
        parts = [f"reader {r}: {res.reason or 'no value'}" for r, res, v in
                 (("a", ra, va), ("b", rb, vb)) if v is None]
        why = "; ".join(parts)
    elif d.kind in CONTINUOUS_KINDS and ra.unit != rb.unit:
        why = (f"units differ ({ra.unit} vs {rb.unit}): the two readings have different "
               "calibrations")
    return {**base, "measurement": name, "kind": d.kind, "scope": d.scope,
            "unit": ra.unit if va is not None or vb is None else rb.unit,
            "value_a": va, "value_b": vb,
            "calibration_source_a": ra.calibration_source or "",
            "calibration_source_b": rb.calibration_source or "",
            "used": not why, "reason": why}


def _film_rows(pair: FilmPair, fa: FilmMeasurements, fb: FilmMeasurements,
               time_point: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = {"film": pair.key, "file_name": pair.file_name or "",
            "file_a": os.fspath(pair.path_a), "file_b": os.fspath(pair.path_b),
            "view": fa.view, "time_point": time_point or ""}
    levels = [lv for lv in fa.landmarks.levels() if lv != "S1"]
    levels += [lv for lv in fb.landmarks.levels() if lv != "S1" and lv not in levels]
    from spine_measure.landmarks import LEVELS

    levels.sort(key=LEVELS.index)
    names = [d.name for d in REGISTRY.values() if d.scope == "vertebra" and d.view == fa.view]
    for lv in levels:
        flags = {}
        for r, fm in (("a", fa), ("b", fb)):
            v = fm.landmarks[lv] if lv in fm.landmarks else None
            flags[r] = bool(v is not None and (v.fractured or v.treated))
        lbase = {**base, "level": lv, "index_vertebra": flags["a"] or flags["b"]}
        for name in names:
            rows.append(_pair_row(lbase, name, fa.get(lv, name), fb.get(lv, name)))
    fbase = {**base, "level": "", "index_vertebra": False}
    for ra in fa.film:
        if ra.name == "cobb_angle":
            continue  # only on request (endplate pairs); not paired here
        rb = next((r for r in fb.film if r.name == ra.name), None)
        if rb is not None:
            rows.append(_pair_row(fbase, ra.name, ra, rb))
    return rows


def measure_pairs(pairing: Pairing, *, headers: Mapping[str, Any] | None = None,
                  long_options: LongitudinalOptions | None = None,
                  one_per_time_point: bool = True) -> PairedValues:
    """Measure every paired film with both annotations; pair the values.

    Parameters
    ----------
    pairing : Pairing
        From :func:`pair_annotation_dirs`.
    headers : mapping of SOPInstanceUID -> DicomHeader, optional
        From a header scan of the images (:func:`spine_measure.io.scan.scan_folder`): gives
        the spacing (lengths in mm) and, for longitudinal pairs, patient and film dates.
        Without it every film is uncalibrated unless its annotation has a calibration line.
    long_options : LongitudinalOptions, optional
        Site and thresholds of the longitudinal measurements.
    one_per_time_point : bool
        The unit of analysis is one reading of a vertebra per time point: when a patient has
        several films of one view at the same time point (e.g. two post-op films), only the
        one the time-point rules choose is used and the others' pairs stay in the table with
        ``used = False`` and the reason. ``False`` pairs every film. Needs ``headers``
        (patient and dates); without them every film counts.

    Returns
    -------
    PairedValues
        ``rows``: one dict per (film, level, measurement) with ``value_a``, ``value_b``,
        ``used`` and ``reason`` (and per (series, treated level, measurement) for the
        longitudinal measurements), and ``patient``: a pseudonymous label (``P01``,
        ``P02``, ... in the order of the PatientIDs; empty without ``headers``) that the
        report uses as the cluster; ``errors``: films that could not be measured.
    """
    out = PairedValues()
    measured: dict[str, tuple[Annotation, Annotation, FilmMeasurements, FilmMeasurements]] = {}
    for pair in pairing.films:
        anns: dict[str, Annotation] = {}
        for r, p in (("a", pair.path_a), ("b", pair.path_b)):
            try:
                anns[r] = load_annotation(p)
            except SpineMeasureError as exc:
                out.errors.append(IssueRow(r, os.fspath(p), pair.key,
                                           getattr(exc, "reason", str(exc))))
        if len(anns) < 2:
            continue
        if anns["a"].view != anns["b"].view:
            out.errors.append(IssueRow("", os.fspath(pair.path_a), pair.key,
                                       f"views differ: reader a {anns['a'].view}, reader b "
                                       f"{anns['b'].view} ({pair.path_b})"))
            continue
        header = headers.get(pair.sop_instance_uid) if headers and pair.sop_instance_uid \
            else None
        fms: dict[str, FilmMeasurements] = {}
        for r, p in (("a", pair.path_a), ("b", pair.path_b)):
            try:
                fms[r] = _film_measurements(anns[r], header)
            except (SpineMeasureError, ValueError) as exc:
                out.errors.append(IssueRow(r, os.fspath(p), pair.key,
                                           f"cannot measure: {' '.join(str(exc).split())}"))
        if len(fms) < 2:
            continue
        measured[pair.key] = (anns["a"], anns["b"], fms["a"], fms["b"])
    out.n_films = len(measured)
    time_points: dict[str, str] = {}
    chosen: set[str] | None = None
    long_rows: list[dict[str, Any]] = []
    if headers is None:
        out.longitudinal_status = (
            "skipped: annotation files carry no patient identity and no film dates; pass "
            "--images (the DICOM folder) to group films into pre-op / post-op / follow-up "
            "series")
    else:
        long_rows, time_points, out.longitudinal_status, chosen = _longitudinal(
            pairing, measured, headers, long_options or LongitudinalOptions(), out.notes)
    patient = _patient_labels(pairing, measured, headers)
    if headers is not None:
        out.n_patients = len(set(patient.values()))
    from spine_measure.reliability.landmark_error import landmark_differences

    for pair in pairing.films:
        if pair.key in measured:
            _, _, fa, fb = measured[pair.key]
            same_scale = fa.spacing if fa.spacing == fb.spacing else None
            for d in landmark_differences(fa.landmarks, fb.landmarks, same_scale):
                out.landmark_rows.append({"film": pair.key,
                                          "patient": patient.get(pair.key, ""), **d})
            rows = _film_rows(pair, fa, fb, time_points.get(pair.key))
            tp = time_points.get(pair.key)
            if one_per_time_point and chosen is not None and tp and pair.key not in chosen:
                why = (f"another {fa.view} film of this patient is used for the {tp} time "
                       "point (one reading per vertebra per time point)")
                for r in rows:
                    if r["used"]:
                        r["used"], r["reason"] = False, why
            for r in rows:
                r["patient"] = patient.get(pair.key, "")
            out.rows.extend(rows)
    for r in long_rows:
        r["patient"] = patient.get(r["film"], "")
    out.rows.extend(long_rows)
    return out


def _patient_labels(pairing: Pairing, measured: Mapping[str, Any],
                    headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Film key -> pseudonymous patient label ``P01``, ``P02``, ... (PatientID order)."""
    if headers is None:
        return {}
    pid_of: dict[str, str] = {}
    for pair in pairing.films:
        if pair.key not in measured or not pair.sop_instance_uid:
            continue
        h = headers.get(pair.sop_instance_uid)
        if h is not None and h.metadata.patient_id:
            pid_of[pair.key] = str(h.metadata.patient_id)
    order = {pid: i for i, pid in enumerate(sorted(set(pid_of.values())), start=1)}
    width = max(2, len(str(len(order))))
    return {k: f"P{order[pid]:0{width}d}" for k, pid in pid_of.items()}


def _longitudinal(pairing: Pairing, measured: Mapping[str, Any], headers: Mapping[str, Any],
                  options: LongitudinalOptions, notes: list[IssueRow]
                  ) -> tuple[list[dict[str, Any]], dict[str, str], str, set[str]]:
    """Longitudinal pairs: group by PatientID, place films at time points with reader a's
    annotation (overrides, procedure date, treated flags), measure each reader's series.

    Also returns the film keys the time-point rules chose (one per time point and view)."""
    from spine_measure.batch.timepoints import FilmDate, assign_time_points

    by_patient: dict[str, list[str]] = {}
    for key in measured:
        pair = next(p for p in pairing.films if p.key == key)
        h = headers.get(pair.sop_instance_uid) if pair.sop_instance_uid else None
        if h is None:
            notes.append(IssueRow("", os.fspath(pair.path_a), key,
                                  "image not found in --images: no patient or date, left out "
                                  "of the longitudinal pairs"))
            continue
        pid = h.metadata.patient_id
        if not pid:
            notes.append(IssueRow("", os.fspath(pair.path_a), key,
                                  "no PatientID in the DICOM header: left out of the "
                                  "longitudinal pairs"))
            continue
        by_patient.setdefault(pid, []).append(key)
    rows: list[dict[str, Any]] = []
    tps: dict[str, str] = {}
    chosen: set[str] = set()
    n_series = 0
    for pid in sorted(by_patient):
        keys = sorted(by_patient[pid])
        uid_of = {k: next(p.sop_instance_uid for p in pairing.films if p.key == k)
                  for k in keys}
        fds = []
        for k in keys:
            ann_a, ann_b, fa, _ = measured[k]
            if ann_b.time_point != ann_a.time_point:
                notes.append(IssueRow("b", "", k, f"time point {ann_b.time_point} differs from "
                                                  f"reader a's {ann_a.time_point}; reader a's "
                                                  "is used for both"))
            fds.append(FilmDate(k, headers[uid_of[k]].metadata.date, ann_a.time_point,
                                any(v.treated for v in fa.landmarks), fa.view))
        proc_dates = sorted(d for k in keys if (d := measured[k][0].procedure_date))
        asg = assign_time_points(fds, proc_dates[0] if proc_dates else None)
        for k, sev, reason in asg.notes:
            notes.append(IssueRow("", "", k, f"time point ({sev}): {reason}"))
        tps.update(asg.time_point)
        for slot in asg.slots.values():
            chosen.update(slot)
        pre, post, follow = asg.film("preop"), asg.film("postop"), asg.followups()
        missing = [n for n, v in (("preop", pre), ("postop", post), ("followup", follow))
                   if not v]
        if missing:
            notes.append(IssueRow("", "", post or pre or keys[0],
                                  f"series of {len(keys)} paired film(s) has no "
                                  f"{', '.join(missing)} lateral film: no longitudinal pairs"))
            continue
        assert post is not None and pre is not None
        levels = sorted({v.level for r in (2, 3) for v in measured[post][r].landmarks
                         if v.treated})
        if not levels:
            notes.append(IssueRow("", "", post, "no vertebra flagged treated on the post-op "
                                                "film: no longitudinal pairs"))
            continue
        n_series += 1
        for level in levels:
            res: dict[str, Any] = {}
            # measured[key] = (annotation a, annotation b, film a, film b)
            for r, i in (("a", 2), ("b", 3)):
                oedema = [measured[k][i - 2].findings.bone_marrow_oedema
                          for k in reversed(follow)]
                oedema = [v for v in oedema if v is not None]
                try:
                    res[r] = measure_longitudinal(
                        measured[pre][i], measured[post][i], [measured[k][i] for k in follow],
                        level=level, bone_marrow_oedema=oedema[0] if oedema else None,
                        options=options)
                except ValueError as exc:
                    notes.append(IssueRow(r, "", post, f"{level}: longitudinal: {exc}"))
            if len(res) < 2:
                continue
            post_name = next(p.file_name for p in pairing.films if p.key == post) or post
            base = {"film": post, "file_name": f"series (post-op {post_name})",
                    "file_a": "", "file_b": "", "view": "lateral", "time_point": "series",
                    "level": level, "index_vertebra": True}
            for name, ra in res["a"].results.items():
                rows.append(_pair_row(base, name, ra, res["b"].results[name]))
    status = (f"{n_series} complete series (pre-op, post-op, follow-up) paired"
              if n_series else "skipped: no patient has a complete pre-op / post-op / "
                               "follow-up series annotated by both readers")
    return rows, tps, status, chosen

