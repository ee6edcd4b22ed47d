"""Discrimination, calibration and clinical usefulness of a fitted logistic model.

* AUC with DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988; fast midrank form of
  Sun & Xu 2014); 95 % CI :math:`AUC \\pm 1.96\\,SE`, clipped to [0, 1].
* Harrell's c-index: the share of (event, non-event) pairs ranked correctly, ties 1/2;
  for a binary outcome it equals the AUC. Optimism correction by the bootstrap (Harrell
  2015, §5.3): refit on each resample, optimism = c(resample model on resample) − c(resample
  model on original data); corrected c = apparent c − mean optimism.
* Calibration: observed vs predicted by risk groups (deciles), a lowess curve, the
  bootstrap bias-corrected lowess curve on a probability grid, calibration intercept
  (in the large) and slope, Brier score.
* Decision curve analysis (Vickers & Elkin 2006): net benefit
  :math:`NB(p_t) = TP/n - FP/n \\cdot p_t/(1-p_t)` for the model, treat-all and treat-none.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.nonparametric.smoothers_lowess import lowess

from spine_measure.risk.apply import expit
from spine_measure.risk.fit import LogisticFit, _fit_arrays, encode, outcome_vector

__all__ = [
    "delong_auc",
    "c_index",
    "calibration_groups",
    "calibration_lowess",
    "calibration_stats",
    "decision_curve",
    "Validation",
    "validate",
]

Z975 = float(stats.norm.ppf(0.975))


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


def calibration_groups(y, p, n_groups: int = 10) -> pd.DataFrame:
    """Observed proportion (with Wilson 95 % CI) vs mean predicted risk by quantile groups."""
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
        rows.append({"group": g + 1, "n": m, "events": int(k), "predicted": p[idx].mean(),
                     "observed": obs, "observed_low": centre - half,
                     "observed_high": centre + half})
    return pd.DataFrame(rows)


def calibration_lowess(y, p, grid: np.ndarray, frac: float = 2 / 3) -> np.ndarray:
    """Lowess smooth of y on p evaluated (linear interpolation) on ``grid``."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    sm_ = lowess(y, p, frac=frac, it=0, return_sorted=True)
    xs, ys = sm_[:, 0], np.clip(sm_[:, 1], 0, 1)
    xs, uniq = np.unique(xs, return_index=True)
    return np.interp(grid, xs, ys[uniq], left=np.nan, right=np.nan)


def calibration_stats(y, p) -> dict[str, float]:
    """Calibration intercept (in the large, slope fixed at 1), slope and Brier score."""
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    lp = np.log(p / (1 - p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
        b = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    return {"calibration_intercept": float(a.params[0]),
            "calibration_slope": float(b.params[1]),
            "brier": float(np.mean((p - y) ** 2))}


def decision_curve(y, p, thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """Net benefit of the model, treat-all and treat-none at each threshold probability."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if thresholds is None:
        thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    n, prev = len(y), y.mean()
    rows = []
    for t in thresholds:
        w = t / (1 - t)
        treat = p >= t
        tp = np.sum(treat & (y == 1))
        fp = np.sum(treat & (y == 0))
        rows.append({"threshold": t, "net_benefit_model": tp / n - fp / n * w,
                     "net_benefit_all": prev - (1 - prev) * w, "net_benefit_none": 0.0})
    return pd.DataFrame(rows)


def useful_range(dca: pd.DataFrame) -> tuple[float, float] | None:
    """The longest run of consecutive thresholds where the model's net benefit exceeds both
    treat-all and treat-none by more than 0.001 (``None`` when there is none)."""
    better = ((dca.net_benefit_model > dca.net_benefit_all + 1e-3)
              & (dca.net_benefit_model > dca.net_benefit_none + 1e-3)).to_numpy()
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
    """Validation results of a :class:`LogisticFit` on its own cohort (immutable)."""

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

    def summary(self) -> str:
        r = self.dca_range
        return "\n".join([
            f"AUC {self.auc:.3f} (95% CI {self.auc_ci[0]:.3f}-{self.auc_ci[1]:.3f}, DeLong)",
            f"Harrell's c: apparent {self.c_apparent:.3f}, optimism {self.c_optimism:.4f}, "
            f"corrected {self.c_corrected:.3f} ({self.n_boot_ok}/{self.n_boot} bootstrap "
            f"resamples, seed {self.seed})",
            "Calibration intercept {calibration_intercept:.3f}, slope {calibration_slope:.3f},"
            " Brier {brier:.4f}".format(**self.calibration_stats),
            "Decision curve: net benefit above treat-all and treat-none for thresholds "
            + (f"{r[0]:.2f}-{r[1]:.2f}" if r else "none"),
        ])


def validate(fit: LogisticFit, df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
             n_groups: int = 10) -> Validation:
    """ROC/AUC, bootstrap optimism-corrected c-index, calibration and decision curve.

    The complete cases of ``df`` (the fitting cohort) are used; each bootstrap resample
    refits the same predictors; resamples where the fit fails (one outcome class only,
    singular design) are skipped and counted.
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
    rng = np.random.default_rng(seed)
    opt_c, opt_cal, ok = [], [], 0
    n = len(yc)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = yc[idx]
        if yb.min() == yb.max():
            continue
        res, _, err = _fit_arrays(Xc[idx], yb)
        if res is None or err is not None or not np.all(np.isfinite(res.params)):
            continue
        b = np.asarray(res.params)
        lp_b, lp_o = Xc[idx] @ b, Xc @ b
        opt_c.append(c_index(yb, lp_b) - c_index(yc, lp_o))
        with np.errstate(all="ignore"):
            opt_cal.append(calibration_lowess(yb, expit(lp_b), grid)
                           - calibration_lowess(yc, expit(lp_o), grid))
        ok += 1
    optimism = float(np.mean(opt_c)) if opt_c else float("nan")
    cal_corr = (cal_app - np.nanmean(np.vstack(opt_cal), axis=0)) if opt_cal \
        else np.full_like(grid, np.nan)
    curve = pd.DataFrame({"predicted": grid, "observed_apparent": cal_app,
                          "observed_bias_corrected": np.clip(cal_corr, 0, 1)})
    dca = decision_curve(yc, p)
    return Validation(
        auc=auc, auc_se=se,
        auc_ci=(max(0.0, auc - Z975 * se), min(1.0, auc + Z975 * se)),
        c_apparent=c_app, c_optimism=optimism, c_corrected=c_app - optimism,
        n_boot=n_boot, n_boot_ok=ok, seed=seed,
        calibration=calibration_groups(yc, p, n_groups), calibration_curve=curve,
        calibration_stats=calibration_stats(yc, p), dca=dca, dca_range=useful_range(dca),
        y=yc, p=p, lp=lp,
    )
