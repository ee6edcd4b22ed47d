"""Every example in the docs is run: the code blocks of ``README.md`` and ``docs/*.md`` that
show a command or Python, with their shown output compared where the docs show it.

Blocks are taken from the Markdown files themselves, so an edited example is tested as
edited. Commands run in a temporary folder (``sample_dicoms`` linked in, read only); no
tracked file is written.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from spine_measure.cli import EXIT_OK, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SAMPLE = ROOT / "sample_dicoms"


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    lang: str
    body: str


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(path, text[:m.start()].count("\n") + 1, m.group(1), m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def block_with(path: Path, marker: str, lang: str | None = None) -> Block:
    found = [b for b in blocks(path) if marker in b.body and (lang is None or b.lang == lang)]
    assert len(found) == 1, f"{path.name}: {len(found)} blocks hold {marker!r}"
    return found[0]


def shown_output(path: Path, after: Block) -> str:
    """The output the docs promise right after ``after``: "prints `...`"."""
    text = path.read_text(encoding="utf-8")
    rest = text.split(after.body, 1)[1]
    m = re.search(r"prints `([^`]+)`", rest[:400])
    assert m, f"{path.name}:{after.line}: no 'prints `...`' after the block"
    return m.group(1)


def run_python(code: str, cwd: Path) -> str:
    """Run ``code`` as a script in ``cwd``; return what it printed."""
    out = io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, "<doc example>", "exec"), {"__name__": "__doc_example__"})
    finally:
        os.chdir(old)
    return out.getvalue()


def run_cli(argv: list[str], cwd: Path, capsys) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = main(argv)
        cap = capsys.readouterr()
    finally:
        os.chdir(old)
    return rc, cap.out, cap.err


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A folder with ``sample_dicoms`` linked in, as the docs' relative paths expect."""
    (tmp_path / "sample_dicoms").symlink_to(SAMPLE, target_is_directory=True)
    return tmp_path


# --- annotation_format.md ------------------------------------------------------------------

def test_annotation_python_api_example(tmp_path: Path) -> None:
    doc = DOCS / "annotation_format.md"
    block = block_with(doc, "save_annotation(ann", "python")
    (tmp_path / "films").mkdir()
    (tmp_path / "films" / "SM001_postop.dcm").write_bytes(
        (SAMPLE / "SM001" / "SM001_postop.dcm").read_bytes())
    printed = run_python(block.body, tmp_path)
    assert printed.strip() == shown_output(doc, block)
    saved = json.loads((tmp_path / "films" / "SM001_postop.sm.json").read_text())
    assert saved["revision"] == 2 and saved["reader"] == "reader-01"


def test_annotation_import_example(workdir: Path, capsys) -> None:
    """The CSV example imports cleanly into the bundled films (its points lie inside them)
    and the command prints what the docs show."""
    doc = DOCS / "annotation_format.md"
    csv_block = block_with(doc, "image,view,level,point,x,y")
    (workdir / "landmarks.csv").write_text(csv_block.body, encoding="utf-8")
    console = block_with(doc, "$ spine-measure import-landmarks", "console").body.splitlines()
    argv = shlex.split(console[0].removeprefix("$ spine-measure "))
    rc, out, err = run_cli(argv, workdir, capsys)
    assert rc == EXIT_OK, err
    assert (out + err).splitlines() == console[1:]
    # every CSV row is a point of the annotation written, (row, col) = (y, x)
    rows = [ln.split(",") for ln in csv_block.body.splitlines()[1:]]
    for image in {r[0] for r in rows}:
        ann = json.loads((workdir / "imported" / image.replace(".dcm", ".sm.json")).read_text())
        got = {(v["level"], p): tuple(xy) for v in ann["landmarks"]["vertebrae"]
               for p, xy in v["points"].items()}
        want = {(r[2], r[3]): (float(r[5]), float(r[4])) for r in rows if r[0] == image}
        assert got == want, image


# --- loading.md, cement.md -----------------------------------------------------------------

def test_loading_doctest() -> None:
    block = block_with(DOCS / "loading.md", ">>> from spine_measure.io import load_radiograph")
    parser = doctest.DocTestParser()
    test = parser.get_doctest(block.body, {}, "loading.md", str(DOCS / "loading.md"),
                              block.line)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    old = Path.cwd()
    os.chdir(ROOT)
    try:
        runner.run(test)
    finally:
        os.chdir(old)
    assert runner.summarize(verbose=False).attempted >= 4
    assert runner.summarize(verbose=False).failed == 0


def test_cement_example() -> None:
    doc = DOCS / "cement.md"
    block = block_with(doc, "analyze_cement", "python")
    assert run_python(block.body, ROOT).strip() == shown_output(doc, block)


def test_cement_on_the_radiograph_equals_on_its_density() -> None:
    """cement.md: passing the Radiograph converts only the search region; same result."""
    import numpy as np

    from spine_measure.cement import analyze_cement
    from spine_measure.io import load_radiograph
    from spine_measure.io.annotation import load_annotation

    rg = load_radiograph(SAMPLE / "SM002" / "SM002_postop.dcm")
    lm = load_annotation(SAMPLE / "SM002" / "SM002_postop.sm.json").landmarks
    a = analyze_cement(rg.density, lm, "T12", rg.spacing)
    b = analyze_cement(rg, lm, "T12", rg.spacing)
    assert a.mask.sum() > 1000
    assert np.array_equal(a.mask, b.mask)
    assert a.features.to_dict().keys() == b.features.to_dict().keys()


# --- README.md and batch.md: the quick start and the batch --------------------------------

def _quickstart_batch_argv(out: str) -> list[str]:
    script = (ROOT / "scripts" / "quickstart.sh").read_text(encoding="utf-8")
    cmd = re.search(r"\.venv/bin/spine-measure (batch (?:.*\\\n)*.*)\n", script)
    assert cmd, "quickstart.sh: no spine-measure batch command"
    argv = shlex.split(cmd.group(1).replace("\\\n", " "))
    return [out if a == "$out" else a for a in argv]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    """``scripts/quickstart.sh``'s batch, as the README runs it."""
    work = tmp_path_factory.mktemp("quickstart")
    (work / "sample_dicoms").symlink_to(SAMPLE, target_is_directory=True)
    argv = _quickstart_batch_argv("spine_measure_output")
    old = Path.cwd()
    os.chdir(work)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(argv) == EXIT_OK
    finally:
        os.chdir(old)
    return work


def test_readme_table_is_the_quickstart_output(quickstart: Path) -> None:
    script = (ROOT / "scripts" / "quickstart.sh").read_text(encoding="utf-8")
    snippet = re.search(r"<<'PY'\n(.*?)\nPY", script, re.S).group(1)
    proc = subprocess.run([sys.executable, "-", "spine_measure_output"], input=snippet,
                          capture_output=True, text=True, cwd=quickstart, timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = block_with(ROOT / "README.md", "patient_pseudo_id level").body
    assert proc.stdout.splitlines() == shown.splitlines()


def test_readme_risk_example(quickstart: Path, capsys) -> None:
    line = block_with(ROOT / "README.md", "risk apply", "console").body.strip()
    argv = shlex.split(line.removeprefix("$ .venv/bin/spine-measure "))
    rc, out, err = run_cli(argv, quickstart, capsys)
    assert rc == EXIT_OK, err
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"\(e\.g\. (0\.\d+) for the patient", readme).group(1)
    import csv

    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 7  # one per patient x treated level of the quick start
    assert all(r["li2021_probability"] or r["li2021_missing_inputs"] for r in rows)
    assert f"{float(shown):.3f}" in {f"{float(r['li2021_probability']):.3f}" for r in rows
                                     if r["li2021_probability"]}


def test_batch_python_example(workdir: Path, monkeypatch) -> None:
    block = block_with(DOCS / "batch.md", "run_batch(BatchOptions", "python")
    *body, last = block.body.strip().splitlines()
    code = "\n".join(body) + f"\nRESULT = ({last})\n"
    ns: dict = {}
    monkeypatch.chdir(workdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "batch.md", "exec"), ns)
    n_done, n_failed, exit_code = ns["RESULT"]
    assert (n_done, n_failed, exit_code) == (22, 0, 0)
    assert (workdir / "results" / "features_wide.csv").is_file()


# --- sample_data.md -----------------------------------------------------------------------

def test_sample_data_regeneration_example(tmp_path: Path) -> None:
    """``python -m spine_measure.synthetic /tmp/x --patients SM001`` gives SM001's truth
    byte for byte, as sample_data.md says."""
    block = block_with(DOCS / "sample_data.md", "--patients SM001")
    line = next(ln for ln in block.body.splitlines() if "--patients SM001" in ln)
    argv = shlex.split(line.split("#")[0])
    assert argv[:3] == ["python", "-m", "spine_measure.synthetic"]
    out = tmp_path / "x"
    old_argv = sys.argv
    sys.argv = [argv[2], str(out), *argv[4:]]
    try:
        with contextlib.suppress(SystemExit), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runpy.run_module("spine_measure.synthetic", run_name="__main__")
    finally:
        sys.argv = old_argv
    made = sorted((out / "SM001").glob("*.truth.json"))
    assert [p.name for p in made] == sorted(p.name for p in (SAMPLE / "SM001").glob(
        "*.truth.json"))
    for p in made:
        assert p.read_bytes() == (SAMPLE / "SM001" / p.name).read_bytes(), p.name


# --- every command line shown anywhere names real options ---------------------------------

DOC_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
PREFIX = re.compile(r"^\s*(?:\$\s*)?(?:\.venv/bin/)?spine-measure\s+(.*)$")


def _command_lines() -> list[tuple[str, str]]:
    found = []
    for path in DOC_FILES:
        for b in blocks(path):
            lines = b.body.splitlines()
            for i, ln in enumerate(lines):
                m = PREFIX.match(ln)
                if not m:
                    continue
                text = m.group(1)
                # synopses continue on indented lines
                for nxt in lines[i + 1:]:
                    if nxt.startswith(" ") and nxt.strip().startswith("["):
                        text += " " + nxt.strip()
                    else:
                        break
                found.append((f"{path.name}:{b.line + i + 1}", text))
    return found


COMMAND_LINES = _command_lines()


def test_docs_show_commands() -> None:
    assert len(COMMAND_LINES) >= 8


def _unknown_options(text: str) -> tuple[list[str], list[str]]:
    """The subcommand ``text`` names and the options it uses that the command lacks."""
    from typer.main import get_command

    from spine_measure.cli import app

    cmd = get_command(app)
    words = text.split("#")[0].split()
    path = []
    while hasattr(cmd, "commands") and words and words[0] in cmd.commands:  # a group
        path.append(words[0])
        cmd = cmd.commands[words.pop(0)]
    if not path and words and words[0].startswith("-"):  # the root's own options
        path = ["(root)"]
    elif not path or hasattr(cmd, "commands"):
        return path, ["(no such command)"]
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    used = {t.split("=")[0] for t in re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*(?:=\S+)?",
                                                 " ".join(words))}
    return path, sorted(used - known)


def test_the_option_check_can_fail() -> None:
    assert _unknown_options("batch DIR --out OUT [--annotation ADIR]") == (
        ["batch"], ["--annotation"])
    assert _unknown_options("risk apply T.csv --model li2021 -x") == (["risk", "apply"], ["-x"])
    assert _unknown_options("measure-all DIR")[1] == ["(no such command)"]
    assert _unknown_options("--version") == (["(root)"], [])
    assert _unknown_options("--versio") == (["(root)"], ["--versio"])
    assert _unknown_options("export-sr F --out D --include-identifiers") == (["export-sr"], [])


@pytest.mark.parametrize(("where", "text"), COMMAND_LINES, ids=[w for w, _ in COMMAND_LINES])
def test_command_line_in_docs_names_real_options(where: str, text: str) -> None:
    path, unknown = _unknown_options(text)
    assert not unknown, f"{where}: spine-measure {' '.join(path)}: unknown {unknown}: {text}"


# --- architecture.md, reliability.md --------------------------------------------------------

def test_architecture_tree_names_real_files() -> None:
    """Every file and folder in architecture.md's tree exists where the tree puts it."""
    block = block_with(DOCS / "architecture.md", "src/spine_measure/")
    stack: list[tuple[int, Path]] = [(-1, ROOT)]
    checked = 0
    for ln in block.body.splitlines():
        name = ln.strip().split()[0] if ln.strip() else ""
        if not re.fullmatch(r"[\w./-]+", name) or not (name.endswith("/") or "." in name):
            continue  # a continuation line of a description
        indent = len(ln) - len(ln.lstrip())
        while stack[-1][0] >= indent:
            stack.pop()
        path = stack[-1][1] / name.rstrip("/")
        assert path.exists(), f"architecture.md: {path.relative_to(ROOT)} does not exist"
        checked += 1
        if name.endswith("/"):
            stack.append((indent, path))
    assert checked >= 20


def test_reliability_simulation_example(workdir: Path) -> None:
    block = block_with(DOCS / "reliability.md", "simulate_readers(", "python")
    run_python(block.body, workdir)
    made = sorted(p.relative_to(workdir / "sim") for p in (workdir / "sim").rglob("*.sm.json"))
    assert made, "the example wrote no annotation"


def test_annotation_error_message_examples(tmp_path: Path) -> None:
    """The error lines annotation_format.md shows are what loading such files prints: each
    made from the doc's own full example by the one change the message names."""
    from spine_measure.io.annotation import SCHEMA_ID, load_annotation

    doc = DOCS / "annotation_format.md"
    shown = block_with(doc, "x.sm.json: not valid JSON").body.splitlines()
    example = next(b.body for b in blocks(doc) if b.lang == "json" and '"schema"' in b.body)
    assert json.loads(example)["schema"] == SCHEMA_ID  # the example is of the current version
    later = SCHEMA_ID.rsplit("/", 1)[0] + "/" + str(int(SCHEMA_ID.rsplit("/", 1)[1]) + 1)

    def variant(change) -> str:
        d = json.loads(example)
        change(d)
        return json.dumps(d)

    def points(d: dict) -> dict:
        return d["landmarks"]["vertebrae"][0]["points"]

    files = [
        variant(lambda d: points(d).__setitem__("As", [1.0, 2.0, 3.0])),
        variant(lambda d: d.__setitem__("view", "sideways")),
        variant(lambda d: d.__setitem__("readr", "reader-02")),
        variant(lambda d: d.__setitem__("schema", later)),
        variant(lambda d: points(d).pop("Ai")),
        "{x",
    ]
    got = []
    path = tmp_path / "x.sm.json"
    for text in files:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(Exception) as info:  # noqa: PT011 - the message is what is checked
            load_annotation(path)
        got.append(str(info.value).replace(str(path), "x.sm.json"))
    assert got == shown


# --- propagation.md ------------------------------------------------------------------------

def test_propagation_reliability_example(tmp_path: Path, capsys) -> None:
    """The 'judging it on your own films' commands, as written, on two sample patients: the
    proposals are paired with the reader's annotations of the same films, the pre-op films
    (no proposal) are the only unpaired ones, and each used pair's difference is the
    proposal's value minus the reader's."""
    import csv
    import shutil

    from spine_measure.io.annotation import load_annotation
    from spine_measure.io.radiograph import load_radiograph
    from spine_measure.measurements import measure_film

    block = block_with(DOCS / "propagation.md", "$ spine-measure reliability", "console")
    cmds = [shlex.split(ln.removeprefix("$ spine-measure "))
            for ln in block.body.splitlines() if ln.startswith("$ ")]
    assert [c[0] for c in cmds] == ["propagate", "reliability"]
    for d in ("films", "readings", "preop"):
        (tmp_path / d).mkdir()
    for pid in ("SM001", "SM003"):
        for tp in ("preop", "postop", "followup"):
            shutil.copy(SAMPLE / pid / f"{pid}_{tp}.dcm", tmp_path / "films")
            shutil.copy(SAMPLE / pid / f"{pid}_{tp}.sm.json", tmp_path / "readings")
        shutil.copy(SAMPLE / pid / f"{pid}_preop.sm.json", tmp_path / "preop")
    rc, _, err = run_cli(cmds[0], tmp_path, capsys)
    assert rc == EXIT_OK, err
    rc, out, err = run_cli(cmds[1], tmp_path, capsys)
    assert rc == 1, err  # the pre-op films are unpaired, as the text says
    with open(tmp_path / "agreement" / "unpaired.csv", newline="") as fh:
        unpaired = sorted(Path(r["file"]).name for r in csv.DictReader(fh))
    assert unpaired == ["SM001_preop.sm.json", "SM003_preop.sm.json"]
    assert "4 paired film(s)" in err
    with open(tmp_path / "agreement" / "pairs_long.csv", newline="") as fh:
        pairs = [r for r in csv.DictReader(fh) if r["measurement"] == "wedge_angle"
                 and r["used"] == "True"]
    n_proposed = sum(len(load_annotation(p).landmarks)
                     for p in (tmp_path / "proposed").glob("*.sm.json"))
    with open(tmp_path / "proposed" / "propagation.csv", newline="") as fh:
        assert n_proposed == sum(r["status"] == "proposed" for r in csv.DictReader(fh))
    assert len(pairs) == n_proposed  # every proposed vertebra (no S1 here) has a pair
    # one pair recomputed independently from the two files
    r = next(p for p in pairs if p["file_name"] == "SM003_followup.dcm" and p["level"] == "L1")
    film = load_radiograph(tmp_path / "films" / "SM003_followup.dcm")
    vals = [measure_film(load_annotation(tmp_path / d / "SM003_followup.sm.json").landmarks,
                         spacing=film.spacing, calibration_source="pixel_spacing")
            .get("L1", "wedge_angle").value for d in ("readings", "proposed")]
    assert float(r["diff_b_minus_a"]) == pytest.approx(vals[1] - vals[0], abs=1e-9)
