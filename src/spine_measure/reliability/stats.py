"""Agreement statistics of two readings of the same films (docs/reliability.md).

Pure functions on arrays: ratings in, small frozen result objects out. Degenerate input
(fewer than two pairs, no variance, a single category) gives ``NaN`` plus a ``reason``,
never an exception.

Notation: ``n`` films (targets), ``k`` readings per film (here two readers, or one reader
twice), ``x[i, j]`` the reading of film ``i`` by reader ``j``.

Two-way ANOVA (one observation per cell)::

    SS_R = k * sum_i (mean_i. - mean..)^2          MS_R = SS_R / (n - 1)
    SS_C = n * sum_j (mean_.j - mean..)^2          MS_C = SS_C / (k - 1)
    SS_E = sum_ij (x_ij - mean_i. - mean_.j + mean..)^2
                                                   MS_E = SS_E / ((n - 1)(k - 1))

ICC(2,1), two-way random effects, absolute agreement, single rater (Shrout & Fleiss 1979
case 2; McGraw & Wong 1996 ICC(A,1))::

    ICC(2,1) = (MS_R - MS_E) / (MS_R + (k - 1) MS_E + k (MS_C - MS_E) / n)

ICC(3,1), two-way mixed effects, consistency, single rater (Shrout & Fleiss case 3;
McGraw & Wong ICC(C,1))::

    ICC(3,1) = (MS_R - MS_E) / (MS_R + (k - 1) MS_E)

Both are tested against zero with ``F = MS_R / MS_E`` on ``(n - 1, (n - 1)(k - 1))`` degrees
of freedom; their 95 % confidence intervals are the F-based intervals of McGraw & Wong
(1996), the ones pingouin and R's ``psych::ICC`` print (formulas in :func:`icc_consistency`
and :func:`icc_agreement`).

>>> import numpy as np
>>> # Shrout & Fleiss (1979), judges 1 and 2
>>> x = np.array([[9, 2], [6, 1], [8, 4], [7, 1], [10, 5], [6, 2]], float)
>>> round(icc_consistency(x).icc, 4), round(icc_agreement(x).icc, 4)
(0.7453, 0.1257)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = [
    "Z95",
    "BlandAltman",
    "ICCResult",
    "KappaResult",
    "TwoWayAnova",
    "anova_two_way",
    "bland_altman",
    "cohen_kappa",
    "icc_agreement",
    "icc_consistency",
    "relative_differences",
    "sem_from_sd_diff",
    "sem_agreement",
    "mdc95_from_sem",
    "ClusterBootstrap",
    "cluster_bootstrap",
    "MIN_CLUSTERS_BOOTSTRAP",
]

#: The two-sided 95 % normal quantile used in MDC95 and the limits of agreement.
Z95 = 1.96

NAN = float("nan")


def _ratings(x: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f'Argument "ratings" must have shape (n_films, n_readers); '
                         f"got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError('Argument "ratings" must be finite (drop incomplete pairs first)')
    return arr


@dataclass(frozen=True)
class TwoWayAnova:
    """Mean squares of a two-way ANOVA without replication (films x readers)."""

    n: int
    k: int
    grand_mean: float
    ms_rows: float      # between films (targets)
    ms_cols: float      # between readers
    ms_error: float     # residual
    ss_total: float


def anova_two_way(ratings: Sequence[Sequence[float]] | np.ndarray) -> TwoWayAnova:
    """Two-way ANOVA of an ``(n, k)`` table of ratings (formulas in the module docstring).

    Raises
    ------
    ValueError
        ``ratings`` is not 2-D, holds NaN, or has fewer than 2 rows or columns.
    """
    x = _ratings(ratings)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError(f"need at least 2 films and 2 readers; got {n} x {k}")
    grand = float(x.mean())
    rows = x.mean(axis=1)
    cols = x.mean(axis=0)
    ss_r = k * float(((rows - grand) ** 2).sum())
    ss_c = n * float(((cols - grand) ** 2).sum())
    resid = x - rows[:, None] - cols[None, :] + grand
    ss_e = float((resid ** 2).sum())
    ss_t = float(((x - grand) ** 2).sum())
    if ss_e <= 1e-20 * ss_t:
        ss_e = 0.0  # rounding noise of an exactly additive table (readers differ by a constant)
    return TwoWayAnova(n=n, k=k, grand_mean=grand, ms_rows=ss_r / (n - 1),
                       ms_cols=ss_c / (k - 1), ms_error=ss_e / ((n - 1) * (k - 1)),
                       ss_total=ss_t)


@dataclass(frozen=True)
class ICCResult:
    """An intraclass correlation with its F test and 95 % confidence interval.

    ``icc`` is NaN when it cannot be computed and ``ci_low``/``ci_high`` NaN when the
    interval cannot; ``reason`` says why (``None`` when everything was computed).
    """

    kind: str           # "ICC(2,1)" or "ICC(3,1)"
    icc: float
    ci_low: float
    ci_high: float
    f: float
    df1: float
    df2: float
    pval: float
    n: int
    reason: str | None = None


def _precheck(kind: str, ratings: Sequence[Sequence[float]] | np.ndarray
              ) -> tuple[TwoWayAnova | None, ICCResult | None]:
    x = _ratings(ratings)
    n = x.shape[0]
    if n < 2:
        return None, ICCResult(kind, NAN, NAN, NAN, NAN, NAN, NAN, NAN, n,
                               f"{n} pair(s): an ICC needs at least 2")
    if x.shape[1] < 2:
        return None, ICCResult(kind, NAN, NAN, NAN, NAN, NAN, NAN, NAN, n,
                               "one reading per film: an ICC needs at least 2")
    a = anova_two_way(x)
    if a.ss_total == 0.0:
        return a, ICCResult(kind, NAN, NAN, NAN, NAN, a.n - 1, (a.n - 1) * (a.k - 1), NAN, n,
                            "zero variance: every reading is the same value")
    return a, None


def _f_test(a: TwoWayAnova) -> tuple[float, float, float, float]:
    df1 = a.n - 1
    df2 = (a.n - 1) * (a.k - 1)
    if a.ms_error == 0.0:
        return math.inf, df1, df2, 0.0
    f = a.ms_rows / a.ms_error
    return f, df1, df2, float(sps.f.sf(f, df1, df2))


def icc_consistency(ratings: Sequence[Sequence[float]] | np.ndarray, *,
                    alpha: float = 0.05) -> ICCResult:
    """ICC(3,1): two-way mixed effects, consistency, single rater.

    ``ICC = (MS_R - MS_E) / (MS_R + (k - 1) MS_E)``. With ``F = MS_R / MS_E``,
    ``F_L = F / F_{1-alpha/2}(n-1, (n-1)(k-1))`` and ``F_U = F * F_{1-alpha/2}((n-1)(k-1), n-1)``
    the interval is ``[(F_L - 1) / (F_L + k - 1), (F_U - 1) / (F_U + k - 1)]``
    (McGraw & Wong 1996, case 3).

    Parameters
    ----------
    ratings : array, shape (n, k)
        One row per film, one column per reader (no NaN).
    alpha : float
        1 - confidence level.
    """
    kind = "ICC(3,1)"
    a, early = _precheck(kind, ratings)
    if early is not None:
        return early
    assert a is not None
    n, k = a.n, a.k
    f, df1, df2, p = _f_test(a)
    den = a.ms_rows + (k - 1) * a.ms_error
    if den == 0.0:
        return ICCResult(kind, NAN, NAN, NAN, NAN, df1, df2, NAN, n,
                         "no variance between films and no residual variance")
    icc = (a.ms_rows - a.ms_error) / den
    if a.ms_error == 0.0:
        return ICCResult(kind, icc, NAN, NAN, f, df1, df2, p, n,
                         "residual variance is zero (readers differ by a constant at most): "
                         "the F-based interval is undefined")
    fl = f / sps.f.ppf(1 - alpha / 2, df1, df2)
    fu = f * sps.f.ppf(1 - alpha / 2, df2, df1)
    return ICCResult(kind, float(icc), float((fl - 1) / (fl + k - 1)),
                     float((fu - 1) / (fu + k - 1)), f, df1, df2, p, n)


def icc_agreement(ratings: Sequence[Sequence[float]] | np.ndarray, *,
                  alpha: float = 0.05) -> ICCResult:
    """ICC(2,1): two-way random effects, absolute agreement, single rater.

    ``ICC = (MS_R - MS_E) / (MS_R + (k - 1) MS_E + k (MS_C - MS_E) / n)``.

    Confidence interval (McGraw & Wong 1996, case 2A; Satterthwaite degrees of freedom)::

        F_j = MS_C / MS_E
        v   = (n-1)(k-1) (k ICC F_j + n (1 + (k-1) ICC) - k ICC)^2
              / ((n-1) k^2 ICC^2 F_j^2 + (n (1 + (k-1) ICC) - k ICC)^2)
        F* = F_{1-alpha/2}(n-1, v),  F_* = F_{1-alpha/2}(v, n-1)
        lower = n (MS_R - F* MS_E) / (F* (k MS_C + (k n - k - n) MS_E) + n MS_R)
        upper = n (F_* MS_R - MS_E) / (k MS_C + (k n - k - n) MS_E + n F_* MS_R)

    Parameters
    ----------
    ratings : array, shape (n, k)
    alpha : float
    """
    kind = "ICC(2,1)"
    a, early = _precheck(kind, ratings)
    if early is not None:
        return early
    assert a is not None
    n, k = a.n, a.k
    msr, msc, mse = a.ms_rows, a.ms_cols, a.ms_error
    f, df1, df2, p = _f_test(a)
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    if den == 0.0:
        return ICCResult(kind, NAN, NAN, NAN, NAN, df1, df2, NAN, n,
                         "no variance between films and no residual variance")
    icc = (msr - mse) / den
    if mse == 0.0:
        return ICCResult(kind, icc, NAN, NAN, f, df1, df2, p, n,
                         "residual variance is zero (readers differ by a constant at most): "
                         "the F-based interval is undefined")
    fj = msc / mse
    vn = df2 * (k * icc * fj + n * (1 + (k - 1) * icc) - k * icc) ** 2
    vd = df1 * k ** 2 * icc ** 2 * fj ** 2 + (n * (1 + (k - 1) * icc) - k * icc) ** 2
    v = vn / vd
    f_up = sps.f.ppf(1 - alpha / 2, n - 1, v)
    f_lo = sps.f.ppf(1 - alpha / 2, v, n - 1)
    low = n * (msr - f_up * mse) / (f_up * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_lo * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_lo * msr)
    return ICCResult(kind, float(icc), float(low), float(high), f, df1, df2, p, n)


# --------------------------------------------------------------------------- Bland-Altman


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman agreement of paired readings, differences ``d = b - a``.

    Attributes
    ----------
    n : int
    bias : float
        Mean difference ``mean(d)``.
    sd_diff : float
        Standard deviation of the differences (``ddof = 1``).
    bias_ci : (float, float)
        ``bias -/+ t_{1-alpha/2, n-1} * sd / sqrt(n)``.
    loa_low, loa_high : float
        95 % limits of agreement ``bias -/+ 1.96 sd``.
    loa_low_ci, loa_high_ci : (float, float)
        Their confidence intervals, ``loa -/+ t_{1-alpha/2, n-1} * se_loa`` with
        ``se_loa = sd * sqrt(1/n + 1.96^2 / (2 (n - 1)))`` (Bland & Altman 1999).
    reason : str or None
    """

    n: int
    bias: float
    sd_diff: float
    bias_ci: tuple[float, float]
    loa_low: float
    loa_high: float
    loa_low_ci: tuple[float, float]
    loa_high_ci: tuple[float, float]
    reason: str | None = None


def bland_altman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                 alpha: float = 0.05) -> BlandAltman:
    """Bias, limits of agreement and their confidence intervals of ``b - a``.

    >>> r = bland_altman([10.0, 12.0, 14.0], [11.0, 12.0, 16.0])
    >>> r.bias, round(r.sd_diff, 6), round(r.loa_high, 4)
    (1.0, 1.0, 2.96)
    """
    x = np.asarray(a, float)
    y = np.asarray(b, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f'Arguments "a" and "b" must be 1-D of equal length; '
                         f"got {x.shape} and {y.shape}")
    d = y - x
    n = int(d.size)
    if n < 2:
        bias = float(d.mean()) if n else NAN
        return BlandAltman(n, bias, NAN, (NAN, NAN), NAN, NAN, (NAN, NAN), (NAN, NAN),
                           f"{n} pair(s): limits of agreement need at least 2")
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    t = float(sps.t.ppf(1 - alpha / 2, n - 1))
    se_bias = sd / math.sqrt(n)
    se_loa = sd * math.sqrt(1.0 / n + Z95 ** 2 / (2.0 * (n - 1)))
    lo, hi = bias - Z95 * sd, bias + Z95 * sd
    return BlandAltman(n, bias, sd, (bias - t * se_bias, bias + t * se_bias), lo, hi,
                       (lo - t * se_loa, lo + t * se_loa), (hi - t * se_loa, hi + t * se_loa),
                       "zero variance of the differences" if sd == 0.0 else None)


def sem_from_sd_diff(sd_diff: float) -> float:
    """Standard error of measurement of one reading from two: ``SEM = SD_diff / sqrt(2)``.

    With two readings per film this equals ``sqrt(MS_E)`` of the two-way ANOVA exactly
    (each residual is ``+/- (d_i - mean d) / 2``, so ``SS_E = sum (d_i - mean d)^2 / 2``).
    """
    return float(sd_diff) / math.sqrt(2.0)


def sem_agreement(differences: Sequence[float] | np.ndarray) -> float:
    """Agreement standard error of measurement of one reading, from the differences ``b - a``.

    The reader (column) variance of the two-way ANOVA counts as error (de Vet et al. 2006,
    "agreement" SEM, the SEM that goes with ICC(2,1))::

        sigma2_readers = max(0, (MS_C - MS_E) / n)
        SEM_agreement  = sqrt(MS_E + sigma2_readers)

    With two readings per film ``MS_E = SD_diff^2 / 2`` and ``MS_C = n * bias^2 / 2``, so
    ``SEM_agreement^2 = SD_diff^2 / 2 + max(0, bias^2 / 2 - SD_diff^2 / (2 n))``. Without a
    reader bias it equals the consistency form ``SD_diff / sqrt(2)``
    (:func:`sem_from_sd_diff`); a bias makes it larger. NaN with fewer than two differences.

    >>> round(sem_agreement([1.0, 2.0, 3.0]), 6)   # SD 1, bias 2, n 3
    1.527525
    """
    d = np.asarray(differences, float)
    n = int(d.size)
    if n < 2:
        return NAN
    var = float(d.var(ddof=1))
    bias = float(d.mean())
    return math.sqrt(var / 2.0 + max(0.0, bias * bias / 2.0 - var / (2.0 * n)))


def mdc95_from_sem(sem: float) -> float:
    """Minimal detectable change at 95 %: ``MDC95 = 1.96 * sqrt(2) * SEM``.

    The smallest difference between two readings of the same film that exceeds the
    measurement error with 95 % confidence (with ``SEM = SD_diff / sqrt(2)`` it is
    ``1.96 * SD_diff``).
    """
    return Z95 * math.sqrt(2.0) * float(sem)


def relative_differences(a: Sequence[float] | np.ndarray,
                         b: Sequence[float] | np.ndarray) -> np.ndarray:
    """Percent differences ``100 * (b - a) / ((a + b) / 2)``; unit-free (mm and px pool).

    Pairs whose mean is not positive give NaN.
    """
    x = np.asarray(a, float)
    y = np.asarray(b, float)
    mean = (x + y) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(mean > 0, 100.0 * (y - x) / mean, np.nan)
    return out


# --------------------------------------------------------------------------- Cohen's kappa


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa of two readers' categories.

    Attributes
    ----------
    kappa : float
    se : float
        Large-sample standard error (Fleiss, Cohen & Everitt 1969; statsmodels).
    ci_low, ci_high : float
        ``kappa -/+ z_{1-alpha/2} * se``, clipped to [-1, 1] (the clipping is named in
        ``reason``); NaN when the SE is 0 (perfect agreement gives no Wald interval).
    pct_agreement : float
        Percent of pairs in exactly the same category.
    n : int
    weights : str
        ``"none"``, ``"linear"`` or ``"quadratic"``.
    categories : tuple
        The categories in order (ordinal order for weighted kappa).
    reason : str or None
        Why kappa or its CI is missing (``"undefined: reader b used one category ..."``),
        that the CI was clipped, or that there are fewer than ``2 K^2`` pairs for ``K``
        categories (Cicchetti 1981), below which the large-sample CI is approximate.
    """

    kappa: float
    se: float
    ci_low: float
    ci_high: float
    pct_agreement: float
    n: int
    weights: str
    categories: tuple[object, ...]
    reason: str | None = None


def cohen_kappa(a: Sequence[object], b: Sequence[object], *,
                categories: Sequence[object] | None = None, weights: str = "none",
                alpha: float = 0.05) -> KappaResult:
    """Cohen's kappa (unweighted, or linearly / quadratically weighted for ordinal data).

    With the ``K x K`` table of proportions ``p_ij`` (reader a's category ``i``, reader b's
    ``j``), marginals ``p_i.``, ``p_.j`` and agreement weights ``w_ij = 1 - |i - j| / (K - 1)``
    (linear), ``1 - (i - j)^2 / (K - 1)^2`` (quadratic) or ``[i == j]`` (unweighted)::

        p_o = sum_ij w_ij p_ij,   p_e = sum_ij w_ij p_i. p_.j,   kappa = (p_o - p_e) / (1 - p_e)

    The estimate and its standard error come from
    :func:`statsmodels.stats.inter_rater.cohens_kappa` (Fleiss, Cohen & Everitt 1969).

    Parameters
    ----------
    a, b : sequences of equal length
        Categories of the same items; ``None`` is not allowed (drop incomplete pairs first).
    categories : sequence, optional
        Every possible category in order. Required for a meaningful weighted kappa: linear
        weights use the distance in this list, so an unobserved middle grade still counts.
        Default: the sorted observed categories.
    weights : {"none", "linear", "quadratic"}
    alpha : float
    """
    from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

    if weights not in ("none", "linear", "quadratic"):
        raise ValueError(f'Argument "weights" must be none, linear or quadratic; got {weights!r}')
    xa, xb = list(a), list(b)
    if len(xa) != len(xb):
        raise ValueError(f'Arguments "a" and "b" must have equal length; '
                         f"got {len(xa)} and {len(xb)}")
    cats = tuple(categories) if categories is not None else tuple(sorted(set(xa) | set(xb),
                                                                         key=str))
    unknown = sorted({str(v) for v in xa + xb if v not in cats})
    if unknown:
        raise ValueError(f"categories {', '.join(unknown)} are not in {list(cats)}")
    n = len(xa)
    agree = 100.0 * sum(u == v for u, v in zip(xa, xb, strict=True)) / n if n else NAN
    if n < 2:
        return KappaResult(NAN, NAN, NAN, NAN, agree, n, weights, cats,
                           f"{n} pair(s): kappa needs at least 2")
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for u, v in zip(xa, xb, strict=True):
        table[index[u], index[v]] += 1
    pa, pb = table.sum(1) / n, table.sum(0) / n
    if len(cats) < 2 or float(pa @ pb) >= 1.0 - 1e-12:
        return KappaResult(NAN, NAN, NAN, NAN, agree, n, weights, cats,
                           "both readers used a single (the same) category: chance agreement "
                           "is 1 and kappa is undefined")
    for r, marg in (("a", pa), ("b", pb)):
        used_cats = [c for c, p in zip(cats, marg, strict=True) if p > 0]
        if len(used_cats) == 1:
            # kappa is 0 by arithmetic (p_o = p_e), with SE 0: a number that says nothing
            return KappaResult(NAN, NAN, NAN, NAN, agree, n, weights, cats,
                               f"undefined: reader {r} used one category ({used_cats[0]}) "
                               "for every pair")
    # statsmodels also computes a z test against 0, which divides by 0 for perfect agreement
    with np.errstate(divide="ignore", invalid="ignore"):
        if weights == "none":
            res = sm_kappa(table)
        else:
            res = sm_kappa(table, weights=np.arange(len(cats), dtype=float), wt=weights)
    kappa = float(res.kappa)
    var = float(res.var_kappa)
    z = float(sps.norm.ppf(1 - alpha / 2))
    notes = []
    n_min = 2 * len(cats) ** 2
    if n < n_min:
        notes.append(f"only {n} pairs for {len(cats)} categories (fewer than 2K^2 = {n_min}, "
                     "Cicchetti 1981): the large-sample CI is approximate")
    if not (math.isfinite(var) and var >= 0):
        return KappaResult(kappa, NAN, NAN, NAN, agree, n, weights, cats,
                           "; ".join(["the large-sample variance is not defined for this "
                                      "table", *notes]))
    se = math.sqrt(var)
    if se == 0:
        return KappaResult(kappa, se, NAN, NAN, agree, n, weights, cats,
                           "; ".join([f"perfect agreement on {n} pairs: the large-sample SE "
                                      "is 0 and gives no interval", *notes]))
    lo, hi = kappa - z * se, kappa + z * se
    if lo < -1.0 or hi > 1.0:
        notes.append(f"CI clipped to [-1, 1] (Wald interval {lo:.3f} to {hi:.3f})")
        lo, hi = max(lo, -1.0), min(hi, 1.0)
    return KappaResult(kappa, se, lo, hi, agree, n, weights, cats,
                       "; ".join(notes) or None)


# --------------------------------------------------------------------------- clustering

#: Fewest clusters (patients) for which :func:`cluster_bootstrap` resamples. Percentile
#: cluster-bootstrap intervals undercover with few clusters (Field & Welsh 2007; Cameron,
#: Gelbach & Miller 2008 find the problem serious below about 20–30 clusters); below this
#: number the run reports the independent-pairs intervals and says they are optimistic.
MIN_CLUSTERS_BOOTSTRAP = 20

#: Default seed and number of resamples of :func:`cluster_bootstrap`.
BOOTSTRAP_SEED = 20240607
BOOTSTRAP_RESAMPLES = 2000

_BOOT_STATS = ("icc2_1", "icc3_1", "bias", "loa_low", "loa_high", "sem_agreement", "mdc95")


@dataclass(frozen=True)
class ClusterBootstrap:
    """Percentile confidence intervals from resampling whole clusters (patients).

    Attributes
    ----------
    n_pairs, n_clusters : int
    n_boot : int
        Resamples drawn (0 when none was drawn).
    seed : int
    ci : dict
        ``{statistic: (low, high)}`` for ``icc2_1``, ``icc3_1``, ``bias``, ``loa_low``,
        ``loa_high``, ``sem_agreement`` and ``mdc95`` (agreement form); NaN when not
        computed.
    n_degenerate : int
        Resamples in which a statistic was undefined (e.g. every pair from one cluster
        with no variance); they are left out of that statistic's percentiles.
    method : str
        What the interval is, e.g. ``"cluster bootstrap (percentile), 2000 resamples of 25
        patients, seed 20240607"``; or ``""``.
    reason : str or None
        Why no interval was computed (too few clusters).
    """

    n_pairs: int
    n_clusters: int
    n_boot: int
    seed: int
    ci: dict[str, tuple[float, float]]
    n_degenerate: int = 0
    method: str = ""
    reason: str | None = None


def _boot_stats(t: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of :data:`_BOOT_STATS` from summed sufficient statistics.

    ``t[:, 0..5]`` = n, sum a, sum b, sum a^2, sum b^2, sum ab (one row per resample).
    Two readings per film (k = 2): ``MS_E = var(d) / 2``, ``MS_C = n bias^2 / 2``,
    ``MS_R = 2 (sum m^2 - n mean(m)^2) / (n - 1)`` with ``m = (a + b) / 2``.
    """
    n, sa, sb, saa, sbb, sab = (t[:, i] for i in range(6))
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = (sb - sa) / n
        sdd = sbb - 2.0 * sab + saa
        var_d = np.maximum(sdd - n * bias ** 2, 0.0) / (n - 1)
        g = (sa + sb) / (2.0 * n)
        smm = (saa + 2.0 * sab + sbb) / 4.0
        msr = 2.0 * np.maximum(smm - n * g ** 2, 0.0) / (n - 1)
        mse = var_d / 2.0
        msc = n * bias ** 2 / 2.0
        icc2 = (msr - mse) / (msr + mse + 2.0 * (msc - mse) / n)
        icc3 = (msr - mse) / (msr + mse)
        sd = np.sqrt(var_d)
        sem = np.sqrt(var_d / 2.0 + np.maximum(0.0, bias ** 2 / 2.0 - var_d / (2.0 * n)))
    bad = n < 2
    out = {"icc2_1": icc2, "icc3_1": icc3, "bias": bias, "loa_low": bias - Z95 * sd,
           "loa_high": bias + Z95 * sd, "sem_agreement": sem,
           "mdc95": Z95 * math.sqrt(2.0) * sem}
    for v in out.values():
        v[bad | ~np.isfinite(v)] = np.nan
    return out


def cluster_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      clusters: Sequence[object] | np.ndarray, *,
                      n_boot: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                      alpha: float = 0.05, min_clusters: int = MIN_CLUSTERS_BOOTSTRAP,
                      unit: str = "patients") -> ClusterBootstrap:
    """Cluster (patient) bootstrap intervals of the agreement statistics of paired readings.

    Vertebrae of one patient are not independent: they share the reader's view of that film
    (its contrast, positioning, calibration) and the patient's anatomy, so their reading
    errors correlate. Treating them as independent understates the uncertainty. This
    resamples whole clusters with replacement (``n_clusters`` draws per resample), recomputes
    every statistic on the pooled pairs of the drawn clusters and takes the
    ``alpha/2`` and ``1 - alpha/2`` percentiles (Davison & Hinkley 1997, section 3.8).

    The statistics are computed from per-cluster sums (n, sum a, sum b, sum a^2, sum b^2,
    sum ab), so a resample is a weighted sum: with every cluster drawn once they equal
    :func:`icc_agreement`, :func:`icc_consistency`, :func:`bland_altman` and
    :func:`sem_agreement` exactly.

    Parameters
    ----------
    a, b : 1-D arrays of equal length
        Reader a's and reader b's readings (no NaN).
    clusters : 1-D array of the same length
        Cluster label of each pair (patient, or film when patients are unknown).
    n_boot : int
        Number of resamples.
    seed : int
        Seed of ``numpy.random.default_rng``: the same input and seed give the same interval.
    alpha : float
    min_clusters : int
        Fewer clusters give no interval (``reason`` says why): a percentile cluster
        bootstrap with a handful of clusters is itself optimistic.
    unit : str
        Name of the clusters in ``method`` / ``reason`` ("patients", "films").
    """
    x = np.asarray(a, float)
    y = np.asarray(b, float)
    cl = np.asarray(clusters, dtype=object).astype(str)
    if x.shape != y.shape or x.ndim != 1 or cl.shape != x.shape:
        raise ValueError(f'Arguments "a", "b" and "clusters" must be 1-D of equal length; '
                         f"got {x.shape}, {y.shape} and {cl.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError('Arguments "a" and "b" must be finite (drop incomplete pairs first)')
    if n_boot < 1:
        raise ValueError(f'Argument "n_boot" must be >= 1; got {n_boot}')
    labels, inv = np.unique(cl, return_inverse=True)
    n_cl = int(labels.size)
    empty = {s: (NAN, NAN) for s in _BOOT_STATS}
    if n_cl < min_clusters:
        return ClusterBootstrap(int(x.size), n_cl, 0, int(seed), empty, reason=(
            f"{x.size} pairs from only {n_cl} {unit} (a cluster bootstrap needs at least "
            f"{min_clusters}): the intervals treat the pairs as independent and are "
            f"optimistic, because readings of one {unit[:-1]} share errors"))
    centre = float(np.concatenate([x, y]).mean())  # shift-invariant statistics; less rounding
    xc, yc = x - centre, y - centre
    per = np.zeros((n_cl, 6))
    for j, v in enumerate((np.ones_like(xc), xc, yc, xc * xc, yc * yc, xc * yc)):
        per[:, j] = np.bincount(inv, weights=v, minlength=n_cl)
    rng = np.random.default_rng(int(seed))
    draws = rng.integers(0, n_cl, size=(int(n_boot), n_cl))
    w = np.zeros((int(n_boot), n_cl))
    np.add.at(w, (np.repeat(np.arange(int(n_boot)), n_cl), draws.ravel()), 1.0)
    stats = _boot_stats(w @ per)
    ci = {}
    n_bad = 0
    for s in _BOOT_STATS:
        v = stats[s]
        ok = np.isfinite(v)
        n_bad = max(n_bad, int((~ok).sum()))
        if ok.sum() < 2:
            ci[s] = (NAN, NAN)
            continue
        lo, hi = np.quantile(v[ok], [alpha / 2, 1 - alpha / 2])
        ci[s] = (float(lo), float(hi))
    return ClusterBootstrap(int(x.size), n_cl, int(n_boot), int(seed), ci, n_bad,
                            f"cluster bootstrap (percentile), {int(n_boot)} resamples of "
                            f"{n_cl} {unit}, seed {int(seed)}")
