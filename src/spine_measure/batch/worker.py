"""Work on one film, in a worker process: annotation, measurements, cement, overlay.

A worker returns a small JSON-ready record (rows, landmarks, hashes and the overlay's PNG
bytes), never pixel arrays. Pixels are decoded only when the film needs them: for its overlay
or for cement features; with overlays off, a film without cement is measured from its header
calibration and annotation alone.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from spine_measure.errors import SpineMeasureError
from spine_measure.io.calibration import Calibration

__all__ = ["FilmTask", "cement_features", "preload", "process_chunk", "process_film"]

log = logging.getLogger(__name__)

OVERLAY_VALUES = (("wedge_angle", "WA", "°"), ("cr_anterior", "CR", "%"))


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
    identifiers: bool = False       # SR keeps the real patient name / ID


def _sha256(path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def cement_api() -> Any:
    """The cement package's public entry point, or None while it offers none."""
    try:
        from spine_measure import cement as _cement
    except ImportError:  # pragma: no cover
        return None
    return getattr(_cement, "measure_cement", None)


def cement_features(radiograph: Any, annotation: Any, level: str, film: Any,
                    tolerance_mm: float) -> tuple[dict[str, Any], Any] | None:
    """SPEC §4 features of the cement at ``level`` and the mask they were computed from (the
    reader's edited mask from the annotation, else the automatic segmentation). This is the
    one place the batch calls ``spine_measure.cement``."""
    fn = cement_api()
    if fn is None:
        return None
    mask = annotation.cement_mask(level)
    row, used = fn(radiograph, annotation.landmarks, level,
                   mask=None if mask is None else mask.to_array(), tolerance_mm=tolerance_mm,
                   with_mask=True, spacing=film.spacing)
    return dict(row), used


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
    from spine_measure.io.annotation import load_annotation
    from spine_measure.measurements import measure_annotation

    rec["stage_hint"] = "annotation"
    with open(task.annotation_path, "rb") as fh:  # type: ignore[arg-type]
        rec["annotation_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    try:
        ann = load_annotation(task.annotation_path)  # type: ignore[arg-type]
    except SpineMeasureError as exc:
        rec.pop("stage_hint")
        return _failed(rec, "annotation", str(exc))
    ref = ann.image
    if task.sop_instance_uid and ref.sop_instance_uid and \
            ref.sop_instance_uid != task.sop_instance_uid:
        rec.pop("stage_hint")
        return _failed(rec, "annotation", f"{task.annotation_path}: annotates SOPInstanceUID "
                                          f"{ref.sop_instance_uid}, not this film's")
    if task.rows and task.cols and (ref.rows, ref.cols) != (task.rows, task.cols):
        rec.pop("stage_hint")
        return _failed(rec, "annotation", f"annotation is for a {ref.rows}x{ref.cols} image; "
                                          f"the film is {task.rows}x{task.cols}")
    rec["stage_hint"] = "measure"
    header = SimpleNamespace(calibration=task.calibration, metadata={})
    fm = measure_annotation(header, ann)
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
    cement_levels = sorted(set(rec["cement_levels"]) | (set(rec["treated_levels"])
                                                        if ann.view == "lateral" else set()))
    need_pixels = task.overlays or (bool(cement_levels) and cement_api() is not None)
    rec["cement"] = {}
    if not need_pixels:
        _add_sr(task, rec, fm, ann)
        rec.pop("stage_hint")
        return rec
    rec["stage_hint"] = "decode"
    from spine_measure.io.radiograph import load_radiograph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        radiograph = load_radiograph(task.path)
    if radiograph.shape != (ref.rows, ref.cols):
        rec.pop("stage_hint")
        return _failed(rec, "decode", f"decoded image is {radiograph.shape}, the annotation "
                                      f"says {ref.rows}x{ref.cols}")
    rec["stage_hint"] = "cement"
    masks: dict[str, Any] = {m.level: m.to_array() for m in ann.cement}
    for level in cement_levels:
        try:
            out = cement_features(radiograph, ann, level, fm, task.cement_tolerance_mm)
        except Exception as exc:  # cement problems are a flagged value, not a failed film
            rec["warnings"].append(("cement", f"{level}: {_explain(exc)}"))
            out = None
        feats = None
        if out is not None:
            feats, used = out
            if feats.get("cement_found"):
                masks[level] = used
        if feats is not None:
            rec["cement"][level] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                    for k, v in feats.items()}
    if task.overlays:
        rec["stage_hint"] = "overlay"
        from spine_measure.batch.overlay import render_overlay

        values = {}
        for level, per in fm.vertebrae.items():
            values[level] = {short: (per[name].value, unit) for name, short, unit in
                             OVERLAY_VALUES if name in per}
        for r in fm.film:
            if r.ok and isinstance(r.value, float):
                values.setdefault("_film", {})[r.name] = (r.value, "°")
        cal = fm.calibration_source + ("" if fm.spacing is None else
                                       f" {fm.spacing[0]:.4g}x{fm.spacing[1]:.4g} mm")
        title = [f"{task.pseudo_id}  {task.date or 'no date'}  {ann.view}",
                 f"calibration: {cal}",
                 f"SOP {task.sop_instance_uid or '-'}"]
        film_vals = values.pop("_film", {})
        if film_vals:
            title.append("  ".join(f"{k} {v:.1f}°" for k, (v, _u) in film_vals.items()))
        rec["overlay_png"] = render_overlay(radiograph, ann.landmarks, values=values,
                                            cement=masks, title=title)
    _add_sr(task, rec, fm, ann)
    rec.pop("stage_hint")
    return rec


def _add_sr(task: FilmTask, rec: dict[str, Any], fm: Any, ann: Any) -> None:
    """Put the film's DICOM SR (bytes) into ``rec["sr_dicom"]`` when the task asks for it.

    The SR carries the film's measurements and the cement features computed above
    (:func:`spine_measure.sr.build_sr`). Unless the run keeps identifiers, the patient's
    name and ID are replaced by the pseudonym and birth date and accession number left
    empty, like every other output of the batch. An SR that cannot be built is a warning.
    """
    if not task.sr:
        return
    import io

    import pydicom

    from spine_measure.sr import build_sr

    rec["stage_hint"] = "sr"
    try:
        header = pydicom.dcmread(task.path, stop_before_pixels=True)
        if not task.identifiers:
            header.PatientName = task.pseudo_id
            header.PatientID = task.pseudo_id
            for kw in ("PatientBirthDate", "AccessionNumber"):
                if kw in header:
                    setattr(header, kw, None)
        skipped: list[str] = []
        sr = build_sr(header, fm, ann, cement=rec["cement"], skipped=skipped)
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

    from spine_measure.io import radiograph  # noqa: F401
    from spine_measure.io.annotation import load_annotation  # noqa: F401
    from spine_measure.measurements import measure_annotation  # noqa: F401

    if any(t.overlays for t in tasks):
        from spine_measure.batch import overlay  # noqa: F401
    cement_api()
    if any(t.sr for t in tasks):
        from spine_measure import sr  # noqa: F401


def process_chunk(tasks: list[FilmTask]) -> list[dict[str, Any]]:
    """Process a chunk of films (the unit sent to a process pool or a Dask worker)."""
    import logging as _logging

    _logging.getLogger("pydicom").setLevel(_logging.CRITICAL)
    return [process_film(t) for t in tasks]
