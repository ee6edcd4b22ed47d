"""Propagation on synthetic films: a known transform is recovered, a failed fit gives no
proposal and a reason, and the commands' output feeds measure / batch / reliability."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spine_measure.cli import main
from spine_measure.io.annotation import load_annotation
from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks
from spine_measure.propose import ProposeOptions, global_align, propagate_landmarks

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_dicoms"


def _film(pid: str, tp: str):
    r = load_radiograph(SAMPLE / pid / f"{pid}_{tp}.dcm")
    truth = json.loads((SAMPLE / pid / f"{pid}_{tp}.truth.json").read_text())
    return r, SpineLandmarks.from_dict(truth)


def _warp(img: np.ndarray, scale: float, rot_deg: float, shift_rc: tuple[float, float],
          out_shape: tuple[int, int]):
    """Target = source mapped by a known similarity about the source centre (screen CCW);
    returns the target image and the (row, col) point map."""
    import cv2

    h, w = img.shape
    c = ((w - 1) / 2.0, (h - 1) / 2.0)
    m = cv2.getRotationMatrix2D(c, rot_deg, scale)
    m[:, 2] += (shift_rc[1], shift_rc[0])
    out = cv2.warpAffine(img.astype(np.float32), m, (out_shape[1], out_shape[0]),
                         flags=cv2.INTER_LINEAR, borderValue=float(np.median(img)))

    def fn(pts: np.ndarray) -> np.ndarray:
        xy = pts[:, ::-1]
        q = xy @ m[:, :2].T + m[:, 2]
        return q[:, ::-1]

    return out, fn


def _errors(prop, truth: SpineLandmarks) -> list[float]:
    out = []
    for v in prop.proposed():
        t = truth[v.level]
        out += [float(np.hypot(*(np.asarray(v.points[n]) - t.point(n)))) for n in v.points]
    return out


def test_known_similarity_is_recovered():
    film, truth = _film("SM001", "postop")
    src = film.density
    tgt, fn = _warp(src, 1.06, 4.0, (14.0, -9.0), (src.shape[0] + 40, src.shape[1] + 30))
    expected = truth.transformed(fn)
    fit = global_align(src, tgt)
    assert fit.ok
    assert fit.scale == pytest.approx(1.06, abs=0.01)
    assert fit.rotation_deg == pytest.approx(4.0, abs=0.5)
    prop = propagate_landmarks(src, truth, tgt)
    assert not prop.failed(), [(v.level, v.reason) for v in prop.failed()]
    err = _errors(prop, expected)
    assert len(err) == sum(len(v.points) for v in truth)
    assert np.median(err) < 0.5 and max(err) < 1.5, (np.median(err), max(err))
    assert all(0.8 < v.confidence <= 1.0 for v in prop.vertebrae)
    # the same inputs give the same output
    again = propagate_landmarks(src, truth, tgt)
    assert [dict(v.points) for v in again.vertebrae] == [dict(v.points) for v in prop.vertebrae]


def test_unrelated_target_gives_no_proposal_and_a_reason():
    film, truth = _film("SM001", "preop")
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, film.shape).astype(np.float32)
    prop = propagate_landmarks(film.density, truth, noise)
    assert not prop.proposed()
    assert len(prop.failed()) == len(truth)
    assert all(v.reason and not v.points for v in prop.failed())
    assert len(prop.landmarks()) == 0


def test_vertebra_missing_on_the_target_is_not_guessed():
    film, truth = _film("SM001", "postop")
    src = film.density.astype(np.float32)
    tgt = src.copy()
    v = truth["L3"]
    pts = np.array(list(v.points.values()))
    r0, c0 = (pts.min(0) - 25).astype(int)
    r1, c1 = (pts.max(0) + 25).astype(int)
    rng = np.random.default_rng(2)
    tgt[r0:r1, c0:c1] = rng.normal(float(np.median(src)), 50.0, (r1 - r0, c1 - c0))
    prop = propagate_landmarks(src, truth, tgt)
    failed = {p.level: p.reason for p in prop.failed()}
    assert "L3" in failed and "confidence" in failed["L3"]
    assert "L3" not in prop.landmarks()
    assert {"T10", "L1"} <= set(prop.landmarks().levels())


def test_options_are_checked():
    with pytest.raises(ValueError, match="min_confidence"):
        ProposeOptions(min_confidence=1.5)
    film, truth = _film("SM001", "preop")
    with pytest.raises(ValueError, match="not annotated"):
        propagate_landmarks(film.density, truth, film.density, levels=["C3"])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_propagate_command_feeds_measure_batch_and_reliability(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")
    films = tmp_path / "films"
    films.mkdir()
    for tp in ("preop", "postop", "followup"):
        shutil.copy(SAMPLE / "SM003" / f"SM003_{tp}.dcm", films)
    shutil.copy(SAMPLE / "SM003" / "SM003_postop.sm.json", films)
    out = tmp_path / "proposed"
    rc = main(["propagate", str(films), "--out", str(out), "--no-progress"])
    assert rc in (0, 1)
    rows = _rows(out / "propagation.csv")
    assert {Path(r["target"]).name for r in rows} == {"SM003_preop.dcm", "SM003_followup.dcm"}
    assert {Path(r["source"]).name for r in rows} == {"SM003_postop.dcm"}
    assert rc == (1 if any(r["status"] != "proposed" for r in rows) else 0)
    ann = load_annotation(out / "SM003_followup.sm.json")
    proposed = [r["level"] for r in rows if r["status"] == "proposed"
                and r["target"].endswith("SM003_followup.dcm")]
    assert set(ann.unconfirmed_levels()) == set(proposed) and proposed
    assert {ann.landmark_source(lv) for lv in proposed} == {"propagated"}
    # the proposals are close to the truth of the follow-up film
    truth = SpineLandmarks.from_dict(json.loads(
        (SAMPLE / "SM003" / "SM003_followup.truth.json").read_text()))
    err = [float(np.hypot(*(v.point(n) - truth[v.level].point(n))))
           for v in ann.landmarks for n in v.points if not truth[v.level].treated]
    assert np.median(err) < 2.0
    capsys.readouterr()
    # measure leaves them out ...
    film = films / "SM003_followup.dcm"
    rc = main(["measure", str(film), "--annotations", str(out), "--json", "--no-cement"])
    assert rc == 0  # the film is read; its unconfirmed vertebrae are notes, not failures
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {x["level"] for x in lines if x.get("stage") == "unconfirmed"} == set(proposed)
    assert not [x for x in lines if "wedge_angle_deg" in x]
    # ... unless asked
    assert main(["measure", str(film), "--annotations", str(out), "--json", "--no-cement",
                 "--accept-proposed"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    measured = {x["level"]: x for x in lines if "wedge_angle_deg" in x}
    assert set(measured) == set(proposed)
    assert {x["landmark_source"] for x in measured.values()} == {"propagated"}
    # reliability compares the unedited proposals with the reader's landmarks
    reader = tmp_path / "reader"
    reader.mkdir()
    for tp in ("preop", "followup"):
        shutil.copy(SAMPLE / "SM003" / f"SM003_{tp}.sm.json", reader)
    rel = tmp_path / "rel"
    assert main(["reliability", str(reader), str(out), "--out", str(rel), "--images",
                 str(films), "--no-plots"]) == 0
    pairs = _rows(rel / "pairs_long.csv")
    hp = [r for r in pairs if r["measurement"] == "hp" and r["used"] == "True"]
    assert len(hp) == len(proposed) + sum(1 for r in rows if r["status"] == "proposed"
                                          and r["target"].endswith("SM003_preop.dcm"))
    assert all(abs(float(r["diff_b_minus_a"])) < 1.5 for r in hp)
    # the review snippet of docs/propagation.md confirms them; then they are measured
    import re

    doc = (REPO / "docs" / "propagation.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    code = code.replace("proposed/P01_postop.sm.json", str(out / "SM003_followup.sm.json"))
    exec(compile(code, "docs/propagation.md", "exec"), {})
    assert load_annotation(out / "SM003_followup.sm.json").unconfirmed_levels() == ()
    capsys.readouterr()
    assert main(["measure", str(film), "--annotations", str(out), "--json",
                 "--no-cement"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {x["level"] for x in lines if "wedge_angle_deg" in x} == set(proposed)


def test_propagate_usage_errors(tmp_path, capsys):
    assert main(["propagate", str(tmp_path / "nope.dcm"), str(tmp_path / "x.dcm"), "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["propagate", str(empty), "--out", str(tmp_path / "o"), "--no-progress"]) == 3
    src = SAMPLE / "SM001" / "SM001_preop.dcm"
    assert main(["propagate", str(src), "--out", str(tmp_path / "o"), "--no-progress"]) == 2


def test_propagate_source_without_annotation_is_a_film_error(tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    for tp in ("preop", "postop"):
        shutil.copy(SAMPLE / "SM001" / f"SM001_{tp}.dcm", films)
    rc = main(["propagate", str(films / "SM001_preop.dcm"), str(films / "SM001_postop.dcm"),
               "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3 and "has no annotation" in err


def test_same_films_give_bit_identical_proposals():
    """ITK sums its metric per thread; propagation runs single-threaded so that the same
    inputs always give the same points (a sample pair, three runs, compared exactly)."""
    import warnings

    import SimpleITK as sitk

    from spine_measure.io.annotation import annotation_to_json
    from spine_measure.propose.files import propose_annotation

    root = Path(__file__).resolve().parents[2] / "sample_dicoms" / "SM001"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = load_radiograph(root / "SM001_preop.dcm")
        tgt = load_radiograph(root / "SM001_postop.dcm")
    ann = load_annotation(root / "SM001_preop.sm.json")
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    def content(result):  # the file's content but its creation time
        d = json.loads(annotation_to_json(result.annotation))
        return {k: v for k, v in d.items() if k not in ("created", "modified")}, result.rows

    runs = [content(propose_annotation(src, ann, tgt)) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][0]["landmarks"]["vertebrae"]
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads  # restored
