"""Reviewing proposals: the operations a reader's review mode performs on an annotation.

Each function takes an :class:`~spine_measure.io.annotation.Annotation` and returns a new
one (annotations are immutable); none reads or writes files, none imports SimpleITK or Qt.
The napari plugin's review mode maps its keys onto them: Enter -> :func:`confirm`, a drag ->
:func:`move_point` (with ``refined=True`` when the click refinement moved the dropped point),
N -> :func:`reject`; :func:`next_unconfirmed` walks the unconfirmed vertebrae.
"""

from __future__ import annotations

import dataclasses

from spine_measure.io.annotation import Annotation, AnnotationError
from spine_measure.landmarks import SpineLandmarks, Vertebra

__all__ = ["confirm", "move_point", "next_unconfirmed", "reject", "review_summary"]


def next_unconfirmed(annotation: Annotation, after: str | None = None) -> str | None:
    """The first unconfirmed level caudal to ``after`` (cranial to caudal, wrapping round);
    None when every vertebra is confirmed."""
    todo = annotation.unconfirmed_levels()
    if not todo:
        return None
    if after is None:
        return todo[0]
    levels = annotation.landmarks.levels()
    start = levels.index(after) if after in levels else -1
    ordered = levels[start + 1:] + levels[:start + 1]
    return next(lv for lv in ordered if lv in todo)


def confirm(annotation: Annotation, level: str) -> Annotation:
    """Mark ``level`` as confirmed by the reader (point and flag sources and confidences are
    kept, so one can still tell which confirmed points a reader never moved, and which flag a
    machine proposed)."""
    return annotation.with_review(level, dataclasses.replace(annotation.review_of(level),
                                                             confirmed=True))


def move_point(annotation: Annotation, level: str, name: str, point: tuple[float, float], *,
               refined: bool = False) -> Annotation:
    """Put point ``name`` of ``level`` at ``point`` (a reader's drag or click).

    Its source becomes ``reader`` (``refined`` when the click refinement placed it) and its
    confidence is dropped; the vertebra's confirmation does not change (Enter confirms).
    """
    v = annotation.landmarks[level]
    pts = dict(v.points)
    pts[name] = (float(point[0]), float(point[1]))
    nv = Vertebra(v.level, v.view, pts, v.fractured, v.treated, v.excluded)
    state = annotation.review_of(level)
    src = {n: state.source(n) for n in nv.points}
    src[name] = "refined" if refined else "reader"
    conf = {k: c for k, c in state.confidence.items() if k != name}
    ann = annotation.replace(landmarks=annotation.landmarks.replace(level, nv))
    return ann.with_review(level, dataclasses.replace(state, point_source=src, confidence=conf))


def reject(annotation: Annotation, level: str) -> Annotation:
    """Remove ``level`` (the reader says it cannot be measured on this film): a rejected
    proposal leaves nothing behind, so nothing is measured from it."""
    if level not in annotation.landmarks:
        raise AnnotationError(f"{level}: level not annotated; nothing to reject")
    rest = tuple(v for v in annotation.landmarks if v.level != level)
    return annotation.replace(landmarks=SpineLandmarks(annotation.view, rest))


def review_summary(annotation: Annotation) -> dict[str, int]:
    """Counts for a status line: vertebrae ``confirmed`` / ``unconfirmed``, and points by
    source (``reader``, ``propagated``, ``refined``)."""
    out = {"confirmed": 0, "unconfirmed": 0, "reader": 0, "propagated": 0, "refined": 0}
    for v in annotation.landmarks:
        state = annotation.review_of(v.level)
        out["confirmed" if state.confirmed else "unconfirmed"] += 1
        for n in v.points:
            out[state.source(n)] += 1
    return out
