"""Start-up cost: ``--version`` and ``info FILE`` must not import the heavy libraries that
only some commands need (measured by ``benchmarks/bench_startup.py``; here the deterministic
part: which modules a fresh interpreter has loaded after the command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILM = ROOT / "sample_dicoms" / "SM001" / "SM001_postop.dcm"

# never needed to print the version or describe a file
HEAVY = ("pandas", "matplotlib", "scipy", "skimage", "sklearn", "statsmodels", "cv2",
         "SimpleITK", "napari", "qtpy", "rich", "highdicom", "jsonschema")

PROBE = """
import io, json, sys, contextlib
from spine_measure.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "out": out.getvalue(),
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _loaded(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_version_imports_neither_numpy_nor_pydicom() -> None:
    res = _loaded("--version")
    assert res["rc"] == 0
    assert res["out"].startswith("spine-measure ")
    loaded = set(res["modules"])
    assert not loaded & {*HEAVY, "numpy", "pydicom", "PIL", "concurrent"}, sorted(loaded)


@pytest.mark.parametrize("extra", [[], ["--header-only"]])
def test_info_imports_only_the_readers(extra: list[str]) -> None:
    res = _loaded("info", *extra, str(FILM))
    assert res["rc"] == 0
    assert "SM001_postop.dcm\tok\tDX" in res["out"]  # it really described the film
    loaded = set(res["modules"])
    assert {"pydicom", "numpy"} <= loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_every_command_still_registers() -> None:
    """Lazy imports must not lose a subcommand: the help lists each one."""
    from typer.main import get_command

    from spine_measure.cli import app

    names = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {"annotate", "batch", "export-sr", "import-landmarks", "info", "measure",
            "reliability", "risk"} <= names


def test_version_is_the_installed_metadata() -> None:
    """``__version__`` is a literal (no importlib.metadata at start-up); pyproject.toml takes
    the package version from it, so the two agree."""
    import importlib.metadata
    import tomllib

    import spine_measure

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "spine_measure.__version__"}
    assert importlib.metadata.version("spine-measure") == spine_measure.__version__
