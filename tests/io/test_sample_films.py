"""The loader on the bundled sample studies: calibration and display as their truth says."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from spine_measure.io import load_radiograph
from spine_measure.io.scan import scan_folder

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"
TRUTHS = sorted(SAMPLES.glob("*/*.truth.json"))


def test_there_are_sample_films():
    assert len(TRUTHS) >= 20


@pytest.mark.parametrize("truth_path", TRUTHS, ids=lambda p: p.stem)
def test_calibration_and_metadata_match_the_truth(truth_path):
    truth = json.loads(truth_path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 0\0 film warns, as it should
        film = load_radiograph(truth_path.parent / truth["image"])
    cal = truth["calibration"]
    assert film.calibration.source.value == cal["source"]
    if cal["row_mm"] is None:
        assert film.calibration.spacing is None
    else:
        assert film.calibration.spacing == pytest.approx((cal["row_mm"], cal["col_mm"]),
                                                         rel=1e-12)
    assert film.metadata.sop_instance_uid == truth["sop_instance_uid"]
    assert film.metadata.patient_id == truth["patient_id"]
    assert film.metadata.date.isoformat() == truth["acquisition_date"]


def test_monochrome1_sample_displays_bone_bright():
    """On every film, MONOCHROME1 or not, the display is brighter inside a vertebral body
    than in the disc below it (display never depends on the photometric encoding)."""
    seen = set()
    for truth_path in TRUTHS:
        truth = json.loads(truth_path.read_text())
        if truth["view"] != "lateral":
            continue
        film = load_radiograph(truth_path.parent / truth["image"])
        seen.add(film.monochrome1)
        v = next(v for v in truth["vertebrae"] if v["level"] != "S1" and not v["fractured"])
        p = v["points"]
        body = np.mean([p["As"], p["Ai"], p["Ps"], p["Pi"]], axis=0)
        top = (np.array(p["As"]) + np.array(p["Ps"])) / 2
        bottom = (np.array(p["Ai"]) + np.array(p["Pi"])) / 2
        caudal = (bottom - top) / np.linalg.norm(bottom - top)
        disc = bottom + 4.0 * caudal  # 4 px below the inferior endplate, in the disc
        r, c = np.rint(body).astype(int)
        dr, dc = np.rint(disc).astype(int)
        inside = film.display[r - 3:r + 4, c - 3:c + 4].mean()
        gap = film.display[dr - 1:dr + 2, dc - 1:dc + 2].mean()
        assert inside > gap, truth_path.name
    assert seen == {True, False}  # both encodings are in the set


def test_scan_groups_the_sample_set():
    result = scan_folder(SAMPLES)
    tree = result.by_patient()
    assert sorted(tree) == [f"SM00{i}" for i in range(1, 8)]
    assert not [i for i in result.issues if i.stage == "read"]
    assert not result.duplicate_sop_instance_uids()
