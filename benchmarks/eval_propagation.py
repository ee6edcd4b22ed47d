"""Evaluate landmark propagation and click refinement (figures in ``docs/propagation.md``).

Three sub-commands; each writes CSVs and a summary into ``--out`` (never into the repository):

``synthetic --out DIR [--variations 2] [--seed 1] [--patients SM001 ...]``
    The seven synthetic sample patients, each rendered as a pre-op / post-op / follow-up
    series once as in ``sample_dicoms/`` and ``--variations - 1`` more times with random
    positioning (rotation +-6 deg, shift +-15 mm), magnification (+-8 %) and kyphosis change
    (0-3 mm anterior disc narrowing next to the treated level at follow-up)
    (:mod:`spine_measure.synthetic.series`). For each series the truth landmarks are
    propagated pre-op -> post-op, pre-op -> follow-up and post-op -> follow-up; every proposed
    corner is compared with the target's truth (mm), and the wedge and regional kyphotic
    angles measured from the unedited proposals with those of the truth.

``aasce DATA_DIR --out DIR [--limit 60] [--seed 1]``
    Real AP films of the AASCE 2019 challenge (BoostNet label data, the public repository
    zlinzju/ke30_u7_AASCE2019): ``DATA_DIR`` is the folder holding ``boostnet_labeldata``.
    Only the training split is read (``data/training``, ``labels/training``); the test split
    is never opened. For ``--limit`` films (a seeded sample), a second time point is made by a
    known similarity (scale +-8 %, rotation +-5 deg, shift +-40 px), a mild elastic warp
    (smooth random field, at most ~4 px), a gamma / contrast change, noise and a bright
    cement-like blob in a lumbar body; the truth is the expert corners mapped by the same
    warp. Errors in pixels. Refinement: the expert corners of the original film perturbed by
    N(0, 5 px) (all four corners of a body, as a reader's clicks) are refined (radius 15 px),
    each with the vertebra's other three corners as clicked (perturbed) for the directions.
    Nothing derived from the data is written outside ``--out``; do not commit it.

``refine-aasce DATA_DIR --out DIR [--radius 15] [--sigma 2] [--seed 1] [--limit N]``
    Click refinement alone on the AASCE training split (every film, or ``--limit`` of them),
    without the second time point. The films are split in two halves by a seeded permutation
    (``--seed``): ``tune`` (the half any change of the method may be tried on) and
    ``holdout`` (reported, never tuned on); the summary gives both halves and all films. Per
    vertebra, the reader's four clicks are the four expert corners each perturbed by
    N(0, 5 px) per coordinate (independent draws), and each corner is refined with the
    vertebra's other three corners *as clicked* (perturbed) giving the directions — what a
    reader who clicked all four corners would get. A second, diagnostic refinement clicks the
    corner exactly on the expert's position (the other three still perturbed): when the
    refinement answers there, how far it moves measures how far the edges it finds lie from
    where the expert put the corner. Writes ``aasce_refine_split.csv`` and
    ``aasce_refine_summary.txt``.

``figures --out DIR [--docs docs/figures] [--only refine-aasce]``
    Plots from the CSVs of the runs above: ``propagation_eval.png``,
    ``propagation_example.png`` and, when ``refine-aasce`` was run, ``refine_aasce.png``
    (errors only, never an image of a film); ``--only refine-aasce`` makes that one alone.

Usage (the figures in ``docs/propagation.md`` come from exactly these)::

    python benchmarks/eval_propagation.py synthetic --out /tmp/prop_eval
    python benchmarks/eval_propagation.py aasce /path/to/ke30_u7_AASCE2019 --out /tmp/prop_eval
    python benchmarks/eval_propagation.py refine-aasce /path/to/ke30_u7_AASCE2019 \
        --out /tmp/prop_eval
    python benchmarks/eval_propagation.py figures --out /tmp/prop_eval
    python benchmarks/eval_propagation.py figures --out /tmp/prop_eval --only refine-aasce
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.measurements import measure_film
from spine_measure.propose import propagate_landmarks
from spine_measure.propose.refine import refine_landmark

PAIRS = (("preop", "postop"), ("preop", "followup"), ("postop", "followup"))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    cols = list(rows[0])
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(rows)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _q(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


# --------------------------------------------------------------------------- synthetic


def _angles(lm: SpineLandmarks, spacing: float) -> dict[tuple[str, str], float]:
    fm = measure_film(lm, spacing=(spacing, spacing), calibration_source="pixel_spacing")
    out = {}
    for level in lm.levels():
        for name in ("wedge_angle", "regional_kyphotic_angle"):
            r = fm.get(level, name)
            if isinstance(r.value, float) and math.isfinite(r.value):
                out[(level, name)] = r.value
    return out


def run_synthetic(out: Path, variations: int, seed: int,
                  patients: list[str] | None = None) -> int:
    from spine_measure.synthetic import CASES
    from spine_measure.synthetic.series import SeriesVariation, random_variation, render_series

    rng = np.random.default_rng(seed)
    points: list[dict[str, Any]] = []
    angles: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    known = {c.patient_id for c in CASES}
    unknown = sorted(set(patients or ()) - known)
    if unknown:
        sys.exit(f"--patients: unknown patient {', '.join(unknown)} "
                 f"(known: {', '.join(sorted(known))})")
    for case in CASES:
        for k in range(variations):
            # drawn for every patient, so a patient's variations do not depend on --patients
            var = SeriesVariation() if k == 0 else random_variation(rng)
            if patients and case.patient_id not in patients:
                continue
            films = render_series(case, var)
            by_tp = {f.plan.time_point: f for f in films}
            for a, b in PAIRS:
                src, tgt = by_tp[a], by_tp[b]
                slm = SpineLandmarks.from_dict(src.truth)
                tlm = SpineLandmarks.from_dict(tgt.truth)
                sp = float(tgt.film.options.spacing_mm)
                prop = propagate_landmarks(src.film.pixels.astype(np.float32)
                                           if src.film.options.polarity == "MONOCHROME2"
                                           else -src.film.pixels.astype(np.float32),
                                           slm,
                                           tgt.film.pixels.astype(np.float32)
                                           if tgt.film.options.polarity == "MONOCHROME2"
                                           else -tgt.film.pixels.astype(np.float32),
                                           scale_guess=float(src.film.options.spacing_mm) / sp)
                tag = {"patient": case.patient_id, "variation": k, "pair": f"{a}->{b}"}
                for p in prop.vertebrae:
                    kind = "treated" if p.level == case.level else "untreated"
                    if not p.ok:
                        failures.append({**tag, "level": p.level, "kind": kind,
                                         "reason": p.reason})
                        continue
                    for n, q in p.points.items():
                        e = float(np.hypot(*(np.asarray(q) - tlm[p.level].point(n))))
                        points.append({**tag, "level": p.level, "kind": kind, "point": n,
                                       "error_px": round(e, 4), "error_mm": round(e * sp, 4),
                                       "confidence": p.point_confidence[n]})
                got = _angles(prop.landmarks(), sp)
                want = _angles(SpineLandmarks(tlm.view, tuple(
                    tlm[lv] for lv in prop.landmarks().levels())), sp)
                for key, v in got.items():
                    if key in want:
                        angles.append({**tag, "level": key[0], "measurement": key[1],
                                       "kind": "treated" if key[0] == case.level
                                       else "untreated",
                                       "proposed": round(v, 4), "truth": round(want[key], 4),
                                       "abs_diff": round(abs(v - want[key]), 4)})
            print(f"{case.patient_id} variation {k}: {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
    _write_csv(out / "synthetic_points.csv", points)
    _write_csv(out / "synthetic_angles.csv", angles)
    _write_csv(out / "synthetic_failures.csv", failures)
    lines = summarise_synthetic(points, angles, failures)
    (out / "synthetic_summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def summarise_synthetic(points, angles, failures) -> list[str]:
    def errs(kind: str, corners_only: bool = True) -> list[float]:
        return [float(r["error_mm"]) for r in points if r["kind"] == kind
                and (not corners_only or r["point"] in ("As", "Ai", "Ps", "Pi"))]

    un, tr = errs("untreated"), errs("treated")
    n_v = len({(r["patient"], r["variation"], r["pair"], r["level"]) for r in points})
    lines = [f"synthetic: {n_v} vertebrae proposed, {len(failures)} not proposed",
             f"untreated corners: n={len(un)} median {_q(un, 50):.3f} mm, p95 {_q(un, 95):.3f} "
             f"mm, max {max(un, default=float('nan')):.2f} mm  (target median <= 0.5, "
             "p95 <= 1.5)",
             f"treated corners:   n={len(tr)} median {_q(tr, 50):.3f} mm, p95 {_q(tr, 95):.3f} "
             f"mm, max {max(tr, default=float('nan')):.2f} mm  (target median <= 1.5)"]
    for name in ("wedge_angle", "regional_kyphotic_angle"):
        for kind in ("untreated", "treated"):
            d = [float(r["abs_diff"]) for r in angles if r["measurement"] == name
                 and r["kind"] == kind]
            lines.append(f"{name} ({kind}): n={len(d)} median |diff| {_q(d, 50):.3f} deg, "
                         f"p95 {_q(d, 95):.3f} deg  (target median <= 1)")
    for pair in (f"{a}->{b}" for a, b in PAIRS):
        f = [r for r in failures if r["pair"] == pair]
        lines.append(f"not proposed {pair}: {len(f)} "
                     + ", ".join(sorted({f"{r['patient']}/{r['level']}" for r in f})))
    return lines


# --------------------------------------------------------------------------- AASCE


def _aasce_films(root: Path) -> tuple[Path, list[str], np.ndarray]:
    base = root / "boostnet_labeldata" if (root / "boostnet_labeldata").is_dir() else root
    data = base / "data" / "training"
    labels = base / "labels" / "training"
    if not data.is_dir() or not (labels / "landmarks.csv").is_file():
        sys.exit(f"{root}: no boostnet_labeldata/data/training and labels/training/"
                 "landmarks.csv (only the training split is used)")
    with open(labels / "filenames.csv", newline="") as fh:
        names = [r[0] for r in csv.reader(fh) if r]
    lm = np.loadtxt(labels / "landmarks.csv", delimiter=",")
    if lm.shape != (len(names), 136):
        sys.exit(f"{labels / 'landmarks.csv'}: expected {len(names)} rows of 136 values; "
                 f"got {lm.shape}")
    return data, names, lm


AP_LEVELS = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])


def _ap_landmarks(row: np.ndarray, w: int, h: int) -> SpineLandmarks:
    x, y = row[:68] * w, row[68:] * h
    verts = []
    for i, level in enumerate(AP_LEVELS):
        k = 4 * i
        pts = {"SL": (y[k], x[k]), "SR": (y[k + 1], x[k + 1]), "IL": (y[k + 2], x[k + 2]),
               "IR": (y[k + 3], x[k + 3])}
        verts.append(Vertebra(level, "ap", pts))
    return SpineLandmarks("ap", tuple(verts))


def _second_time_point(img: np.ndarray, lm: SpineLandmarks, rng: np.random.Generator
                       ) -> tuple[np.ndarray, SpineLandmarks, dict[str, float]]:
    """Warp a film by a known similarity + smooth elastic field, change its contrast and
    noise, add a cement-like blob; return it with the landmarks mapped the same way."""
    import cv2
    from scipy import ndimage

    h, w = img.shape
    s = float(rng.uniform(0.92, 1.08))
    a = math.radians(float(rng.uniform(-5, 5)))
    t = rng.uniform(-40, 40, 2)
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # (r, c)
    fwd = s * rot                                 # source (r, c) -> target, about c, plus t
    inv = np.linalg.inv(fwd)
    # elastic field on the target grid, at most ~4 px
    amp = float(rng.uniform(2.0, 4.0))
    field = []
    for _ in range(2):
        f = ndimage.gaussian_filter(rng.normal(size=(h // 8 + 1, w // 8 + 1)), 8)
        f = cv2.resize(f.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        field.append(f / (np.abs(f).max() + 1e-9) * amp)
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    q = np.stack([rr - c[0] - t[0], cc - c[1] - t[1]], -1)
    src = q @ inv.T.astype(np.float32) + c.astype(np.float32)
    map_r = src[..., 0] + field[0]
    map_c = src[..., 1] + field[1]
    out = cv2.remap(img.astype(np.float32), map_c.astype(np.float32),
                    map_r.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=float(np.median(img)))

    def to_target(p: np.ndarray) -> np.ndarray:
        qk = (p - c) @ fwd.T + c + t
        for _ in range(20):  # solve source(q) = p for q (the field is smooth and small)
            d = np.array([ndimage.map_coordinates(fl, qk.T, order=1, mode="nearest")
                          for fl in field]).T
            qk = ((p - d) - c) @ fwd.T + c + t
        return qk

    new = lm.transformed(to_target)
    # contrast / gamma / noise
    g = float(rng.uniform(0.8, 1.25))
    x = np.clip(out / 255.0, 0, 1) ** g
    x = x * float(rng.uniform(0.85, 1.1)) + float(rng.uniform(-0.05, 0.05))
    x = x + rng.normal(0, float(rng.uniform(0.005, 0.02)), x.shape)
    # a bright cement-like blob in a random lumbar body
    level = str(rng.choice(["L1", "L2", "L3", "L4"]))
    v = new[level]
    pts = np.array(list(v.points.values()))
    cen = pts.mean(0)
    ext = pts.max(0) - pts.min(0)
    ry, rx = 0.28 * ext[0], 0.3 * ext[1]
    blob = ((rr - cen[0]) / ry) ** 2 + ((cc - cen[1]) / rx) ** 2 < 1.0
    blob = ndimage.gaussian_filter(blob.astype(np.float32), 1.5)
    x = np.maximum(x, blob * 1.05)
    x = np.clip(x * 255.0, 0, 255).astype(np.float32)
    return x, new, {"scale": s, "rotation_deg": math.degrees(a), "shift_r": float(t[0]),
                    "shift_c": float(t[1]), "gamma": g, "elastic_px": amp, "blob": level}


def run_aasce(root: Path, out: Path, limit: int, seed: int) -> int:
    from PIL import Image

    data, names, lm = _aasce_films(root)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(names), size=min(limit, len(names)), replace=False))
    points: list[dict[str, Any]] = []
    refine_rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    films: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for n_done, i in enumerate(chosen):
        name = names[i]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = np.asarray(Image.open(data / name).convert("L"), dtype=np.float32)
        h, w = img.shape
        truth = _ap_landmarks(lm[i], w, h)
        frng = np.random.default_rng([seed, int(i)])
        tgt, ttruth, params = _second_time_point(img, truth, frng)
        t1 = time.perf_counter()
        prop = propagate_landmarks(img, truth, tgt)
        dt_prop = time.perf_counter() - t1
        films.append({"film": i, **{k: (round(v, 4) if isinstance(v, float) else v)
                                    for k, v in params.items()},
                      "global_confidence": round(prop.global_fit.confidence, 4),
                      "proposed": len(prop.proposed()), "seconds": round(dt_prop, 3)})
        for p in prop.vertebrae:
            if not p.ok:
                failures.append({"film": i, "level": p.level, "reason": p.reason})
                continue
            for n, q in p.points.items():
                e = float(np.hypot(*(np.asarray(q) - ttruth[p.level].point(n))))
                points.append({"film": i, "level": p.level, "point": n,
                               "error_px": round(e, 4), "confidence": p.point_confidence[n]})
        # refinement of perturbed expert corners on the original film
        for v in truth:
            noisy = {n: tuple(v.point(n) + frng.normal(0, 5.0, 2)) for n in v.points}
            for n in v.points:
                r = refine_landmark(img, noisy, n, radius_px=15.0, sigma_px=2.0)
                before = float(np.hypot(*(np.asarray(noisy[n]) - v.point(n))))
                after = float(np.hypot(*(np.asarray(r.point) - v.point(n))))
                refine_rows.append({"film": i, "level": v.level, "point": n,
                                    "before_px": round(before, 4), "after_px": round(after, 4),
                                    "refined": r.ok, "reason": r.reason or ""})
        print(f"{n_done + 1}/{len(chosen)} film {i}: {len(prop.proposed())}/17 proposed, "
              f"{dt_prop:.1f} s ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    _write_csv(out / "aasce_points.csv", points)
    _write_csv(out / "aasce_failures.csv", failures)
    _write_csv(out / "aasce_films.csv", films)
    _write_csv(out / "aasce_refine.csv", refine_rows)
    lines = summarise_aasce(points, failures, refine_rows, films)
    (out / "aasce_summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def summarise_aasce(points, failures, refine_rows, films) -> list[str]:
    e = [float(r["error_px"]) for r in points]
    b = np.array([float(r["before_px"]) for r in refine_rows])
    a = np.array([float(r["after_px"]) for r in refine_rows])
    n_films = len(films)
    lines = [f"AASCE training split, {n_films} films with a synthetic second time point",
             f"propagation: {len(points) // 4} vertebrae proposed, {len(failures)} not "
             f"proposed ({len(failures) / max(1, 17 * n_films):.1%})",
             f"corner error: n={len(e)} median {_q(e, 50):.2f} px, p95 {_q(e, 95):.2f} px, "
             f"max {max(e, default=float('nan')):.1f} px  (target median <= 3, p95 <= 10)"]
    if len(b):
        red = 1 - np.median(a) / np.median(b)
        lines += [f"refinement: n={len(b)} clicks, median error {np.median(b):.2f} -> "
                  f"{np.median(a):.2f} px ({red:.0%} reduction; target >= 40 %), no worse "
                  f"for {np.mean(a <= b + 1e-9):.1%} (target >= 90 %), refined "
                  f"{np.mean([r['refined'] in (True, 'True') for r in refine_rows]):.1%}"]
    secs = [float(f["seconds"]) for f in films]
    if secs:
        lines.append(f"propagation time per film: median {np.median(secs):.2f} s")
    return lines


def split_halves(n: int, seed: int) -> dict[int, str]:
    """Film index -> ``"tune"`` or ``"holdout"``: a seeded permutation of ``range(n)``, its
    first ``n // 2`` films are the tuning half. The same ``n`` and ``seed`` always give the
    same split."""
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    return {int(i): ("tune" if k < n // 2 else "holdout") for k, i in enumerate(perm)}


def run_refine_aasce(root: Path, out: Path, limit: int | None, seed: int, radius: float,
                     sigma: float) -> int:
    from PIL import Image

    data, names, lm = _aasce_films(root)
    half = split_halves(len(names), seed)
    films = range(len(names))
    if limit is not None:
        films = sorted(np.random.default_rng(seed).choice(len(names), size=min(limit,
                       len(names)), replace=False))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for n_done, i in enumerate(films):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = np.asarray(Image.open(data / names[i]).convert("L"), dtype=np.float32)
        h, w = img.shape
        truth = _ap_landmarks(lm[i], w, h)
        rng = np.random.default_rng([seed, 17, int(i)])
        for v in truth:
            noisy = {n: tuple(v.point(n) + rng.normal(0, 5.0, 2)) for n in v.points}
            for n in v.points:
                t = v.point(n)
                r = refine_landmark(img, noisy, n, radius_px=radius, sigma_px=sigma)
                exact = refine_landmark(img, {**noisy, n: tuple(t)}, n, radius_px=radius,
                                        sigma_px=sigma)
                rows.append({"film": int(i), "half": half[int(i)], "level": v.level,
                             "point": n,
                             "before_px": round(float(np.hypot(*(np.asarray(noisy[n]) - t))), 4),
                             "after_px": round(float(np.hypot(*(np.asarray(r.point) - t))), 4),
                             "refined": r.ok, "reason": r.reason or "",
                             "exact_refined": exact.ok,
                             "exact_moved_px": round(exact.distance, 4)})
        if (n_done + 1) % 20 == 0 or n_done + 1 == len(films):
            print(f"{n_done + 1}/{len(films)} films ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)
    _write_csv(out / "aasce_refine_split.csv", rows)
    lines = summarise_refine_split(rows, radius, sigma, seed)
    (out / "aasce_refine_summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _truthy(x: Any) -> bool:
    return x in (True, "True")


def summarise_refine_split(rows, radius: float, sigma: float, seed: int) -> list[str]:
    """One line per half (tune, holdout) and for all films: the median error before and
    after, the reduction, the share no worse, the share refined; and the exact-click
    diagnostic (how far an answer moves a click placed on the expert's corner)."""
    lines = [f"AASCE training split, click refinement only (radius {radius:g} px, sigma "
             f"{sigma:g} px; halves by seed {seed}); clicks = expert corners + N(0, 5 px), "
             "the vertebra's other corners also perturbed"]
    for name in ("tune", "holdout", "all"):
        sel = [r for r in rows if name == "all" or r["half"] == name]
        if not sel:
            continue
        b = np.array([float(r["before_px"]) for r in sel])
        a = np.array([float(r["after_px"]) for r in sel])
        ok = np.array([_truthy(r["refined"]) for r in sel])
        ex = np.array([_truthy(r["exact_refined"]) for r in sel])
        moved = np.array([float(r["exact_moved_px"]) for r in sel])[ex]
        n_f = len({r["film"] for r in sel})
        worse_ref = float(np.mean(a[ok] > b[ok] + 1e-9)) if ok.any() else float("nan")
        lines.append(
            f"{name}: {n_f} films, n={len(b)} clicks, median error {np.median(b):.2f} -> "
            f"{np.median(a):.2f} px ({1 - np.median(a) / np.median(b):.0%} reduction; target "
            f">= 40 %), no worse for {np.mean(a <= b + 1e-9):.1%} (target >= 90 %), refined "
            f"{ok.mean():.1%} (worse for {worse_ref:.0%} of those); exact click answered "
            f"{ex.mean():.1%}, moved median {_q(list(moved), 50):.1f} px (p90 "
            f"{_q(list(moved), 90):.1f})")
    return lines


# --------------------------------------------------------------------------- figures


def run_figures(out: Path, docs: Path, only: str | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if only == "refine-aasce":
        rs = _read_csv(out / "aasce_refine_split.csv")
        if not rs:
            sys.exit(f"{out / 'aasce_refine_split.csv'}: missing or empty; run refine-aasce "
                     "first")
        docs.mkdir(parents=True, exist_ok=True)
        print(refine_split_figure(rs, docs / "refine_aasce.png"))
        return 0

    sp = _read_csv(out / "synthetic_points.csv")
    sa = _read_csv(out / "synthetic_angles.csv")
    ap = _read_csv(out / "aasce_points.csv")
    ar = _read_csv(out / "aasce_refine.csv")
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    ax = axes[0, 0]
    for kind, col in (("untreated", "tab:blue"), ("treated", "tab:red")):
        e = np.sort([float(r["error_mm"]) for r in sp if r["kind"] == kind
                     and r["point"] in ("As", "Ai", "Ps", "Pi")])
        if len(e):
            ax.plot(e, np.arange(1, len(e) + 1) / len(e), color=col,
                    label=f"{kind} (n={len(e)}, median {np.median(e):.2f} mm)")
    ax.axvline(0.5, color="grey", ls=":")
    ax.axvline(1.5, color="grey", ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("corner error (mm)")
    ax.set_ylabel("cumulative fraction")
    ax.set_title("Synthetic series: propagated corners")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    groups = [("wedge_angle", "untreated"), ("wedge_angle", "treated"),
              ("regional_kyphotic_angle", "untreated"), ("regional_kyphotic_angle", "treated")]
    data = [[float(r["abs_diff"]) for r in sa if (r["measurement"], r["kind"]) == g]
            for g in groups]
    ax.boxplot([d if d else [np.nan] for d in data], showfliers=True)
    ax.set_xticks(range(1, 5), ["wedge\nuntreated", "wedge\ntreated", "kyphotic\nuntreated",
                                "kyphotic\ntreated"])
    ax.axhline(1.0, color="grey", ls="--")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0)  # absolute differences: no negative half of the symlog axis
    ax.set_ylabel("|proposed - truth| (deg)")
    ax.set_title("Synthetic series: angles from unedited proposals")
    ax = axes[1, 0]
    if ap:
        levels = [lv for lv in AP_LEVELS if any(r["level"] == lv for r in ap)]
        ax.boxplot([[float(r["error_px"]) for r in ap if r["level"] == lv] for lv in levels],
                   showfliers=True)
        ax.set_xticks(range(1, len(levels) + 1), levels, rotation=90, fontsize=7)
        ax.axhline(3, color="grey", ls=":")
        ax.axhline(10, color="grey", ls="--")
        ax.set_yscale("log")
        n_f = len({r["film"] for r in ap})
        ax.set_title(f"AASCE (training split, {n_f} films): corner error by level")
        ax.set_ylabel("corner error (px)")
    else:
        ax.text(0.5, 0.5, "no AASCE run", ha="center")
    ax = axes[1, 1]
    if ar:
        b = np.array([float(r["before_px"]) for r in ar])
        a = np.array([float(r["after_px"]) for r in ar])
        ax.scatter(b, a, s=3, alpha=0.3)
        m = max(b.max(), a.max())
        ax.plot([0, m], [0, m], color="grey", ls="--")
        ax.set_xlabel("clicked corner error (px), N(0, 5 px)")
        ax.set_ylabel("after refinement (px)")
        ax.set_title(f"AASCE: refinement, median {np.median(b):.1f} -> {np.median(a):.1f} px, "
                     f"no worse {np.mean(a <= b + 1e-9):.0%}", fontsize=10)
    else:
        ax.text(0.5, 0.5, "no AASCE run", ha="center")
    fig.tight_layout()
    docs.mkdir(parents=True, exist_ok=True)
    dest = docs / "propagation_eval.png"
    fig.savefig(dest, dpi=90)
    plt.close(fig)
    print(dest)
    print(example_figure(docs / "propagation_example.png"))
    rs = _read_csv(out / "aasce_refine_split.csv")
    if rs:
        print(refine_split_figure(rs, docs / "refine_aasce.png"))
    return 0


def refine_split_figure(rows: list[dict[str, str]], dest: Path) -> Path:
    """Summary plots of ``refine-aasce`` (errors only, no image of a film): before/after
    per click by half, and how far an answer moves a click placed on the expert's corner."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3))
    ax = axes[0]
    for half, col in (("tune", "tab:blue"), ("holdout", "tab:orange")):
        sel = [r for r in rows if r["half"] == half and _truthy(r["refined"])]
        b = np.array([float(r["before_px"]) for r in sel])
        a = np.array([float(r["after_px"]) for r in sel])
        ax.scatter(b, a, s=4, alpha=0.4, color=col,
                   label=f"{half}: {len(sel)} refined clicks")
    ax.plot([0, 22], [0, 22], color="grey", ls="--")
    ax.set_xlabel("clicked corner error (px), N(0, 5 px)")
    ax.set_ylabel("after refinement (px)")
    ax.set_title("Refined clicks only (the rest stay put)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    labels, before, after = [], [], []
    for half in ("tune", "holdout", "all"):
        sel = [r for r in rows if half == "all" or r["half"] == half]
        labels.append(f"{half}\n{len({r['film'] for r in sel})} films")
        before.append(np.median([float(r["before_px"]) for r in sel]))
        after.append(np.median([float(r["after_px"]) for r in sel]))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, before, 0.4, label="clicked")
    ax.bar(x + 0.2, after, 0.4, label="after refinement")
    ax.axhline(0.6 * before[-1], color="grey", ls=":", label="target (-40 %)")
    ax.set_ylim(0, 1.35 * max(before + after))
    ax.set_xticks(x, labels)
    ax.set_ylabel("median corner error (px)")
    ax.set_title("Median error by half", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[2]
    moved = [float(r["exact_moved_px"]) for r in rows if _truthy(r["exact_refined"])]
    n_all = len(rows)
    ax.hist(moved, bins=np.arange(0, 16, 1.0), color="tab:green")
    ax.set_xlabel("distance moved (px)")
    ax.set_ylabel("clicks")
    ax.set_title(f"Click exactly on the expert corner: answered {len(moved) / n_all:.1%},\n"
                 f"moved median {_q(moved, 50):.1f} px", fontsize=10)
    fig.tight_layout()
    fig.savefig(dest, dpi=80)
    plt.close(fig)
    return dest


def example_figure(dest: Path, patient: str = "SM002") -> Path:
    """One synthetic series: the pre-op film with its landmarks, and the follow-up film with
    the unedited proposals (hollow, labelled with their confidence), the truth (crosses) and
    the vertebrae that were not proposed (with the reason)."""
    import matplotlib.pyplot as plt

    from spine_measure.synthetic import CASES
    from spine_measure.synthetic.series import SeriesVariation, render_series

    case = next(c for c in CASES if c.patient_id == patient)
    films = {f.plan.time_point: f for f in render_series(case, SeriesVariation())}
    src, tgt = films["preop"], films["followup"]

    def dens(f):
        px = f.film.pixels.astype(np.float32)
        return px if f.film.options.polarity == "MONOCHROME2" else -px

    slm = SpineLandmarks.from_dict(src.truth)
    tlm = SpineLandmarks.from_dict(tgt.truth)
    prop = propagate_landmarks(dens(src), slm, dens(tgt), scale_guess=float(
        src.film.options.spacing_mm) / float(tgt.film.options.spacing_mm))
    fig, axes = plt.subplots(1, 2, figsize=(11, 9))
    for ax, f, title in ((axes[0], src, "pre-op: reader landmarks"),
                         (axes[1], tgt, "follow-up: unedited proposals")):
        img = dens(f)
        lo, hi = np.percentile(img, (1, 99.5))
        ax.imshow(np.clip((img - lo) / (hi - lo), 0, 1), cmap="gray")
        ax.set_title(title)
        ax.axis("off")
    for v in slm:
        p = np.array(list(v.points.values()))
        axes[0].plot(p[:, 1], p[:, 0], "o", ms=3, color="tab:cyan")
        axes[0].text(p[:, 1].max() + 8, p[:, 0].mean(), v.level, color="tab:cyan", fontsize=8)
    for v in tlm:
        p = np.array(list(v.points.values()))
        axes[1].plot(p[:, 1], p[:, 0], "x", ms=4, color="tab:red")
    for pv in prop.vertebrae:
        t = tlm[pv.level].points
        if pv.ok:
            p = np.array(list(pv.points.values()))
            axes[1].plot(p[:, 1], p[:, 0], "o", ms=6, mfc="none", color="tab:green")
            err = max(float(np.hypot(*(np.asarray(pv.points[n]) - np.asarray(t[n]))))
                      for n in pv.points) * float(tgt.film.options.spacing_mm)
            axes[1].text(p[:, 1].max() + 8, p[:, 0].mean(),
                         f"{pv.level} conf {pv.confidence:.2f}\nmax err {err:.1f} mm",
                         color="tab:green", fontsize=7)
        else:
            p = np.array(list(t.values()))
            axes[1].text(p[:, 1].max() + 8, p[:, 0].mean(),
                         f"{pv.level}: not proposed\n{pv.reason[:60]}", color="tab:orange",
                         fontsize=7)
    fig.suptitle(f"{patient} ({case.summary[:70]}...): green = proposal, red x = truth",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(dest, dpi=80)
    plt.close(fig)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s1 = sub.add_parser("synthetic")
    s1.add_argument("--out", type=Path, required=True)
    s1.add_argument("--variations", type=int, default=2)
    s1.add_argument("--seed", type=int, default=1)
    s1.add_argument("--patients", nargs="+", metavar="ID",
                    help="only these sample patients (e.g. SM001 SM004), to iterate fast")
    s2 = sub.add_parser("aasce")
    s2.add_argument("data", type=Path)
    s2.add_argument("--out", type=Path, required=True)
    s2.add_argument("--limit", type=int, default=60)
    s2.add_argument("--seed", type=int, default=1)
    s4 = sub.add_parser("refine-aasce")
    s4.add_argument("data", type=Path)
    s4.add_argument("--out", type=Path, required=True)
    s4.add_argument("--limit", type=int, default=None)
    s4.add_argument("--seed", type=int, default=1)
    s4.add_argument("--radius", type=float, default=15.0)
    s4.add_argument("--sigma", type=float, default=2.0)
    s3 = sub.add_parser("figures")
    s3.add_argument("--out", type=Path, required=True)
    s3.add_argument("--docs", type=Path,
                    default=Path(__file__).resolve().parents[1] / "docs" / "figures")
    s3.add_argument("--only", choices=("refine-aasce",), default=None,
                    help="only the refine-aasce figure (refine_aasce.png)")
    args = ap.parse_args(argv)
    if args.cmd == "refine-aasce":
        if not (args.radius > 0 and args.sigma > 0):
            ap.error(f"--radius and --sigma must be > 0; got {args.radius:g} and {args.sigma:g}")
        if args.limit is not None and args.limit < 1:
            ap.error(f"--limit must be >= 1; got {args.limit}")
    if args.cmd != "figures":
        args.out.mkdir(parents=True, exist_ok=True)
    if args.cmd == "synthetic":
        return run_synthetic(args.out, args.variations, args.seed, args.patients)
    if args.cmd == "aasce":
        return run_aasce(args.data, args.out, args.limit, args.seed)
    if args.cmd == "refine-aasce":
        return run_refine_aasce(args.data, args.out, args.limit, args.seed, args.radius,
                                args.sigma)
    return run_figures(args.out, args.docs, args.only)


if __name__ == "__main__":
    sys.exit(main())
