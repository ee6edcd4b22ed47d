"""Reliability tables, the thresholds-versus-MDC table, Bland-Altman figure and the run.

:func:`run_reliability` is what ``spine-measure reliability`` calls: pair two annotation
folders, measure each film once per reader, and write into ``out``:

``reliability.csv``
    One row per continuous measurement and unit: ICC(2,1), ICC(3,1) with 95 % CI and F test,
    Bland-Altman bias, SD of differences, limits of agreement (with CIs), SEM, MDC95.
``kappa.csv``
    One row per categorical measurement (Genant grade: weighted kappa; shape, flags:
    unweighted), with percent agreement and 95 % CI.
``thresholds_vs_mdc.csv``
    Each threshold-based longitudinal flag next to the measurement error of what it thresholds.
``pairs_long.csv``
    Every (film, level, measurement) with both readers' values and why a pair was not used.
``landmark_differences.csv``, ``landmark_error.json``
    Every point both readers placed (``b - a``, along and across its endplate) and the
    per-reader landmark SD estimated from them
    (:mod:`spine_measure.reliability.landmark_error`): the error model that
    ``measure --uncertainty-from OUT`` and :func:`load_landmark_error_model` use.
``unpaired.csv``, ``errors.csv``
    Files without a partner, files that could not be read or measured (one-line reasons).
``bland_altman.png``, ``summary.md``
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from spine_measure.measurements import REGISTRY, LongitudinalOptions
from spine_measure.reliability.landmark_error import landmark_error_summary, model_from_summary
from spine_measure.reliability.pairing import (
    CATEGORICAL_KINDS,
    CONTINUOUS_KINDS,
    IssueRow,
    measure_pairs,
    pair_annotation_dirs,
)
from spine_measure.reliability.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    MIN_CLUSTERS_BOOTSTRAP,
    Z95,
    bland_altman,
    cluster_bootstrap,
    cohen_kappa,
    icc_agreement,
    icc_consistency,
    mdc95_from_sem,
    relative_differences,
    sem_agreement,
    sem_from_sd_diff,
)

__all__ = [
    "LANDMARK_ERROR_FILE",
    "BootstrapOptions",
    "load_landmark_error_model",
    "ORDINAL_CATEGORIES",
    "XIONG_ICC_BENCHMARK",
    "ReliabilityRun",
    "bland_altman_figure",
    "kappa_table",
    "reliability_table",
    "run_reliability",
    "thresholds_vs_mdc",
]

log = logging.getLogger(__name__)

#: Xiong 2021 reports ICC > 0.85 for all its radiographic parameters.
XIONG_ICC_BENCHMARK = 0.85

#: Ordered categories of the ordinal measurements (weighted kappa needs every level).
ORDINAL_CATEGORIES: dict[str, tuple[Any, ...]] = {"genant_grade": (0, 1, 2, 3)}

#: Fixed category sets (unweighted kappa; listed so unobserved categories still show).
NOMINAL_CATEGORIES: dict[str, tuple[Any, ...]] = {
    "genant_shape": ("none", "wedge", "biconcave", "crush"),
}

_SITE_HEIGHT = {"anterior": "ha", "middle": "hm", "posterior": "hp"}
_SITE_CR = {"anterior": "cr_anterior", "middle": "cr_middle", "posterior": "cr_posterior"}

_CLUSTER_STATS = ("icc2_1", "icc3_1", "bias", "loa_low", "loa_high", "sem", "mdc95")

RELIABILITY_COLUMNS = [
    "measurement", "column", "kind", "scope", "unit", "n_pairs", "n_not_paired",
    "n_patients", "n_films", "n_vertebrae", "cluster_unit", "n_clusters",
    "mean_a", "mean_b",
    "icc2_1", "icc2_1_ci_low", "icc2_1_ci_high",
    "icc3_1", "icc3_1_ci_low", "icc3_1_ci_high",
    "icc_f", "icc_df1", "icc_df2", "icc_pval", f"icc2_1_above_{XIONG_ICC_BENCHMARK}",
    "bias", "bias_ci_low", "bias_ci_high", "sd_diff",
    "loa_low", "loa_low_ci_low", "loa_low_ci_high",
    "loa_high", "loa_high_ci_low", "loa_high_ci_high",
    "sem", "mdc95", "mdc95_pct_of_mean", "sem_consistency", "mdc95_consistency",
    *[f"{st}_cluster_ci_{e}" for st in _CLUSTER_STATS for e in ("low", "high")],
    "ci_method", "reason",
]

KAPPA_COLUMNS = ["measurement", "kind", "scope", "n_pairs", "n_not_paired", "categories",
                 "weights", "pct_agreement", "kappa", "kappa_se", "kappa_ci_low",
                 "kappa_ci_high", "reason"]

THRESHOLD_COLUMNS = ["flag", "change_measure", "threshold", "unit", "underlying_measurement",
                     "n_pairs", "sem", "mdc95", "ratio_threshold_to_mdc",
                     "false_flag_pct_if_stable", "verdict", "direct_n_pairs",
                     "direct_noise95", "how", "reason"]


def _fnum(v: Any) -> float:
    return float(v) if v is not None and v == v else math.nan


def _used(pairs: pd.DataFrame) -> pd.DataFrame:
    if pairs.empty:
        return pairs
    return pairs[pairs["used"].astype(bool)]


def _column(name: str, unit: str) -> str:
    from spine_measure.measurements.registry import column_name

    return column_name(name, unit)


def _reasons(*items: str | None) -> str:
    return "; ".join(dict.fromkeys(s for s in items if s))


@dataclass(frozen=True)
class BootstrapOptions:
    """How :func:`reliability_table` makes its cluster-aware confidence intervals."""

    n_boot: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED
    min_clusters: int = MIN_CLUSTERS_BOOTSTRAP


def _continuous_row(name: str, unit: str, scope: str, kind: str, a: np.ndarray, b: np.ndarray,
                    n_not_paired: int, design: Mapping[str, Any] | None = None,
                    boot: BootstrapOptions | None = None) -> dict[str, Any]:
    ratings = np.column_stack([a, b]) if a.size else np.empty((0, 2))
    i2 = icc_agreement(ratings)
    i3 = icc_consistency(ratings)
    ba = bland_altman(a, b)
    sem_c = sem_from_sd_diff(ba.sd_diff)
    sem = sem_agreement(b - a)
    mdc = mdc95_from_sem(sem)
    grand = float(np.mean(np.concatenate([a, b]))) if a.size else math.nan
    dz = design or {}
    clusters = dz.get("clusters")
    unit_name = dz.get("cluster_unit", "film")
    cb = None
    if clusters is not None and a.size >= 2:
        bo = boot or BootstrapOptions()
        cb = cluster_bootstrap(a, b, clusters, n_boot=bo.n_boot, seed=bo.seed,
                               min_clusters=bo.min_clusters, unit=f"{unit_name}s")
    cci = {}
    for st in _CLUSTER_STATS:
        key = "sem_agreement" if st == "sem" else st
        lo, hi = cb.ci[key] if cb is not None else (math.nan, math.nan)
        cci[f"{st}_cluster_ci_low"], cci[f"{st}_cluster_ci_high"] = lo, hi
    if cb is not None and cb.reason is None:
        method = cb.method
    elif cb is not None:
        method = ("F-based (ICC) and t-based (bias, LoA) intervals treating the pairs as "
                  "independent: optimistic")
    else:
        method = ""
    return {
        "measurement": name, "column": _column(name, unit), "kind": kind, "scope": scope,
        "unit": unit, "n_pairs": int(a.size), "n_not_paired": int(n_not_paired),
        "n_patients": dz.get("n_patients", math.nan), "n_films": dz.get("n_films", math.nan),
        "n_vertebrae": dz.get("n_vertebrae", math.nan), "cluster_unit": unit_name,
        "n_clusters": cb.n_clusters if cb is not None else math.nan,
        "mean_a": float(a.mean()) if a.size else math.nan,
        "mean_b": float(b.mean()) if b.size else math.nan,
        "icc2_1": i2.icc, "icc2_1_ci_low": i2.ci_low, "icc2_1_ci_high": i2.ci_high,
        "icc3_1": i3.icc, "icc3_1_ci_low": i3.ci_low, "icc3_1_ci_high": i3.ci_high,
        "icc_f": i3.f, "icc_df1": i3.df1, "icc_df2": i3.df2, "icc_pval": i3.pval,
        f"icc2_1_above_{XIONG_ICC_BENCHMARK}": (bool(i2.icc > XIONG_ICC_BENCHMARK)
                                                 if math.isfinite(i2.icc) else None),
        "bias": ba.bias, "bias_ci_low": ba.bias_ci[0], "bias_ci_high": ba.bias_ci[1],
        "sd_diff": ba.sd_diff,
        "loa_low": ba.loa_low, "loa_low_ci_low": ba.loa_low_ci[0],
        "loa_low_ci_high": ba.loa_low_ci[1],
        "loa_high": ba.loa_high, "loa_high_ci_low": ba.loa_high_ci[0],
        "loa_high_ci_high": ba.loa_high_ci[1],
        "sem": sem, "mdc95": mdc,
        "mdc95_pct_of_mean": 100.0 * mdc / abs(grand) if grand and math.isfinite(grand)
        else math.nan,
        "sem_consistency": sem_c, "mdc95_consistency": mdc95_from_sem(sem_c),
        **cci, "ci_method": method,
        "reason": _reasons(i2.reason and f"ICC(2,1): {i2.reason}",
                           i3.reason and f"ICC(3,1): {i3.reason}",
                           ba.reason and f"Bland-Altman: {ba.reason}",
                           cb.reason if cb is not None else None),
    }


def _design(used: pd.DataFrame) -> dict[str, Any]:
    """Clusters and counts of the used pairs of one (measurement, unit).

    The cluster is the patient when the pairs carry a ``patient`` label (``--images``), else
    the film. ``n_vertebrae`` counts distinct (patient, level) — with film clusters, distinct
    (film, level), an upper bound. Longitudinal pairs (``time_point == "series"``) span
    several films: their ``n_films`` is empty.
    """
    n = len(used)
    film = (used["film"].astype(str).to_numpy() if "film" in used
            else np.array([f"row{i}" for i in range(n)], dtype=object))
    pat = (used["patient"].fillna("").astype(str).to_numpy() if "patient" in used
           else np.full(n, "", dtype=object))
    level = (used["level"].fillna("").astype(str).to_numpy() if "level" in used
             else np.full(n, "", dtype=object))
    known = bool(n) and bool(np.all(pat != ""))
    clusters = pat if known else film
    tp = (used["time_point"].fillna("").astype(str).to_numpy() if "time_point" in used
          else np.full(n, "", dtype=object))
    films = {f for f, t in zip(film, tp, strict=True) if t != "series"}
    n_series = int((tp == "series").sum())
    return {"clusters": clusters, "cluster_unit": "patient" if known else "film",
            "n_patients": len(set(pat)) if known else math.nan,
            # a longitudinal pair spans a series of films: counted as series, not films
            "n_films": len(films) if films or not n_series else math.nan,
            "n_vertebrae": len(set(zip(clusters, level, strict=True)))}


def _ordered_names(pairs: pd.DataFrame) -> list[str]:
    order = {n: i for i, n in enumerate(REGISTRY)}
    return sorted(pairs["measurement"].unique(), key=lambda n: order.get(n, 10 ** 6))


def reliability_table(pairs: pd.DataFrame, *,
                      bootstrap: BootstrapOptions | None = None) -> pd.DataFrame:
    """One row per continuous (measurement, unit) of a long pairs table.

    ``pairs`` needs the columns ``measurement``, ``kind``, ``scope``, ``unit``, ``value_a``,
    ``value_b`` and ``used`` (as written by :func:`run_reliability`); ``film``, ``patient``
    and ``level``, when present, give the clusters and the counts of patients, films and
    vertebrae. Lengths in mm and in px are separate rows (they cannot be pooled).

    The ``*_cluster_ci_*`` columns are cluster-bootstrap intervals (resampling patients, or
    films when patients are unknown) when there are at least ``bootstrap.min_clusters``
    clusters; ``ci_method`` says which intervals the row has, and ``reason`` warns when only
    the independent-pairs intervals could be given.
    """
    rows = []
    if pairs.empty:
        return pd.DataFrame(columns=RELIABILITY_COLUMNS)
    cont = pairs[pairs["kind"].isin(CONTINUOUS_KINDS)]
    for name in _ordered_names(cont):
        sub = cont[cont["measurement"] == name]
        used = _used(sub)
        units = sorted(used["unit"].unique()) or sorted(sub["unit"].dropna().unique())[:1]
        for unit in units:
            u = used[used["unit"] == unit]
            a = u["value_a"].astype(float).to_numpy()
            b = u["value_b"].astype(float).to_numpy()
            not_paired = int((~sub["used"].astype(bool) & (sub["unit"] == unit)).sum())
            rows.append(_continuous_row(name, unit, str(sub["scope"].iloc[0]),
                                        str(sub["kind"].iloc[0]), a, b, not_paired,
                                        _design(u), bootstrap))
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)


def _categorical_value(kind: str, v: Any) -> Any:
    if kind == "grade":
        return int(float(v))
    if kind == "flag":
        return v if isinstance(v, bool) else str(v).lower() == "true"
    return str(v)


def kappa_table(pairs: pd.DataFrame, *, ordinal_weights: str = "linear") -> pd.DataFrame:
    """One row per categorical measurement: Cohen's kappa, % agreement, 95 % CI.

    Ordinal grades (:data:`ORDINAL_CATEGORIES`) get ``ordinal_weights`` (``"linear"`` or
    ``"quadratic"``) weighted kappa over all grades; categories and flags unweighted kappa.
    """
    if ordinal_weights not in ("linear", "quadratic"):
        raise ValueError(f'Argument "ordinal_weights" must be linear or quadratic; '
                         f"got {ordinal_weights!r}")
    rows = []
    if pairs.empty:
        return pd.DataFrame(columns=KAPPA_COLUMNS)
    cat = pairs[pairs["kind"].isin(CATEGORICAL_KINDS)]
    for name in _ordered_names(cat):
        sub = cat[cat["measurement"] == name]
        kind = str(sub["kind"].iloc[0])
        used = _used(sub)
        a = [_categorical_value(kind, v) for v in used["value_a"]]
        b = [_categorical_value(kind, v) for v in used["value_b"]]
        if name in ORDINAL_CATEGORIES:
            cats: Sequence[Any] | None = ORDINAL_CATEGORIES[name]
            weights = ordinal_weights
        elif kind == "flag":
            cats, weights = (False, True), "none"
        else:
            known = NOMINAL_CATEGORIES.get(name, ())
            cats = tuple(known) + tuple(sorted({*a, *b} - set(known), key=str))
            weights = "none"
        k = cohen_kappa(a, b, categories=cats, weights=weights)
        rows.append({"measurement": name, "kind": kind, "scope": str(sub["scope"].iloc[0]),
                     "n_pairs": k.n, "n_not_paired": int(len(sub) - len(used)),
                     "categories": " ".join(str(c) for c in k.categories),
                     "weights": k.weights, "pct_agreement": k.pct_agreement,
                     "kappa": k.kappa, "kappa_se": k.se, "kappa_ci_low": k.ci_low,
                     "kappa_ci_high": k.ci_high, "reason": k.reason or ""})
    return pd.DataFrame(rows, columns=KAPPA_COLUMNS)


def _verdict(threshold: float, mdc: float) -> tuple[float, float, str]:
    if not (math.isfinite(mdc) and mdc > 0):
        return math.nan, math.nan, "unknown (MDC not available)"
    ratio = threshold / mdc
    # A truly stable vertebra flagged by noise alone: P(N(0, sqrt(2) SEM) >= threshold),
    # sqrt(2) SEM = MDC / 1.96.
    false_flag = 100.0 * float(sps.norm.sf(threshold / (mdc / Z95)))
    verdict = "threshold exceeds MDC" if ratio > 1 else "threshold within measurement error"
    return ratio, false_flag, verdict


def thresholds_vs_mdc(pairs: pd.DataFrame, reliability: pd.DataFrame,
                      options: LongitudinalOptions | None = None) -> pd.DataFrame:
    """Each threshold-based flag next to the measurement error of what it thresholds.

    The thresholds (from ``options``; docs/measurements.md) apply to a change between two
    films of the same vertebra, each read with error. MDC95 = 1.96 * sqrt(2) * SEM of the
    single-film measurement is the smallest change between two readings that exceeds that error with
    95 % confidence, so it is what a change threshold must clear. The SEM is the agreement
    form (:func:`~spine_measure.reliability.stats.sem_agreement`): a reader bias is error
    when the films of a series may be read by different readers.

    * ``kyphosis_progression`` = KA(follow-up) - KA(post-op): MDC95 of
      ``regional_kyphotic_angle`` (deg).
    * ``compression_rate_increase`` = CR(post-op) - CR(follow-up) at the chosen site: MDC95
      of ``cr_<site>`` (percentage points).
    * ``height_loss_pct`` = 100 (H(post-op) - H(follow-up)) / H(post-op): with no true
      change it is the relative difference of two readings of one height, so its MDC95 is
      ``1.96 * sqrt(2) * SEM`` (agreement) of the relative differences
      ``100 (b - a) / ((a + b) / 2)`` of the height at the site (``ha`` by default; mm and
      px films pool, the ratio is unit-free).

    ``false_flag_pct_if_stable`` = ``100 * P(N(0, MDC/1.96) >= threshold)``: the share of truly
    unchanged vertebrae flagged by measurement error alone. ``direct_noise95`` =
    ``1.96 * SEM`` (agreement) of the change measure itself when complete series were
    paired (the same quantity measured directly, with its own n).
    """
    opts = options or LongitudinalOptions()
    site = opts.site
    used = _used(pairs) if not pairs.empty else pairs
    rows = []

    def rel_row(name: str, unit: str) -> pd.Series | None:
        if reliability.empty:
            return None
        r = reliability[(reliability["measurement"] == name) & (reliability["unit"] == unit)]
        return r.iloc[0] if len(r) else None

    def direct(change: str) -> tuple[int, float]:
        if used.empty:
            return 0, math.nan
        u = used[used["measurement"] == change]
        if len(u) < 2:
            return len(u), math.nan
        d = u["value_b"].astype(float).to_numpy() - u["value_a"].astype(float).to_numpy()
        return len(u), Z95 * sem_agreement(d)

    specs = [
        ("recompression", "kyphosis_progression", opts.kyphosis_threshold_deg, "deg",
         "regional_kyphotic_angle", "deg"),
        ("recompression", "height_loss_pct", opts.height_loss_threshold_pct, "pct",
         f"{_SITE_HEIGHT[site]} (relative difference, % of the height)", None),
        ("refracture", "compression_rate_increase", opts.refracture_cri_threshold_pct, "pct",
         _SITE_CR[site], "pct"),
    ]
    for flag, change, thr, unit, underlying, u_unit in specs:
        dn, dnoise = direct(change)
        if u_unit is not None:
            r = rel_row(underlying, u_unit)
            n = int(r["n_pairs"]) if r is not None else 0
            sem = _fnum(r["sem"]) if r is not None else math.nan
            mdc = _fnum(r["mdc95"]) if r is not None else math.nan
            how = (f"MDC95 = 1.96 * sqrt(2) * SEM of {underlying}, agreement SEM "
                   "(reader bias counts as error)")
            why = "" if r is not None else f"no pairs of {underlying}"
            if r is not None and not math.isfinite(mdc):
                why = str(r["reason"])
        else:
            h = _SITE_HEIGHT[site]
            hu = used[used["measurement"] == h] if not used.empty else used
            if len(hu):
                rel = relative_differences(hu["value_a"].astype(float),
                                           hu["value_b"].astype(float))
                rel = rel[np.isfinite(rel)]
            else:
                rel = np.empty(0)
            n = int(rel.size)
            sem = sem_agreement(rel)
            mdc = mdc95_from_sem(sem)
            how = (f"MDC95 = 1.96 * sqrt(2) * agreement SEM of 100 (b - a) / ((a + b) / 2) of "
                   f"{h}: the height loss of an unchanged vertebra")
            why = "" if n >= 2 else f"{n} pair(s) of {h}: need at least 2"
        ratio, false_flag, verdict = _verdict(thr, mdc)
        rows.append({"flag": flag, "change_measure": change, "threshold": thr, "unit": unit,
                     "underlying_measurement": underlying, "n_pairs": n, "sem": sem,
                     "mdc95": mdc, "ratio_threshold_to_mdc": ratio,
                     "false_flag_pct_if_stable": false_flag, "verdict": verdict,
                     "direct_n_pairs": dn, "direct_noise95": dnoise, "how": how,
                     "reason": why})
    return pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)


def bland_altman_figure(pairs: pd.DataFrame, path: str | os.PathLike[str], *,
                        title: str = "") -> Path | None:
    """One multi-panel Bland-Altman figure (difference b - a against the mean) of every
    continuous (measurement, unit) with at least 2 pairs; None when there is none."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    used = _used(pairs) if not pairs.empty else pairs
    if used.empty:
        return None
    panels = []
    cont = used[used["kind"].isin(CONTINUOUS_KINDS)]
    for name in _ordered_names(cont):
        sub = cont[cont["measurement"] == name]
        for unit in sorted(sub["unit"].unique()):
            u = sub[sub["unit"] == unit]
            if len(u) >= 2:
                panels.append((name, unit, u["value_a"].astype(float).to_numpy(),
                               u["value_b"].astype(float).to_numpy()))
    if not panels:
        return None
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, unit, a, b) in zip(axes.flat, panels, strict=False):
        ba = bland_altman(a, b)
        mean = (a + b) / 2
        ax.scatter(mean, b - a, s=8, alpha=0.6, color="tab:blue", linewidths=0)
        ax.axhline(ba.bias, color="k", lw=1)
        for lim in (ba.loa_low, ba.loa_high):
            if math.isfinite(lim):
                ax.axhline(lim, color="tab:red", lw=1, ls="--")
        ax.axhline(0, color="0.6", lw=0.6, ls=":")
        u = {"pct": "%", "deg": "deg"}.get(unit, unit)
        ax.set_title(f"{_column(name, unit)}  (n={len(a)})", fontsize=9)
        ax.set_xlabel(f"mean of readers ({u})", fontsize=8)
        ax.set_ylabel(f"b - a ({u})", fontsize=8)
        ax.tick_params(labelsize=7)
        if math.isfinite(ba.loa_high):
            ax.text(0.98, 0.97, f"bias {ba.bias:.2f}\nLoA {ba.loa_low:.2f} to {ba.loa_high:.2f}",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0})
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


# --------------------------------------------------------------------------- the run


@dataclass
class ReliabilityRun:
    """Everything :func:`run_reliability` computed and wrote."""

    out_dir: Path
    n_films: int
    pairs: pd.DataFrame
    reliability: pd.DataFrame
    kappa: pd.DataFrame
    thresholds: pd.DataFrame
    unpaired: list[IssueRow] = field(default_factory=list)
    errors: list[IssueRow] = field(default_factory=list)
    notes: list[IssueRow] = field(default_factory=list)
    longitudinal_status: str = ""
    files: dict[str, Path] = field(default_factory=dict)
    n_patients: int | None = None
    warnings: list[str] = field(default_factory=list)
    bootstrap: BootstrapOptions = field(default_factory=lambda: BootstrapOptions())
    landmark_error: dict[str, Any] = field(default_factory=dict)


#: The landmark error summary a reliability run writes (read by ``--uncertainty-from``).
LANDMARK_ERROR_FILE = "landmark_error.json"


def load_landmark_error_model(reliability_dir: str | os.PathLike[str]) -> Any:
    """The landmark error model of a reliability run's output folder.

    Reads ``landmark_error.json`` (written by :func:`run_reliability`) and returns a
    :class:`~spine_measure.measurements.uncertainty.LandmarkErrorModel` whose ``source``
    names the folder and the number of landmark pairs.

    Raises
    ------
    ValueError
        The folder has no such file, the file is not valid JSON, or it holds no SD; the
        message names the file and why.
    """
    path = Path(reliability_dir) / LANDMARK_ERROR_FILE
    if not path.is_file():
        raise ValueError(f"{path}: not found; --uncertainty-from needs the output folder of "
                         "spine-measure reliability (a run of this version writes it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a landmark error summary (a JSON object is expected)")
    try:
        return model_from_summary(data, source=f"reliability run {Path(reliability_dir)}")
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: {exc}") from None


PAIR_COLUMNS = ["film", "patient", "file_name", "time_point", "view", "level", "index_vertebra",
                "measurement", "kind", "scope", "unit", "value_a", "value_b", "diff_b_minus_a",
                "calibration_source_a", "calibration_source_b", "used", "reason", "file_a",
                "file_b"]


def _pairs_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    if "patient" not in df:
        df["patient"] = ""
    cont = df["kind"].isin(CONTINUOUS_KINDS) & df["used"].astype(bool)
    diff = np.full(len(df), np.nan)
    diff[cont.to_numpy()] = (df.loc[cont, "value_b"].astype(float)
                             - df.loc[cont, "value_a"].astype(float)).to_numpy()
    df["diff_b_minus_a"] = diff
    return df[PAIR_COLUMNS]


def _write_issues(path: Path, rows: Sequence[IssueRow]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["reader", "file", "film", "reason"])
        for r in sorted(rows):
            w.writerow([r.reader, r.file, r.key, r.reason])
    return path


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "-" if not math.isfinite(f) else f"{f:.{nd}f}"


def _ci_text(r: Mapping[str, Any], stat: str, nd: int = 2) -> str:
    """``[low, high]`` of the cluster bootstrap when it ran, else the independent-pairs CI
    marked with a dagger (optimistic)."""
    lo, hi = r.get(f"{stat}_cluster_ci_low"), r.get(f"{stat}_cluster_ci_high")
    if lo is not None and math.isfinite(_fnum(lo)):
        return f"[{_fmt(lo, nd)}, {_fmt(hi, nd)}]"
    lo, hi = r.get(f"{stat}_ci_low"), r.get(f"{stat}_ci_high")
    if lo is None or not math.isfinite(_fnum(lo)):
        return ""
    return f"[{_fmt(lo, nd)}, {_fmt(hi, nd)}]†"


def design_sentence(run: ReliabilityRun) -> str:
    """The unit of analysis and the interval method, in one paragraph."""
    rel = run.reliability
    pats = ("patients unknown (pass --images)" if run.n_patients is None
            else f"{run.n_patients} patient(s)")
    text = (f"Unit of analysis: one reading of a vertebra per film (one film per time point "
            f"and view); {run.n_films} paired film(s) of {pats}.")
    boot = rel[rel["ci_method"].astype(str).str.startswith("cluster bootstrap")] \
        if len(rel) else rel
    b = run.bootstrap
    if len(boot):
        text += (f" Confidence intervals: cluster bootstrap over "
                 f"{'patients' if run.n_patients is not None else 'films'} (percentile, "
                 f"{b.n_boot} resamples, seed {b.seed}); rows marked † have fewer than "
                 f"{b.min_clusters} clusters and show the intervals that treat pairs as "
                 "independent.")
    else:
        text += (f" Confidence intervals (marked †) treat every pair as independent and are "
                 f"optimistic: vertebrae of one patient share reading errors, and fewer than "
                 f"{b.min_clusters} {'patients' if run.n_patients is not None else 'films'} "
                 "is too few for a cluster bootstrap.")
    return text


def summary_markdown(run: ReliabilityRun, *, title: str = "Reliability") -> str:
    """A short markdown summary of a run (also written as ``summary.md``)."""
    lines = [f"# {title}", ""]
    for w in run.warnings:
        lines += [f"**Warning:** {w}", ""]
    lines += [f"{run.n_films} paired film(s); {len(run.unpaired)} unpaired file(s); "
              f"{len(run.errors)} file(s) with errors. Longitudinal measurements: "
              f"{run.longitudinal_status}.", "",
              design_sentence(run), "",
              "Differences are reader b - reader a. SEM is the agreement SEM "
              "sqrt(MS_E + max(0, (MS_C - MS_E) / n)), which counts a reader bias as error; "
              "MDC95 = 1.96 * sqrt(2) * SEM. The consistency forms (SD_diff / sqrt(2)) are in "
              "reliability.csv.", "",
              "## Continuous measurements", "",
              "| measurement | pairs (patients / films / vertebrae) | ICC(2,1) [95% CI] | "
              "ICC(3,1) [95% CI] | bias [95% CI] | 95% LoA | SEM | MDC95 |",
              "|---|---|---|---|---|---|---|---|"]
    for _, row in run.reliability.iterrows():
        r = row.to_dict()
        counts = " / ".join(str(int(v)) if math.isfinite(v := _fnum(r[c])) else "-"
                            for c in ("n_patients", "n_films", "n_vertebrae"))
        def est(stat: str, nd: int) -> str:
            return f"{_fmt(r[stat], nd)} {_ci_text(r, stat)}".strip()  # noqa: B023

        loa = (f"{_fmt(r['loa_low'], 2)} to {_fmt(r['loa_high'], 2)}"
               if math.isfinite(_fnum(r["loa_low"])) else "-")
        lines.append(
            f"| {r['column']} | {r['n_pairs']} ({counts}) | {est('icc2_1', 3)} | "
            f"{est('icc3_1', 3)} | {est('bias', 2)} | {loa} | {_fmt(r['sem'], 2)} | "
            f"{_fmt(r['mdc95'], 2)} |")
    lines += ["", "## Categorical measurements", "",
              "| measurement | n | weights | % agreement | kappa [95% CI] | note |",
              "|---|---|---|---|---|---|"]
    for _, r in run.kappa.iterrows():
        kap = _fmt(r["kappa"])
        ci = (f" [{_fmt(r['kappa_ci_low'], 2)}, {_fmt(r['kappa_ci_high'], 2)}]"
              if math.isfinite(_fnum(r["kappa_ci_low"])) else "")
        lines.append(f"| {r['measurement']} | {r['n_pairs']} | {r['weights']} | "
                     f"{_fmt(r['pct_agreement'], 1)} | {kap}{ci} | {r['reason']} |")
    lines += ["", "## Thresholds versus MDC95", "",
              "| flag | change | threshold | underlying | MDC95 | threshold / MDC | "
              "false flags if stable (%) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for _, r in run.thresholds.iterrows():
        lines.append(f"| {r['flag']} | {r['change_measure']} | {_fmt(r['threshold'], 1)} "
                     f"{r['unit']} | {r['underlying_measurement']} | {_fmt(r['mdc95'], 2)} | "
                     f"{_fmt(r['ratio_threshold_to_mdc'], 2)} | "
                     f"{_fmt(r['false_flag_pct_if_stable'], 2)} | {r['verdict']} |")
    lines.append("")
    return "\n".join(lines)


def _input_warnings(dir_a: Path, dir_b: Path, pairing: Any, pairs: pd.DataFrame) -> list[str]:
    """Inputs that make the agreement meaningless: the same folder twice, identical values."""
    out = []
    try:
        same = dir_a.resolve() == dir_b.resolve()
    except OSError:
        same = False
    if same:
        out.append(f"READER_A_DIR and READER_B_DIR are the same folder ({dir_a}): every film "
                   "is compared with itself and agreement is perfect by construction")
    else:
        twins = sum(1 for f in pairing.films if _same_bytes(f.path_a, f.path_b))
        if twins and twins == len(pairing.films):
            out.append(f"the annotation files of all {twins} paired films are byte-identical "
                       "in the two folders: reader b's annotations are copies of reader a's")
        elif twins:
            out.append(f"{twins} of {len(pairing.films)} paired films have byte-identical "
                       "annotation files in the two folders (copies, not second readings?)")
    if not pairs.empty and not same:
        u = _used(pairs)
        u = u[u["kind"].isin(CONTINUOUS_KINDS)]
        if len(u) and bool((u["value_a"].astype(float) == u["value_b"].astype(float)).all()):
            out.append(f"every one of the {len(u)} paired continuous values is identical for "
                       "the two readers: there is no measurement error to estimate (are the "
                       "two folders the same readings?)")
    return out


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def run_reliability(dir_a: str | os.PathLike[str], dir_b: str | os.PathLike[str],
                    out_dir: str | os.PathLike[str], *,
                    images: str | os.PathLike[str] | None = None, levels: str = "all",
                    ordinal_weights: str = "linear",
                    long_options: LongitudinalOptions | None = None,
                    plots: bool = True, one_per_time_point: bool = True,
                    bootstrap: BootstrapOptions | None = None) -> ReliabilityRun:
    """Pair, measure, compute and write every output (list in the module docstring).

    Parameters
    ----------
    dir_a, dir_b : path-like
        The two annotation folders (searched recursively for ``*.sm.json``).
    out_dir : path-like
        Created if needed.
    images : path-like, optional
        DICOM folder: header-only scan for the spacing (lengths in mm), patient and dates
        (longitudinal pairs).
    levels : {"all", "index"}
        ``"index"``: only vertebrae flagged fractured or treated by either reader (and the
        longitudinal rows); ``"all"``: every annotated vertebra.
    ordinal_weights : {"linear", "quadratic"}
        Weights of the Genant-grade kappa.
    long_options : LongitudinalOptions, optional
        Site and thresholds (docs/measurements.md).
    plots : bool
        Write ``bland_altman.png``.
    one_per_time_point : bool
        One reading per vertebra per time point (default): extra films of a patient at the
        same time point and view are listed but not used (needs ``images``).
    bootstrap : BootstrapOptions, optional
        Resamples, seed and the fewest patients for the cluster-bootstrap intervals.
    """
    if levels not in ("all", "index"):
        raise ValueError(f'Argument "levels" must be "all" or "index"; got {levels!r}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairing = pair_annotation_dirs(dir_a, dir_b)
    headers = None
    notes: list[IssueRow] = []
    if images is not None:
        from spine_measure.io.scan import scan_folder

        scan = scan_folder(images)
        headers = {h.sop_instance_uid: h for h in scan.images if h.sop_instance_uid}
        for issue in scan.issues:
            if issue.stage == "read":
                notes.append(IssueRow("", issue.path, "", f"--images: {issue.reason}"))
        for f in pairing.films:
            if f.sop_instance_uid and f.sop_instance_uid not in headers:
                notes.append(IssueRow("", os.fspath(f.path_a), f.key,
                                      "image not found in --images: measured uncalibrated "
                                      "(lengths in px unless a calibration line was drawn)"))
    opts = long_options or LongitudinalOptions()
    pv = measure_pairs(pairing, headers=headers, long_options=opts,
                       one_per_time_point=one_per_time_point)
    notes.extend(pv.notes)
    pairs = _pairs_frame(pv.rows)
    if levels == "index" and not pairs.empty:
        pairs = pairs[pairs["index_vertebra"].astype(bool)].reset_index(drop=True)
    boot = bootstrap or BootstrapOptions()
    rel = reliability_table(pairs, bootstrap=boot)
    kap = kappa_table(pairs, ordinal_weights=ordinal_weights)
    thr = thresholds_vs_mdc(pairs, rel, opts)
    warnings = _input_warnings(Path(dir_a), Path(dir_b), pairing, pairs)
    for w in warnings:
        log.warning("%s", w)
    run = ReliabilityRun(out, pv.n_films, pairs, rel, kap, thr, list(pairing.unpaired),
                         [*pairing.errors, *pv.errors], notes, pv.longitudinal_status,
                         n_patients=pv.n_patients, warnings=warnings, bootstrap=boot)
    files = {
        "reliability": out / "reliability.csv", "kappa": out / "kappa.csv",
        "thresholds": out / "thresholds_vs_mdc.csv", "pairs": out / "pairs_long.csv",
    }
    rel.to_csv(files["reliability"], index=False)
    kap.to_csv(files["kappa"], index=False)
    thr.to_csv(files["thresholds"], index=False)
    pairs.to_csv(files["pairs"], index=False)
    lm_cols = ["film", "patient", "level", "point", "d_row_px", "d_col_px", "d_along",
               "d_across", "unit"]
    lm = pd.DataFrame(pv.landmark_rows, columns=lm_cols)
    files["landmark_differences"] = out / "landmark_differences.csv"
    lm.to_csv(files["landmark_differences"], index=False)
    files["landmark_error"] = out / LANDMARK_ERROR_FILE
    run.landmark_error = landmark_error_summary(pv.landmark_rows)
    files["landmark_error"].write_text(
        json.dumps(run.landmark_error, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    files["unpaired"] = _write_issues(out / "unpaired.csv", run.unpaired)
    files["errors"] = _write_issues(out / "errors.csv", run.errors)
    files["notes"] = _write_issues(out / "notes.csv", run.notes)
    if plots:
        fig = bland_altman_figure(pairs, out / "bland_altman.png",
                                  title="Bland-Altman: reader b - reader a")
        if fig is not None:
            files["bland_altman"] = fig
    files["summary"] = out / "summary.md"
    run.files = files
    files["summary"].write_text(summary_markdown(run), encoding="utf-8")
    return run
