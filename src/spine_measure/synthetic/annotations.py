"""Reader annotations (``X.sm.json``) of the sample films, made from their ground truth.

The sidecar holds what a perfect reader would enter: the truth landmarks with their flags, the
findings, the procedure date (the one ``clinical.csv`` gives) and a fixed reader name and
timestamps, so that ``spine-measure batch sample_dicoms --out OUT`` measures the bundled set
and regenerating it is byte-identical. The cement is left to the automatic segmentation
(no mask is stored), as it would be before a reader reviews it; the exact masks stay in
``X.cement.png`` for the tests.

A film whose header gives no usable spacing (SM007's follow-up, ``PixelSpacing 0\\0``) gets
what a reader does with such a film: a calibration line of known length (80 mm, horizontal,
near the top edge, as if drawn over the detector's scale), exact at the render spacing. Its
lengths then carry ``calibration_source = reader``.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

__all__ = ["READER", "annotation_for_truth", "write_annotation_for_truth"]

READER = "synthetic-truth"


def annotation_for_truth(truth_path: str | Path, rows: int, cols: int):
    """The :class:`~spine_measure.io.annotation.Annotation` of the film of ``truth_path``."""
    from spine_measure.io.annotation import (
        Annotation,
        CalibrationLine,
        Findings,
        ImageRef,
    )
    from spine_measure.landmarks import SpineLandmarks

    p = Path(truth_path)
    t = json.loads(p.read_text(encoding="utf-8"))
    ref = ImageRef(rows=int(rows), cols=int(cols), sop_instance_uid=t["sop_instance_uid"],
                   file_name=t["image"])
    calibration = None
    spacing = (t.get("design") or {}).get("render_spacing_mm")
    if t["calibration"]["source"] == "uncalibrated" and spacing:
        length_mm = 80.0
        calibration = CalibrationLine((20.0, 20.0), (20.0, 20.0 + length_mm / spacing),
                                      length_mm)
    when = _dt.datetime.fromisoformat(t["acquisition_date"]).replace(tzinfo=_dt.UTC)
    return Annotation(ref, SpineLandmarks.from_dict({"view": t["view"],
                                                    "vertebrae": t["vertebrae"]}),
                      calibration=calibration,
                      findings=Findings(**t["findings"]), procedure_date=t["procedure_date"],
                      reader=READER, created=when, modified=when, revision=1)


def write_annotation_for_truth(truth_path: str | Path) -> Path:
    """Write ``X.sm.json`` next to ``X.dcm`` from ``X.truth.json``; return its path."""
    import pydicom

    from spine_measure.io.annotation import annotation_to_json, atomic_write_text, sidecar_path

    p = Path(truth_path)
    image = p.with_name(json.loads(p.read_text(encoding="utf-8"))["image"])
    ds = pydicom.dcmread(image, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
    out = sidecar_path(image)
    atomic_write_text(out, annotation_to_json(annotation_for_truth(p, ds.Rows, ds.Columns)))
    return out
