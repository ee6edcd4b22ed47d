"""``export-sr`` pseudonymises by default exactly as ``batch --sr`` does: same keyed pseudonym
from the same key resolution; ``--include-identifiers`` keeps the real identifiers."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from spine_measure.batch.pseudonym import KEY_ENV, pseudonym
from spine_measure.cli import EXIT_OK, EXIT_USAGE, main

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicoms"
FILM = "SM001_postop"


@pytest.fixture()
def films(tmp_path: Path) -> Path:
    """One patient's post-op film with its annotation (a folder batch can run on)."""
    folder = tmp_path / "films" / "SM001"
    folder.mkdir(parents=True)
    for suffix in (".dcm", ".sm.json"):
        shutil.copy(SAMPLE / "SM001" / f"{FILM}{suffix}", folder)
    return tmp_path / "films"


def _run(argv: list[str]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


def _identifiers(dcm: Path) -> dict[str, str]:
    src = pydicom.dcmread(dcm, stop_before_pixels=True)
    ids = {kw: str(src.get(kw) or "") for kw in ("PatientID", "PatientName",
                                                 "PatientBirthDate", "AccessionNumber")}
    assert all(ids.values()), ids  # the sample film carries every one of them
    return ids


def _batch_sr(films: Path, out: Path, *key_args: str) -> pydicom.Dataset:
    assert _run(["batch", films, "--out", out, "--sr", "--no-overlays", "--no-progress",
                 *key_args]) == EXIT_OK
    return pydicom.dcmread(next((out / "sr").rglob("*.sr.dcm")))


def test_export_sr_pseudonymises_like_batch(films: Path, tmp_path: Path, capsys) -> None:
    dcm = films / "SM001" / f"{FILM}.dcm"
    ids = _identifiers(dcm)
    out = tmp_path / "sr"
    assert _run(["export-sr", dcm, "--out", out, "--pseudonym-key", "study-key"]) == EXIT_OK
    written = list(out.glob("*.sr.dcm"))
    assert len(written) == 1
    raw = written[0].read_bytes()
    for kw, value in ids.items():
        assert value.encode() not in raw, f"{kw} {value!r} found in the SR"
    assert b"SYNTHETIC" not in raw  # no part of the name either
    sr = pydicom.dcmread(written[0])
    expected = pseudonym(ids["PatientID"], b"study-key")
    assert sr.PatientID == expected and str(sr.PatientName) == expected
    assert not sr.get("PatientBirthDate") and not sr.get("AccessionNumber")
    # batch with the same key: the same pseudonym in its SR and in its tables
    bsr = _batch_sr(films, tmp_path / "batch", "--pseudonym-key", "study-key")
    assert bsr.PatientID == sr.PatientID and str(bsr.PatientName) == str(sr.PatientName)
    long = pd.read_csv(tmp_path / "batch" / "measurements_long.csv", dtype=str)
    assert set(long["patient_pseudo_id"]) == {expected}
    assert "patient_id" not in long.columns
    capsys.readouterr()


def test_default_key_is_the_one_batch_uses(films: Path, tmp_path: Path, monkeypatch,
                                           capsys) -> None:
    """No key option: both commands take the same key (here the user's key file, generated
    by the first of them) and so give the same pseudonym; the key is not in either output."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("SPINE_MEASURE_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    dcm = films / "SM001" / f"{FILM}.dcm"
    assert _run(["export-sr", dcm, "--out", tmp_path / "sr"]) == EXIT_OK
    key_file = tmp_path / "config" / "spine_measure" / "pseudonym.key"
    assert key_file.is_file()
    key = key_file.read_text().strip().encode()
    sr = pydicom.dcmread(next((tmp_path / "sr").glob("*.sr.dcm")))
    assert sr.PatientID == pseudonym("SM001", key)
    bsr = _batch_sr(films, tmp_path / "batch")
    assert bsr.PatientID == sr.PatientID
    for folder in (tmp_path / "sr", tmp_path / "batch"):
        assert not list(folder.rglob("pseudonym.key"))
        assert not any(key in p.read_bytes() for p in folder.rglob("*") if p.is_file())
    # the environment variable wins over the user's key, in both commands alike
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert _run(["export-sr", dcm, "--out", tmp_path / "sr2"]) == EXIT_OK
    sr2 = pydicom.dcmread(next((tmp_path / "sr2").glob("*.sr.dcm")))
    assert sr2.PatientID == pseudonym("SM001", b"from-env") != sr.PatientID
    capsys.readouterr()


def test_include_identifiers_keeps_the_real_ones(films: Path, tmp_path: Path, capsys) -> None:
    dcm = films / "SM001" / f"{FILM}.dcm"
    ids = _identifiers(dcm)
    assert _run(["export-sr", dcm, "--out", tmp_path / "sr", "--include-identifiers"]) \
        == EXIT_OK
    sr = pydicom.dcmread(next((tmp_path / "sr").glob("*.sr.dcm")))
    assert {kw: str(sr.get(kw)) for kw in ids} == ids
    capsys.readouterr()


def test_key_options_refused_with_include_identifiers(films: Path, tmp_path: Path,
                                                      capsys) -> None:
    dcm = films / "SM001" / f"{FILM}.dcm"
    rc = _run(["export-sr", dcm, "--out", tmp_path / "sr", "--include-identifiers",
               "--pseudonym-key", "k"])
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE and "--include-identifiers" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list((tmp_path / "sr").glob("*.sr.dcm"))


def test_key_inside_the_output_folder_is_refused(films: Path, tmp_path: Path, capsys) -> None:
    dcm = films / "SM001" / f"{FILM}.dcm"
    out = tmp_path / "sr"
    out.mkdir()
    (out / "k.key").write_text("secret\n")
    rc = _run(["export-sr", dcm, "--out", out, "--pseudonym-key-file", out / "k.key"])
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE and "inside the output folder" in err and "Traceback" not in err
    assert not list(out.glob("*.sr.dcm"))


def test_pseudonym_name_raises_no_person_name_warning(films: Path, tmp_path: Path,
                                                      capsys) -> None:
    """A pseudonym is a one-component name on purpose: no highdicom warning per film."""
    dcm = films / "SM001" / f"{FILM}.dcm"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export-sr", str(dcm), "--out", str(tmp_path / "sr"),
                     "--pseudonym-key", "k"]) == EXIT_OK
    assert not [w for w in caught if "person name" in str(w.message)]
    capsys.readouterr()
