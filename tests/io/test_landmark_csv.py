"""CSV landmark import: good and bad rows (line numbers), images by UID / pixel hash, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_helpers import make_dicom
from PIL import Image

from spine_measure.cli import main
from spine_measure.io.annotation import Findings, load_annotation, pixel_hash, save_annotation
from spine_measure.io.landmark_csv import (
    LandmarkCsvError,
    import_landmark_csv,
    read_landmark_csv,
    xy_to_rowcol,
)


def lat_rows(image, level, r0, c0, extra=""):
    """Four lateral points of a 10 x 20 px body; x = column, y = row."""
    pts = {"As": (r0, c0 + 20), "Ai": (r0 + 10, c0 + 20), "Ps": (r0, c0), "Pi": (r0 + 10, c0)}
    return [f"{image},lateral,{level},{n},{c},{r}{extra}" for n, (r, c) in pts.items()]


@pytest.fixture
def study(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    uid_a = make_dicom(images / "a.dcm", rows=64, cols=48)
    uid_b = make_dicom(images / "sub" / "b.dcm")
    png = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    Image.fromarray(png).save(images / "c.png")
    (images / "notes.dcm").write_text("not an image, just text " * 20)
    return tmp_path, images, uid_a, uid_b, png


GOOD_HEADER = "image,view,level,point,x,y,fractured,treated,excluded"


def write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_xy_to_rowcol_is_the_one_boundary():
    assert xy_to_rowcol(7.0, 3.0) == (3.0, 7.0)
    assert xy_to_rowcol(7.0, 3.0, pixel_origin="corner") == (2.5, 6.5)
    with pytest.raises(ValueError, match="pixel_origin"):
        xy_to_rowcol(1, 1, pixel_origin="middle")


def test_good_and_bad_rows(study):
    tmp, images, uid_a, uid_b, png = study
    lines = [
        GOOD_HEADER,                                                        # 1
        *[r + ",,," for r in lat_rows("a.dcm", "T12", 5, 10)],              # 2-5
        *lat_rows("a.dcm", "L1", 20, 10, ",true,true,false"),               # 6-9
        "a.dcm,lateral,L1,Ass,30,20,,,",                                    # 10 unknown point
        "a.dcm,lateral,L2,As,abc,40,,,",                                    # 11 non-numeric
        "a.dcm,lateral,L1,As,31,21,,,",                                     # 12 duplicate
        "",                                                                 # 13 blank
        *[r + ",,," for r in lat_rows("sub/b.dcm", "L3", 5, 5)],            # 14-17
        "sub/b.dcm,lateral,L4,As,30,20,,,",                                 # 18 L4 lacks Ai Ps Pi
        "sub/b.dcm,lateral,L4,Ai,30,30,,,",                                 # 19
        "sub/b.dcm,lateral,L5,As,30,300,,,",                                # 20 outside (y)
        "notes.dcm,lateral,L1,As,1,1,,,",                                   # 21 unknown image
        "missing.dcm,lateral,L1,As,1,1,,,",                                 # 22 image not found
        "missing.dcm,lateral,L1,Ai,1,2,,,",                                 # 23
        "c.png,ap,L2,sl,3,4,,,",                                            # 24 (case: SL)
        "c.png,AP,L2,SR,23,4,,,",                                           # 25
        "c.png,ap,L2,IL,3,14,,,",                                           # 26
        "c.png,ap,L2,IR,23,14,,yes,",                                       # 27
        "c.png,lateral,L3,As,1,1,,,",                                       # 28 view differs
        "c.png,ap,L7,SL,1,1,,,",                                            # 29 unknown level
        "c.png,ap,L2,IR,23,14,,no,",                                        # 30 duplicate
        "a.dcm,lateral,T11,As,1,1,maybe,,",                                 # 31 bad flag
        "a.dcm,lateral,T10,As,nan,1,,,",                                    # 32 not finite
        "a.dcm,lateral",                                                    # 33 short row
    ]
    csv_path = write_csv(tmp / "lm.csv", lines)
    out = tmp / "out"
    report = import_landmark_csv(csv_path, images, out, reader="R1")

    by_line = {p.lines: p.message for p in report.problems}
    assert set(report.failed_lines) == {10, 11, 12, 18, 19, 20, 21, 22, 23, 28, 29, 30, 31,
                                        32, 33}
    assert 'unknown point "Ass" for a lateral view; did you mean "As"?' in by_line[(10,)]
    assert 'x "abc" is not a plain decimal number' in by_line[(11,)]
    assert "duplicate point As (first given on line 6)" in by_line[(12,)]
    assert "L4: missing required point(s) Ps, Pi" in by_line[(18, 19)]
    assert "outside the image (64 columns x 64 rows); are x and y swapped?" in by_line[(20,)]
    assert "notes.dcm: unknown image" in by_line[(21,)]
    assert "missing.dcm: image not found" in by_line[(22, 23)]
    assert 'view "lateral" differs from "ap" on line 24' in by_line[(28,)]
    assert 'unknown level "L7"' in by_line[(29,)]
    assert "duplicate point IR (first given on line 27)" in by_line[(30,)]
    assert 'excluded "maybe"' not in by_line[(31,)] and 'fractured "maybe"' in by_line[(31,)]
    assert 'x "nan" is not a plain decimal number' in by_line[(32,)]
    assert "expected 9 fields, got 2" in by_line[(33,)]
    # messages render as file:line: reason
    assert str(next(p for p in report.problems if p.lines == (22, 23))).startswith(
        f"{csv_path}:22-23: missing.dcm")
    # 32 data lines, one of them blank
    assert report.rows_total == 31 and report.rows_failed == 15 and not report.ok

    # what was imported
    assert sorted(i.image for i in report.imported) == ["a.dcm", "c.png", "sub/b.dcm"]
    a = load_annotation(out / "a.sm.json")
    assert a.image.sop_instance_uid == uid_a and (a.image.rows, a.image.cols) == (64, 48)
    assert a.reader == "R1" and a.revision == 1 and a.view == "lateral"
    assert a.landmarks.levels() == ("T12", "L1")
    l1 = a.landmarks["L1"]
    # row 6: x = 10 + 20 = 30 (column), y = 20 (row) -> (row, col) = (20, 30)
    assert l1.points["As"] == (20.0, 30.0) and l1.points["Pi"] == (30.0, 10.0)
    assert (l1.fractured, l1.treated, l1.excluded) == (True, True, False)
    assert not a.landmarks["T12"].treated
    b = load_annotation(out / "sub" / "b.sm.json")
    assert b.image.sop_instance_uid == uid_b and b.landmarks.levels() == ("L3",)
    c = load_annotation(out / "c.sm.json")
    assert c.image.sop_instance_uid is None and c.image.pixel_sha256 == pixel_hash(png)
    assert c.view == "ap" and c.landmarks["L2"].points["SL"] == (4.0, 3.0)
    assert c.landmarks["L2"].treated  # "yes" on line 27


def test_missing_columns_and_files(tmp_path):
    with pytest.raises(LandmarkCsvError, match="missing column.s. x, y"):
        read_landmark_csv(write_csv(tmp_path / "a.csv", ["image,view,level,point,X1,Y1"]))
    with pytest.raises(LandmarkCsvError, match="file not found"):
        read_landmark_csv(tmp_path / "nope.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(LandmarkCsvError, match="empty file"):
        read_landmark_csv(tmp_path / "e.csv")
    # header names are case-insensitive, a BOM and extra columns are fine
    p = tmp_path / "b.csv"
    p.write_text("\ufeffImage, View ,LEVEL,Point,X,Y,comment\nf.dcm,lateral,L1,As,1.5,2.5,hi\n",
                 encoding="utf-8")
    rows, problems, total = read_landmark_csv(p)
    assert (total, problems) == (1, [])
    assert (rows[0].line, rows[0].row, rows[0].col, rows[0].point) == (2, 2.5, 1.5, "As")


def test_cli_exit_codes_and_overwrite(study, capsys):
    tmp, images, uid_a, _, _ = study
    out = tmp / "out"
    good = write_csv(tmp / "good.csv", [GOOD_HEADER,
                                        *lat_rows("a.dcm", "L1", 20, 10, ",false,true,false")])
    assert main(["import-landmarks", str(good), "--images", str(images), "--out", str(out),
                 "--reader", "R1"]) == 0
    assert load_annotation(out / "a.sm.json").revision == 1

    # a reader adds findings; re-import without --overwrite never touches the file
    saved = save_annotation(load_annotation(out / "a.sm.json").replace(
        findings=Findings(ivc=True)), out / "a.sm.json")
    before = (out / "a.sm.json").read_bytes()
    capsys.readouterr()
    assert main(["import-landmarks", str(good), "--images", str(images), "--out",
                 str(out)]) == 3
    err = capsys.readouterr().err
    assert f"{good}:2-5: a.dcm:" in err and "annotation file exists; use --overwrite" in err
    assert (out / "a.sm.json").read_bytes() == before

    # --overwrite updates the landmarks and keeps the findings; bad rows give exit code 1
    moved = write_csv(tmp / "moved.csv", [GOOD_HEADER,
                                          *lat_rows("a.dcm", "L1", 21, 10, ",false,true,false"),
                                          "a.dcm,lateral,L1,Mss,1,1,,,"])
    assert main(["import-landmarks", str(moved), "--images", str(images), "--out", str(out),
                 "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert f'{moved}:6: a.dcm L1: unknown point "Mss" for a lateral view; did you mean "Ms"?' \
        in err
    a = load_annotation(out / "a.sm.json")
    assert a.revision == saved.revision + 1 and a.findings.ivc is True and a.reader == "R1"
    assert a.landmarks["L1"].points["As"] == (21.0, 30.0)

    # corner origin
    assert main(["import-landmarks", str(good), "--images", str(images), "--out",
                 str(tmp / "out2"), "--pixel-origin", "corner"]) == 0
    assert load_annotation(tmp / "out2" / "a.sm.json").landmarks["L1"].points["As"] == \
        (19.5, 29.5)

    # usage errors and unusable CSVs
    assert main(["import-landmarks", str(tmp / "nope.csv"), "--images", str(images),
                 "--out", str(out)]) == 2
    assert main(["import-landmarks", str(good), "--images", str(tmp / "nope"),
                 "--out", str(out)]) == 2
    bad = write_csv(tmp / "bad.csv", ["image,x,y"])
    assert main(["import-landmarks", str(bad), "--images", str(images), "--out",
                 str(out)]) == 3
    assert "missing column(s) view, level, point" in capsys.readouterr().err
