"""Work on one film, in a worker process: annotation, measurements, cement, overlay.

A worker returns a small JSON-ready record (rows, landmarks, hashes and the overlay's PNG
bytes), never pixel arrays. Pixels are decoded only when the film needs them: for its overlay
or for cement features; with overlays off, a film without cement is measured from its header
calibration and annotation alone.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from spine_measure.io.calibration import Calibration
from spine_measure.io.scan import DicomHeader

__all__ = ["FilmTask", "overlay_values", "preload", "process_chunk", "process_film"]

log = logging.getLogger(__name__)

OVERLAY_VALUES = (("wedge_angle", "WA", ""), ("cr_anterior", "CR", ""))


@dataclass(frozen=True)
class FilmTask:
    """Everything a worker needs for one film (picklable, no pixels)."""

    key: str                        # path relative to the input folder (sort key)
    path: str
    annotation_path: str | None
    sop_instance_uid: str | None
    rows: int | None
    cols: int | None
    calibration: Calibration
    pseudo_id: str
    date: str | None
    overlays: bool = True
    cement_tolerance_mm: float = 1.0
    sr: bool = False                # also build the film's DICOM SR (TID 1500)
    accept_proposed: bool = False   # also measure vertebrae a reader has not confirmed
    identifiers: bool = False       # SR keeps the real patient name / ID
    header: DicomHeader | None = None   # the scan's header (no pixels)
    annotation_source: str | None = None  # spine_measure.service.ANNOTATION_SOURCES
    annotation_file: str | None = None    # relative to its folder (outputs record this)
    cobb: tuple[str, ...] = ()      # sagittal Cobb angles (endplate pairs or keywords)
    sr_uncertainty: Any = None      # LandmarkErrorModel: the SR's NUMs carry their uncertainty


def _sha256(path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _explain(exc: BaseException) -> str:
    """A caught exception as one line in the user's terms (no class names)."""
    from spine_measure.io.radiograph import explain_exception

    return explain_exception(exc)


def _failed(rec: dict[str, Any], stage: str, reason: str) -> dict[str, Any]:
    rec.update(status="failed", stage=stage, reason=" ".join(str(reason).split()))
    return rec


def process_film(task: FilmTask) -> dict[str, Any]:
    """Process one film; never raises for a problem with the film (it becomes the record's
    ``status``/``stage``/``reason``)."""
    rec: dict[str, Any] = {"key": task.key, "status": "done", "stage": "", "reason": "",
                           "warnings": []}
    try:
        rec["sha256"], rec["size"] = _sha256(task.path)
    except OSError as exc:
        return _failed(rec, "read", f"cannot read ({exc.strerror})")
    if task.annotation_path is None:
        rec.update(status="skipped", stage="annotation",
                   reason="no annotation (no sidecar .sm.json and none with this "
                          "SOPInstanceUID in the annotations folder)")
        return rec
    try:
        return _process(task, rec)
    except Exception as exc:  # one bad film never stops the run
        log.debug("%s failed", task.path, exc_info=True)
        if rec.get("stage_hint"):
            return _failed(rec, rec.pop("stage_hint"), _explain(exc))
        return _failed(rec, "measure", _explain(exc))


def _process(task: FilmTask, rec: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from spine_measure.service import AnnotationChoice, FilmError, measure_film_file

    assert task.annotation_path is not None
    rec["stage_hint"] = "annotation"
    with open(task.annotation_path, "rb") as fh:
        rec["annotation_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    ann_path = Path(task.annotation_path)
    choice = AnnotationChoice(ann_path, task.annotation_source or "given",
                              task.annotation_file or ann_path.name)
    rec["stage_hint"] = "measure"
    try:
        res = measure_film_file(task.path, annotation=choice, header=task.header,
                                cobb=task.cobb, cement=True,
                                cement_tolerance_mm=task.cement_tolerance_mm,
                                decode=task.overlays, accept_proposed=task.accept_proposed)
    except FilmError as exc:
        rec.pop("stage_hint")
        # errors.csv names the film already: the reason names the annotation (relative to
        # its folder) when it is the annotation's problem, never an absolute path
        where = f"{choice.relative}: " if Path(exc.path) == ann_path else ""
        return _failed(rec, exc.stage, where + exc.reason)
    ann, fm = res.annotation, res.measurements
    for msg in res.plausibility:
        rec["warnings"].append(("plausibility", msg))
    rec["warnings"].extend(("unconfirmed", why) for _lv, why in res.unconfirmed)
    rec["landmark_source"] = dict(res.landmark_source)
    rec["view"] = ann.view
    rec["landmarks"] = ann.landmarks.to_dict()
    rec["spacing"] = None if fm.spacing is None else [float(fm.spacing[0]), float(fm.spacing[1])]
    rec["calibration_source"] = fm.calibration_source
    rec["time_point"] = ann.time_point
    rec["procedure_date"] = None if ann.procedure_date is None else \
        ann.procedure_date.isoformat()
    rec["findings"] = ann.findings.to_dict()
    rec["cement_levels"] = [m.level for m in ann.cement]
    rec["treated_levels"] = [v.level for v in ann.landmarks if v.treated]
    rec["reader"] = ann.reader
    for v in ann.landmarks:
        if v.level != "S1" and ann.view == "lateral" and (v.treated or v.fractured):
            for r in fm.vertebrae.get(v.level, {}).values():
                if r.reason and "neighbour" in r.reason.lower():
                    rec["warnings"].append(("measure", f"{v.level} {r.name}: {r.reason}"))
    rec["cement"] = res.cement
    for level, reason in res.cement_errors.items():
        rec["warnings"].append(("cement", f"{level}: {reason}"))
    if task.overlays:
        assert res.radiograph is not None
        rec["stage_hint"] = "overlay"
        from spine_measure.batch.overlay import render_overlay

        masks: dict[str, Any] = {m.level: m.to_array() for m in ann.cement}
        masks.update(res.cement_masks)
        values, cobb, film_line = overlay_values(fm)
        cal = fm.calibration_source + ("" if fm.spacing is None else
                                       f" {fm.spacing[0]:.4g}x{fm.spacing[1]:.4g} mm")
        title = [f"{task.pseudo_id}  {task.date or 'no date'}  {ann.view}",
                 f"calibration: {cal}",
                 f"SOP {task.sop_instance_uid or '-'}"]
        if film_line:
            title.append(film_line)
        rec["overlay_png"] = render_overlay(res.radiograph, ann.landmarks, values=values,
                                            cement=masks, title=title, cobb=cobb)
    _add_sr(task, rec, res)
    rec.pop("stage_hint")
    return rec


def _short_endplate(ep: str) -> str:
    level, _, which = ep.partition(":")
    return f"{level} {which[:3]}" if which else level


def overlay_values(fm: Any) -> tuple[dict[str, dict[str, tuple[Any, str]]],
                                     list[tuple[str, str, str]], str]:
    """What the overlay prints: per-vertebra values (WA, CR, Genant grade/shape with the
    reader's in brackets), the Cobb angles to draw ``(label, upper, lower)`` and the header's
    line of film-level angles."""
    values: dict[str, dict[str, tuple[Any, str]]] = {}
    for level, per in fm.vertebrae.items():
        vals = {short: (per[name].value, unit) for name, short, unit in OVERLAY_VALUES
                if name in per}
        g, shape = per.get("genant_grade"), per.get("genant_shape")
        if g is not None and g.value is not None:
            text = f"{g.value}" + (f" {shape.value}" if shape is not None and shape.value
                                   not in (None, "none") else "")
            v = fm.landmarks[level]
            reader = " ".join(str(x) for x in (v.genant_grade_reader, v.genant_shape_reader)
                              if x is not None)
            if reader:
                text += f" ({reader})"
            vals["G"] = (text, "")
        values[level] = vals
    cobb: list[tuple[str, str, str]] = []
    parts: list[str] = []
    for r in fm.film:
        d = r.detail
        if r.name in ("cobb_angle", "coronal_cobb_angle") and r.ok and "upper" in d:
            span = f"{_short_endplate(d['upper'])}-{_short_endplate(d['lower'])}"
            label = f"Cobb {r.value:.1f}° {span}"
            cobb.append((label, d["upper"], d["lower"]))
            parts.append(label)
        elif r.name == "coronal_cobb_angle_midline" and r.ok:
            parts.append(f"midline Cobb {r.value:.1f}° {d.get('upper', '')}-"
                         f"{d.get('lower', '')}")
        elif r.name == "degenerative_scoliosis" and r.value is not None:
            parts.append("scoliosis" if r.value else "no scoliosis")
    return values, cobb, "  ".join(parts)


def _add_sr(task: FilmTask, rec: dict[str, Any], res: Any) -> None:
    """Put the film's DICOM SR (bytes) into ``rec["sr_dicom"]`` when the task asks for it.

    The SR is built from the film's result exactly as ``spine-measure export-sr`` builds it
    (:func:`spine_measure.sr.export.film_sr`), with the run's measurement uncertainty when
    one is given (``--uncertainty``, as ``export-sr --uncertainty``). Unless the run keeps
    identifiers, the patient's name and ID are replaced by the pseudonym and birth date and
    accession number left empty, like every other output of the batch. An SR that cannot be
    built is a warning.
    """
    if not task.sr:
        return
    import io

    from spine_measure.sr.export import film_sr

    rec["stage_hint"] = "sr"
    if res.unconfirmed and not res.annotation.landmarks.levels():
        # as export-sr: an SR with no vertebra would look like a reading of nothing
        rec["warnings"].append(("sr", "SR not written: every vertebra is an unconfirmed "
                                      "proposal (confirm them, or pass --accept-proposed)"))
        return
    try:
        sr, _skipped = film_sr(res, pseudonym=None if task.identifiers else task.pseudo_id,
                               uncertainty=task.sr_uncertainty)
        buf = io.BytesIO()
        sr.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # the measurements stand without their SR
        rec["warnings"].append(("sr", f"SR not written: {_explain(exc)}"))
        return
    rec["sr_dicom"] = buf.getvalue()


def preload(tasks: list[FilmTask]) -> None:
    """Import what the workers will use, in the parent before it forks them: every forked
    worker then shares these modules instead of importing them itself (~0.7 s of CPU per
    worker: decoders, OpenCV, Pillow's PNG plugin, the cement and SR code)."""
    import PIL.PngImagePlugin  # noqa: F401
    import pydicom.pixels  # noqa: F401

    from spine_measure import cement, service  # noqa: F401
    from spine_measure.io import radiograph  # noqa: F401
    from spine_measure.io.annotation import load_annotation  # noqa: F401
    from spine_measure.measurements import measure_annotation  # noqa: F401

    if any(t.overlays for t in tasks):
        from spine_measure.batch import overlay  # noqa: F401
    if any(t.sr for t in tasks):
        from spine_measure import sr  # noqa: F401


def process_chunk(tasks: list[FilmTask]) -> list[dict[str, Any]]:
    """Process a chunk of films (the unit sent to a process pool or a Dask worker)."""
    import logging as _logging

    _logging.getLogger("pydicom").setLevel(_logging.CRITICAL)
    return [process_film(t) for t in tasks]
