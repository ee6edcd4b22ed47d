"""The study generator: its patients and its simulated second reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from spine_measure.io.annotation import load_annotation
from spine_measure.synthetic.cohort import cohort_cases, main, write_second_reader
from spine_measure.synthetic.studies import CASES

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicoms"


def _points(path: Path) -> np.ndarray:
    lm = load_annotation(path).landmarks
    return np.array([p for v in lm.vertebrae for _, p in sorted(v.points.items())], float)


@pytest.fixture
def films(tmp_path: Path) -> Path:
    d = tmp_path / "films"
    for p in ("SM001", "SM002", "SM005"):
        (d / p).mkdir(parents=True)
        for f in (SAMPLE / p).glob("*.sm.json"):
            shutil.copy(f, d / p / f.name)
    return d


def test_cohort_cases_keep_the_seven_designs_then_vary_them():
    cases = cohort_cases(16)
    assert [c.patient_id for c in cases[:7]] == [c.patient_id for c in CASES]
    assert cases[:7] == list(CASES)
    assert [c.patient_id for c in cases[7:]] == [f"SM{k:03d}" for k in range(8, 17)]
    for k, c in enumerate(cases[7:], start=7):
        base = CASES[k % 7]
        assert c.films == base.films
        for tp, v in c.loss.items():
            assert abs(v - base.loss[tp]) <= 0.03 * 1.5 + 0.0005 + 1e-9  # rounded to 0.001
    assert cohort_cases(16) == cases
    assert cohort_cases(16, seed=1) != cases
    with pytest.raises(ValueError, match="n_patients"):
        cohort_cases(0)


def test_second_reader_is_the_first_plus_the_planted_noise(films, tmp_path):
    out = tmp_path / "readerB"
    written = write_second_reader(films, out, sd_px=2.0, seed=5)
    sides = sorted(films.rglob("*.sm.json"))
    assert sorted(p.relative_to(out) for p in written) == [p.relative_to(films) for p in sides]
    diffs = []
    for side in sides:
        b = out / side.relative_to(films)
        ann_a, ann_b = load_annotation(side), load_annotation(b)
        assert ann_b.reader == "reader-b"
        assert ann_b.image == ann_a.image
        assert [(v.level, v.fractured, v.treated, v.excluded) for v in ann_b.landmarks.vertebrae] \
            == [(v.level, v.fractured, v.treated, v.excluded) for v in ann_a.landmarks.vertebrae]
        diffs.append((_points(b) - _points(side)).ravel())
    d = np.concatenate(diffs)
    assert len(d) > 300
    # every coordinate moved by N(0, 2^2) px: mean 0, SD 2 within sampling error
    assert abs(d.mean()) < 4 * 2.0 / np.sqrt(len(d))
    assert 2.0 * 0.85 < d.std() < 2.0 * 1.15
    # the same seed gives the same landmarks; another seed others
    again = write_second_reader(films, tmp_path / "again", sd_px=2.0, seed=5)
    other = write_second_reader(films, tmp_path / "other", sd_px=2.0, seed=6)
    for p, q, r in zip(written, again, other, strict=True):
        np.testing.assert_array_equal(_points(p), _points(q))
        assert not np.array_equal(_points(p), _points(r))


def test_second_reader_refuses_the_films_folder(films, capsys):
    with pytest.raises(ValueError, match="must differ"):
        write_second_reader(films, films)
    assert main([str(films), "--patients", "1", "--reader-b", str(films)]) == 2
    assert "must differ" in capsys.readouterr().err
