"""Fixtures of the synthetic-film tests: one fresh generation of the whole sample set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine_measure.synthetic.studies import DEFAULT_SEED, generate_sample_set

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO / "sample_dicoms"


@pytest.fixture(scope="session")
def fresh_set(tmp_path_factory) -> Path:
    """The whole sample set generated now, with the default seed."""
    out = tmp_path_factory.mktemp("fresh_samples")
    generate_sample_set(out, seed=DEFAULT_SEED)
    return out


@pytest.fixture(scope="session")
def committed_truths() -> dict[str, dict]:
    """``{stem: truth}`` of every committed ``*.truth.json``."""
    out = {}
    for p in sorted(SAMPLE_DIR.glob("*/*.truth.json")):
        out[p.name[: -len(".truth.json")]] = json.loads(p.read_text(encoding="utf-8"))
    if not out:
        pytest.fail(f"no *.truth.json under {SAMPLE_DIR}")
    return out
