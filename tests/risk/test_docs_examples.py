"""The worked example of docs/risk_models.md, run line by line as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd

from spine_measure.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _example_lines() -> list[str]:
    text = (ROOT / "docs" / "risk_models.md").read_text(encoding="utf-8")
    block = re.search(r"### Worked example.*?```\n(.*?)```", text, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_worked_example_runs_as_written(tmp_path, monkeypatch):
    lines = _example_lines()
    assert len(lines) == 7 and all(line.startswith("spine-measure ") for line in lines)
    (tmp_path / "sample_dicoms").symlink_to(ROOT / "sample_dicoms")
    monkeypatch.chdir(tmp_path)
    for line in lines:
        assert main(shlex.split(line)[1:]) == 0, line
    for name, col in (("li2021.csv", "li2021_probability"),
                      ("an2021.csv", "an2021_probability_recalibrated"),
                      ("xiong2021.csv", "xiong2021_relative_odds_binary"),
                      ("fit.csv", "fit_probability")):
        out = pd.read_csv(tmp_path / name)
        assert len(out) == 7 and out[col].notna().all(), name
    flags = pd.read_csv(tmp_path / "flags.csv")
    assert flags.filter(like="flag_").notna().any(axis=1).all()
    assert (tmp_path / "risk_fit" / "report.html").is_file()
