"""The clinical table: every problem one errors.csv row naming file, line, column and value;
a bad value costs only itself; columns named like measured ones are refused.

The batch tests run the real command on the bundled ``sample_dicoms`` and compare with a run
on the committed ``clinical.csv``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_measure.batch import pseudonym
from spine_measure.batch.clinical import RULES, ClinicalTableError, read_clinical
from spine_measure.batch.tables import RESERVED_SUFFIXES, reserved_columns
from spine_measure.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicoms"
CLINICAL = SAMPLE / "clinical.csv"
KEY = "clin-key"
HEADER = ("patient_id,level,age,sex,bmi,bmd_t_score,procedure,approach,cement_volume_ml,"
          "procedure_date,anti_osteoporosis_therapy,brace")
GOOD = "A1,L1,72,F,23.4,-3.1,PVP,bilateral,4.5,2023-03-15,yes,no"


def _table(tmp_path: Path, *lines: str, name: str = "c.csv", header: str = HEADER):
    p = tmp_path / name
    p.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return p, read_clinical(p)


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(("column", "value", "canonical", "fragment"), [
    ("procedure", "XYZ", "procedure", "is not a valid code (accepted: PVP or PKP)"),
    ("anti_osteoporosis_therapy", "maybe", "anti_osteoporosis_therapy",
     "is not a valid code (accepted: yes or no)"),
    ("brace", "2", "brace", "is not a valid code (accepted: yes or no)"),
    ("sex", "X", "sex", "is not a valid code (accepted: M or F)"),
    ("approach", "lateral", "approach", "accepted: unilateral or bilateral"),
    ("cement_volume_ml", "-1", "cement_volume_ml", "outside the accepted range (above 0 and "
                                                   "at most 50 ml)"),
    ("cement_volume_ml", "0", "cement_volume_ml", "outside the accepted range"),
    ("cement_volume_ml", "1e308", "cement_volume_ml", "outside the accepted range"),
    ("cement_volume_ml", "-nan", "cement_volume_ml", "is not a number"),
    ("bmd_t_score", "-99", "bmd_t_score", "outside the accepted range (-10 to 10 SD)"),
    ("age", "inf", "age_years", "is not a finite number (accepted: 0 to 120 years)"),
    ("age", "1_000", "age_years", "is not a number"),
    ("age", "\u0667\u0660", "age_years", "is not a number"),
    ("bmi", "1e400", "bmi_kg_m2", "is not a finite number (accepted: 10 to 80 kg/m2)"),
    ("procedure_date", "2023-13-02", "procedure_date", "is not a valid calendar date"),
    ("procedure_date", "15.03.2023", "procedure_date", "is not a date (YYYY-MM-DD"),
    ("procedure_date", "0001-01-01", "procedure_date", "outside the accepted years 1980"),
])
def test_bad_value_is_one_problem_with_line_column_value(tmp_path, column, value, canonical,
                                                         fragment):
    cols = HEADER.split(",")
    row = GOOD.split(",")
    row[cols.index(column)] = value
    _p, t = _table(tmp_path, GOOD.replace("A1", "A0"), ",".join(row))
    assert len(t.problems) == 1
    pr = t.problems[0]
    assert (pr.lines, pr.column, pr.value, pr.status) == ((3,), column, value, "failed")
    assert str(pr).startswith(f'{tmp_path / "c.csv"}:3: column "{column}": value "{value}" ')
    assert fragment in pr.message and pr.message.endswith("left empty")
    got = t.rows[("A1", "L1")]
    assert got[canonical] is None
    # the rest of the row is used
    others = {k: v for k, v in got.items() if k != canonical}
    assert others == {k: v for k, v in t.rows[("A0", "L1")].items() if k != canonical}


def test_codes_are_normalised_and_missing_markers_are_empty(tmp_path):
    _p, t = _table(tmp_path, "A1,l1,70,male,22,-2,vertebroplasty,Bipedicular,3,20240105,Y,0",
                   "A2,,NA,female,n/a,,BKP,UNILATERAL,NaN,2024/01/05,true,No")
    assert t.rows[("A1", "L1")] == {
        "age_years": 70.0, "sex": "M", "bmi_kg_m2": 22.0, "bmd_t_score": -2.0,
        "procedure": "PVP", "approach": "bilateral", "cement_volume_ml": 3.0,
        "procedure_date": dt.date(2024, 1, 5), "anti_osteoporosis_therapy": True,
        "brace": False}
    a2 = t.rows[("A2", None)]
    assert (a2["age_years"], a2["bmi_kg_m2"], a2["cement_volume_ml"]) == (None, None, None)
    assert (a2["sex"], a2["procedure"], a2["approach"]) == ("F", "PKP", "unilateral")
    assert a2["procedure_date"] == dt.date(2024, 1, 5) and a2["brace"] is False
    assert t.problems == []


@settings(max_examples=60, deadline=None)
@given(col=st.sampled_from(["age_years", "bmi_kg_m2", "bmd_t_score", "cement_volume_ml"]),
       x=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_numbers_accepted_exactly_inside_their_range(tmp_path_factory, col, x):
    lo, hi = RULES[col][1]
    inside = lo < x <= hi if col == "cement_volume_ml" else lo <= x <= hi
    header = f"patient_id,{col}"
    d = tmp_path_factory.mktemp("h")
    _p, t = _table(d, f"A1,{x!r}", header=header)
    if inside:
        assert t.rows[("A1", None)][col] == x and not t.problems
    else:
        assert t.rows[("A1", None)][col] is None
        assert [p.value for p in t.problems] == [repr(x)]


# ----------------------------------------------------------------------------- rows


def test_unbalanced_quote_is_reported_with_the_lines_it_swallowed(tmp_path):
    _p, t = _table(tmp_path, GOOD,
                   'A2,L2,"66,M,27.9,-2.6,PVP,unilateral,3.0,2023-09-22,yes,no',
                   "A3,L3,81,F,19.8,-4.0,PKP,bilateral,5.2,2024-01-09,no,yes",
                   'A4,L4,69,F,25.6,-2.9,PVP,bilateral,4.0,2024-02-28,yes,no"',
                   "A5,L5,62,M,29.4,-2.4,PKP,bilateral,4.8,2024-05-22,yes,no")
    assert sorted(t.rows) == [("A1", "L1"), ("A5", "L5")]
    [pr] = t.problems
    assert pr.lines == (3, 4, 5) and pr.where.endswith("c.csv:3-5")
    assert "runs over lines 3 to 5" in pr.message and "quote" in pr.message


def test_quote_open_to_the_end_of_the_file(tmp_path):
    _p, t = _table(tmp_path, GOOD, 'A2,L2,66,M,27.9,"-2.6,PVP', "A3,L3,81,F")
    assert list(t.rows) == [("A1", "L1")]
    assert [p.lines for p in t.problems] == [(3, 4)]


def test_field_counts_duplicates_and_missing_ids(tmp_path):
    _p, t = _table(tmp_path, GOOD + ",,",                    # trailing empty fields: fine
                   "A2,L2,70",                               # too few
                   GOOD.replace("72", "73"),                 # second row of A1 L1
                   ",L1,70,F,23,-3,PVP,bilateral,4,2023-03-15,yes,no")
    assert list(t.rows) == [("A1", "L1")] and t.rows[("A1", "L1")]["age_years"] == 72.0
    by_line = {p.lines: p.message for p in t.problems}
    assert "has 3 fields, the header 12" in by_line[(3,)]
    assert "second row for the same patient and level L1 (first on line 2)" in by_line[(4,)]
    assert by_line[(5,)] == "no patient id; the row is ignored"


def test_level_must_be_a_level(tmp_path):
    _p, t = _table(tmp_path, GOOD.replace(",L1,", ",L9,"))
    assert t.rows == {}
    assert str(t.problems[0]).endswith('column "level": value "L9" is not a vertebral level '
                                       "(a vertebral level C1 ... S1); the row is ignored")


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_files_are_read(tmp_path, delimiter):
    line = GOOD.replace("23.4", "23,4") if delimiter == ";" else GOOD
    _p, t = _table(tmp_path, line.replace(",", delimiter).replace("23;4", "23,4"),
                   header=HEADER.replace(",", delimiter))
    assert t.delimiter == delimiter and not t.problems
    assert t.rows[("A1", "L1")]["bmi_kg_m2"] == 23.4


def test_file_level_problems_are_one_line(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes((HEADER + "\nM\xfcller,L1\n").encode("latin-1"))
    with pytest.raises(ClinicalTableError) as e:
        read_clinical(p)
    assert str(e.value) == (f"{p}: not UTF-8 text (byte 0xfc at position {len(HEADER) + 2}); "
                            "save it as CSV UTF-8")
    p.write_text("name;age\nx;1\n", encoding="utf-8")
    with pytest.raises(ClinicalTableError, match=r"no patient id column .* header line 1; "
                                                 "got name, age"):
        read_clinical(p)
    p.write_text("patient_id,age,Age years\nx,1,2\n", encoding="utf-8")
    with pytest.raises(ClinicalTableError, match="'age' and 'Age years' are the same column"):
        read_clinical(p)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_pipe_or_folder_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "clinical.csv"
    os.mkfifo(fifo)
    for p in (fifo, tmp_path):
        with pytest.raises(ClinicalTableError, match="not a regular file"):
            read_clinical(p)


def test_crlf_and_bom_files_read_like_plain_ones(tmp_path):
    p = tmp_path / "crlf.csv"
    p.write_bytes(("\ufeff" + HEADER + "\r\n" + GOOD + "\r\n").encode("utf-8"))
    t = read_clinical(p)
    assert not t.problems and t.rows[("A1", "L1")]["age_years"] == 72.0


# ----------------------------------------------------------------------------- collisions


def test_reserved_names_cover_every_measured_column():
    reserved = reserved_columns()
    for name in ("ha_mm_preop", "recompression", "ivc", "avhr_recovery_pct",
                 "sop_instance_uid_preop", "clinical_match", "patient_pseudo_id",
                 "reasons", "ha_mm", "coronal_cobb_angle_deg_ap"):
        assert name in reserved or name.endswith(RESERVED_SUFFIXES), name
    for name in ("age_years", "sex", "cement_volume_ml", "procedure_date", "level",
                 "patient_id", "smoking"):
        assert name not in reserved


@pytest.mark.parametrize("name", ["ha_mm_preop", "recompression", "ivc", "avhr_recovery_pct",
                                  "sop_instance_uid_preop", "clinical_match",
                                  "patient_pseudo_id", "npec_postop", "HA mm preop"])
def test_batch_refuses_a_clinical_column_named_like_a_measured_one(tmp_path, capsys, name):
    rows = CLINICAL.read_text().splitlines()
    table = tmp_path / "clinical.csv"
    table.write_text("\n".join([rows[0] + f",{name}"] + [r + ",1" for r in rows[1:]]) + "\n")
    out = tmp_path / "out"
    code = main(["batch", str(SAMPLE), "--out", str(out), "--clinical", str(table),
                 "--pseudonym-key", KEY, "--no-progress", "--no-overlays"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert err.startswith(f'Error: {table}: column(s) "{name}"')
    assert "never replaces or duplicates a measurement: rename it" in err
    assert "Traceback" not in err and not out.exists()


# ----------------------------------------------------------------------------- the batch


def _read(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    code = main(["batch", str(SAMPLE), "--out", str(out), "--clinical", str(CLINICAL),
                 "--pseudonym-key", KEY, "--no-progress", "--no-overlays"])
    assert code == 0
    return out


def test_bad_clinical_values_cost_only_themselves(tmp_path, clean_run, capsys):
    lines = CLINICAL.read_text().splitlines()
    cols = lines[0].split(",")

    def edit(i: int, **values: str) -> None:
        row = lines[i].split(",")
        for k, v in values.items():
            row[cols.index(k)] = v
        lines[i] = ",".join(row)

    edit(1, procedure="XYZ", cement_volume_ml="-1", anti_osteoporosis_therapy="maybe")
    edit(2, age="inf", bmi="1e400", bmd_t_score="-99", procedure_date="2023-02-30")
    edit(3, patient_id="sm003")                                   # case only
    lines[4] = lines[4].replace(",-4.0,", ',"-4.0,')              # swallows SM005's row
    lines[5] += '"'
    lines.append("SM999,L1,70,F,22,-3,PVP,bilateral,3,2024-01-01,no,no")   # no films
    table = tmp_path / "clinical.csv"
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = main(["batch", str(SAMPLE), "--out", str(out), "--clinical", str(table),
                 "--pseudonym-key", KEY, "--no-progress", "--no-overlays"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    flat = " ".join(err.split())
    assert "clinical table: 9 value(s) or row(s) rejected" in flat
    # the summary on the terminal shows the file, line and the value itself
    # (compared without blanks: the terminal may wrap a long path anywhere)
    shown = (f'{table}:3: column "procedure_date": value "2023-02-30" is not a valid calendar '
             "date (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)")
    assert "".join(shown.split()) in "".join(err.split())
    errors = [r for r in _read(out / "errors.csv") if r["stage"] == "clinical"]
    got = {(r["file"], r["status"], r["reason"]) for r in errors}
    t = str(table)
    p = {pid: pseudonym(pid, KEY.encode()) for pid in ("SM003", "sm003", "SM004", "SM005",
                                                       "SM999")}
    ranges = {"procedure": "is not a valid code (accepted: PVP or PKP); left empty",
              "cement_volume_ml": "is outside the accepted range (above 0 and at most 50 ml); "
                                  "left empty",
              "anti_osteoporosis_therapy": "is not a valid code (accepted: yes or no); left "
                                           "empty",
              "age": "is not a finite number (accepted: 0 to 120 years); left empty",
              "bmi": "is not a finite number (accepted: 10 to 80 kg/m2); left empty",
              "bmd_t_score": "is outside the accepted range (-10 to 10 SD); left empty",
              "procedure_date": "is not a valid calendar date (YYYY-MM-DD, YYYY/MM/DD or "
                                "YYYYMMDD); left empty"}
    expected = {
        (f"{t}:2", "failed", f'column "procedure": value "XYZ" {ranges["procedure"]}'),
        (f"{t}:2", "failed", f'column "cement_volume_ml": value "-1" '
                             f'{ranges["cement_volume_ml"]}'),
        (f"{t}:2", "failed", f'column "anti_osteoporosis_therapy": value "maybe" '
                             f'{ranges["anti_osteoporosis_therapy"]}'),
        (f"{t}:3", "failed", f'column "age": value "inf" {ranges["age"]}'),
        (f"{t}:3", "failed", f'column "bmi": value "1e400" {ranges["bmi"]}'),
        (f"{t}:3", "failed", f'column "bmd_t_score": value "-99" {ranges["bmd_t_score"]}'),
        (f"{t}:3", "failed", f'column "procedure_date": value "2023-02-30" '
                             f'{ranges["procedure_date"]}'),
        (f"{t}:4", "failed", f"patient {p['sm003']} (pseudonym of its id) matches no measured "
                             "patient, but its id differs only in case or leading zeros from "
                             f"that of measured patient {p['SM003']}: not attached; write the "
                             "id exactly as the films' PatientID"),
        (f"{t}:5-6", "failed", "one row runs over lines 5 to 6: a quote (\") opened and not "
                               "closed, or a value with a line break; the row is ignored "
                               "(values may not contain line breaks)"),
        (f"{t}:9", "warning", f"patient {p['SM999']} (pseudonym of its id) level L1 matches no "
                              "measured patient (no measured film has this PatientID); the "
                              "row is not used"),
    }
    for pid, level in (("SM004", "L3"), ("SM005", "L4")):
        expected.add((f"{pid}/{pid}_followup.dcm", "warning",
                      f"patient {p[pid]} level {level}: no row in the clinical table; its "
                      "clinical columns are empty (clinical_match = none)"))
    expected.add(("SM003/SM003_followup.dcm", "warning",
                  f"patient {p['SM003']} level L2: no row in the clinical table (line 4 has "
                  "an id that differs only in case or leading zeros); its clinical columns "
                  "are empty (clinical_match = none)"))
    assert got == expected
    # the films' measurements are those of the clean run; only clinical values differ
    clean = {(r["patient_pseudo_id"], r["level"]): r for r in _read(clean_run /
                                                                      "features_wide.csv")}
    bad = {(r["patient_pseudo_id"], r["level"]): r for r in _read(out / "features_wide.csv")}
    assert clean.keys() == bad.keys()
    clinical_cols = {"age_years", "sex", "bmi_kg_m2", "bmd_t_score", "procedure", "approach",
                     "cement_volume_ml", "anti_osteoporosis_therapy", "brace",
                     "clinical_match", "procedure_date", "procedure_date_source",
                     "vertebral_body_volume_ml", "cement_volume_ratio_pct",
                     "cement_volume_ratio_high", "reasons"}
    for k in clean:
        for c, v in clean[k].items():
            if c not in clinical_cols:
                assert bad[k][c] == v, (k, c)
    sm001 = bad[(pseudonym("SM001", KEY.encode()), "L1")]
    assert (sm001["procedure"], sm001["cement_volume_ml"],
            sm001["anti_osteoporosis_therapy"]) == ("", "", "")
    assert (sm001["age_years"], sm001["sex"], sm001["brace"]) == ("72.0", "F", "true")
    assert sm001["cement_volume_ratio_pct"] == ""
    sm002 = bad[(pseudonym("SM002", KEY.encode()), "T12")]
    assert (sm002["age_years"], sm002["bmi_kg_m2"], sm002["bmd_t_score"]) == ("", "", "")
    assert sm002["procedure"] == "PKP" and sm002["clinical_match"] == "patient_level"
    # the date came from the annotation once the clinical one was rejected
    assert sm002["procedure_date_source"] == "annotation"
    for pid, level in (("SM003", "L2"), ("SM004", "L3"), ("SM005", "L4")):
        row = bad[(pseudonym(pid, KEY.encode()), level)]
        assert row["clinical_match"] == "none" and row["age_years"] == ""
    # fixed table, same command: films from the journal, tables as from a clean run
    table.write_bytes(CLINICAL.read_bytes())
    code = main(["batch", str(SAMPLE), "--out", str(out), "--clinical", str(table),
                 "--pseudonym-key", KEY, "--no-progress", "--no-overlays"])
    assert code == 0
    assert "from journal: 22" in capsys.readouterr().err
    for name in ("features_wide.csv", "errors.csv", "measurements_long.csv"):
        assert (out / name).read_bytes() == (clean_run / name).read_bytes(), name


def test_clean_sample_table_gives_no_clinical_rows_and_flags(clean_run):
    assert [r for r in _read(clean_run / "errors.csv") if r["stage"] == "clinical"] == []
    rows = _read(clean_run / "features_wide.csv")
    assert {r["anti_osteoporosis_therapy"] for r in rows} == {"true", "false"}
    assert {r["sex"] for r in rows} == {"F", "M"}
    assert all(r["clinical_match"] == "patient_level" for r in rows)
    assert all(math.isfinite(float(r["cement_volume_ml"])) for r in rows)


def test_identifiers_name_the_real_ids(tmp_path):
    lines = CLINICAL.read_text().splitlines() + ["SM999,,70,F,22,-3,PVP,bilateral,3,,no,no"]
    table = tmp_path / "clinical.csv"
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = main(["batch", str(SAMPLE / "SM001"), "--out", str(out), "--clinical", str(table),
                 "--pseudonym-key", KEY, "--no-progress", "--no-overlays",
                 "--include-identifiers"])
    assert code == 0
    reasons = {r["reason"] for r in _read(out / "errors.csv") if r["stage"] == "clinical"}
    assert ('patient "SM999" matches no measured patient (no measured film has this '
            "PatientID); the row is not used") in reasons


# ----------------------------------------------------------------------------- the docs

DOC = (ROOT / "docs" / "batch.md").read_text()


def test_docs_example_error_row_is_what_the_batch_writes(tmp_path, monkeypatch):
    block = DOC.split('in the reason, e.g.\n\n```\n', 1)[1].split("\n```", 1)[0]
    lines = CLINICAL.read_text().splitlines()
    lines[1] = lines[1].replace(",PVP,", ",XYZ,")
    monkeypatch.chdir(tmp_path)
    Path("clinical.csv").write_text("\n".join(lines) + "\n")
    code = main(["batch", str(SAMPLE / "SM001"), "--out", "out", "--clinical", "clinical.csv",
                 "--pseudonym-key", KEY, "--no-progress", "--no-overlays"])
    assert code == 1
    assert block in Path("out/errors.csv").read_text().splitlines()


def test_docs_list_the_accepted_ranges_and_codes():
    table = DOC.split("| column (aliases) | accepted values | written as |", 1)[1]
    table = table.split("\n\n", 1)[0]
    for col, (kind, spec, _what) in RULES.items():
        row = next(r for r in table.splitlines() if f"`{col}`" in r)
        if kind == "number":
            lo, hi = spec
            rng = (f"above {lo:g} and at most {hi:g}" if col == "cement_volume_ml"
                   else f"{lo:g} to {hi:g}")
            assert f"number, {rng} |" in row, col
        elif kind == "code":
            for accepted in spec:
                assert f"`{accepted}`" in row.lower(), (col, accepted)


# ----------------------------------------------------------------------------- fuzz

_EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
    ['"', ",", ";", "\t", "\n", "\r", "\x00", "\xe9", "-", "e", "9", "", "NaN", "1e400"]),
    st.booleans()), max_size=12)


@settings(max_examples=150, deadline=None)
@given(edits=_EDITS, raw=st.binary(max_size=64))
def test_mutated_tables_give_a_table_or_one_clear_error(tmp_path_factory, edits, raw):
    """Whatever the bytes, read_clinical returns a table whose every problem is one line
    naming the file and line, or raises ClinicalTableError with one line; nothing else."""
    text = CLINICAL.read_text()
    for pos, piece, delete in edits:
        i = pos % (len(text) + 1)
        text = text[:i] + piece + text[i + (1 if delete else 0):]
    p = tmp_path_factory.mktemp("fz") / "clinical.csv"
    p.write_bytes(text.encode("utf-8") + raw)
    try:
        t = read_clinical(p, reserved=reserved_columns(), reserved_suffixes=RESERVED_SUFFIXES)
    except ClinicalTableError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(p))
        return
    for pr in t.problems:
        assert "\n" not in str(pr) and str(pr).startswith(f"{p}:")
        assert pr.lines and pr.status in ("failed", "warning")
    for row in t.rows.values():
        for v in row.values():
            assert not isinstance(v, float) or math.isfinite(v)
