"""``spine-measure annotate``: usage errors without opening a window."""

from spine_measure.cli import main


def test_annotate_missing_path_is_usage_error(tmp_path, capsys):
    assert main(["annotate", str(tmp_path / "nope.dcm")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_annotate_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    assert main(["annotate", str(bad)]) == 3
    assert "x.dcm" in capsys.readouterr().err
