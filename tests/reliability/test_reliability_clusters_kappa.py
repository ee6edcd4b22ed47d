"""Issue 16 items 5-7: clustering by patient, agreement SEM, kappa intervals in [-1, 1]."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_measure.reliability.report import BootstrapOptions, reliability_table
from spine_measure.reliability.stats import (
    anova_two_way,
    bland_altman,
    cluster_bootstrap,
    cohen_kappa,
    icc_agreement,
    icc_consistency,
    sem_agreement,
)


def _clustered(n_patients: int, per: int, *, seed: int, patient_sd: float = 1.5):
    """Readings whose reader-b error has a per-patient component (shared by the patient's
    vertebrae): the situation in which independent-pairs intervals are too narrow."""
    rng = np.random.default_rng(seed)
    cl = np.repeat(np.arange(n_patients), per)
    truth = rng.normal(0, 3, n_patients)[cl] + rng.normal(20, 3, cl.size)
    a = truth + rng.normal(0, 0.7, cl.size)
    b = truth + rng.normal(0, patient_sd, n_patients)[cl] + rng.normal(0, 0.7, cl.size)
    return a, b, cl


# --------------------------------------------------------------------------- SEM


def test_agreement_sem_equals_the_anova_form():
    rng = np.random.default_rng(3)
    t = rng.normal(30, 5, 12)
    a, b = t + rng.normal(0, 1, 12), t + 2.0 + rng.normal(0, 1, 12)   # bias 2
    an = anova_two_way(np.column_stack([a, b]))
    by_anova = math.sqrt(an.ms_error + max(0.0, (an.ms_cols - an.ms_error) / an.n))
    assert sem_agreement(b - a) == pytest.approx(by_anova, rel=1e-12)
    # with the bias it exceeds the consistency SEM sqrt(MS_E) = SD_diff / sqrt(2)
    assert sem_agreement(b - a) > math.sqrt(an.ms_error) * 1.3
    # the example: height loss, bias 5.72, consistency MDC 10.6 on 7 pairs
    sd = 10.6 / 1.96
    d = np.array([-1.5, -0.5, -0.25, 0.0, 0.25, 0.5, 1.5])
    d = 5.72 + d / d.std(ddof=1) * sd
    assert 1.96 * math.sqrt(2) * sem_agreement(d) == pytest.approx(14.9, abs=0.05)
    # no bias at all: the two forms agree
    e = np.array([-1.0, 1.0, -2.0, 2.0])
    assert sem_agreement(e) == pytest.approx(e.std(ddof=1) / math.sqrt(2), rel=1e-12)
    assert math.isnan(sem_agreement([1.0]))


# --------------------------------------------------------------------------- clusters


def test_cluster_bootstrap_is_exact_with_every_cluster_once():
    from spine_measure.reliability.stats import _boot_stats

    a, b, _ = _clustered(9, 4, seed=1)
    x, y = a - 20, b - 20
    t = np.array([[x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]])
    got = {k: float(v[0]) for k, v in _boot_stats(t).items()}
    r = np.column_stack([a, b])
    ba = bland_altman(a, b)
    assert got["icc2_1"] == pytest.approx(icc_agreement(r).icc, abs=1e-10)
    assert got["icc3_1"] == pytest.approx(icc_consistency(r).icc, abs=1e-10)
    assert got["bias"] == pytest.approx(ba.bias, abs=1e-10)
    assert got["loa_low"] == pytest.approx(ba.loa_low, abs=1e-10)
    assert got["sem_agreement"] == pytest.approx(sem_agreement(b - a), abs=1e-10)


def test_cluster_aware_interval_is_wider_than_the_naive_one():
    a, b, cl = _clustered(30, 6, seed=11)
    cb = cluster_bootstrap(a, b, cl, n_boot=2000, seed=5)
    assert cb.reason is None and cb.n_clusters == 30 and cb.n_boot == 2000
    assert "seed 5" in cb.method and "30 patients" in cb.method
    ba = bland_altman(a, b)
    naive_bias = ba.bias_ci[1] - ba.bias_ci[0]
    clus_bias = cb.ci["bias"][1] - cb.ci["bias"][0]
    # the patient effect (SD 1.5) shared by 6 vertebrae: design effect ~ 1 + 5 * rho
    assert clus_bias > 1.5 * naive_bias, (clus_bias, naive_bias)
    i2 = icc_agreement(np.column_stack([a, b]))
    assert cb.ci["icc2_1"][1] - cb.ci["icc2_1"][0] > i2.ci_high - i2.ci_low
    assert cb.ci["bias"][0] < ba.bias < cb.ci["bias"][1]
    # seeded: the same input and seed, the same interval; another seed, another interval
    assert cluster_bootstrap(a, b, cl, n_boot=2000, seed=5).ci == cb.ci
    assert cluster_bootstrap(a, b, cl, n_boot=2000, seed=6).ci != cb.ci


def test_cluster_bootstrap_covers_the_true_bias_more_often_than_the_naive_interval():
    """Over repeated clustered data sets, the naive 95 % bias CI undercovers badly; the
    cluster bootstrap comes close to nominal (true bias 0)."""
    hits_naive = hits_cluster = 0
    reps = 150
    for s in range(reps):
        a, b, cl = _clustered(25, 6, seed=1000 + s)
        lo, hi = bland_altman(a, b).bias_ci
        hits_naive += lo <= 0 <= hi
        clo, chi = cluster_bootstrap(a, b, cl, n_boot=400, seed=s).ci["bias"]
        hits_cluster += clo <= 0 <= chi
    assert hits_naive / reps < 0.80
    assert hits_cluster / reps > 0.85


def test_too_few_patients_gives_a_warning_not_an_interval():
    a, b, cl = _clustered(7, 20, seed=2)
    cb = cluster_bootstrap(a, b, cl)
    assert cb.n_boot == 0 and all(math.isnan(v) for ci in cb.ci.values() for v in ci)
    assert "only 7 patients" in cb.reason and "optimistic" in cb.reason
    with pytest.raises(ValueError, match="clusters"):
        cluster_bootstrap(a, b, cl[:-1])


def _pairs_frame(a, b, cl, levels_per=6):
    return pd.DataFrame({
        "film": [f"film{c}" for c in cl], "patient": [f"P{c:02d}" for c in cl],
        "level": [f"L{i % levels_per + 1}" for i in range(len(cl))],
        "time_point": "postop", "measurement": "ha", "kind": "length",
        "scope": "vertebra", "unit": "mm", "value_a": a, "value_b": b, "used": True})


def test_reliability_table_states_patients_films_vertebrae_and_the_method():
    a, b, cl = _clustered(24, 6, seed=4)
    rel = reliability_table(_pairs_frame(a, b, cl), bootstrap=BootstrapOptions(n_boot=500))
    r = rel.iloc[0]
    assert (r["n_pairs"], r["n_patients"], r["n_films"], r["n_vertebrae"]) == (144, 24, 24, 144)
    assert r["cluster_unit"] == "patient" and r["n_clusters"] == 24
    assert r["ci_method"].startswith("cluster bootstrap") and "500 resamples" in r["ci_method"]
    assert r["bias_cluster_ci_high"] - r["bias_cluster_ci_low"] > r["bias_ci_high"] - r[
        "bias_ci_low"]
    assert r["mdc95_cluster_ci_low"] < r["mdc95"] < r["mdc95_cluster_ci_high"]
    # 7 patients: no bootstrap, the warning names why
    a7, b7, cl7 = _clustered(7, 6, seed=4)
    r7 = reliability_table(_pairs_frame(a7, b7, cl7)).iloc[0]
    assert math.isnan(r7["bias_cluster_ci_low"]) and "optimistic" in r7["ci_method"]
    assert "only 7 patients" in r7["reason"]


# --------------------------------------------------------------------------- kappa


def test_kappa_ci_is_clipped_to_the_valid_range():
    # 30 pairs, one disagreement in 4 grades: the Wald interval passes 1
    a = [0] * 10 + [1] * 8 + [2] * 7 + [3] * 5
    b = list(a)
    b[0] = 1
    k = cohen_kappa(a, b, categories=(0, 1, 2, 3), weights="linear")
    assert k.kappa + 1.96 * k.se > 1.0          # the unclipped interval would leave [-1, 1]
    assert k.ci_high == 1.0 and k.ci_low == pytest.approx(k.kappa - 1.959963985 * k.se)
    assert "clipped" in k.reason


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=2, max_size=40))
def test_kappa_ci_never_leaves_minus_one_to_one(pairs):
    a, b = zip(*pairs, strict=True)
    for w in ("none", "linear", "quadratic"):
        k = cohen_kappa(list(a), list(b), categories=(0, 1, 2), weights=w)
        if math.isfinite(k.kappa):
            assert -1.0 <= k.kappa <= 1.0
        if math.isfinite(k.ci_low):
            assert -1.0 <= k.ci_low <= k.kappa <= k.ci_high <= 1.0


def test_kappa_undefined_when_one_reader_used_one_category():
    k = cohen_kappa(["wedge", "none", "crush", "wedge"], ["wedge"] * 4)
    assert math.isnan(k.kappa) and math.isnan(k.se) and math.isnan(k.ci_low)
    assert k.reason.startswith("undefined: reader b used one category (wedge)")
    assert k.pct_agreement == 50.0
    ka = cohen_kappa([False] * 5, [False, True, False, False, True], categories=(False, True))
    assert math.isnan(ka.kappa) and "reader a used one category" in ka.reason


def test_kappa_perfect_agreement_on_few_pairs_gives_no_fake_interval():
    k = cohen_kappa([0, 1, 0, 1, 1, 0, 1], [0, 1, 0, 1, 1, 0, 1], categories=(0, 1))
    assert k.kappa == 1.0 and math.isnan(k.ci_low) and math.isnan(k.ci_high)
    assert "perfect agreement on 7 pairs" in k.reason
    assert "fewer than 2K^2 = 8" in k.reason


def test_one_reading_per_vertebra_per_time_point(tmp_path):
    """A patient with two post-op films (same date): by default only the film the time-point
    rules choose is paired; the other's pairs are listed, not used."""
    import dataclasses
    from pathlib import Path

    from spine_measure.io.annotation import load_annotation, save_annotation
    from spine_measure.io.scan import scan_folder
    from spine_measure.reliability import simulate_readers
    from spine_measure.reliability.pairing import measure_pairs, pair_annotation_dirs

    samples = Path(__file__).resolve().parents[2] / "sample_dicoms"
    if not samples.is_dir():
        pytest.skip("sample_dicoms not present")
    files = [f"SM001/SM001_{t}.sm.json" for t in ("preop", "postop", "followup")]
    sim = simulate_readers(samples, tmp_path, sd_px=1.0, files=files)
    headers = {h.sop_instance_uid: h for h in scan_folder(samples / "SM001").images}
    clone_uid = "1.2.826.0.1.3680043.8.498.1"
    for d in (sim.dir_a, sim.dir_b):
        ann = load_annotation(d / "SM001" / "SM001_postop.sm.json")
        post_uid = ann.image.sop_instance_uid
        clone = ann.replace(image=dataclasses.replace(ann.image, sop_instance_uid=clone_uid,
                                                      file_name="SM001_postop2.dcm"))
        save_annotation(clone, d / "SM001" / "SM001_postop2.sm.json", overwrite=True)
    h = headers[post_uid]
    headers[clone_uid] = dataclasses.replace(h, metadata=dataclasses.replace(
        h.metadata, sop_instance_uid=clone_uid))
    pairing = pair_annotation_dirs(sim.dir_a, sim.dir_b)
    assert len(pairing.films) == 4
    pv = measure_pairs(pairing, headers=headers)
    film_rows = {k: [r for r in pv.rows if r["film"] == k and r["time_point"] == "postop"]
                 for k in (post_uid, clone_uid)}
    used = {k: any(r["used"] for r in rows) for k, rows in film_rows.items()}
    assert sorted(used.values()) == [False, True], used
    dropped = next(k for k, u in used.items() if not u)
    assert film_rows[dropped]
    # every pair of the dropped film that was usable says why it is not used
    n_why = sum("one reading per vertebra per time point" in r["reason"]
                for r in film_rows[dropped])
    assert n_why >= 0.8 * len(film_rows[dropped])
    assert {r["patient"] for r in pv.rows} == {"P01"} and pv.n_patients == 1
    every = measure_pairs(pairing, headers=headers, one_per_time_point=False)
    assert any(r["used"] for r in every.rows if r["film"] == dropped)
