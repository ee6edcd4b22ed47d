"""Annotation schema version 2 (review state) and what measure / batch do with proposals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from spine_measure.cli import main
from spine_measure.io.annotation import (
    SCHEMA_ID,
    SCHEMA_V1,
    AnnotationError,
    AnnotationFileError,
    LevelReview,
    load_annotation,
    save_annotation,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_dicoms"


def _v1_text() -> str:
    """A version-1 file: the committed sample sidecar, or the same written as version 1."""
    data = json.loads((SAMPLE / "SM001" / "SM001_postop.sm.json").read_text())
    data["schema"] = SCHEMA_V1
    for v in data["landmarks"]["vertebrae"]:
        for k in ("confirmed", "point_source", "confidence"):
            v.pop(k, None)
    return json.dumps(data, indent=2)


def test_v1_file_loads_as_reader_confirmed_and_saves_as_v2(tmp_path):
    f = tmp_path / "a.sm.json"
    f.write_text(_v1_text())
    ann = load_annotation(f)
    assert ann.unconfirmed_levels() == ()
    assert {ann.landmark_source(lv) for lv in ann.landmarks.levels()} == {"reader"}
    saved = save_annotation(ann, f)
    data = json.loads(f.read_text())
    assert data["schema"] == SCHEMA_ID == "spine_measure.annotation/2"
    for v in data["landmarks"]["vertebrae"]:
        assert v["confirmed"] is True
        assert set(v["point_source"]) == set(v["points"])
        assert set(v["point_source"].values()) == {"reader"}
        assert "confidence" not in v
    again = load_annotation(f)
    # the round trip keeps everything: landmarks, findings, revision bookkeeping
    assert again.landmarks == ann.landmarks and again.findings == ann.findings
    assert again.revision == saved.revision == ann.revision + 1
    assert again.review == {}


def test_v2_review_state_round_trips(tmp_path):
    f = tmp_path / "a.sm.json"
    f.write_text(_v1_text())
    ann = load_annotation(f)
    names = list(ann.landmarks["L2"].points)
    state = LevelReview(confirmed=False,
                        point_source={n: ("refined" if n == "Ps" else "propagated")
                                      for n in names},
                        confidence={n: 0.875 for n in names})
    ann = ann.with_review("L2", state)
    assert ann.unconfirmed_levels() == ("L2",)
    assert ann.landmark_source("L2") == "mixed"
    save_annotation(ann, f)
    back = load_annotation(f)
    assert back.review_of("L2") == state
    assert back.review_of("L1") == LevelReview()
    entry = next(v for v in json.loads(f.read_text())["landmarks"]["vertebrae"]
                 if v["level"] == "L2")
    assert entry["confirmed"] is False and entry["confidence"]["As"] == 0.875
    assert entry["point_source"]["Ps"] == "refined"
    # confirming makes it a reading; the sources stay
    confirmed = back.with_review("L2", LevelReview(confirmed=True,
                                                   point_source=state.point_source))
    assert confirmed.unconfirmed_levels() == ()
    # deleting the vertebra drops its review entry
    rest = tuple(v for v in back.landmarks if v.level != "L2")
    assert "L2" not in back.replace(landmarks=type(back.landmarks)("lateral", rest)).review


@pytest.mark.parametrize("key,value,expected", [
    ("point_source", {"As": "guessed"}, "point_source"),
    ("confidence", {"As": 1.5}, "greater than the maximum of 1"),
    ("confirmed", "yes", "confirmed"),
])
def test_bad_review_state_is_one_line(tmp_path, key, value, expected):
    data = json.loads(_v1_text())
    data["schema"] = SCHEMA_ID
    data["landmarks"]["vertebrae"][0][key] = value
    f = tmp_path / "bad.sm.json"
    f.write_text(json.dumps(data))
    with pytest.raises(AnnotationFileError) as info:
        load_annotation(f)
    msg = str(info.value)
    assert "\n" not in msg and str(f) in msg and expected in msg


def test_v1_file_with_v2_keys_is_refused(tmp_path):
    data = json.loads(_v1_text())
    data["landmarks"]["vertebrae"][0]["confirmed"] = False
    f = tmp_path / "bad.sm.json"
    f.write_text(json.dumps(data))
    with pytest.raises(AnnotationFileError, match="confirmed"):
        load_annotation(f)


def test_review_state_validation():
    with pytest.raises(AnnotationError, match="reader, propagated or refined"):
        LevelReview(point_source={"As": "auto"})


# --------------------------------------------------------------------------- measuring


def _copy_with_proposal(tmp_path: Path) -> Path:
    import shutil

    d = tmp_path / "films" / "SM001"
    shutil.copytree(SAMPLE / "SM001", d)
    shutil.copy(SAMPLE / "clinical.csv", tmp_path / "films" / "clinical.csv")
    f = d / "SM001_postop.sm.json"
    ann = load_annotation(f)
    names = list(ann.landmarks["L2"].points)
    ann = ann.with_review("L2", LevelReview(confirmed=False,
                                            point_source={n: "propagated" for n in names},
                                            confidence={n: 0.9 for n in names}))
    save_annotation(ann, f)
    return d


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_batch_leaves_unconfirmed_out_unless_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")
    d = _copy_with_proposal(tmp_path)
    root = d.parent
    out = tmp_path / "out"
    assert main(["batch", str(root), "--out", str(out), "--no-overlays", "--no-progress"]) == 0
    errors = _rows(out / "errors.csv")
    unconf = [e for e in errors if e["stage"] == "unconfirmed"]
    assert len(unconf) == 1 and unconf[0]["file"].endswith("SM001_postop.dcm")
    assert unconf[0]["reason"].startswith("L2: propagated landmarks not confirmed")
    long = _rows(out / "measurements_long.csv")
    post = [r for r in long if r["time_point"] == "postop" and r["level"]]
    assert "L2" not in {r["level"] for r in post} and "L1" in {r["level"] for r in post}
    assert {r["landmark_source"] for r in post} == {"reader"}
    # the chain: --accept-proposed measures it and says where its points come from
    out2 = tmp_path / "out2"
    assert main(["batch", str(root), "--out", str(out2), "--no-overlays", "--no-progress",
                 "--accept-proposed"]) == 0
    assert not [e for e in _rows(out2 / "errors.csv") if e["stage"] == "unconfirmed"]
    post2 = {r["level"]: r for r in _rows(out2 / "measurements_long.csv")
             if r["time_point"] == "postop" and r["level"]}
    assert post2["L2"]["landmark_source"] == "propagated"
    assert post2["L1"]["landmark_source"] == "reader"
    wide = _rows(out2 / "features_wide.csv")
    assert wide[0]["landmark_source_postop"] == "reader"  # the treated level, L1
    # the L2 values measured from the proposal equal those of the reader's copy
    ref = {r["level"]: r for r in _rows(out / "measurements_long.csv")
           if r["time_point"] == "preop" and r["level"]}
    assert ref["L2"]["wedge_angle_deg"] != ""


def test_measure_json_lists_unconfirmed(tmp_path, capsys):
    d = _copy_with_proposal(tmp_path)
    film = d / "SM001_postop.dcm"
    assert main(["measure", str(film), "--json", "--no-cement"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    note = [x for x in lines if x.get("stage") == "unconfirmed"]
    assert [x["level"] for x in note] == ["L2"] and note[0]["ok"] is False
    assert "L2" not in {x["level"] for x in lines if "wedge_angle_deg" in x}
    assert main(["measure", str(film), "--json", "--no-cement", "--accept-proposed"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    rows = {x["level"]: x for x in lines if "wedge_angle_deg" in x}
    assert rows["L2"]["landmark_source"] == "propagated"
    assert rows["L1"]["landmark_source"] == "reader"
    assert not [x for x in lines if x.get("stage") == "unconfirmed"]


# --------------------------------------------------------------------------- review mode


def test_review_operations_walk_confirm_fix_and_reject(tmp_path):
    from spine_measure.propose.review import (
        confirm,
        move_point,
        next_unconfirmed,
        reject,
        review_summary,
    )

    f = tmp_path / "a.sm.json"
    f.write_text(_v1_text())
    ann = load_annotation(f)
    for lv in ("T12", "L2", "L3"):
        names = list(ann.landmarks[lv].points)
        ann = ann.with_review(lv, LevelReview(confirmed=False,
                                              point_source={n: "propagated" for n in names},
                                              confidence={n: 0.8 for n in names}))
    assert next_unconfirmed(ann) == "T12"
    assert next_unconfirmed(ann, after="T12") == "L2"
    assert next_unconfirmed(ann, after="L3") == "T12"   # wraps round
    ann = move_point(ann, "T12", "As", (100.5, 200.25))
    assert ann.landmarks["T12"].points["As"] == (100.5, 200.25)
    assert ann.review_of("T12").source("As") == "reader"
    assert "As" not in ann.review_of("T12").confidence
    assert ann.landmark_source("T12") == "mixed" and "T12" in ann.unconfirmed_levels()
    ann = confirm(ann, "T12")
    assert ann.unconfirmed_levels() == ("L2", "L3")
    ann = move_point(ann, "L2", "Ai", (10.0, 10.0), refined=True)
    assert ann.review_of("L2").source("Ai") == "refined"
    ann = reject(ann, "L3")
    assert "L3" not in ann.landmarks and "L3" not in ann.review
    s = review_summary(ann)
    assert s["unconfirmed"] == 1 and s["refined"] == 1 and s["reader"] >= 1
    assert next_unconfirmed(confirm(ann, "L2")) is None
    # and the state survives the file
    save_annotation(ann, f)
    back = load_annotation(f)
    assert back.review == ann.review and back.landmarks == ann.landmarks


def test_reader_genant_override_survives_a_v2_round_trip(tmp_path):
    from spine_measure.landmarks import Vertebra

    f = tmp_path / "a.sm.json"
    f.write_text(_v1_text())
    ann = load_annotation(f)
    v = ann.landmarks["L1"]
    nv = Vertebra(v.level, v.view, v.points, v.fractured, v.treated, v.excluded,
                  genant_grade_reader=2, genant_shape_reader="wedge")
    ann = ann.replace(landmarks=ann.landmarks.replace("L1", nv))
    ann = ann.with_review("L1", LevelReview(confirmed=False,
                                            point_source={"As": "propagated"}))
    save_annotation(ann, f)
    back = load_annotation(f)
    assert back.landmarks["L1"].genant_grade_reader == 2
    assert back.landmarks["L1"].genant_shape_reader == "wedge"
    assert back.unconfirmed_levels() == ("L1",)
