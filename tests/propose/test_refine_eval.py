"""The AASCE refinement evaluation (benchmarks/eval_propagation.py refine-aasce) run end to
end on a synthetic stand-in for the AASCE training folder: the same layout (images,
filenames.csv, landmarks.csv with x then y as fractions of the width and height), sharp
synthetic AP bodies instead of patients' films. Checks the protocol, not AASCE figures."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ev():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import eval_propagation
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return eval_propagation


def _fake_aasce(root: Path, n_films: int = 2) -> list[np.ndarray]:
    """n_films AP films of 17 stacked bright bodies; returns their corners (68 x (row, col))."""
    from PIL import Image
    from scipy import ndimage

    data = root / "boostnet_labeldata" / "data" / "training"
    labels = root / "boostnet_labeldata" / "labels" / "training"
    data.mkdir(parents=True)
    labels.mkdir(parents=True)
    names, rows, corners = [], [], []
    rng = np.random.default_rng(0)
    h, w = 1300, 260
    for k in range(n_films):
        img = np.full((h, w), 40.0)
        pts = []
        for i in range(17):
            top, left = 40 + 72 * i + k, 70 + 3 * k
            img[top:top + 52, left:left + 110] = 200.0
            # SL, SR, IL, IR (row, col) of the pixel-edge corners
            pts += [(top - 0.5, left - 0.5), (top - 0.5, left + 109.5),
                    (top + 51.5, left - 0.5), (top + 51.5, left + 109.5)]
        img = ndimage.gaussian_filter(img, 1.0) + rng.normal(0, 2.0, img.shape)
        name = f"film{k}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(data / name)
        p = np.array(pts)
        names.append(name)
        rows.append(np.concatenate([p[:, 1] / w, p[:, 0] / h]))
        corners.append(p)
    with open(labels / "filenames.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([[n] for n in names])
    np.savetxt(labels / "landmarks.csv", np.array(rows), delimiter=",")
    return corners


def test_split_is_seeded_disjoint_and_half(ev):
    a = ev.split_halves(481, 1)
    assert a == ev.split_halves(481, 1)
    assert sum(v == "tune" for v in a.values()) == 240 and len(a) == 481
    assert a != ev.split_halves(481, 2)


def test_refine_aasce_chain(ev, tmp_path):
    _fake_aasce(tmp_path / "aasce")
    out = tmp_path / "out"
    for o in (out, tmp_path / "again"):
        o.mkdir()
        assert ev.main(["refine-aasce", str(tmp_path / "aasce"), "--out", str(o),
                        "--radius", "8", "--sigma", "1.5"]) == 0
    table = (out / "aasce_refine_split.csv").read_bytes()
    assert table == (tmp_path / "again" / "aasce_refine_split.csv").read_bytes()
    rows = list(csv.DictReader(open(out / "aasce_refine_split.csv")))
    assert len(rows) == 2 * 17 * 4
    assert {r["half"] for r in rows} == {"tune", "holdout"}
    assert all(len({r["half"] for r in rows if r["film"] == f}) == 1
               for f in {r["film"] for r in rows})
    before = np.array([float(r["before_px"]) for r in rows])
    after = np.array([float(r["after_px"]) for r in rows])
    refined = np.array([r["refined"] == "True" for r in rows])
    # the clicks are the corners + N(0, 5 px) per coordinate (median radial error 5.9 px)
    assert 4.5 < np.median(before) < 7.5
    # a click is never moved without an answer; on sharp bodies, most answers improve it
    assert np.all(after[~refined] == before[~refined])
    assert refined.mean() > 0.3
    assert np.mean(after[refined] < before[refined]) > 0.9
    # the exact click (on the corner) barely moves where it is answered: the edges are sharp
    moved = [float(r["exact_moved_px"]) for r in rows if r["exact_refined"] == "True"]
    assert moved and np.median(moved) < 0.5
    summary = (out / "aasce_refine_summary.txt").read_text().splitlines()
    assert [s.split(":")[0] for s in summary[1:]] == ["tune", "holdout", "all"]
    assert ev.main(["figures", "--out", str(out), "--docs", str(tmp_path / "fig"),
                    "--only", "refine-aasce"]) == 0
    assert (tmp_path / "fig" / "refine_aasce.png").stat().st_size > 10_000


def test_refine_aasce_bad_input_is_one_line(ev, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ev.main(["refine-aasce", str(tmp_path), "--out", str(tmp_path / "o"), "--radius", "0"])
    assert e.value.code == 2
    assert "--radius and --sigma must be > 0; got 0 and 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        ev.main(["refine-aasce", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert "no boostnet_labeldata/data/training" in str(e.value.code)
