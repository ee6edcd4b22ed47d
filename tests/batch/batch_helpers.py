"""Helpers of the batch tests: copies of the synthetic sample studies with annotations."""

from __future__ import annotations

import shutil
from pathlib import Path

from spine_measure.synthetic.annotations import write_annotation_for_truth

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicoms"


def annotation_from_truth(truth_path: Path) -> Path:
    """Write ``X.sm.json`` next to ``X.dcm`` from ``X.truth.json``."""
    return write_annotation_for_truth(truth_path)


def copy_sample(dest: Path, patients: list[str] | None = None) -> Path:
    """Copy (some) sample patients, with their committed annotation sidecars, to ``dest``
    (a sidecar missing from the committed set is made from the truth)."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
        if patients is None or d.name in patients:
            shutil.copytree(d, dest / d.name)
    shutil.copy(SAMPLE / "clinical.csv", dest / "clinical.csv")
    for t in sorted(dest.rglob("*.truth.json")):
        if not t.with_name(t.name.replace(".truth.json", ".sm.json")).exists():
            annotation_from_truth(t)
    return dest
