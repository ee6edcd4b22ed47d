"""Discrimination, calibration and clinical usefulness of a fitted logistic model.

* AUC with DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988; fast midrank form of
  Sun & Xu 2014); 95 % CI :math:`AUC \\pm 1.96\\,SE`, clipped to [0, 1].
* Harrell's c-index: the share of (event, non-event) pairs ranked correctly, ties 1/2;
  for a binary outcome it equals the AUC. Optimism correction by the bootstrap (Harrell
  2015, §5.3): refit on each resample, optimism = c(resample model on resample) − c(resample
  model on original data); corrected c = apparent c − mean optimism.
* Calibration: observed vs predicted by risk groups (deciles), a lowess curve, the
  bootstrap bias-corrected lowess curve on a probability grid; the calibration slope
  (Harrell's shrinkage factor), intercept and calibration-in-the-large, and the Brier
  score, each **apparent** (development data) and **optimism-corrected** by the same
  bootstrap; the Hosmer–Lemeshow statistic (apparent, deciles of risk, g − 2 df). On the
  development data a maximum-likelihood fit has apparent slope 1 and intercept 0 by
  construction; only the corrected values say something.
* Decision curve analysis (Vickers & Elkin 2006): net benefit
  :math:`NB(p_t) = TP/n - FP/n \\cdot p_t/(1-p_t)` for the model (apparent and
  optimism-corrected), treat-all and treat-none; a "useful range" is only claimed over
  thresholds with at least :data:`DCA_MIN_AT_RISK` patients at or above them.

Bootstrap protocol (so that it can be reproduced independently): ``rng =
numpy.random.default_rng(seed)``; resample ``b`` is ``idx = rng.integers(0, n, n)``; a
resample is skipped (and counted) when it holds one outcome class only or the refit does
not converge (Newton–Raphson, step < 1e-8 within 50 iterations: separation); every skipped
resample still consumes its draw.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from scipy.special import expit as _expit

from spine_measure.risk.apply import expit
from spine_measure.risk.fit import LogisticFit, encode, outcome_vector

__all__ = [
    "delong_auc",
    "c_index",
    "calibration_groups",
    "calibration_lowess",
    "calibration_stats",
    "decision_curve",
    "hosmer_lemeshow",
    "useful_range",
    "logit_newton",
    "DCA_MIN_AT_RISK",
    "Validation",
    "validate",
]

Z975 = float(stats.norm.ppf(0.975))
#: Fewest patients at or above a threshold for it to count in a "useful range" claim.
DCA_MIN_AT_RISK = 10
#: Decision-curve thresholds 0.01 .. 0.99.
THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _midrank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong_auc(y, score) -> tuple[float, float]:
    """AUC and its DeLong standard error.

    With :math:`m` events and :math:`n` non-events, the placement values
    :math:`V_{10}(X_i) = (R(X_i) - R_X(X_i))/n` and :math:`V_{01}(Y_j) = 1 - (R(Y_j) -
    R_Y(Y_j))/m` (midranks :math:`R` in the pooled sample and within each class) give
    :math:`AUC = \\bar V_{10}` and :math:`\\operatorname{Var} = S_{10}/m + S_{01}/n`.
    """
    y = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return float("nan"), float("nan")
    r_all = _midrank(np.concatenate([pos, neg]))
    r_pos, r_neg = _midrank(pos), _midrank(neg)
    v10 = (r_all[:m] - r_pos) / n
    v01 = 1.0 - (r_all[m:] - r_neg) / m
    auc = float(v10.mean())
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1
                                                          else 0.0)
    return auc, float(np.sqrt(var))


def c_index(y, score) -> float:
    """Harrell's c for a binary outcome: P(score_event > score_non-event) + 1/2 P(tie)."""
    return delong_auc(y, score)[0]


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """AUC by the Mann–Whitney rank sum (ties 1/2); equals :func:`c_index`."""
    m = float(y.sum())
    k = len(y) - m
    if m == 0 or k == 0:
        return float("nan")
    r = stats.rankdata(s)
    return float((r[y == 1].sum() - m * (m + 1) / 2) / (m * k))


def logit_newton(X: np.ndarray, y: np.ndarray, *, offset: np.ndarray | None = None,
                 maxiter: int = 50, tol: float = 1e-8) -> np.ndarray | None:
    """Maximum-likelihood logistic coefficients by Newton–Raphson, or ``None``.

    ``None`` when the information matrix is singular or the steps do not fall below
    ``tol`` within ``maxiter`` iterations (separation: the likelihood has no finite
    maximum). Used for the bootstrap refits (statsmodels gives the same estimates; this
    avoids its per-fit overhead).
    """
    b = np.zeros(X.shape[1])
    off = 0.0 if offset is None else offset
    for _ in range(maxiter):
        eta = X @ b + off
        pr = _expit(eta)
        w = pr * (1.0 - pr)
        h = (X * w[:, None]).T @ X
        g = X.T @ (y - pr)
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        b = b + step
        if np.max(np.abs(step)) < tol:
            return b
    return None


def calibration_groups(y, p, n_groups: int = 10) -> pd.DataFrame:
    """Observed proportion (with Wilson 95 % CI) vs mean predicted risk by quantile groups.

    Groups are equal-sized runs of the patients sorted by predicted risk (stable sort).
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    order = np.argsort(p, kind="mergesort")
    rows = []
    for g, idx in enumerate(np.array_split(order, min(n_groups, len(p)))):
        if len(idx) == 0:
            continue
        k, m = y[idx].sum(), len(idx)
        obs = k / m
        z2 = Z975**2
        centre = (obs + z2 / (2 * m)) / (1 + z2 / m)
        half = Z975 * np.sqrt(obs * (1 - obs) / m + z2 / (4 * m * m)) / (1 + z2 / m)
        # the Wilson bounds contain the observed proportion; clip rounding (0 - 1e-18)
        rows.append({"group": g + 1, "n": m, "events": int(k), "predicted": p[idx].mean(),
                     "observed": obs, "observed_low": min(max(centre - half, 0.0), obs),
                     "observed_high": max(min(centre + half, 1.0), obs)})
    return pd.DataFrame(rows)


def hosmer_lemeshow(y, p, n_groups: int = 10) -> dict[str, float]:
    """Hosmer–Lemeshow statistic over the risk groups of :func:`calibration_groups`.

    :math:`H = \\sum_g (O_g - E_g)^2 / (n_g \\bar p_g (1 - \\bar p_g))`, compared with
    :math:`\\chi^2_{g-2}`. Apparent (computed on the data the model was fitted on).
    """
    g = calibration_groups(y, p, n_groups)
    var = g.n * g.predicted * (1 - g.predicted)
    ok = var > 0
    h = float((((g.events - g.n * g.predicted) ** 2)[ok] / var[ok]).sum())
    df = int(ok.sum()) - 2
    return {"hl_statistic": h, "hl_df": df,
            "hl_p": float(stats.chi2.sf(h, df)) if df > 0 else float("nan")}


def calibration_lowess(y, p, grid: np.ndarray, frac: float = 2 / 3) -> np.ndarray:
    """Lowess (local linear, tricube weights, span ``frac``, no robustness iterations) of y
    on p, evaluated at each grid point; clipped to [0, 1].

    At a grid point :math:`g` the ``ceil(frac * n)`` patients nearest in predicted risk get
    weights :math:`(1 - (d/h)^3)^3` (:math:`h` the largest of their distances) and the
    weighted least-squares line is evaluated at :math:`g`; NaN outside the observed range.
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    grid = np.asarray(grid, float)
    n = len(p)
    k = min(n, max(2, int(np.ceil(frac * n))))
    u, inv, cnt = np.unique(p, return_inverse=True, return_counts=True)
    if len(u) <= n // 4:  # few distinct risks (categorical predictors): same fit, on groups
        return _lowess_grouped(u, cnt.astype(float), np.bincount(inv, weights=y), grid, k)
    order = np.argsort(p, kind="mergesort")
    ps, ys = p[order], y[order]
    # the k nearest neighbours of g are a run ps[i:i+k]; the best start is where
    # ps[i] + ps[i+k-1] reaches 2 g (one of the two starts around it)
    ends = ps[: n - k + 1] + ps[k - 1:]
    i1 = np.clip(np.searchsorted(ends, 2 * grid), 0, n - k)
    i0 = np.clip(i1 - 1, 0, n - k)
    h1 = np.maximum(grid - ps[i1], ps[i1 + k - 1] - grid)
    h0 = np.maximum(grid - ps[i0], ps[i0 + k - 1] - grid)
    start = np.where(h0 <= h1, i0, i1)
    h = np.minimum(h0, h1)
    h = np.where(h > 0, h, 1e-12)[:, None] * (1 + 1e-9)
    win = start[:, None] + np.arange(k)[None, :]
    px, py = ps[win], ys[win]
    u = np.abs(px - grid[:, None]) / h
    w = 1 - u * u * u
    np.clip(w, 0, None, out=w)
    w = w * w * w
    sw = w.sum(axis=1)
    mx = np.einsum("ij,ij->i", w, px) / sw
    my = np.einsum("ij,ij->i", w, py) / sw
    dx = px - mx[:, None]
    wdx = w * dx
    sxx = np.einsum("ij,ij->i", wdx, dx)
    sxy = np.einsum("ij,ij->i", wdx, py)
    slope = np.divide(sxy, sxx, out=np.zeros_like(sxy), where=sxx > 1e-15)
    fit = my + slope * (grid - mx)
    out = np.clip(fit, 0, 1)
    out[(grid < ps[0]) | (grid > ps[-1])] = np.nan
    return out


def _lowess_grouped(u: np.ndarray, cnt: np.ndarray, ysum: np.ndarray, grid: np.ndarray,
                    k: int) -> np.ndarray:
    """:func:`calibration_lowess` on tied predictions grouped: ``u`` the distinct values,
    ``cnt`` their counts, ``ysum`` their event counts. The neighbourhood radius is the
    distance of the k-th nearest patient (counting ties); patients at exactly that distance
    have weight 0 in both forms, so the result is the same as on the ungrouped data."""
    d = np.abs(u[None, :] - grid[:, None])
    order = np.argsort(d, axis=1, kind="mergesort")
    ds = np.take_along_axis(d, order, axis=1)
    cum = np.cumsum(cnt[order], axis=1)
    j = np.minimum((cum < k).sum(axis=1), len(u) - 1)
    h = ds[np.arange(len(grid)), j]
    h = np.where(h > 0, h, 1e-12)[:, None] * (1 + 1e-9)
    t = np.clip(1 - (d / h) ** 3, 0, None) ** 3
    w = t * cnt[None, :]
    sw = w.sum(axis=1)
    mx = (w @ u) / sw
    my = (t @ ysum) / sw
    dx = u[None, :] - mx[:, None]
    sxx = (w * dx * dx).sum(axis=1)
    sxy = (t * dx * ysum[None, :]).sum(axis=1)
    slope = np.divide(sxy, sxx, out=np.zeros_like(sxy), where=sxx > 1e-15)
    out = np.clip(my + slope * (grid - mx), 0, 1)
    out[(grid < u[0]) | (grid > u[-1])] = np.nan
    return out


def _cal_fits(y: np.ndarray, lp: np.ndarray) -> tuple[float, float, float]:
    """(intercept a, slope b) of logit p = a + b lp, and calibration-in-the-large c of
    logit p = c + lp (NaN when the fit fails)."""
    x = np.column_stack([np.ones(len(lp)), lp])
    ab = logit_newton(x, y)
    c = logit_newton(np.ones((len(lp), 1)), y, offset=lp)
    a, b = (float(ab[0]), float(ab[1])) if ab is not None else (np.nan, np.nan)
    return a, b, float(c[0]) if c is not None else np.nan


def calibration_stats(y, p) -> dict[str, float]:
    """Apparent calibration intercept and slope (logit p = a + b lp), calibration-in-the-
    large (logit p = c + lp) and Brier score of predictions ``p`` for outcomes ``y``."""
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    lp = np.log(p / (1 - p))
    a, b, c = _cal_fits(y, lp)
    return {"calibration_intercept": a, "calibration_slope": b,
            "calibration_in_the_large": c, "brier": float(np.mean((p - y) ** 2))}


def _net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    n = len(y)
    order = np.argsort(p)
    ps, ys = p[order], y[order]
    above = n - np.searchsorted(ps, thresholds, side="left")  # p >= t
    ev_cum = np.concatenate([[0.0], np.cumsum(ys[::-1])])  # events among the top j
    tp = ev_cum[above]
    fp = above - tp
    return tp / n - fp / n * thresholds / (1 - thresholds)


def decision_curve(y, p, thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """Net benefit of the model, treat-all and treat-none at each threshold probability,
    and the number of patients at or above each threshold (``n_at_or_above``)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    t = THRESHOLDS if thresholds is None else np.asarray(thresholds, float)
    prev = y.mean()
    return pd.DataFrame({
        "threshold": t, "n_at_or_above": (p[None, :] >= t[:, None]).sum(axis=1),
        "net_benefit_model": _net_benefit(y, p, t),
        "net_benefit_all": prev - (1 - prev) * t / (1 - t), "net_benefit_none": 0.0})


def useful_range(dca: pd.DataFrame, column: str = "net_benefit_model",
                 min_at_risk: int = DCA_MIN_AT_RISK) -> tuple[float, float] | None:
    """The longest run of consecutive thresholds where ``column`` exceeds both treat-all and
    treat-none by more than 0.001 and at least ``min_at_risk`` patients are at or above the
    threshold (``None`` when there is none)."""
    nb = dca[column]
    better = ((nb > dca.net_benefit_all + 1e-3) & (nb > dca.net_benefit_none + 1e-3)
              & (dca.n_at_or_above >= min_at_risk)).to_numpy()
    best, start = None, None
    for i, b in enumerate(np.append(better, False)):
        if b and start is None:
            start = i
        elif not b and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    if best is None:
        return None
    t = dca.threshold.to_numpy()
    return float(t[best[0]]), float(t[best[1] - 1])


@dataclass(frozen=True)
class Validation:
    """Validation results of a :class:`LogisticFit` on its own cohort (immutable).

    ``calibration_stats`` holds, for ``slope`` (Harrell's shrinkage factor), ``intercept``,
    ``citl`` (calibration-in-the-large) and ``brier``, the keys ``<name>_apparent``,
    ``<name>_optimism`` and ``<name>_corrected`` (NaN without bootstrap), and the apparent
    Hosmer–Lemeshow ``hl_statistic``, ``hl_df``, ``hl_p``. ``dca`` has the apparent
    ``net_benefit_model`` and ``net_benefit_model_corrected``; ``dca_range`` is claimed on
    the corrected curve (the apparent one without bootstrap, ``dca_basis`` says which).
    """

    auc: float
    auc_se: float
    auc_ci: tuple[float, float]
    c_apparent: float
    c_optimism: float
    c_corrected: float
    n_boot: int
    n_boot_ok: int
    seed: int
    calibration: pd.DataFrame
    calibration_curve: pd.DataFrame
    calibration_stats: dict
    dca: pd.DataFrame
    dca_range: tuple[float, float] | None
    y: np.ndarray
    p: np.ndarray
    lp: np.ndarray
    dca_basis: str = "apparent"
    dca_min_at_risk: int = DCA_MIN_AT_RISK
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dca_range_n_at_upper(self) -> int | None:
        """Patients at or above the upper end of the useful range."""
        if self.dca_range is None:
            return None
        d = self.dca
        return int(d.n_at_or_above[np.isclose(d.threshold, self.dca_range[1])].iloc[0])

    def dca_sentence(self) -> str:
        r = self.dca_range
        basis = ("optimism-corrected net benefit" if self.dca_basis == "corrected"
                 else "apparent net benefit, on the development data, not corrected")
        if r is None:
            return (f"Decision curve ({basis}): above treat-all and treat-none "
                    f"at no threshold with at least {self.dca_min_at_risk} patients at or "
                    "above it")
        return (f"Decision curve ({basis}): above treat-all and treat-none for "
                f"thresholds {r[0]:.2f}-{r[1]:.2f} (only thresholds with at least "
                f"{self.dca_min_at_risk} patients at or above them are considered; "
                f"{self.dca_range_n_at_upper} patients at or above {r[1]:.2f})")

    def calibration_sentence(self) -> str:
        s = self.calibration_stats
        if self.n_boot_ok:
            return (f"Calibration (optimism-corrected, {self.n_boot_ok} bootstrap "
                    f"resamples): slope {s['slope_corrected']:.3f} (shrinkage factor), "
                    f"intercept {s['intercept_corrected']:.3f}, calibration-in-the-large "
                    f"{s['citl_corrected']:.3f}, Brier {s['brier_corrected']:.4f} (apparent "
                    f"{s['brier_apparent']:.4f}); Hosmer-Lemeshow (apparent) "
                    f"{s['hl_statistic']:.2f}, {s['hl_df']} df, P {s['hl_p']:.3f}. Apparent "
                    "slope 1 and intercept 0 hold by construction on the development data.")
        why = ("no bootstrap" if self.n_boot == 0 else
               f"none of the {self.n_boot} bootstrap resamples could be fitted")
        return (f"Calibration: {why}, so no corrected slope or intercept (apparent "
                f"slope 1 and intercept 0 hold by construction); Brier (apparent) "
                f"{s['brier_apparent']:.4f}; Hosmer-Lemeshow (apparent) "
                f"{s['hl_statistic']:.2f}, {s['hl_df']} df, P {s['hl_p']:.3f}")

    def summary(self) -> str:
        return "\n".join([
            f"AUC {self.auc:.3f} (95% CI {self.auc_ci[0]:.3f}-{self.auc_ci[1]:.3f}, DeLong; "
            "apparent)",
            f"Harrell's c: apparent {self.c_apparent:.3f}, optimism {self.c_optimism:.4f}, "
            f"corrected {self.c_corrected:.3f} ({self.n_boot_ok}/{self.n_boot} bootstrap "
            f"resamples, seed {self.seed})",
            self.calibration_sentence(),
            self.dca_sentence(),
        ])


def validate(fit: LogisticFit, df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
             n_groups: int = 10,
             progress: Callable[[int, int], None] | None = None) -> Validation:
    """ROC/AUC, bootstrap optimism-corrected c-index, calibration and decision curve.

    The complete cases of ``df`` (the fitting cohort) are used; each bootstrap resample
    refits the same predictors (see the module docstring for the protocol); resamples
    where the refit fails are skipped and counted. ``progress(done, total)`` is called
    after each resample (the CLI draws a progress bar with it).
    """
    X, reasons = encode(fit.predictors, df)
    y = outcome_vector(df, fit.outcome)
    keep = (reasons == "").to_numpy() & np.isfinite(y)
    Xc = sm.add_constant(X[keep][list(fit.names[1:])].to_numpy(float), has_constant="add")
    yc = y[keep]
    lp = Xc @ fit.params
    p = expit(lp)
    auc, se = delong_auc(yc, lp)
    c_app = auc
    grid = np.linspace(max(p.min(), 0.005), min(p.max(), 0.995), 60)
    cal_app = calibration_lowess(yc, p, grid)
    a_app, b_app, c_itl_app = _cal_fits(yc, lp)
    brier_app = float(np.mean((p - yc) ** 2))
    nb_app = _net_benefit(yc, p, THRESHOLDS)
    rng = np.random.default_rng(seed)
    opt_c, opt_cal, opt_stats, opt_nb = [], [], [], []
    n = len(yc)
    for i in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = yc[idx]
        if progress is not None:
            progress(i + 1, n_boot)
        if yb.min() == yb.max():
            continue
        b = logit_newton(Xc[idx], yb)
        if b is None:
            continue
        lp_b, lp_o = Xc[idx] @ b, Xc @ b
        p_b, p_o = expit(lp_b), expit(lp_o)
        opt_c.append(_auc(yb, lp_b) - _auc(yc, lp_o))
        opt_cal.append(calibration_lowess(yb, p_b, grid) - calibration_lowess(yc, p_o, grid))
        tr, te = _cal_fits(yb, lp_b), _cal_fits(yc, lp_o)
        opt_stats.append([tr[0] - te[0], tr[1] - te[1], tr[2] - te[2],
                          np.mean((p_b - yb) ** 2) - np.mean((p_o - yc) ** 2)])
        opt_nb.append(_net_benefit(yb, p_b, THRESHOLDS) - _net_benefit(yc, p_o, THRESHOLDS))
    ok = len(opt_c)
    optimism = float(np.mean(opt_c)) if ok else float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN grid columns
        cal_corr = (cal_app - np.nanmean(np.vstack(opt_cal), axis=0)) if ok \
            else np.full_like(grid, np.nan)
        o = np.nanmean(np.array(opt_stats), axis=0) if ok else np.full(4, np.nan)
        nb_corr = nb_app - np.mean(np.vstack(opt_nb), axis=0) if ok \
            else np.full_like(nb_app, np.nan)
    curve = pd.DataFrame({"predicted": grid, "observed_apparent": cal_app,
                          "observed_bias_corrected": np.clip(cal_corr, 0, 1)})
    cstats = {
        "slope_apparent": b_app, "slope_optimism": float(o[1]),
        "slope_corrected": b_app - float(o[1]),
        "intercept_apparent": a_app, "intercept_optimism": float(o[0]),
        "intercept_corrected": a_app - float(o[0]),
        "citl_apparent": c_itl_app, "citl_optimism": float(o[2]),
        "citl_corrected": c_itl_app - float(o[2]),
        "brier_apparent": brier_app, "brier_optimism": float(o[3]),
        "brier_corrected": brier_app - float(o[3]),
        **hosmer_lemeshow(yc, p, n_groups),
    }
    dca = decision_curve(yc, p)
    dca["net_benefit_model_corrected"] = nb_corr
    basis = "corrected" if ok else "apparent"
    rng_ = useful_range(dca, "net_benefit_model_corrected" if ok else "net_benefit_model")
    return Validation(
        auc=auc, auc_se=se,
        auc_ci=(max(0.0, auc - Z975 * se), min(1.0, auc + Z975 * se)),
        c_apparent=c_app, c_optimism=optimism, c_corrected=c_app - optimism,
        n_boot=n_boot, n_boot_ok=ok, seed=seed,
        calibration=calibration_groups(yc, p, n_groups), calibration_curve=curve,
        calibration_stats=cstats, dca=dca, dca_range=rng_, y=yc, p=p, lp=lp,
        dca_basis=basis,
    )
