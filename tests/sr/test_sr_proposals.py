"""Proposals in SRs: propagate -> export-sr (unconfirmed vertebrae left out with a note, or
exported with --accept-proposed and marked) -> read_sr; batch --accept-proposed --sr marks
them the same way."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from spine_measure.cli import main
from spine_measure.io.annotation import load_annotation, save_annotation
from spine_measure.propose.review import confirm
from spine_measure.sr import read_sr

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicoms"


@pytest.fixture(scope="module")
def proposed(tmp_path_factory):
    """SM001: the pre-op reading propagated to the post-op film (real command output)."""
    root = tmp_path_factory.mktemp("prop")
    films = root / "films"
    films.mkdir()
    for tp in ("preop", "postop"):
        shutil.copy(SAMPLE / "SM001" / f"SM001_{tp}.dcm", films)
    shutil.copy(SAMPLE / "SM001" / "SM001_preop.sm.json", films)
    assert main(["propagate", str(films), "--out", str(root / "proposed"),
                 "--no-progress"]) == 0
    return root


def _one_sr(folder: Path) -> Path:
    (sr,) = sorted(folder.rglob("*.sr.dcm"))
    return sr


def test_export_sr_leaves_proposals_out_unless_asked(proposed, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")
    film = proposed / "films" / "SM001_postop.dcm"
    ann_dir = tmp_path / "ann"
    shutil.copytree(proposed / "proposed", ann_dir)
    ann = load_annotation(ann_dir / "SM001_postop.sm.json")
    levels = ann.landmarks.levels()
    capsys.readouterr()
    # default, nothing confirmed: no SR at all (it would read as a film with no vertebra),
    # one line naming the film and the vertebrae, exit 3 (nothing done)
    (tmp_path / "sr0").mkdir()
    assert main(["export-sr", str(film), "--annotations", str(ann_dir), "--out",
                 str(tmp_path / "sr0")]) == 3
    err = capsys.readouterr().err
    note = [ln for ln in err.splitlines() if "unconfirmed" in ln]
    assert len(note) == 1 and "every vertebra" in note[0] and str(film) in note[0]
    assert "--accept-proposed" in note[0] and ", ".join(levels) in note[0]
    assert not list((tmp_path / "sr0").iterdir())
    # --accept-proposed: every proposal exported, marked propagated, flags as proposed
    assert main(["export-sr", str(film), "--annotations", str(ann_dir), "--out",
                 str(tmp_path / "sr1"), "--accept-proposed"]) == 0
    assert "unconfirmed" not in capsys.readouterr().err
    back = read_sr(_one_sr(tmp_path / "sr1"))
    assert back.landmarks.levels() == levels
    assert dict(back.unconfirmed) == dict.fromkeys(levels, "propagated")
    for v in ann.landmarks:
        got = back.landmarks[v.level]
        assert (got.fractured, got.treated) == (v.fractured, v.treated)
        for n in v.points:
            assert np.allclose(got.point(n), np.float32(v.point(n)), atol=0)
    assert back.landmarks["L1"].treated and "L1" in back.cement
    # a reader confirms two vertebrae: those are readings (no mark), the rest stay out
    for lv in ("T12", "L1"):
        ann = confirm(ann, lv)
    ann = save_annotation(ann, ann_dir / "SM001_postop.sm.json")
    capsys.readouterr()
    assert main(["export-sr", str(film), "--annotations", str(ann_dir), "--out",
                 str(tmp_path / "sr2")]) == 0
    assert f"{len(levels) - 2} unconfirmed vertebra(e) left out" in capsys.readouterr().err
    back = read_sr(_one_sr(tmp_path / "sr2"))
    assert back.landmarks.levels() == ("T12", "L1") and not back.unconfirmed
    assert main(["export-sr", str(film), "--annotations", str(ann_dir), "--out",
                 str(tmp_path / "sr3"), "--accept-proposed"]) == 0
    back = read_sr(_one_sr(tmp_path / "sr3"))
    assert set(back.unconfirmed) == set(levels) - {"T12", "L1"}
    # the same points, confirmed: the marks are gone, so the SR is another document
    assert back.sop_instance_uid != read_sr(_one_sr(tmp_path / "sr1")).sop_instance_uid
    for lv in levels:
        ann = confirm(ann, lv)
    save_annotation(ann, ann_dir / "SM001_postop.sm.json")
    assert main(["export-sr", str(film), "--annotations", str(ann_dir), "--out",
                 str(tmp_path / "sr4")]) == 0
    done = read_sr(_one_sr(tmp_path / "sr4"))
    assert done.landmarks.levels() == levels and not done.unconfirmed
    assert done.sop_instance_uid not in {read_sr(_one_sr(tmp_path / d)).sop_instance_uid
                                         for d in ("sr1", "sr3")}


def test_batch_sr_marks_accepted_proposals(proposed, tmp_path, monkeypatch):
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")
    out = tmp_path / "run"
    assert main(["batch", str(proposed / "films"), "--annotations",
                 str(proposed / "proposed"), "--out", str(out), "--sr", "--accept-proposed",
                 "--no-progress"]) in (0, 1)
    srs = {read_sr(p).source_sop_instance_uid: read_sr(p) for p in (out / "sr").rglob(
        "*.sr.dcm")}
    post = load_annotation(proposed / "proposed" / "SM001_postop.sm.json")
    pre = load_annotation(proposed / "films" / "SM001_preop.sm.json")
    assert dict(srs[post.image.sop_instance_uid].unconfirmed) == dict.fromkeys(
        post.landmarks.levels(), "propagated")
    assert not srs[pre.image.sop_instance_uid].unconfirmed  # the reader's own film


def test_batch_sr_writes_no_sr_for_a_film_of_unconfirmed_proposals(proposed, tmp_path,
                                                                     monkeypatch):
    """Without --accept-proposed the post-op film (all proposals) gets no SR, and says so in
    errors.csv; the pre-op film's SR is written as usual."""
    import csv

    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")
    out = tmp_path / "run"
    main(["batch", str(proposed / "films"), "--annotations", str(proposed / "proposed"),
          "--out", str(out), "--sr", "--no-progress"])
    srs = {read_sr(p).source_sop_instance_uid for p in (out / "sr").rglob("*.sr.dcm")}
    post = load_annotation(proposed / "proposed" / "SM001_postop.sm.json")
    pre = load_annotation(proposed / "films" / "SM001_preop.sm.json")
    assert srs == {pre.image.sop_instance_uid} and post.image.sop_instance_uid not in srs
    with open(out / "errors.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    sr_rows = [r for r in rows if r.get("stage") == "sr"]
    assert len(sr_rows) == 1, rows
    assert "every vertebra is an unconfirmed proposal" in " ".join(sr_rows[0].values())
