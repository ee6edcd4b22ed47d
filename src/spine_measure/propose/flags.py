"""The flags of a proposed vertebra (``fractured``, ``treated``, ``excluded``).

A vertebra's flags are not a property of the image the landmarks are carried from: a pre-op
film's L1 is not ``treated``, the post-op film's is. :func:`propose_flags` decides them from
what is known about the two films (``docs/propagation.md``, *Flags*):

* **the films' order** (``days`` = target date - source date, from the DICOM dates): a
  fracture and a treatment persist, so flags are carried *forward* in time; *backward* (to an
  earlier film) a ``treated`` flag is not carried and ``fractured`` only on a treated
  vertebra (the fracture that was treated preceded the treatment);
* **cement seen in the body on the target film** (:func:`cement_in_body`): ``treated``;
* **the clinical table** (the patient's treated levels and procedure date, as ``batch
  --clinical`` reads it): ``treated`` on a film dated after the procedure, not before.

Every flag a machine sets is recorded with its reason (``LevelReview.flag_source``:
``propagated``, ``cement``, ``clinical``); the reader confirms it with the points. Whatever
cannot be decided is a note (``propagation.csv`` column ``flags_check``), never silent.

Pure: arrays, landmarks and dates in; no files, no SimpleITK.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_measure.landmarks import SpineLandmarks, Vertebra

__all__ = ["CEMENT_BODY_FRACTION", "FlagEvidence", "FlagProposal", "cement_in_body",
           "film_check", "propose_flags"]

CEMENT_BODY_FRACTION = 0.10
"""Cement counts as *in* a vertebra when the segmented cement covers at least this fraction of
its body polygon (on the sample films treated bodies are 36-51 % cement, every other body
0 %; a neighbour's leak into the disc stays outside the body)."""


@dataclass(frozen=True)
class FlagEvidence:
    """What is known about the two films besides their pixels.

    Parameters
    ----------
    days : int or None
        Target film date minus source film date (None: a date is missing).
    target_date : datetime.date or None
    procedure_date : datetime.date or None
        From the clinical table, else the source annotation.
    treated_levels : frozenset of str or None
        The patient's treated levels from the clinical table; None when the table is not
        given or does not list the patient with a level.
    """

    days: int | None = None
    target_date: dt.date | None = None
    procedure_date: dt.date | None = None
    treated_levels: frozenset[str] | None = None

    @property
    def direction(self) -> str:
        """``forward`` (the target is later), ``backward``, ``same`` (same day) or
        ``unknown``."""
        if self.days is None:
            return "unknown"
        return "forward" if self.days > 0 else "backward" if self.days < 0 else "same"

    @property
    def before_procedure(self) -> bool | None:
        """True when the target film is dated before the procedure, False after it, None when
        unknown or on the procedure day."""
        if self.target_date is None or self.procedure_date is None:
            return None
        if self.target_date == self.procedure_date:
            return None
        return self.target_date < self.procedure_date


@dataclass(frozen=True)
class FlagProposal:
    """The flags of one proposed vertebra, why a machine set each, and what to check."""

    fractured: bool
    treated: bool
    excluded: bool
    flag_source: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def apply(self, vertebra: Vertebra) -> Vertebra:
        """``vertebra`` with these flags (points and the reader's Genant fields kept)."""
        import dataclasses

        return dataclasses.replace(vertebra, fractured=self.fractured, treated=self.treated,
                                   excluded=self.excluded)

    @property
    def set_flags(self) -> str:
        """The flags set, comma-separated (the CSV's ``flags`` column)."""
        return ",".join(n for n in ("fractured", "treated", "excluded") if getattr(self, n))


def propose_flags(source: Vertebra, evidence: FlagEvidence, *,
                  cement_seen: bool | None = None) -> FlagProposal:
    """Decide the flags of ``source``'s vertebra on the target film (module docstring).

    Parameters
    ----------
    source : Vertebra
        The vertebra on the source film (its flags as the reader set them there).
    evidence : FlagEvidence
    cement_seen : bool or None
        Whether cement fills part of the body on the target (:func:`cement_in_body`); None
        when not looked for.

    Examples
    --------
    Pre-op -> post-op, the clinical table names L1 treated on 2024-03-01:

    >>> from spine_measure.landmarks import Vertebra
    >>> v = Vertebra("L1", "lateral", {"As": (0, 30), "Ai": (28, 30), "Ps": (0, 0),
    ...                                "Pi": (28, 0)}, fractured=True)
    >>> ev = FlagEvidence(days=5, target_date=dt.date(2024, 3, 2),
    ...                   procedure_date=dt.date(2024, 3, 1), treated_levels=frozenset({"L1"}))
    >>> p = propose_flags(v, ev, cement_seen=True)
    >>> p.fractured, p.treated, dict(p.flag_source)
    (True, True, {'fractured': 'propagated', 'treated': 'cement'})
    """
    direction = evidence.direction
    level = source.level
    src: dict[str, str] = {}
    notes: list[str] = []
    # fractured: persists forward; backward only with the treatment it led to
    fractured = False
    if source.fractured:
        if direction == "backward" and not source.treated:
            notes.append("fractured on the later source film: not carried back to this "
                         "earlier film; check")
        else:
            fractured = True
            src["fractured"] = "propagated"
    # treated: the image, then the clinical table, then the order of the films
    clinical = (None if evidence.treated_levels is None
                else level in evidence.treated_levels)
    before = evidence.before_procedure
    treated = False
    if cement_seen:
        treated = True
        src["treated"] = "cement"
        if clinical is False:
            notes.append("cement seen in the body, but the clinical table does not list "
                         f"{level} as treated; check")
        elif clinical and before:
            notes.append("cement seen in the body on a film dated before the procedure; "
                         "check the dates")
    elif clinical and before is False:
        treated = True
        src["treated"] = "clinical"
        if cement_seen is False:
            notes.append("treated in the clinical table, but no cement seen in the body; "
                         "check")
    elif source.treated and direction in ("forward", "same") and before is not True:
        treated = True
        src["treated"] = "propagated"
        if cement_seen is False:
            notes.append("treated on the earlier source film, but no cement seen in the "
                         "body; check")
    elif source.treated:
        if before:  # dated before the procedure: certainly not treated yet
            if direction != "backward":
                notes.append("treated on the source film, but this film is dated before "
                             "the procedure: not carried; check the dates")
        elif direction == "backward":
            notes.append("treated on the later source film: not carried back (no cement "
                         "seen on this film, procedure date unknown); check")
        else:  # order unknown: copied, and said so below
            treated = True
            src["treated"] = "propagated"
    elif clinical and before is None:
        notes.append("treated in the clinical table; whether this film is pre- or post-"
                     "procedure is unknown and no cement was found in the body: not set; "
                     "check")
    # excluded: the reader's choice for the vertebra; carried, and said so
    excluded = bool(source.excluded)
    if excluded:
        src["excluded"] = "propagated"
        notes.append("excluded on the source film: carried; check")
    if direction == "unknown" and "propagated" in src.values():
        notes.append("flags copied without knowing the films' order (a film date is "
                     "missing); check")
    return FlagProposal(fractured, treated, excluded, src, tuple(notes))


def film_check(sources: SpineLandmarks, proposals: Mapping[str, FlagProposal],
               evidence: FlagEvidence) -> str | None:
    """A film-level note when the treated level cannot be known: nothing is treated on the
    source film nor proposed treated on a later target, and nothing says the target precedes
    the procedure (e.g. pre-op -> post-op without cement seen and without a clinical table)."""
    if any(p.treated for p in proposals.values()) or any(v.treated for v in sources):
        return None
    if evidence.direction == "backward" or evidence.before_procedure:
        return None
    if evidence.treated_levels is not None and evidence.before_procedure is False:
        return None  # the table says which levels; none of them was proposed
    return ("no vertebra is treated on the source film and no cement was seen on this one: "
            "if this film is post-procedure, check the treated level")


def cement_in_body(density: Any, landmarks: SpineLandmarks, level: str,
                   spacing: tuple[float, float] | None, *,
                   min_fraction: float = CEMENT_BODY_FRACTION) -> bool | None:
    """Whether cement fills at least ``min_fraction`` of the body of ``level``.

    Runs the cement segmentation (:func:`spine_measure.cement.segment_cement`, whose presence
    test decides "cement found") with the proposed landmarks and measures the part of the
    mask inside the body polygon. None when the vertebra cannot be analysed (S1, body at the
    film's edge).
    """
    from spine_measure.cement.frame import CementError, fill_polygon
    from spine_measure.cement.segment import segment_cement

    if level == "S1":
        return None
    try:
        seg = segment_cement(density, landmarks, level, spacing)
    except (CementError, ValueError):
        return None
    if not seg.found:
        return False
    v = landmarks[level]
    names = ("As", "Ai", "Pi", "Ps") if v.view == "lateral" else ("SL", "IL", "IR", "SR")
    r0, r1, c0, c1 = seg.roi
    poly = np.array([v.point(n) for n in names], dtype=float) - (r0, c0)
    body = fill_polygon(poly, seg.roi_mask.shape)
    n = int(body.sum())
    return bool(n and (seg.roi_mask & body).sum() >= min_fraction * n)
