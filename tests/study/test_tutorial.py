"""docs/tutorial.md is run: every ```console block's commands, in order, in one temporary
folder (each command on the previous ones' output), with the exit code 0 and every output
line the tutorial shows found in the real output.

Format of a block: a line ``$ command`` is a command (run by bash); the lines after it, up to
the next ``$``, are excerpts of its output. ``…`` alone is left-out text; inside a line it
stands for any text (pseudonyms, timings). Whitespace runs compare equal to one space.
```console-gui blocks (napari) cannot run here: their options are checked against the
command's ``--help`` (the napari workflow itself is tested in plugins/napari/tests).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
ELLIPSIS = "…"


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)
    gui: bool = False


def parse(text: str) -> list[Step]:
    steps: list[Step] = []
    kind = None
    for line in text.splitlines():
        if kind is None:
            m = re.fullmatch(r"```(console|console-gui)\s*", line)
            if m:
                kind = m.group(1)
            continue
        if line.startswith("```"):
            kind = None
            continue
        if line.startswith("$ "):
            steps.append(Step(line[2:].strip(), gui=kind == "console-gui"))
        else:
            assert steps, f"output before any command in {TUTORIAL}: {line!r}"
            steps[-1].shown.append(line)
    return steps


def _norm(s: str) -> str:
    return " ".join(s.split())


def shown_in(line: str, output: str) -> bool:
    """Whether ``line`` (with ``…`` as a wildcard) matches one line of ``output``."""
    parts = [re.escape(_norm(p)) for p in line.split(ELLIPSIS)]
    pattern = re.compile(".*".join(parts))
    return any(pattern.search(_norm(out)) for out in output.splitlines())


def test_parse_and_match_rules():
    steps = parse("text\n```console\n$ a b\nout 1\n…\n$ c\n```\n```console-gui\n$ g\n```\n")
    assert [(s.command, s.shown, s.gui) for s in steps] == [
        ("a b", ["out 1", "…"], False), ("c", [], False), ("g", [], True)]
    assert shown_in("…,L1,  -2.0…", "x\nPab,L1, -2.024,0.1\n")
    assert not shown_in("…,L2,-2.0", "Pab,L1,-2.024\nL2\n")
    assert not shown_in("films: 9 done: 9", "films: 9\ndone: 9")


def test_the_readme_links_the_tutorial():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/tutorial.md)" in readme


@pytest.mark.slow
def test_every_tutorial_command_runs_as_shown(tmp_path):
    steps = parse(TUTORIAL.read_text(encoding="utf-8"))
    assert len(steps) >= 15
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
           "COLUMNS": "100", "NO_COLOR": "1", "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    env.pop("SPINE_MEASURE_PSEUDONYM_KEY", None)
    env.pop("SPINE_MEASURE_PSEUDONYM_KEY_FILE", None)
    work = tmp_path / "study"
    work.mkdir()
    for step in steps:
        if step.gui:
            # napari cannot open here: the command and every option it uses must exist
            words = step.command.split()
            assert words[:2] == ["spine-measure", "annotate"], step.command
            proc = subprocess.run(["spine-measure", "annotate", "--help"], env=env, cwd=work,
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            for opt in (w for w in words if w.startswith("--")):
                assert opt in proc.stdout, (opt, proc.stdout)
            assert (work / words[2]).exists(), step.command
            continue
        proc = subprocess.run(["bash", "-c", step.command], env=env, cwd=work,
                              capture_output=True, text=True, timeout=600)
        output = proc.stdout + proc.stderr
        where = f"$ {step.command}\n--- output\n{output[-4000:]}"
        assert proc.returncode == 0, where
        assert "Traceback" not in output, where
        for line in step.shown:
            if line.strip() == ELLIPSIS:
                continue
            assert shown_in(line, output), f"not in the output: {line!r}\n{where}"
