"""The thin I/O layer of proposals: films and annotation files in, annotation files out.

* :func:`propose_annotation` -- the target film's annotation holding the proposals of
  :func:`~spine_measure.propose.register.propagate_landmarks` (unconfirmed, point source
  ``propagated``, with confidences), merged with what the target already has;
* :func:`plan_folder` -- for each unannotated film of a folder, the annotated film of the same
  patient (``PatientID``) nearest in time;
* :func:`refine_annotation` -- every corner / mid-endplate point moved to the image's edges by
  :func:`~spine_measure.propose.refine.refine_landmark` where the image gives a clear answer.

Every function here takes loaded objects or paths and never prints: the CLI
(``spine_measure.cli.propagate``) and the napari plugin call them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_measure.io.annotation import (
    Annotation,
    ImageRef,
    LevelReview,
    load_annotation,
)
from spine_measure.propose.flags import FlagEvidence, cement_in_body, film_check, propose_flags

__all__ = [
    "ClinicalFacts",
    "FilmPair",
    "FolderPlan",
    "PatientFacts",
    "ProposalResult",
    "RefineResult",
    "clinical_facts",
    "find_film_annotation",
    "flag_evidence",
    "plan_folder",
    "propose_annotation",
    "propose_for_film",
    "refine_annotation",
]


@dataclass(frozen=True)
class ProposalResult:
    """A target annotation with its proposals, and the per-vertebra outcome.

    ``rows`` are ``{"level", "status" (proposed / failed / kept), "confidence", "reason",
    "flags", "flags_check"}``: ``flags`` the flags a proposal carries, ``flags_check`` what a
    reader should check about them (:mod:`spine_measure.propose.flags`).
    """

    annotation: Annotation
    rows: tuple[dict[str, Any], ...]
    global_confidence: float

    @property
    def n_proposed(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "proposed")

    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "failed")


def _ref_for(radiograph: Any) -> ImageRef:
    m = radiograph.metadata
    rows, cols = radiograph.shape
    return ImageRef(rows=int(rows), cols=int(cols), sop_instance_uid=m.sop_instance_uid,
                    study_instance_uid=m.study_instance_uid,
                    series_instance_uid=m.series_instance_uid,
                    pixel_sha256=None if m.sop_instance_uid else radiograph.pixel_sha256,
                    file_name=Path(m.path).name if getattr(m, "path", None) else None)


def _scale_guess(source: Any, target: Any) -> float:
    """Target/source size ratio from the two spacings (1 when either is unknown)."""
    a, b = source.spacing, target.spacing
    if a is None or b is None:
        return 1.0
    ratio = float(a[0]) / float(b[0])
    return ratio if 0.2 <= ratio <= 5.0 else 1.0


def flag_evidence(source: Any, source_annotation: Annotation, target: Any, *,
                  clinical: ClinicalFacts | None = None) -> FlagEvidence:
    """What the films' headers, the source annotation and the clinical table say about the
    flags (:class:`~spine_measure.propose.flags.FlagEvidence`): the films' dates, the
    procedure date (the clinical table's, else the source annotation's) and the treated levels
    of the target's PatientID in the clinical table."""
    sd, td = source.metadata.date, target.metadata.date
    facts = None if clinical is None else clinical.get(target.metadata.patient_id or "")
    proc = source_annotation.procedure_date
    levels = None
    if facts is not None:
        levels = facts.treated_levels or None
        proc = facts.procedure_date or proc
    return FlagEvidence(days=None if sd is None or td is None else (td - sd).days,
                        target_date=td, procedure_date=proc, treated_levels=levels)


@dataclass(frozen=True)
class PatientFacts:
    """One patient's treated levels and procedure date from the clinical table."""

    treated_levels: frozenset[str] = frozenset()
    procedure_date: dt.date | None = None


ClinicalFacts = Mapping[str, PatientFacts]
"""PatientID -> :class:`PatientFacts` (:func:`clinical_facts`)."""


def clinical_facts(table: Any) -> dict[str, PatientFacts]:
    """PatientID -> treated levels and procedure date, from a clinical table
    (:func:`spine_measure.batch.clinical.read_clinical`: its ``level`` column names a treated
    level, its ``procedure_date`` the procedure's date)."""
    levels: dict[str, set[str]] = {}
    dates: dict[str, dt.date] = {}
    for (pid, level), row in sorted(table.rows.items(), key=lambda kv: (kv[0][0],
                                                                         kv[0][1] or "")):
        levels.setdefault(pid, set())
        if level:
            levels[pid].add(level)
        if row.get("procedure_date") and pid not in dates:
            dates[pid] = row["procedure_date"]
    return {pid: PatientFacts(frozenset(lv), dates.get(pid)) for pid, lv in levels.items()}


def propose_annotation(source: Any, source_annotation: Annotation, target: Any, *,
                       existing: Annotation | None = None, options: Any = None,
                       levels: Iterable[str] | None = None,
                       evidence: FlagEvidence | None = None) -> ProposalResult:
    """Propose the source film's landmarks on the target film.

    Parameters
    ----------
    source, target : Radiograph
        The two films (:func:`spine_measure.io.radiograph.load_radiograph`).
    source_annotation : Annotation
        The source film's annotation; its confirmed vertebrae are carried (unconfirmed
        proposals are never carried on to a third film).
    existing : Annotation, optional
        The target's annotation: its vertebrae are kept as they are (row status ``kept``)
        and only the other levels are proposed; its findings, calibration line and cement
        masks are kept.
    options : ProposeOptions, optional
    levels : iterable of str, optional
        Only these levels.
    evidence : FlagEvidence, optional
        What decides the proposals' flags (default :func:`flag_evidence` from the films'
        headers and the source annotation); see :func:`~spine_measure.propose.flags.
        propose_flags`. Cement in a proposed body on the target is looked for here.

    Returns
    -------
    ProposalResult
        The annotation (not saved) and one row per source vertebra.
    """
    from spine_measure.landmarks import SpineLandmarks
    from spine_measure.propose.register import propagate_landmarks

    if existing is not None and existing.view != source_annotation.view:
        raise ValueError(f"the target's annotation is {existing.view}, the source's "
                         f"{source_annotation.view}: films of different views")
    carry = source_annotation.confirmed_landmarks()
    wanted = set(carry.levels()) if levels is None else set(levels) & set(carry.levels())
    kept = set(existing.landmarks.levels()) if existing is not None else set()
    todo = sorted(wanted - kept, key=lambda lv: carry[lv].index)
    rows: list[dict[str, Any]] = [{"level": lv, "status": "kept", "confidence": None,
                                   "reason": "already annotated on the target film",
                                   "flags": "", "flags_check": ""}
                                  for lv in sorted(wanted & kept, key=lambda x: carry[x].index)]
    verts = list(existing.landmarks) if existing is not None else []
    review = dict(existing.review) if existing is not None else {}
    gconf = float("nan")
    if todo:
        prop = propagate_landmarks(source.density, carry, target.density,
                                   scale_guess=_scale_guess(source, target), levels=todo,
                                   options=options)
        gconf = prop.global_fit.confidence
        proposed = prop.landmarks()
        ev = evidence if evidence is not None else flag_evidence(source, source_annotation,
                                                                 target)
        flags: dict[str, Any] = {}
        for p in prop.vertebrae:
            if p.ok:
                seen = cement_in_body(target.density, proposed, p.level, target.spacing)
                fp = flags[p.level] = propose_flags(carry[p.level], ev, cement_seen=seen)
                rows.append({"level": p.level, "status": "proposed",
                             "confidence": p.confidence, "reason": "; ".join(p.notes),
                             "flags": fp.set_flags, "flags_check": "; ".join(fp.notes)})
                verts.append(fp.apply(proposed[p.level]))
                review[p.level] = LevelReview(
                    confirmed=False, point_source={n: "propagated" for n in p.points},
                    confidence=dict(p.point_confidence), flag_source=fp.flag_source)
            else:
                rows.append({"level": p.level, "status": "failed",
                             "confidence": p.confidence or None, "reason": p.reason,
                             "flags": "", "flags_check": ""})
        note = film_check(carry, flags, ev) if flags else None
        if note:
            for r in rows:
                if r["status"] == "proposed":
                    r["flags_check"] = "; ".join(x for x in (r["flags_check"], note) if x)
    rows.sort(key=lambda r: carry[r["level"]].index)
    landmarks = SpineLandmarks(source_annotation.view, tuple(verts))
    if existing is not None:
        ann = existing.replace(landmarks=landmarks, review=review)
    else:
        ann = Annotation(_ref_for(target), landmarks, review=review,
                         procedure_date=source_annotation.procedure_date)
    return ProposalResult(ann, tuple(rows), gconf)


def find_film_annotation(film: str | os.PathLike[str],
                         annotations_dir: str | os.PathLike[str] | None = None, *,
                         finder: Any = None) -> tuple[Path, Annotation] | None:
    """The film's annotation (path and content), found with the precedence of every command
    (:class:`spine_measure.service.AnnotationFinder`: the annotations folder first, then the
    sidecar) and checked to belong to the film (UID / pixel hash, size); None when it has
    none. Raises ``FileError`` subclasses for an unreadable or foreign annotation."""
    from spine_measure.io.annotation import read_image_reference
    from spine_measure.service import AnnotationFinder, check_identity

    ref = read_image_reference(film)
    finder = finder or AnnotationFinder(annotations_dir)
    choice = finder.find(film, sop_instance_uid=ref.sop_instance_uid,
                         pixel_sha256=ref.pixel_sha256)
    if choice is None:
        return None
    ann = load_annotation(choice.path)
    check_identity(ann, choice.path, film=film, sop_instance_uid=ref.sop_instance_uid,
                   pixel_sha256=ref.pixel_sha256, rows=ref.rows, cols=ref.cols)
    return choice.path, ann


def propose_for_film(source_path: str | os.PathLike[str], target_path: str | os.PathLike[str],
                     *, annotations_dir: str | os.PathLike[str] | None = None,
                     options: Any = None, clinical: ClinicalFacts | None = None
                     ) -> tuple[ProposalResult, Path]:
    """Load both films and annotations and propose (see :func:`propose_annotation`; the
    flags' evidence is :func:`flag_evidence` with ``clinical``).

    Returns the result and the source annotation's path. Raises ``FileError`` subclasses
    (one line naming the file) when a film or the source annotation cannot be read.
    """
    import warnings

    from spine_measure.errors import FileError
    from spine_measure.io.radiograph import load_radiograph

    found = find_film_annotation(source_path, annotations_dir)
    if found is None:
        where = f" or in {annotations_dir}" if annotations_dir else ""
        raise FileError(source_path, f"the source film has no annotation (looked next to it"
                                     f"{where})")
    src_ann_path, src_ann = found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = load_radiograph(source_path)
        target = load_radiograph(target_path)
    if source.shape != (src_ann.image.rows, src_ann.image.cols):
        raise FileError(src_ann_path, f"annotates a {src_ann.image.rows}x{src_ann.image.cols} "
                                      f"image; {Path(source_path).name} is "
                                      f"{source.shape[0]}x{source.shape[1]}")
    tgt = find_film_annotation(target_path, annotations_dir)
    existing = None if tgt is None else tgt[1]
    try:
        result = propose_annotation(
            source, src_ann, target, existing=existing, options=options,
            evidence=flag_evidence(source, src_ann, target, clinical=clinical))
    except ValueError as exc:
        raise FileError(target_path, str(exc)) from None
    return result, src_ann_path


# --------------------------------------------------------------------------- folder plan


@dataclass(frozen=True)
class FilmPair:
    """An unannotated ``target`` film and the annotated ``source`` film it gets its proposals
    from (same PatientID, nearest film date; ``days`` = target date - source date)."""

    source: str
    target: str
    patient_id: str
    days: int | None


@dataclass
class FolderPlan:
    """What :func:`plan_folder` found: the pairs, and films it cannot pair (with why)."""

    pairs: list[FilmPair] = field(default_factory=list)
    unpaired: list[tuple[str, str]] = field(default_factory=list)
    n_annotated: int = 0


def plan_folder(root: str | os.PathLike[str], *,
                annotations_dir: str | os.PathLike[str] | None = None) -> FolderPlan:
    """Pair each unannotated film of ``root`` with the annotated film of the same patient
    nearest in time (ties: the earlier film; unknown dates come last).

    Films are DICOM (PatientID and dates from the header only). Films without PatientID,
    patients without any annotated film and unreadable files are listed in ``unpaired``.
    """
    from spine_measure.io.scan import scan_folder
    from spine_measure.service import AnnotationFinder

    scan = scan_folder(root)
    plan = FolderPlan()
    for issue in scan.issues:
        if issue.stage == "read":
            plan.unpaired.append((str(issue.path), str(issue.reason)))
    finder = AnnotationFinder(annotations_dir)
    by_patient: dict[str, list[tuple[Any, bool]]] = {}
    for h in sorted(scan.images, key=lambda h: h.path):
        m = h.metadata
        ann = finder.find(h.path, sop_instance_uid=m.sop_instance_uid)
        if not m.patient_id:
            if ann is None:
                plan.unpaired.append((h.path, "no PatientID: cannot find the patient's "
                                              "other films"))
            continue
        by_patient.setdefault(m.patient_id, []).append((h, ann is not None))
    for pid in sorted(by_patient):
        films = by_patient[pid]
        sources = [h for h, annotated in films if annotated]
        plan.n_annotated += len(sources)
        for h, annotated in films:
            if annotated:
                continue
            if not sources:
                plan.unpaired.append((h.path, f"no annotated film of patient {pid}"))
                continue
            src, days = _nearest(h, sources)
            plan.pairs.append(FilmPair(src.path, h.path, pid, days))
    return plan


def _film_date(h: Any) -> dt.date | None:
    m = h.metadata
    return m.acquisition_date or m.study_date


def _nearest(target: Any, sources: Sequence[Any]) -> tuple[Any, int | None]:
    td = _film_date(target)

    def key(s: Any) -> tuple[int, int, str]:
        sd = _film_date(s)
        if td is None or sd is None:
            return (10**9, 0, s.path)
        return (abs((td - sd).days), (td - sd).days < 0, s.path)

    best = min(sources, key=key)
    sd = _film_date(best)
    return best, (None if td is None or sd is None else (td - sd).days)


# --------------------------------------------------------------------------- refine


@dataclass(frozen=True)
class RefineResult:
    """The refined annotation and one row per point tried:
    ``{"level", "point", "status" (refined / kept), "distance_px", "reason"}``."""

    annotation: Annotation
    rows: tuple[dict[str, Any], ...]

    @property
    def n_refined(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "refined")


def refine_annotation(radiograph: Any, annotation: Annotation, *, radius_px: float,
                      sigma_px: float = 1.5, levels: Iterable[str] | None = None
                      ) -> RefineResult:
    """Refine every corner and mid-endplate point (S1 excepted) of ``annotation``.

    A point that moves gets source ``refined`` and its vertebra becomes unconfirmed (a
    machine moved a point: a reader has to look again); a point the image gives no clear
    answer for stays where it is, with the reason in its row.
    """
    from spine_measure.landmarks import SpineLandmarks, Vertebra
    from spine_measure.propose.refine import refine_landmark

    img = radiograph.density
    wanted = set(annotation.landmarks.levels()) if levels is None else set(levels)
    rows: list[dict[str, Any]] = []
    verts = []
    review = dict(annotation.review)
    for v in annotation.landmarks:
        if v.level not in wanted or v.level == "S1":
            verts.append(v)
            continue
        pts = dict(v.points)
        moved: list[str] = []
        for name in list(v.points):
            r = refine_landmark(img, v.points, name, radius_px=radius_px, sigma_px=sigma_px)
            if r.ok and r.distance > 0:
                pts[name] = (round(r.point[0], 4), round(r.point[1], 4))
                moved.append(name)
                rows.append({"level": v.level, "point": name, "status": "refined",
                             "distance_px": round(r.distance, 3), "reason": ""})
            else:
                rows.append({"level": v.level, "point": name, "status": "kept",
                             "distance_px": 0.0, "reason": r.reason or ""})
        verts.append(Vertebra(v.level, v.view, pts, v.fractured, v.treated, v.excluded))
        if moved:
            old = annotation.review_of(v.level)
            src = {n: old.source(n) for n in v.points}
            src.update({n: "refined" for n in moved})
            review[v.level] = LevelReview(confirmed=False, point_source=src,
                                          confidence=old.confidence)
    landmarks = SpineLandmarks(annotation.view, tuple(verts))
    return RefineResult(annotation.replace(landmarks=landmarks, review=review), tuple(rows))
