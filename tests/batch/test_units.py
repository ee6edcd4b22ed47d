"""Time points, pseudonyms and the clinical table, against hand-worked values."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from spine_measure.batch.clinical import read_clinical
from spine_measure.batch.pseudonym import pseudonym, resolve_key
from spine_measure.batch.timepoints import FilmDate, assign_time_points

D = dt.date


def test_pseudonym_is_hmac_sha256():
    expected = "P" + hmac.new(b"secret", b"SM001", hashlib.sha256).hexdigest()[:16]
    assert pseudonym("SM001", b"secret") == expected
    assert pseudonym("SM001", b"other") != expected


def test_generated_key_is_stored_outside_out_and_reused(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("SPINE_MEASURE_PSEUDONYM_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    out = tmp_path / "out"
    k1 = resolve_key(None, out)
    path = tmp_path / "cfg" / "spine_measure" / "pseudonym.key"
    assert (k1.source, k1.path) == ("generated", path)
    assert "generated one" in caplog.text and str(path) in caplog.text
    assert path.stat().st_mode & 0o777 == 0o600
    assert not out.exists()
    caplog.clear()
    k2 = resolve_key(None, out)
    assert (k2.key, k2.source) == (k1.key, "user_config") and len(k1.key) == 64
    assert "generated" not in caplog.text
    assert resolve_key("abc", out).key == b"abc"


def test_time_points_with_procedure_date():
    films = [FilmDate("a", D(2024, 1, 1)), FilmDate("b", D(2024, 1, 5)),
             FilmDate("c", D(2024, 1, 9)), FilmDate("d", D(2024, 1, 12)),
             FilmDate("e", D(2024, 8, 1))]
    a = assign_time_points(films, D(2024, 1, 8))
    # before P: a, b preop (latest b used); first date after P: c postop; later: follow-ups
    assert a.time_point == {"a": "preop", "b": "preop", "c": "postop", "d": "followup",
                            "e": "followup"}
    assert a.film("preop") == "b" and a.film("postop") == "c"
    assert a.followups() == ["d", "e"] and a.film("followup") == "e"
    assert any(k == "a" and sev == "skipped" and "earlier preop" in r for k, sev, r in a.notes)


def test_time_points_on_procedure_day_use_treated_flag():
    films = [FilmDate("a", D(2024, 1, 8)), FilmDate("b", D(2024, 1, 8), has_treated=True)]
    a = assign_time_points(films, D(2024, 1, 8))
    assert a.time_point == {"a": "preop", "b": "postop"}


def test_time_points_without_procedure_date_follow_date_order():
    films = [FilmDate("x", D(2024, 3, 1)), FilmDate("y", D(2024, 1, 1)),
             FilmDate("z", D(2024, 1, 2)), FilmDate("ap", D(2024, 1, 1), view="ap")]
    a = assign_time_points(films, None)
    assert a.time_point == {"y": "preop", "ap": "preop", "z": "postop", "x": "followup"}
    assert set(a.source.values()) == {"date_order"}
    assert a.film("preop", "ap") == "ap"


def test_override_wins_and_conflict_is_reported():
    films = [FilmDate("a", D(2024, 1, 1), override="postop"), FilmDate("b", D(2024, 1, 5))]
    a = assign_time_points(films, None)
    assert a.time_point["a"] == "postop" and a.source["a"] == "annotation"
    assert any("conflicting time point" in r for _k, _s, r in a.notes)


def test_missing_date_and_same_day_conflict_are_reported():
    films = [FilmDate("a", None), FilmDate("b", D(2024, 1, 1)), FilmDate("c", D(2024, 1, 1))]
    a = assign_time_points(films, None)
    assert "a" not in a.time_point
    assert ("a", "skipped") in {(k, s) for k, s, _r in a.notes}
    assert a.film("preop") == "b"
    assert any(k == "c" and "conflicting dates" in r for k, _s, r in a.notes)


def test_clinical_aliases_and_problems(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("Patient ID,Level,Age,BMI,procedure,procedure_date,cement volume,extra\n"
                 "A1,l1,70,22.5,pvp,2024-01-02,3.5,x\n"
                 "A2,,bad,20,pkp,20240105,,y\n"
                 "A1,L1,71,22,pvp,2024-01-02,3,z\n", encoding="utf-8")
    t = read_clinical(p)
    assert t.rows[("A1", "L1")] == {"age_years": 70.0, "bmi_kg_m2": 22.5, "procedure": "PVP",
                                    "procedure_date": D(2024, 1, 2), "cement_volume_ml": 3.5,
                                    "extra": "x"}
    assert t.rows[("A2", None)]["procedure_date"] == D(2024, 1, 5)
    assert t.rows[("A2", None)]["age_years"] is None
    assert t.lookup("A2", "T12") == (t.rows[("A2", None)], "patient")
    reasons = [p.message for p in t.problems]
    assert any("not a number" in r for r in reasons)
    assert any("second row" in r for r in reasons)
