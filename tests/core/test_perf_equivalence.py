"""The optimised measurement path gives exactly the results of the reference implementation.

``data/measure_reference.json`` was recorded from the straightforward (pre-optimisation)
implementation of ``measure_film`` on the cases built by :func:`cases` below: every sample
truth film with its own calibration and sagittal Cobb pairs (valid and invalid), some films
uncalibrated or with anisotropic pixels, edge variants of a sample film (missing middle
points, excluded neighbours, gaps, coincident and swapped corners, single vertebrae) and
seeded random spines. Floats are stored as ``float.hex`` so the comparison is bit for bit;
every unit, reason, calibration source, neighbour list and detail must match too.

A second test recomputes the per-vertebra values of every sample truth film with a
deliberately naive implementation written out here (heights by ``math.dist``, angles from
``atan2`` of endplate directions, neighbour means by hand) and compares within 1e-12.

Regenerate the reference file only from a known-good implementation::

    .venv/bin/python tests/core/test_perf_equivalence.py --record
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spine_measure.landmarks import LEVELS, SpineLandmarks, Vertebra
from spine_measure.measurements import measure_film

ROOT = Path(__file__).resolve().parents[2] / "sample_dicoms"
TRUTHS = sorted(ROOT.glob("*/*.truth.json"))
REFERENCE = Path(__file__).resolve().parent / "data" / "measure_reference.json"


# ----------------------------------------------------------------------------- cases
def _truth(path: Path) -> tuple[SpineLandmarks, tuple[float, float] | None, str, dict]:
    t = json.loads(path.read_text())
    spine = SpineLandmarks.from_dict({"view": t["view"], "vertebrae": t["vertebrae"]})
    cal = t.get("calibration") or {}
    spacing = (cal["row_mm"], cal["col_mm"]) if cal.get("row_mm") else None
    return spine, spacing, cal.get("source", "uncalibrated"), t


def _with(spine: SpineLandmarks, level: str, **changes: Any) -> SpineLandmarks:
    v = spine[level]
    points = dict(v.points)
    for name, value in changes.pop("points", {}).items():
        if value is None:
            points.pop(name, None)
        else:
            points[name] = value
    flags = {f: changes.get(f, getattr(v, f)) for f in ("fractured", "treated", "excluded")}
    return spine.replace(level, Vertebra(level, v.view, points, **flags))


def _random_spine(rng: np.random.Generator, n: int) -> SpineLandmarks:
    """A chain of n lateral bodies ending at L5 (+ S1 half the time), random flags and gaps."""
    start = LEVELS.index("L5") - n + 1
    phi = rng.uniform(-0.5, 0.5)
    facing = 1.0 if rng.random() < 0.5 else -1.0
    p = rng.uniform(50, 400, 2)
    verts = []
    for level in LEVELS[start:LEVELS.index("L5") + 1]:
        e = np.array([math.sin(phi), facing * math.cos(phi)])
        nrm = np.array([math.cos(phi), -facing * math.sin(phi)])
        depth, hp = rng.uniform(80, 140), rng.uniform(60, 120)
        ha = hp * rng.uniform(0.4, 1.15)
        ps, as_ = p, p + depth * e
        pi, ai = p + hp * nrm, as_ + ha * nrm
        pts = {"Ps": ps, "As": as_, "Pi": pi, "Ai": ai}
        if rng.random() < 0.7:
            pts["Ms"] = (ps + as_) / 2 + rng.uniform(-5, 15) * nrm
            pts["Mi"] = (pi + ai) / 2 - rng.uniform(-5, 15) * nrm
        if rng.random() > 0.15:  # leave gaps in the chain
            verts.append(Vertebra(level, "lateral", {k: (float(x[0]), float(x[1]))
                                                     for k, x in pts.items()},
                                  fractured=bool(ha < 0.8 * hp),
                                  excluded=bool(rng.random() < 0.15)))
        phi += rng.uniform(-0.2, 0.2)
        nrm = np.array([math.cos(phi), -facing * math.sin(phi)])
        p = pi + rng.uniform(10, 40) * nrm
    if rng.random() < 0.5:
        e = np.array([math.sin(phi), facing * math.cos(phi)])
        verts.append(Vertebra("S1", "lateral", {"Ps": (float(p[0]), float(p[1])),
                                                "As": tuple(float(x) for x in p + 110 * e)}))
    return SpineLandmarks("lateral", tuple(verts))


def cases() -> list[tuple[str, SpineLandmarks, dict[str, Any]]]:
    """Every (key, landmarks, measure_film keyword arguments) compared by the tests."""
    out: list[tuple[str, SpineLandmarks, dict[str, Any]]] = []
    for i, path in enumerate(TRUTHS):
        spine, spacing, source, _ = _truth(path)
        key = path.name.removesuffix(".truth.json")
        levels = spine.levels()
        cobb: list[str] = []
        if spine.view == "lateral":
            cobb = [f"{levels[0]}:superior,{levels[-1]}:inferior",
                    f"{levels[1]}:inferior,{levels[-2]}:superior",
                    f"{levels[0]}:superior,{levels[0]}:inferior",
                    f"{levels[2]}:inferior,{levels[2]}:inferior",
                    "S1:inferior,L1:superior", "C3:superior,C5:inferior"]
        out.append((key, spine, {"spacing": spacing, "calibration_source": source,
                                 "cobb": cobb}))
        if i % 5 == 0:
            out.append((key + "/uncalibrated", spine,
                        {"spacing": None, "calibration_source": "pixel_spacing"}))
        if i % 5 == 2 or spine.view == "ap":
            out.append((key + "/anisotropic", spine,
                        {"spacing": (0.2, 0.31), "calibration_source": "pixel_spacing",
                         "cobb": cobb[:1]}))

    spine, spacing, source, _ = _truth(ROOT / "SM001" / "SM001_preop.truth.json")
    lv = spine.levels()
    kw = {"spacing": spacing, "calibration_source": source}
    edge = {
        "no_middle": _with(_with(spine, lv[2], points={"Ms": None, "Mi": None}),
                           lv[3], points={"Ms": None, "Mi": None}),
        "excluded": _with(_with(spine, lv[2], excluded=True), lv[4], excluded=True),
        "all_excluded_but_one": SpineLandmarks("lateral", tuple(
            Vertebra(v.level, v.view, v.points, v.fractured, v.treated, v.level != lv[3])
            for v in spine)),
        "gap": SpineLandmarks("lateral", tuple(v for v in spine if v.level != lv[3])),
        "coincident": _with(spine, lv[3], points={"As": spine[lv[3]].points["Ps"]}),
        "swapped": _with(spine, lv[3], points={"As": spine[lv[3]].points["Ps"],
                                               "Ps": spine[lv[3]].points["As"]}),
        "antiparallel": _with(spine, lv[3], points={  # Ai - Pi = Ps - As exactly
            "Pi": (spine[lv[3]].points["As"][0] + 30.0, spine[lv[3]].points["As"][1]),
            "Ai": (spine[lv[3]].points["Ps"][0] + 30.0, spine[lv[3]].points["Ps"][1])}),
        "zero_height": _with(spine, lv[2], points={"Ai": spine[lv[2]].points["As"]}),
        "single": SpineLandmarks("lateral", (spine[lv[3]],)),
        "empty": SpineLandmarks("lateral", ()),
        "collinear": _with(spine, lv[3], points={
            "Pi": spine[lv[3]].points["Ps"],
            "Ai": tuple(2 * a - b for a, b in zip(spine[lv[3]].points["As"],
                                                  spine[lv[3]].points["Ps"], strict=True))}),
    }
    for name, sp in edge.items():
        out.append((f"edge/{name}", sp, {**kw, "cobb": [f"{lv[0]}:s,{lv[-1]}:i",
                                                        f"{lv[3]}:s,{lv[3]}:i"]}))
    ap_spine, ap_spacing, ap_source, _ = _truth(ROOT / "SM005" / "SM005_preop_ap.truth.json")
    first = ap_spine.vertebrae[0]
    out.append(("edge/ap_single", SpineLandmarks("ap", (first,)),
                {"spacing": ap_spacing, "calibration_source": ap_source}))
    out.append(("edge/ap_degenerate", ap_spine.replace(first.level, Vertebra(
        first.level, "ap", {**first.points, "SR": first.points["SL"]})),
        {"spacing": ap_spacing, "calibration_source": ap_source,
         "options_threshold": 25.0}))
    out.append(("edge/ap_threshold", ap_spine,
                {"spacing": None, "calibration_source": "x", "options_threshold": 3.0}))

    rng = np.random.default_rng(20240311)
    for k in range(12):
        sp = _random_spine(rng, int(rng.integers(2, 9)))
        lv = sp.levels()
        cobb = [f"{lv[0]}:superior,{lv[-1]}:superior"] if len(lv) >= 2 else []
        out.append((f"random/{k}", sp, {"spacing": (float(rng.uniform(0.1, 0.3)),
                                                    float(rng.uniform(0.1, 0.3))),
                                        "calibration_source": "pixel_spacing", "cobb": cobb}))
    return out


def _measure(spine: SpineLandmarks, kw: dict[str, Any]):
    from spine_measure.measurements import MeasureOptions

    kw = dict(kw)
    thr = kw.pop("options_threshold", None)
    if thr is not None:
        kw["options"] = MeasureOptions(scoliosis_threshold_deg=thr)
    return measure_film(spine, **kw)


# --------------------------------------------------------------------------- records
def _enc(v: Any) -> Any:
    if isinstance(v, float):
        return {"f": v.hex()} if math.isfinite(v) else {"f": repr(v)}
    if isinstance(v, bool | int | str) or v is None:
        return v
    raise TypeError(f"unexpected value type {type(v).__name__}: {v!r}")


def _rec(r: Any) -> list[Any]:
    return [r.name, _enc(r.value), type(r.value).__name__, r.unit, r.reason,
            r.calibration_source, list(r.neighbours),
            {k: _enc(v) for k, v in r.detail.items()}]


def film_record(fm: Any) -> dict[str, Any]:
    """Everything a FilmMeasurements holds, JSON-ready, floats as hex."""
    return {"spacing": [_enc(s) for s in fm.spacing] if fm.spacing else None,
            "calibration_source": fm.calibration_source,
            "vertebrae": {lv: [_rec(r) for r in per.values()]
                          for lv, per in fm.vertebrae.items()},
            "film": [_rec(r) for r in fm.film]}


def record(path: Path = REFERENCE) -> None:
    """Write the reference file (inputs and results) from the current implementation."""
    ref = {key: {"landmarks": spine.to_dict(), "kwargs": kw,
                 "results": film_record(_measure(spine, kw))}
           for key, spine, kw in cases()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ref, separators=(",", ":")) + "\n")


# ----------------------------------------------------------------------------- tests
# The reference holds its own inputs (landmarks and arguments as recorded), so it stays valid
# when the sample films are regenerated.
REF_DATA: dict[str, Any] = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return {key: case["results"] for key, case in REF_DATA.items()}


def _recorded_input(key: str) -> tuple[SpineLandmarks, dict[str, Any]]:
    case = REF_DATA[key]
    kw = dict(case["kwargs"])
    if kw.get("spacing") is not None:
        kw["spacing"] = tuple(kw["spacing"])
    return SpineLandmarks.from_dict(case["landmarks"]), kw


def test_reference_covers_every_sample_film_and_edge_case():
    assert len(TRUTHS) >= 20
    for path in TRUTHS:
        assert path.name.removesuffix(".truth.json") in REF_DATA
    assert sum(k.startswith("edge/") for k in REF_DATA) >= 12
    assert sum(k.startswith("random/") for k in REF_DATA) >= 10
    assert any(k.endswith("/uncalibrated") for k in REF_DATA)
    assert any(k.endswith("/anisotropic") for k in REF_DATA)


def _dec(v: Any) -> Any:
    return float.fromhex(v["f"]) if isinstance(v, dict) and "f" in v else v


def _same_value(got: Any, want: Any, unit: str) -> bool:
    """Bit for bit, except angles (unit deg): within 1e-12 relative.

    Angles may differ in the last bits only: the reference took ``np.dot``/``np.hypot`` of
    2-vectors (OpenBLAS may fuse multiply-adds), the fast path ``math.atan2``/``math.hypot``
    on floats. Lengths, ratios, grades and every reason are computed by the same float
    operations in the same order, so they must be identical.
    """
    g, w = _dec(got), _dec(want)
    if unit != "deg" or not (isinstance(g, float) and isinstance(w, float)):
        return got == want
    if math.isnan(w):
        return math.isnan(g)
    return abs(g - w) <= 1e-12 * max(1.0, abs(w))


def _same_record(got: list[Any], want: list[Any]) -> bool:
    name, value, vtype, unit, reason, source, neighbours, detail = want
    if [got[0], got[2], got[3], got[4], got[5], got[6]] != [name, vtype, unit, reason, source,
                                                            neighbours]:
        return False
    if not _same_value(got[1], value, unit):
        return False
    if list(got[7]) != list(detail):
        return False
    return all(_same_value(got[7][k], detail[k], "deg" if k.endswith("_deg") else unit)
               for k in detail)


@pytest.mark.parametrize("key", sorted(REF_DATA))
def test_results_match_the_reference_implementation(key, reference):
    spine, kw = _recorded_input(key)
    got = film_record(_measure(spine, kw))
    want = reference[key]
    assert got["spacing"] == want["spacing"]
    assert got["calibration_source"] == want["calibration_source"]
    assert list(got["vertebrae"]) == list(want["vertebrae"])
    # measurements registered later (other modules) are not part of the reference
    names = {r[0] for rs in (*want["vertebrae"].values(), want["film"]) for r in rs}
    for level, results in (*want["vertebrae"].items(), ("film", want["film"])):
        mine = got["film"] if level == "film" else got["vertebrae"][level]
        mine = [r for r in mine if r[0] in names]
        assert [r[0] for r in mine] == [r[0] for r in results], f"{key} {level}"
        for g, w in zip(mine, results, strict=True):
            assert _same_record(g, w), f"{key} {level}: got {g}, reference {w}"


def test_comparison_is_strict():
    """The comparator rejects a 1-ulp change of a length and a 1e-11 change of an angle."""
    ha = ["ha", {"f": (12.5).hex()}, "float", "mm", None, "x", [], {}]
    assert _same_record(ha, ha)
    off = [*ha[:1], {"f": math.nextafter(12.5, 13.0).hex()}, *ha[2:]]
    assert not _same_record(off, ha)
    wa = ["wedge_angle", {"f": (10.0).hex()}, "float", "deg", None, "x", [], {}]
    near = [*wa[:1], {"f": (10.0 + 1e-13).hex()}, *wa[2:]]
    far = [*wa[:1], {"f": (10.0 + 1e-10).hex()}, *wa[2:]]
    assert _same_record(near, wa) and not _same_record(far, wa)
    assert not _same_record([*ha[:4], "other reason", *ha[5:]], ha)


def test_reference_exercises_nan_reasons_and_provenance(reference):
    """The recorded cases are not all happy paths (so the comparison can catch a bug)."""
    reasons = {r[4] for film in reference.values()
               for rs in (*film["vertebrae"].values(), film["film"]) for r in rs if r[4]}
    joined = " | ".join(sorted(reasons))
    for fragment in ("not annotated", "no normal neighbour", "coincide",
                     "implausible landmarks", "S1 has only its superior endplate",
                     "reference height is zero", "against itself"):
        assert fragment in joined, fragment
    neighbours = {tuple(r[6]) for film in reference.values()
                  for rs in film["vertebrae"].values() for r in rs}
    assert any(len(n) == 2 for n in neighbours) and any(len(n) == 1 for n in neighbours)


# ------------------------------------------------------- independent naive computation
_SITES = {"ha": ("As", "Ai"), "hm": ("Ms", "Mi"), "hp": ("Ps", "Pi")}


def _naive_height(v: Vertebra, name: str, s: tuple[float, float]) -> float:
    a, b = _SITES[name]
    if a not in v.points or b not in v.points:
        return math.nan
    (r0, c0), (r1, c1) = v.points[a], v.points[b]
    return math.dist((r0 * s[0], c0 * s[1]), (r1 * s[0], c1 * s[1]))


def _naive_angle(p0, a0, p1, a1, s) -> float:
    """Signed angle between lines p0->a0 (cranial) and p1->a1 (caudal), kyphosis positive."""
    def phys(p):
        return np.array([p[0] * s[0], p[1] * s[1]])
    u = phys(a0) - phys(p0)
    w = phys(a1) - phys(p1)
    u, w = u / np.linalg.norm(u), w / np.linalg.norm(w)
    d = (phys(p0) + phys(a0)) / 2 - (phys(p1) + phys(a1)) / 2
    a = u + w
    orient = np.sign(a[0] * d[1] - a[1] * d[0])
    return float(orient * math.degrees(math.atan2(u[0] * w[1] - u[1] * w[0], u @ w)))


def _check_ap_naively(spine: SpineLandmarks, s: tuple[float, float], fm: Any) -> None:
    """Coronal Cobb angles by brute force: the largest angle between any two lines."""
    def direction(p, q):
        d = np.array([(q[0] - p[0]) * s[0], (q[1] - p[1]) * s[1]])
        return d / np.linalg.norm(d)

    def angle(u, w):
        return math.degrees(math.acos(min(1.0, max(-1.0, float(u @ w)))))

    ends = [(v.level, direction(v.points[a], v.points[b]))
            for v in spine for a, b in (("SL", "SR"), ("IL", "IR"))]
    want = max(angle(u, w) for i, (la, u) in enumerate(ends) for lb, w in ends[i + 1:]
               if la != lb)
    got = fm.film_result("coronal_cobb_angle")[0]
    assert got.value == pytest.approx(want, abs=1e-9)
    mids = []
    for v in spine:
        p = [(v.points["SL"][k] + v.points["IL"][k]) / 2 for k in (0, 1)]
        q = [(v.points["SR"][k] + v.points["IR"][k]) / 2 for k in (0, 1)]
        mids.append(direction(p, q))
    want_mid = max(angle(u, w) for i, u in enumerate(mids) for w in mids[i + 1:])
    assert fm.film_result("coronal_cobb_angle_midline")[0].value == pytest.approx(want_mid,
                                                                                  abs=1e-9)


@pytest.mark.parametrize("path", TRUTHS, ids=lambda p: p.name)
def test_sample_films_match_a_naive_independent_computation(path):
    spine, spacing, source, _ = _truth(path)
    s = spacing or (1.0, 1.0)
    fm = measure_film(spine, spacing=spacing, calibration_source=source)
    if spine.view != "lateral":
        _check_ap_naively(spine, s, fm)
        return
    usable = [v for v in spine if not (v.excluded or v.fractured or v.treated)
              and v.level != "S1"]
    for v in spine:
        if v.level == "S1":
            continue
        h = {n: _naive_height(v, n, s) for n in _SITES}
        for n in _SITES:
            got = fm.get(v.level, n).value
            assert (math.isnan(got) and math.isnan(h[n])) or got == pytest.approx(h[n],
                                                                               abs=1e-12)
        pts = v.points
        want_wa = _naive_angle(pts["Ps"], pts["As"], pts["Pi"], pts["Ai"], s)
        assert fm.get(v.level, "wedge_angle").value == pytest.approx(want_wa, abs=1e-12)
        # reference neighbours: nearest usable above and below
        i = spine.levels().index(v.level)
        above = [u for u in usable if spine.levels().index(u.level) < i][-1:]
        below = [u for u in usable if spine.levels().index(u.level) > i][:1]
        for name, cr in (("ha", "cr_anterior"), ("hp", "cr_posterior"), ("hm", "cr_middle")):
            refs = [_naive_height(u, name, s) for u in above + below]
            refs = [x for x in refs if math.isfinite(x)]
            got = fm.get(v.level, cr)
            if not refs or not math.isfinite(h[name]):
                assert not got.ok
                continue
            want = 100.0 * h[name] / (sum(refs) / len(refs))
            assert got.value == pytest.approx(want, rel=1e-12, abs=1e-12)
        if math.isfinite(h["ha"]) and math.isfinite(h["hp"]):
            assert fm.get(v.level, "wedge_ratio").value == pytest.approx(
                100.0 * h["ha"] / h["hp"], rel=1e-12)


if __name__ == "__main__" and "--record" in sys.argv:  # pragma: no cover
    record()
    print(f"wrote {REFERENCE}")


# ---------------------------------------------------------- the per-film work is shared
def test_neighbour_references_and_endplates_are_computed_once_per_level(monkeypatch):
    """The optimisation itself: one neighbour pass per level and one line per endplate per
    film, however many measurements use them (the reference implementation recomputed the
    neighbour reference 49 times per 7-vertebra film)."""
    from spine_measure.measurements.context import FilmContext

    calls: dict[str, list[Any]] = {"refs": [], "lines": [], "heights": []}
    refs, lines = FilmContext.neighbour_references, FilmContext._endplate_segment
    heights = FilmContext.site_heights

    def count(key, fn):
        def wrapper(self, *args):
            if key == "heights":
                if args[0].level not in self._site_h:  # computed, not looked up
                    calls[key].append(args[0].level)
            elif key == "lines" or args[0] not in self._refs:
                calls[key].append(args)
            return fn(self, *args)
        return wrapper

    monkeypatch.setattr(FilmContext, "neighbour_references", count("refs", refs))
    monkeypatch.setattr(FilmContext, "_endplate_segment", count("lines", lines))
    monkeypatch.setattr(FilmContext, "site_heights", count("heights", heights))
    spine, spacing, source, _ = _truth(ROOT / "SM001" / "SM001_preop.truth.json")
    fm = measure_film(spine, spacing=spacing, calibration_source=source,
                      cobb=[f"{spine.levels()[0]}:s,{spine.levels()[-1]}:i"])
    n = len(spine)
    assert n >= 5 and all(r.ok for r in fm.film)
    assert len(calls["refs"]) == n                                  # once per level
    assert len(calls["lines"]) == len(set(calls["lines"])) >= 2 * n  # each endplate once
    assert sorted(calls["heights"]) == sorted(spine.levels())       # each vertebra once


# ------------------------------------------------------------- fast paths, same answers
def test_geometry_kernels_agree_with_the_public_functions():
    from spine_measure.geometry import (
        DegenerateGeometryError,
        Line,
        line_through,
        segment,
        signed_endplate_angle,
        signed_segment_angle,
        unsigned_line_angle,
        unsigned_segment_angle,
    )

    rng = np.random.default_rng(7)
    for _ in range(200):
        p, q, r, t = (rng.uniform(-500, 500, 2) for _ in range(4))
        a, b = line_through(p, q, (0.2, 0.3)), line_through(r, t, (0.2, 0.3))
        sa = segment(p[0] * 0.2, p[1] * 0.3, q[0] * 0.2, q[1] * 0.3)
        sb = segment(r[0] * 0.2, r[1] * 0.3, t[0] * 0.2, t[1] * 0.3)
        assert list(sa[:4]) == [*a.start.tolist(), *a.end.tolist()]
        assert sa[4:] == pytest.approx(tuple(a.direction), abs=1e-15)
        assert unsigned_segment_angle(sa, sb) == unsigned_line_angle(a, b)
        try:
            want = signed_endplate_angle(a, b)
        except DegenerateGeometryError as exc:
            with pytest.raises(DegenerateGeometryError, match=str(exc)):
                signed_segment_angle(sa, sb)
        else:
            assert signed_segment_angle(sa, sb) == want
    with pytest.raises(DegenerateGeometryError, match="L1 mid-line: its two points coincide"):
        segment(3.0, 4.0, 3.0, 4.0, "L1 mid-line")
    zero = Line(np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    assert zero.length == 0.0


@pytest.mark.parametrize("value, expected", [
    ((10, 20), (10.0, 20.0)),
    ([10.5, 20.25], (10.5, 20.25)),
    ((np.float64(1.5), 2.5), (1.5, 2.5)),
    (("1.5", "2"), (1.5, 2.0)),          # numpy path: numeric strings convert
    ((True, False), (1.0, 0.0)),         # numpy path: bools are numbers to numpy
    (np.array([3.0, 4.0]), (3.0, 4.0)),
    ((2 ** 60, 1), (float(2 ** 60), 1.0)),
])
def test_point_fast_path_keeps_the_accepted_values(value, expected):
    v = Vertebra("L1", "lateral", {"As": value, "Ai": (30, 40), "Ps": (10, 10),
                                   "Pi": (30, 10)})
    assert v.points["As"] == expected
    assert all(type(c) is float for c in v.points["As"])


@pytest.mark.parametrize("value", [(float("nan"), 1.0), (1.0, float("inf")), (1, 2, 3), (1,),
                                   ("a", 1), None, 5.0])
def test_point_fast_path_keeps_the_errors(value):
    from spine_measure.landmarks import LandmarkError

    with pytest.raises(LandmarkError, match='L1: point "As" must be two finite numbers'):
        Vertebra("L1", "lateral", {"As": value, "Ai": (30, 40), "Ps": (10, 10),
                                   "Pi": (30, 10)})


def test_level_lookup_tables_match_a_scan():
    from spine_measure.landmarks import LandmarkError

    spine, _, _, _ = _truth(ROOT / "SM001" / "SM001_preop.truth.json")
    for level in LEVELS:
        scan = next((v for v in spine.vertebrae if v.level == level), None)
        assert spine.get(level) is scan
        assert (level in spine) is (scan is not None)
    assert spine.levels() == tuple(v.level for v in spine.vertebrae)
    assert ["L1"] not in spine and spine.get(["L1"]) is None  # type: ignore[arg-type]
    with pytest.raises(LandmarkError, match="C3: level not annotated"):
        spine["C3"]
    with pytest.raises(LandmarkError, match='did you mean "L1"'):
        spine["l1x"]
    moved = spine.replace("L1", Vertebra("L1", "lateral", {"As": (1, 2), "Ai": (3, 2),
                                                           "Ps": (1, 0), "Pi": (3, 0)}))
    assert moved["L1"].points["As"] == (1.0, 2.0) and spine["L1"].points["As"] != (1.0, 2.0)


@pytest.mark.parametrize("args", [
    ("ha", 12.5, "mm", None, "pixel_spacing", (), None),
    ("ha", 12.5, "mm", "ignored on a present value", "x", ["L1", "L2"], {"a": 1}),
    ("cr_anterior", math.nan, "pct", "L1: no neighbour", "x", (), {}),
    ("genant_grade", None, "grade", "needs ha and hp", None, ("T12",), {"r": 30.0}),
    ("genant_shape", "wedge", "", None, "uncalibrated", ("T12", "L2"), {"r": 30.0}),
    ("flag", False, "", "a reason kept? no: False is a value", "x", (), None),
])
def test_fast_result_construction_equals_the_constructor(args):
    from spine_measure.measurements.context import FilmContext, make_result
    from spine_measure.measurements.registry import Result

    name, value, unit, reason, source, neighbours, detail = args
    want = Result(name, value, unit, reason, source, neighbours, detail or {})
    fast = make_result(name, value, unit, reason, source, neighbours, detail)
    ctx = FilmContext(SpineLandmarks("lateral", ()), (0.2, 0.2), str(source))
    via_ctx = ctx.result(name, value, unit, reason, neighbours=neighbours, detail=detail)
    for got in (fast, via_ctx):
        assert type(got) is Result
        for field in ("name", "unit", "reason", "neighbours", "detail"):
            assert getattr(got, field) == getattr(want, field), field
        assert type(got.neighbours) is tuple and got.ok == want.ok
        assert (got.value is want.value or got.value == want.value
                or (math.isnan(got.value) and math.isnan(want.value)))
        if detail:
            assert got.detail is not detail and dict(got.detail) == detail
            with pytest.raises(TypeError):
                got.detail["new"] = 1  # type: ignore[index]
    assert fast.calibration_source == want.calibration_source
    assert via_ctx.calibration_source == ctx.calibration_source
    assert fast == want


def test_fast_result_construction_rejects_unknown_units():
    from spine_measure.measurements.context import make_result

    with pytest.raises(ValueError, match='unknown unit "cm"'):
        make_result("ha", 1.0, "cm")
