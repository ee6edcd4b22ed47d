"""Output readable at 80 columns: help never cuts an option name, flags are flags, the
measure table never cuts a measurement name."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import typer

from spine_measure.cli import app, main
from spine_measure.service import measure_film_file

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicoms"


@pytest.fixture(autouse=True)
def _narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")


def _commands():
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub, c in subs.items():
                yield [name, sub], c
        else:
            yield [name], cmd


@pytest.mark.parametrize(("argv", "cmd"), list(_commands()),
                         ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_help_at_80_columns_shows_every_option_whole(argv, cmd, capsys):
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out and "<bool>" not in out
    for param in cmd.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert opt in out, (argv, opt)


def test_verbose_is_shown_as_a_counted_flag(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "-v, --verbose" in out and "-vv" in out and "<int>" not in out
    assert main(["-vv", "--version"]) == 0
    capsys.readouterr()


def test_measure_table_keeps_every_name_at_80_columns(capsys):
    film = SAMPLE / "SM001" / "SM001_postop.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["measure", str(film), "--no-cement"]) == 0
        fm = measure_film_file(film, cement=False).measurements
    out = capsys.readouterr().out
    assert "…" not in out
    table_lines = [ln for ln in out.splitlines() if ln[:1] in "┏┃┡│└"]
    assert table_lines and max(len(ln) for ln in table_lines) <= 80
    for per in fm.vertebrae.values():
        for r in per.values():
            assert f"│ {r.column} " in out, r.column
    # every vertebra is shown (split over several tables when needed), with its flags
    for level in fm.vertebrae:
        assert level in out
    assert "L1 FT" in out and "F fractured, T treated" in out


def test_reliability_tables_keep_every_name_at_80_columns(tmp_path, capsys):
    from spine_measure.reliability.simulate import simulate_readers

    sim = simulate_readers(SAMPLE, tmp_path / "sim", sd_px=2.0,
                           files=["SM001/SM001_preop.sm.json", "SM001/SM001_postop.sm.json",
                                  "SM005/SM005_preop_ap.sm.json"])
    assert main(["reliability", str(sim.dir_a), str(sim.dir_b), "--out",
                 str(tmp_path / "rel"), "--no-plots"]) in (0, 1)
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    # the two coronal Cobb angles and every other measurement are distinguishable: whole names
    for name in ("coronal_cobb_angle_deg", "coronal_cobb_angle_midline_deg", "wedge_angle_deg",
                 "regional_kyphotic_angle_deg"):
        assert f" {name} " in out, name
    assert "…" not in out
