"""The pseudonymisation key never lands in the output folder (``docs/batch.md``,
"Pseudonymisation"): where it comes from, where a generated one is kept, what is refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
from batch_helpers import copy_sample

from spine_measure.batch import BatchOptions, pseudonym, run_batch
from spine_measure.batch.pseudonym import PseudonymKeyError, resolve_key

CLI = "import sys; from spine_measure.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def no_key(tmp_path, monkeypatch):
    """No key in the environment; the user's configuration folder under tmp_path."""
    monkeypatch.delenv("SPINE_MEASURE_PSEUDONYM_KEY")
    monkeypatch.delenv("SPINE_MEASURE_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    return tmp_path / "cfg" / "spine_measure" / "pseudonym.key"


def _batch(src, out, *extra):
    return subprocess.run([sys.executable, "-c", CLI, "batch", str(src), "--out", str(out),
                           "--no-progress", "--no-overlays", *extra],
                          capture_output=True, text=True, timeout=300)


def test_default_key_outside_output_and_same_pseudonyms(tmp_path, no_key):
    src = copy_sample(tmp_path / "in", ["SM001", "SM002"])
    first = _batch(src, tmp_path / "a")
    assert first.returncode == 0, first.stderr
    assert "generated" in first.stderr and first.stderr.count(str(no_key)) == 1
    second = _batch(src, tmp_path / "b")
    assert second.returncode == 0, second.stderr
    assert "generated" not in second.stderr
    assert f"pseudonym key: {no_key}" in second.stderr
    for out in (tmp_path / "a", tmp_path / "b"):
        names = [p.name for p in out.rglob("*")]
        assert "pseudonym.key" not in names
        key = no_key.read_text().strip()
        assert not any(key in p.read_text(errors="replace") for p in out.rglob("*")
                       if p.is_file())
    wide_a = (tmp_path / "a" / "features_wide.csv").read_bytes()
    assert wide_a == (tmp_path / "b" / "features_wide.csv").read_bytes()
    assert pseudonym("SM001", no_key.read_text().strip().encode()).encode() in wide_a
    assert b"SM001" not in wide_a


def test_key_file_option_gives_the_key_s_pseudonyms(tmp_path, no_key):
    src = copy_sample(tmp_path / "in", ["SM003"])
    key_file = tmp_path / "study.key"
    key_file.write_text("study-secret\n")
    res = _batch(src, tmp_path / "o", "--pseudonym-key-file", str(key_file))
    assert res.returncode == 0, res.stderr
    wide = (tmp_path / "o" / "features_wide.csv").read_text()
    assert pseudonym("SM003", b"study-secret") in wide
    assert not no_key.exists()          # nothing generated when a key was given
    # the same key given as text: byte-identical pseudonyms
    res = _batch(src, tmp_path / "p", "--pseudonym-key", "study-secret")
    assert (tmp_path / "p" / "features_wide.csv").read_text() == wide


def test_key_in_output_folder_is_refused(tmp_path, no_key):
    src = copy_sample(tmp_path / "in", ["SM003"])
    out = tmp_path / "o"
    out.mkdir()
    (out / "pseudonym.key").write_text("old\n")
    res = _batch(src, out)
    assert res.returncode == 2
    line = " ".join(res.stderr.split())
    assert f"{out / 'pseudonym.key'}: a pseudonymisation key inside the output folder" in line
    assert "--pseudonym-key-file" in line and "Traceback" not in res.stderr
    assert not (out / "features_wide.csv").exists()
    (out / "pseudonym.key").unlink()
    res = _batch(src, out, "--pseudonym-key-file", str(out / "k.key"))
    assert res.returncode == 2 and "inside the output folder" in res.stderr


def test_key_sources_and_refusals(tmp_path, no_key, monkeypatch):
    out = tmp_path / "o"
    kf = tmp_path / "k.key"
    kf.write_text("  from-file \n")
    assert resolve_key(None, out, key_file=kf).key == b"from-file"
    with pytest.raises(PseudonymKeyError, match="not both"):
        resolve_key("x", out, key_file=kf)
    with pytest.raises(PseudonymKeyError, match="no such file"):
        resolve_key(None, out, key_file=tmp_path / "missing.key")
    (tmp_path / "empty.key").write_text("\n")
    with pytest.raises(PseudonymKeyError, match="empty"):
        resolve_key(None, out, key_file=tmp_path / "empty.key")
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY_FILE", str(kf))
    k = resolve_key(None, out)
    assert (k.key, k.source, k.path) == (b"from-file", "environment_file", kf)
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "env")
    assert resolve_key(None, out).source == "environment"
    assert not no_key.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_a_key_file_readable_by_others_is_warned_about(tmp_path, no_key, caplog):
    kf = tmp_path / "k.key"
    kf.write_text("secret\n")
    kf.chmod(0o600)
    assert resolve_key(None, tmp_path / "o", key_file=kf).key == b"secret"
    assert "readable by other users" not in caplog.text
    kf.chmod(0o644)
    resolve_key(None, tmp_path / "o", key_file=kf)
    assert f"{kf}: the pseudonymisation key is readable by other users (mode 0644)" in caplog.text


def test_python_api_run_writes_no_key(tmp_path, no_key):
    src = copy_sample(tmp_path / "in", ["SM003"])
    s = run_batch(BatchOptions(str(src), str(tmp_path / "o"), overlays=False))
    assert s.key_source == "generated" and s.key_path == str(no_key)
    assert not (tmp_path / "o" / "pseudonym.key").exists()
    s = run_batch(BatchOptions(str(src), str(tmp_path / "o"), overlays=False))
    assert s.key_source == "user_config" and s.n_from_journal == s.n_films
