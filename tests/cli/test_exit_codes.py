"""One table of exit codes (docs/cli.md), true for every command: each command is run on
inputs that give each code it can give."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from spine_measure.cli import app, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_dicoms"
FILM = SAMPLE / "SM001" / "SM001_postop.dcm"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: annotated films, an unannotated film, a text file named .dcm, PNGs, an
    empty folder and a batch's features_wide.csv."""
    d = tmp_path_factory.mktemp("exit")
    shutil.copytree(SAMPLE / "SM001", d / "good")
    for f in (d / "good").glob("*.png"):
        f.unlink()
    (d / "lonely").mkdir()
    shutil.copy(SAMPLE / "SM002" / "SM002_preop.dcm", d / "lonely" / "lonely.dcm")
    (d / "text.dcm").write_text("not an image\n" * 10)
    (d / "pngs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "pngs" / "film.png")
    (d / "empty").mkdir()
    (d / "bare").mkdir()  # a film of SM001 without annotation (a propagation target)
    shutil.copy(SAMPLE / "SM001" / "SM001_followup.dcm", d / "bare")
    # a batch with one failing film: its annotation claims another image size
    shutil.copytree(d / "good", d / "onebad")
    p = d / "onebad" / "SM001_preop.sm.json"
    p.write_text(p.read_text().replace('"rows": ', '"rows": 1', 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["batch", str(d / "good"), "--out", str(d / "run"), "--no-overlays",
                     "--no-progress", "--pseudonym-key", "k"]) == 0
    return d


def _args(ws: Path, tmp: Path, args: tuple[str, ...]) -> list[str]:
    return [a.replace("{ws}", str(ws)).replace("{tmp}", str(tmp)).replace("{film}", str(FILM))
            for a in args]


# command -> cases (what, argv, expected exit code)
CASES: dict[str, list[tuple[str, tuple[str, ...], int]]] = {
    "info": [
        ("a good film", ("info", "{film}"), 0),
        ("a good film and a text file", ("info", "{film}", "{ws}/text.dcm"), 1),
        ("a missing file", ("info", "{ws}/nope.dcm"), 2),
        ("only a text file", ("info", "{ws}/text.dcm"), 3),
    ],
    "measure": [
        ("an annotated film", ("measure", "{ws}/good/SM001_postop.dcm", "--no-cement"), 0),
        ("annotated and unannotated", ("measure", "{ws}/good", "{ws}/lonely", "--no-cement"),
         1),
        ("a missing file", ("measure", "{ws}/nope.dcm"), 2),
        ("a missing annotations folder", ("measure", "{film}", "--annotations", "{ws}/no"), 2),
        ("an unannotated film", ("measure", "{ws}/lonely/lonely.dcm"), 3),
        ("a text file named .dcm", ("measure", "{ws}/text.dcm"), 3),
    ],
    "export-sr": [
        ("an annotated film", ("export-sr", "{ws}/good/SM001_preop.dcm", "--out", "{tmp}/sr"),
         0),
        ("annotated and unannotated",
         ("export-sr", "{ws}/good/SM001_preop.dcm", "{ws}/lonely", "--out", "{tmp}/sr"), 1),
        ("a missing file", ("export-sr", "{ws}/nope.dcm", "--out", "{tmp}/sr"), 2),
        ("an unannotated film", ("export-sr", "{ws}/lonely", "--out", "{tmp}/sr"), 3),
    ],
    "batch": [
        ("annotated films", ("batch", "{ws}/good", "--out", "{tmp}/o", "--no-overlays"), 0),
        ("one film's annotation is another image's",
         ("batch", "{ws}/onebad", "--out", "{tmp}/o", "--no-overlays"), 1),
        ("a missing folder", ("batch", "{ws}/nope", "--out", "{tmp}/o"), 2),
        ("a file, not a folder", ("batch", "{film}", "--out", "{tmp}/o"), 2),
        ("other options into the same OUT",
         ("batch", "{ws}/good", "--out", "{ws}/run", "--no-overlays", "--sr"), 2),
        ("an empty folder", ("batch", "{ws}/empty", "--out", "{tmp}/o"), 3),
        ("a folder of PNGs", ("batch", "{ws}/pngs", "--out", "{tmp}/o"), 3),
    ],
    "import-landmarks": [
        ("a missing CSV", ("import-landmarks", "{ws}/nope.csv", "--images", "{ws}/good",
                           "--out", "{tmp}/ann"), 2),
    ],
    "reliability": [
        ("a missing folder", ("reliability", "{ws}/nope", "{ws}/good", "--out", "{tmp}/r"),
         2),
    ],
    "risk apply": [
        ("rules: every row gets its flags",
         ("risk", "apply", "{ws}/run/features_wide.csv", "--model", "rules", "-o",
          "{tmp}/flags.csv"), 0),
        ("a missing table", ("risk", "apply", "{ws}/nope.csv", "--model", "rules"), 2),
        ("an unknown model",
         ("risk", "apply", "{ws}/run/features_wide.csv", "--model", "nope2020"), 2),
    ],
    "risk fit": [
        ("a missing table", ("risk", "fit", "{ws}/nope.csv", "--outcome", "y",
                             "--predictors", "x", "--outdir", "{tmp}/fit"), 2),
    ],
    "risk check-table": [
        ("a missing table", ("risk", "check-table", "{ws}/nope.csv"), 2),
    ],
    "propagate": [
        ("every vertebra proposed", ("propagate", "{ws}/good/SM001_postop.dcm",
                                     "{ws}/bare/SM001_followup.dcm", "--out", "{tmp}/p"), 0),
        ("one target is a text file", ("propagate", "{ws}/good/SM001_postop.dcm",
                                       "{ws}/bare/SM001_followup.dcm", "{ws}/text.dcm",
                                       "--out", "{tmp}/p"), 1),
        ("a missing file", ("propagate", "{ws}/nope.dcm", "{film}", "--out", "{tmp}/p"), 2),
        ("an empty folder", ("propagate", "{ws}/empty", "--out", "{tmp}/p"), 3),
    ],
    "refine": [
        ("an annotated film", ("refine", "{ws}/good/SM001_preop.dcm", "--out", "{tmp}/r"), 0),
        ("annotated and unannotated", ("refine", "{ws}/good/SM001_preop.dcm",
                                       "{ws}/lonely/lonely.dcm", "--out", "{tmp}/r"), 1),
        ("a missing file", ("refine", "{ws}/nope.dcm", "--out", "{tmp}/r"), 2),
        ("an unannotated film", ("refine", "{ws}/lonely/lonely.dcm", "--out", "{tmp}/r"), 3),
    ],
    "annotate": [
        ("a missing file", ("annotate", "{ws}/nope.dcm"), 2),
    ],
}


def _commands() -> set[str]:
    group = typer.main.get_command(app)
    names = set()
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        names |= {f"{name} {s}" for s in sub} if sub else {name}
    return names


def test_every_command_is_covered():
    assert set(CASES) == _commands()


@pytest.mark.parametrize(("command", "what", "argv", "code"), [
    pytest.param(c, w, a, code, id=f"{c}: {w} -> {code}")
    for c, cases in CASES.items() for w, a, code in cases])
def test_exit_code(ws, tmp_path, capsys, command, what, argv, code):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(_args(ws, tmp_path, argv))
    cap = capsys.readouterr()
    assert rc == code, f"{command} ({what}): exit {rc}, expected {code}\n{cap.err[-2000:]}"
    assert "Traceback" not in cap.err + cap.out
    if code in (1, 2, 3):
        assert cap.err.strip(), "a failure says why"


def test_batch_says_why_it_found_no_film(ws, tmp_path, capsys):
    for folder, why in (("empty", "the folder is empty"),
                        ("pngs", "1 of them PNG/JPEG/TIFF images")):
        assert main(["batch", str(ws / folder), "--out", str(tmp_path / folder),
                     "--no-progress"]) == 3
        err = capsys.readouterr().err
        assert f"no DICOM files found in {ws / folder}" in err and why in err
        assert "for PNG/JPEG films use spine-measure measure" in err
        assert "overlays/" not in err   # never listed when not made
        errors = (tmp_path / folder / "errors.csv").read_text().splitlines()
        assert len(errors) == 2 and "no DICOM files found in the input folder" in errors[1]
    assert main(["batch", str(FILM), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "not found" not in err


def test_changed_options_name_the_option_and_how_to_start_afresh(ws, capsys):
    rc = main(["batch", str(ws / "good"), "--out", str(ws / "run"), "--no-overlays", "--sr",
               "--no-progress", "--pseudonym-key", "k"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--sr: off before, on now" in err
    assert "--restart" in err and "another --out" in err


def test_interrupted_batch_says_how_to_resume(ws, tmp_path, capsys, monkeypatch):
    import spine_measure.batch as batch

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_batch", interrupted)
    rc = main(["batch", str(ws / "good"), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130
    assert "Run the same command again to resume" in err


def test_the_documented_table_is_this_one():
    text = (ROOT / "docs" / "cli.md").read_text()
    codes = [int(c) for c in re.findall(r"^\| (\d+) \|", text, flags=re.M)]
    assert codes == [0, 1, 2, 3, 130]
    tested = {code for cases in CASES.values() for _w, _a, code in cases}
    assert tested == {0, 1, 2, 3}   # 130 by test_interrupted_batch_says_how_to_resume
    assert "docs/cli.md" in (ROOT / "README.md").read_text()
