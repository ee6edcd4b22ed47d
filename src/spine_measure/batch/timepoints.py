"""Time points of the films of one patient (docs/batch.md).

Rules, in order:

1. A ``time_point`` in a film's annotation wins (a contradiction with the dates is reported).
2. With a procedure date ``P`` (clinical table, else annotations): a film dated before ``P``
   is ``preop``; a film dated ``P`` is ``postop`` when it shows a treated (cemented) vertebra,
   else ``preop``; of the films after ``P``, those of the earliest date within
   ``postop_window_days`` (default 14) are ``postop`` and every later one is ``followup``.
3. Without ``P``: the distinct film dates in order: the earliest is ``preop``, the second
   ``postop``, every later one ``followup``.

Per time point and view one film is used: the *latest* pre-op film, the *earliest* post-op
film, and all follow-ups in date order (the last one is "last follow-up"). Two candidate films
on the same date are a conflict: the first by path is used and the conflict reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FilmDate", "TimePointAssignment", "assign_time_points"]

TIME_POINTS = ("preop", "postop", "followup")


@dataclass(frozen=True)
class FilmDate:
    """What the rules need to know about one film."""

    key: str                 # sortable, unique (the film's relative path)
    date: dt.date | None
    override: str | None = None
    has_treated: bool = False
    view: str = "lateral"


@dataclass
class TimePointAssignment:
    """Result of :func:`assign_time_points`.

    ``time_point`` and ``source`` map every placed film key to its time point and to how it
    was decided (``"annotation"``, ``"procedure_date"``, ``"date_order"``); ``slots`` maps
    ``(time point, view)`` to the film key(s) used (``followup``: chronological list);
    ``notes`` lists ``(key, severity, reason)`` with severity ``"warning"`` (the film is used)
    or ``"skipped"`` (the film is not used).
    """

    time_point: dict[str, str] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    slots: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    notes: list[tuple[str, str, str]] = field(default_factory=list)

    def film(self, time_point: str, view: str = "lateral") -> str | None:
        """The film used for a pre-op / post-op slot, or the last follow-up."""
        keys = self.slots.get((time_point, view), [])
        if not keys:
            return None
        return keys[-1] if time_point == "followup" else keys[0]

    def followups(self, view: str = "lateral") -> list[str]:
        return list(self.slots.get(("followup", view), []))


def _by_dates(films: Sequence[FilmDate], procedure_date: dt.date | None,
              window: int) -> dict[str, tuple[str, str]]:
    dated = [f for f in films if f.date is not None]
    out: dict[str, tuple[str, str]] = {}
    if procedure_date is None:
        dates = sorted({f.date for f in dated})  # type: ignore[type-var]
        for f in dated:
            i = dates.index(f.date)  # type: ignore[arg-type]
            out[f.key] = (TIME_POINTS[min(i, 2)], "date_order")
        return out
    after = sorted({f.date for f in dated  # type: ignore[type-var]
                    if f.date > procedure_date  # type: ignore[operator]
                    or (f.date == procedure_date and f.has_treated)})
    first_after = after[0] if after else None
    if first_after is not None and (first_after - procedure_date).days > window:
        first_after = None
    for f in dated:
        if f.date < procedure_date or (f.date == procedure_date  # type: ignore[operator]
                                       and not f.has_treated):
            tp = "preop"
        elif f.date == first_after:
            tp = "postop"
        else:
            tp = "followup"
        out[f.key] = (tp, "procedure_date")
    return out


def assign_time_points(films: Sequence[FilmDate], procedure_date: dt.date | None = None, *,
                       postop_window_days: int = 14) -> TimePointAssignment:
    """Place every film of one patient at a time point (rules in the module docstring).

    >>> d = dt.date
    >>> a = assign_time_points([FilmDate("a", d(2024, 1, 1)), FilmDate("b", d(2024, 1, 3)),
    ...                         FilmDate("c", d(2024, 6, 1))], d(2024, 1, 2))
    >>> a.film("preop"), a.film("postop"), a.followups()
    ('a', 'b', ['c'])
    """
    res = TimePointAssignment()
    from_dates = _by_dates(films, procedure_date, postop_window_days)
    for f in sorted(films, key=lambda f: f.key):
        by_date = from_dates.get(f.key)
        if f.override is not None:
            res.time_point[f.key] = f.override
            res.source[f.key] = "annotation"
            if by_date is not None and by_date[0] != f.override:
                res.notes.append((f.key, "warning",
                                  f"conflicting time point: the annotation says {f.override}, "
                                  f"the dates say {by_date[0]} ({_why(by_date[1])}); the "
                                  "annotation wins"))
        elif by_date is not None:
            res.time_point[f.key], res.source[f.key] = by_date
        else:
            res.notes.append((f.key, "skipped",
                              "no date (AcquisitionDate, StudyDate, ContentDate all empty) and "
                              "no time_point in the annotation: cannot place the film"))
    if procedure_date is not None and any(tp == "followup" for tp in res.time_point.values()) \
            and not any(tp == "postop" for tp in res.time_point.values()):
        res.notes.append(("", "warning", f"no post-operative film within {postop_window_days} "
                                         "days of the procedure date"))
    date_of = {f.key: f.date for f in films}
    groups: dict[tuple[str, str], list[FilmDate]] = {}
    for f in films:
        if f.key in res.time_point:
            groups.setdefault((res.time_point[f.key], f.view), []).append(f)
    for (tp, view), members in sorted(groups.items()):
        far = dt.date.max
        members.sort(key=lambda f: (f.date or far, f.key))
        if tp == "followup":
            keys = [f.key for f in members]
            for a, b in zip(members, members[1:], strict=False):
                if a.date is not None and a.date == b.date:
                    res.notes.append((b.key, "warning",
                                      f"conflicting dates: follow-up films {a.key} and {b.key} "
                                      f"share the date {a.date}; ordered by path"))
            res.slots[(tp, view)] = keys
            continue
        chosen = members[-1] if tp == "preop" else members[0]
        same = [f for f in members if f.date == chosen.date and f is not chosen]
        if same and chosen.date is not None:
            chosen = min([chosen, *same], key=lambda f: f.key)
            for f in [m for m in members if m.date == chosen.date and m is not chosen]:
                res.notes.append((f.key, "skipped",
                                  f"conflicting dates: a second {tp} {view} film on "
                                  f"{date_of[f.key]}; {chosen.key} is used"))
        for f in members:
            if f is chosen or f.date == chosen.date:
                continue
            which = "later" if tp == "postop" else "earlier"
            res.notes.append((f.key, "skipped", f"{which} {tp} {view} film; the "
                                                f"{'earliest' if tp == 'postop' else 'latest'}"
                                                f" ({chosen.key}) is used"))
        res.slots[(tp, view)] = [chosen.key]
    return res


def _why(source: str) -> str:
    return {"procedure_date": "relative to the procedure date",
            "date_order": "by the order of the film dates"}.get(source, source)
