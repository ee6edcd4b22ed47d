"""Flags of proposals: carried forward in time, not backward; cement seen on the target film
or the clinical table's treated level proposes ``treated``; what cannot be known is a note.
The chain: propagate pre-op -> post-op, then batch --accept-proposed measures the cement of the
treated vertebra the pre-op film did not flag."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import warnings
from pathlib import Path

import pytest

from spine_measure.cli import main
from spine_measure.io.annotation import LevelReview, load_annotation
from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.propose.flags import FlagEvidence, cement_in_body, film_check, propose_flags
from spine_measure.propose.review import confirm, move_point

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_dicoms"
PATIENTS = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())
BOX = {"As": (0.0, 30.0), "Ai": (28.0, 30.0), "Ps": (0.0, 0.0), "Pi": (28.0, 0.0)}
PROC = dt.date(2024, 3, 1)


def _sample(pid: str, tp: str):
    """A sample film (decoder warnings silenced) and its committed annotation (or None)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        film = load_radiograph(SAMPLE / pid / f"{pid}_{tp}.dcm")
    ann = SAMPLE / pid / f"{pid}_{tp}.sm.json"
    return film, load_annotation(ann) if ann.exists() else None


def _v(**flags) -> Vertebra:
    return Vertebra("L1", "lateral", BOX, **flags)


def _ev(days, target=None, levels=None, proc=PROC) -> FlagEvidence:
    return FlagEvidence(days=days, target_date=target, procedure_date=proc,
                        treated_levels=None if levels is None else frozenset(levels))


@pytest.mark.parametrize(("source", "evidence", "cement", "want", "sources", "note"), [
    # pre-op -> post-op: fractured carried; treated because cement fills the body
    (dict(fractured=True), _ev(2, PROC + dt.timedelta(1)), True, (True, True, False),
     {"fractured": "propagated", "treated": "cement"}, None),
    # ... no cement seen but the clinical table names the level, film after the procedure
    (dict(fractured=True), _ev(2, PROC + dt.timedelta(1), {"L1"}), False, (True, True, False),
     {"fractured": "propagated", "treated": "clinical"}, "no cement seen"),
    # post-op -> follow-up: both persist
    (dict(fractured=True, treated=True), _ev(90, PROC + dt.timedelta(91), proc=None), None,
     (True, True, False), {"fractured": "propagated", "treated": "propagated"}, None),
    # forward but the cement is not seen: carried, and said so
    (dict(treated=True), _ev(90, proc=None), False, (False, True, False),
     {"treated": "propagated"}, "no cement seen"),
    # post-op -> pre-op (dated before the procedure): not treated yet, the fracture was there
    (dict(fractured=True, treated=True), _ev(-2, PROC - dt.timedelta(1)), False,
     (True, False, False), {"fractured": "propagated"}, None),
    # ... procedure date unknown: not carried back, and said so
    (dict(fractured=True, treated=True), _ev(-2, proc=None), False, (True, False, False),
     {"fractured": "propagated"}, "not carried back"),
    # follow-up -> post-op: a new (untreated) fracture is not carried back
    (dict(fractured=True), _ev(-90, proc=None), None, (False, False, False), {},
     "not carried back"),
    # no dates: copied, and said so
    (dict(fractured=True, treated=True), _ev(None, proc=None), None, (True, True, False),
     {"fractured": "propagated", "treated": "propagated"}, "order"),
    # cement where the clinical table says another level was treated
    (dict(), _ev(2, PROC + dt.timedelta(1), {"L2"}), True, (False, True, False),
     {"treated": "cement"}, "does not list L1"),
    # treated on the clinical table, but the film's side of the procedure is unknown
    (dict(), _ev(2, None, {"L1"}), False, (False, False, False), {}, "unknown"),
    # excluded is the reader's choice for the vertebra: carried, said so
    (dict(excluded=True), _ev(-5, proc=None), None, (False, False, True),
     {"excluded": "propagated"}, "excluded"),
])
def test_flag_rules(source, evidence, cement, want, sources, note):
    p = propose_flags(_v(**source), evidence, cement_seen=cement)
    assert (p.fractured, p.treated, p.excluded) == want
    assert dict(p.flag_source) == sources
    text = "; ".join(p.notes)
    assert (note in text) if note else not text, text
    v = p.apply(_v(**source))
    assert (v.fractured, v.treated, v.excluded) == want and dict(v.points) == dict(BOX)


def test_film_note_when_the_treated_level_cannot_be_known():
    src = SpineLandmarks("lateral", (_v(fractured=True),))
    untreated = {"L1": propose_flags(src["L1"], _ev(2, proc=None), cement_seen=False)}
    assert "check the treated level" in film_check(src, untreated, _ev(2, proc=None))
    # a film dated before the procedure, or a backward step, needs no such note
    assert film_check(src, untreated, _ev(2, PROC - dt.timedelta(3))) is None
    assert film_check(src, untreated, _ev(-2, proc=None)) is None
    treated = {"L1": propose_flags(src["L1"], _ev(2, proc=None), cement_seen=True)}
    assert film_check(src, treated, _ev(2, proc=None)) is None


def test_cement_in_body_finds_exactly_the_treated_vertebrae():
    """On every lateral sample film (truth landmarks): cement in the treated body on post-op
    and follow-up films, nowhere on pre-op films, never in a neighbour."""
    n_treated = 0
    for pid in PATIENTS:
        for tp in ("preop", "postop", "followup"):
            truth = json.loads((SAMPLE / pid / f"{pid}_{tp}.truth.json").read_text())
            if truth["view"] != "lateral":
                continue
            film, _ = _sample(pid, tp)
            lm = SpineLandmarks.from_dict(truth)
            seen = {v.level for v in lm if cement_in_body(film.density, lm, v.level,
                                                          film.spacing)}
            want = {v.level for v in lm if v.treated} if tp != "preop" else set()
            assert seen == want, (pid, tp)
            n_treated += len(want)
    assert n_treated == 2 * len(PATIENTS)
    assert cement_in_body(film.density, lm, "S1" if "S1" in lm else lm.levels()[0],
                          film.spacing) in (None, False)


def test_flag_source_round_trips_and_follows_the_flags():
    from spine_measure.io.annotation import (
        Annotation,
        AnnotationError,
        AnnotationFileError,
        ImageRef,
        annotation_from_json,
        annotation_to_json,
    )

    ann = Annotation(ImageRef(rows=100, cols=100, pixel_sha256="0" * 64),
                     SpineLandmarks("lateral", (_v(fractured=True, treated=True),)),
                     review={"L1": LevelReview(confirmed=False,
                                               point_source=dict.fromkeys(BOX, "propagated"),
                                               flag_source={"treated": "cement",
                                                            "fractured": "propagated"})})
    text = annotation_to_json(ann)
    assert '"flag_source": {"fractured": "propagated", "treated": "cement"}' in text
    back = annotation_from_json(text)
    assert dict(back.review_of("L1").flag_source) == {"fractured": "propagated",
                                                      "treated": "cement"}
    # confirming keeps the record (like the point sources); a drag keeps it too
    done = move_point(confirm(back, "L1"), "L1", "As", (1.0, 30.0))
    assert done.review_of("L1").confirmed
    assert dict(done.review_of("L1").flag_source) == {"fractured": "propagated",
                                                      "treated": "cement"}
    # a flag the reader clears loses its machine record
    cleared = done.replace(landmarks=SpineLandmarks("lateral", (_v(fractured=True),)))
    assert dict(cleared.review_of("L1").flag_source) == {"fractured": "propagated"}
    with pytest.raises(AnnotationError, match="flag_source"):
        LevelReview(flag_source={"treated": "guess"})
    bad = json.loads(text)
    bad["landmarks"]["vertebrae"][0]["flag_source"] = {"broken": "cement"}
    with pytest.raises(AnnotationFileError, match=r"flag_source: \"broken\" is not one of"):
        annotation_from_json(json.dumps(bad))


def _preop_read(tmp_path: Path, pid: str) -> Path:
    """``tmp_path/films``: the patient's pre-op film with its reading, and the post-op film
    without one (what a study has before propagation)."""
    films = tmp_path / "films"
    films.mkdir()
    for tp in ("preop", "postop"):
        shutil.copy(SAMPLE / pid / f"{pid}_{tp}.dcm", films)
    shutil.copy(SAMPLE / pid / f"{pid}_preop.sm.json", films)
    return films


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_preop_to_postop_proposes_the_treated_level_and_batch_measures_its_cement(
        tmp_path, capsys, monkeypatch):
    """The pre-op reading flags L1 fractured, not treated; the post-op proposal of L1 is
    treated (cement seen), and batch --accept-proposed gives its cement features, equal to the
    post-op film's truth."""
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")
    films = _preop_read(tmp_path, "SM001")
    pre = load_annotation(films / "SM001_preop.sm.json").landmarks["L1"]
    assert pre.fractured and not pre.treated
    out = tmp_path / "proposed"
    rc = main(["propagate", str(films), "--out", str(out), "--no-progress"])
    assert rc == 0
    assert "; flags: L1 fractured,treated" in capsys.readouterr().err
    rows = {r["level"]: r for r in _rows(out / "propagation.csv")}
    assert rows["L1"]["flags"] == "fractured,treated"
    assert all(r["flags"] == "" for lv, r in rows.items() if lv != "L1")
    assert all(r["flags_check"] == "" for r in rows.values())
    ann = load_annotation(out / "SM001_postop.sm.json")
    assert ann.landmarks["L1"].treated and ann.landmarks["L1"].fractured
    assert dict(ann.review_of("L1").flag_source) == {"fractured": "propagated",
                                                     "treated": "cement"}
    assert not any(v.treated for v in ann.landmarks if v.level != "L1")
    capsys.readouterr()
    # by default the unconfirmed proposal is not measured: no cement features
    assert main(["batch", str(films), "--annotations", str(out), "--out", str(tmp_path / "r0"),
                 "--no-progress"]) in (0, 1)
    wide0 = _rows(tmp_path / "r0" / "features_wide.csv")
    assert all(r.get("cement_found_postop", "") == "" for r in wide0)
    # --accept-proposed: the treated vertebra's cement, as the truth has it
    assert main(["batch", str(films), "--annotations", str(out), "--out", str(tmp_path / "r1"),
                 "--no-progress", "--accept-proposed"]) in (0, 1)
    (row,) = _rows(tmp_path / "r1" / "features_wide.csv")
    truth = json.loads((SAMPLE / "SM001" / "SM001_postop.truth.json").read_text())
    cem = truth["cement"]
    assert row["level"] == cem["level"] == "L1"
    assert row["cement_found_postop"] == "true"
    assert row["cement_distribution_postop"] == cem["distribution"]
    both = cem["contacts_superior"] and cem["contacts_inferior"]
    assert row["cement_contacts_both_postop"] == str(both).lower()
    assert row["cement_leak_postop"] == str(bool(cem["leaks"])).lower()
    from skimage.io import imread

    mask = imread(SAMPLE / "SM001" / cem["mask"]) > 0
    sp = truth["calibration"]["row_mm"] * truth["calibration"]["col_mm"]
    assert float(row["cement_area_mm2_postop"]) == pytest.approx(mask.sum() * sp, rel=0.1)
    long = [r for r in _rows(tmp_path / "r1" / "measurements_long.csv")
            if r["time_point"] == "postop" and r["level"] == "L1"]
    assert long and all(r["treated"] == "true" and r["landmark_source"] == "propagated"
                        for r in long)


def test_postop_to_preop_does_not_carry_the_treatment_back():
    from spine_measure.propose.files import flag_evidence, propose_annotation

    post, src = _sample("SM001", "postop")
    pre, _ = _sample("SM001", "preop")
    ev = flag_evidence(post, src, pre)
    assert ev.days is not None and ev.days < 0 and ev.before_procedure
    # L1 with both neighbours: each carries the endplate next to it (with T12 alone, L1's
    # inferior endplate is not found on the pre-op film and L1 is not proposed)
    result = propose_annotation(post, src, pre, levels=["T12", "L1", "L2"])
    l1 = result.annotation.landmarks["L1"]
    assert l1.fractured and not l1.treated
    rows = {r["level"]: r for r in result.rows}
    assert rows["L1"]["flags"] == "fractured" and rows["L1"]["flags_check"] == ""


def test_film_note_is_printed_and_clinical_option_is_checked(tmp_path, capsys):
    """SM005's treated L4 cannot be propagated from its pre-op film (its restored body does
    not match): nothing is treated on the proposal, and the summary says to check it."""
    films = _preop_read(tmp_path, "SM005")
    out = tmp_path / "p"
    rc = main(["propagate", str(films), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    rows = _rows(out / "propagation.csv")
    assert rc == 1 and any(r["status"] == "failed" and r["level"] == "L4" for r in rows)
    assert err.count("check the treated level") == 1, err
    assert all("check the treated level" in r["flags_check"] for r in rows
               if r["status"] == "proposed")
    # with the clinical table the treated level is known (L4, not proposed: annotate it)
    rc = main(["propagate", str(films), "--out", str(tmp_path / "p2"), "--no-progress",
               "--clinical", str(SAMPLE / "clinical.csv")])
    assert rc == 1 and "check the treated level" not in capsys.readouterr().err
    # a clinical table that cannot be used: one line, usage error
    bad = tmp_path / "bad.csv"
    bad.write_text("name,age\nx,3\n")
    assert main(["propagate", str(films), "--out", str(tmp_path / "p3"), "--no-progress",
                 "--clinical", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: --clinical:") and "bad.csv" in err[0]
    assert main(["propagate", str(films), "--out", str(tmp_path / "p3"), "--no-progress",
                 "--clinical", str(tmp_path / "nope.csv")]) == 2
    assert "clinical table not found" in capsys.readouterr().err


def test_flags_check_column_and_points_unchanged_by_flags():
    """The flags never move a point: the proposal's points equal the registration's."""
    from spine_measure.propose import propagate_landmarks
    from spine_measure.propose.files import _scale_guess, propose_annotation

    pre, src = _sample("SM003", "preop")
    post, _ = _sample("SM003", "postop")
    result = propose_annotation(pre, src, post, levels=["L1", "L2"])
    prop = propagate_landmarks(pre.density, src.confirmed_landmarks(), post.density,
                               levels=["L1", "L2"], scale_guess=_scale_guess(pre, post))
    for p in prop.proposed():
        got = result.annotation.landmarks[p.level]
        assert [tuple(got.point(n)) for n in p.points] == [p.points[n] for n in p.points]
    assert result.annotation.landmarks["L2"].treated
    assert not result.annotation.landmarks["L1"].treated


def test_every_sample_patient_preop_to_postop_gets_its_treated_level():
    """On every sample patient, the pre-op reading (treated level flagged fractured only)
    propagated to the post-op film: each proposed vertebra is treated exactly when the
    post-op truth says so; a treated level that could not be proposed leaves the film note."""
    from spine_measure.propose.files import propose_annotation

    n_treated = 0
    for pid in PATIENTS:
        pre, src = _sample(pid, "preop")
        post, _ = _sample(pid, "postop")
        assert src is not None and not any(v.treated for v in src.landmarks)
        truth = SpineLandmarks.from_dict(json.loads(
            (SAMPLE / pid / f"{pid}_postop.truth.json").read_text()))
        result = propose_annotation(pre, src, post)
        got = {v.level: v.treated for v in result.annotation.landmarks}
        assert got == {lv: truth[lv].treated for lv in got}, pid
        n_treated += sum(got.values())
        rows = {r["level"]: r for r in result.rows}
        (level,) = [v.level for v in truth if v.treated]
        if rows[level]["status"] == "failed":
            assert all("check the treated level" in r["flags_check"] for r in rows.values()
                       if r["status"] == "proposed"), pid
    assert n_treated >= len(PATIENTS) - 2  # SM005 L4, SM007 L1: not proposed (propagation.md)


def test_flags_doctest():
    import doctest

    from spine_measure.propose import flags

    result = doctest.testmod(flags)
    assert result.failed == 0 and result.attempted > 0
