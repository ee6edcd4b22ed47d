"""Sample films and their ground truth for the plugin tests (imported by name: a module
called ``conftest`` would clash with the other test folders' conftest modules)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "sample_dicoms"


def copy_film(tmp_path: Path, patient: str, stem: str) -> Path:
    """Copy a sample film and its truth file into ``tmp_path/patient``."""
    src = SAMPLES / patient / f"{stem}.dcm"
    if not src.is_file():
        pytest.skip(f"{src} not generated yet")
    dst = tmp_path / patient
    dst.mkdir(exist_ok=True)
    shutil.copy(src, dst / src.name)
    shutil.copy(src.with_suffix(".truth.json"), dst / f"{stem}.truth.json")
    return dst / src.name


def load_truth(film: Path) -> dict:
    return json.loads(film.with_suffix(".truth.json").read_text())


def truth_cement(film: Path) -> np.ndarray:
    """The ground-truth cement mask of a sample film (its ``.cement.png`` beside the
    original in ``sample_dicoms``)."""
    from PIL import Image

    c = load_truth(film)["cement"]
    patient = film.stem.split("_")[0]
    return np.asarray(Image.open(SAMPLES / patient / c["mask"])) > 0


def truth_points(film: Path, level: str) -> dict[str, list[float]]:
    return next(v for v in load_truth(film)["vertebrae"] if v["level"] == level)["points"]
