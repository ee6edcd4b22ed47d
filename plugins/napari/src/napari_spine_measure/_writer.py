"""Writer contribution: a landmarks points layer -> a spine_measure annotation file.

The annotation widget's ``landmarks`` layer carries each point's ``level`` and ``point``
name as features and, in ``metadata["spine_measure"]``, the image reference, the view, the
per-level flags and the revision of the file the session started from. The writer turns it
into :class:`~spine_measure.landmarks.SpineLandmarks` and saves with
:func:`~spine_measure.io.annotation.save_annotation`: atomically, keeping the rest of an
existing annotation of the same image (findings, calibration, cement), and refusing to
replace a file newer than that revision (:class:`AnnotationConflictError`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from spine_measure.io.annotation import (
    Annotation,
    AnnotationError,
    AnnotationMismatchError,
    ImageRef,
    load_annotation,
    save_annotation,
)
from spine_measure.landmarks import SpineLandmarks, Vertebra, required_points

__all__ = ["landmarks_from_layer", "write_annotation"]

log = logging.getLogger(__name__)


def landmarks_from_layer(data: Any, features: Any, view: str,
                         flags: dict[str, dict[str, bool]] | None = None,
                         skip: set[str] | frozenset[str] = frozenset()) -> SpineLandmarks:
    """Build landmarks from layer data (N x 2, ``(row, col)`` pixels) and features with
    ``level`` and ``point`` columns. Vertebrae lacking a required point, and the levels in
    ``skip`` (not measurable), are left out with a log message."""
    arr = np.asarray(data, dtype=float).reshape(-1, 2)
    levels = list(features["level"]) if len(arr) else []
    names = list(features["point"]) if len(arr) else []
    if len(levels) != len(arr) or len(names) != len(arr):
        raise AnnotationError("the points layer needs a level and a point name per point")
    per: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for (r, c), lv, nm in zip(arr, levels, names, strict=True):
        if nm in per[lv]:
            raise AnnotationError(f"{lv}: point {nm} appears twice in the layer")
        per[lv][str(nm)] = (float(r), float(c))
    verts = []
    for lv, pts in per.items():
        if lv in skip:
            continue
        missing = [p for p in required_points(lv, view) if p not in pts]
        if missing:
            log.warning("%s: not written, missing %s", lv, ", ".join(missing))
            continue
        verts.append(Vertebra(lv, view, pts, **(flags or {}).get(lv, {})))  # type: ignore[arg-type]
    return SpineLandmarks(view, tuple(verts))  # type: ignore[arg-type]


def write_annotation(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer hook for a points layer made by the annotation widget.

    Raises
    ------
    AnnotationError
        The layer carries no image reference (not a spine_measure landmarks layer).
    AnnotationConflictError
        The file is newer than the revision the layer was loaded from.
    AnnotationMismatchError
        The file annotates another image.
    """
    meta = (attributes.get("metadata") or {}).get("spine_measure") or {}
    if "image" not in meta:
        raise AnnotationError(f'layer "{attributes.get("name")}" is not a spine_measure '
                              "landmarks layer (no image reference in its metadata)")
    image = ImageRef.from_dict(meta["image"])
    view = meta.get("view", "lateral")
    features = attributes.get("features")
    if features is None or len(features) == 0:
        features = {"level": [], "point": []}
    landmarks = landmarks_from_layer(data, features, view, meta.get("flags"),
                                     set(meta.get("not_measurable", ())))
    target = Path(path)
    if not target.name.endswith(".sm.json"):
        target = target.with_name(target.name + ".sm.json") if not target.suffix else \
            target.with_suffix(".sm.json")
    revision = int(meta.get("revision", 0))
    if target.is_file():
        existing = load_annotation(target)
        if existing.image.matches(sop_instance_uid=image.sop_instance_uid,
                                  pixel_sha256=image.pixel_sha256) is False:
            raise AnnotationMismatchError(target, "annotates another image; not replaced")
        ann = existing.replace(landmarks=landmarks)
        save_annotation(ann, target, expected_revision=revision)
    else:
        save_annotation(Annotation(image, landmarks), target)
    return [str(target)]
