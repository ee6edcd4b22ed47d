"""Publication-style figures: ROC, calibration, decision curve and nomogram (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from spine_measure.risk.fit import LogisticFit  # noqa: E402
from spine_measure.risk.validate import Validation  # noqa: E402

__all__ = ["plot_roc", "plot_calibration", "plot_dca", "plot_nomogram", "nomogram_scales"]

_STYLE = {"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
          "savefig.dpi": 300, "font.family": "DejaVu Sans"}


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=300, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def plot_roc(v: Validation, path: str | Path) -> Path:
    """ROC curve with AUC, its DeLong 95 % CI and the optimism-corrected c-index."""
    with plt.rc_context(_STYLE):
        fpr, tpr, _ = roc_curve(v.y, v.lp)
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6", label="chance")
        ax.plot(fpr, tpr, lw=1.8, color="#1f4e79",
                label=f"AUC {v.auc:.3f} (95% CI {v.auc_ci[0]:.3f}–{v.auc_ci[1]:.3f})")
        ax.plot([], [], " ", label=f"bootstrap-corrected c {v.c_corrected:.3f}")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity",
               ylabel="Sensitivity", aspect="equal")
        ax.legend(loc="lower right", frameon=False, fontsize=8)
        return _save(fig, path)


def plot_calibration(v: Validation, path: str | Path) -> Path:
    """Apparent and bias-corrected calibration curves, decile points and a risk histogram."""
    with plt.rc_context(_STYLE):
        fig, (ax, axh) = plt.subplots(2, 1, figsize=(4.4, 5.0), sharex=True,
                                      gridspec_kw={"height_ratios": [4, 1], "hspace": 0.05})
        hi = float(min(1.0, max(v.p.max(), v.calibration.observed_high.max()) * 1.05))
        ax.plot([0, hi], [0, hi], ls="--", lw=0.8, color="0.5", label="ideal")
        c = v.calibration_curve
        ax.plot(c.predicted, c.observed_apparent, color="#1f4e79", lw=1.5, label="apparent")
        ax.plot(c.predicted, c.observed_bias_corrected, color="#c0504d", lw=1.5,
                label=f"bias-corrected (B = {v.n_boot_ok})")
        g = v.calibration
        # Wilson bounds contain the observed proportion; clip float rounding (-1e-18)
        yerr = np.clip(np.vstack([g.observed - g.observed_low, g.observed_high - g.observed]),
                       0, None)
        ax.errorbar(g.predicted, g.observed, yerr=yerr,
                    fmt="o", ms=3.5, color="black", elinewidth=0.8, capsize=2,
                    label="risk groups (95% CI)")
        s = v.calibration_stats
        if v.n_boot_ok:
            txt = (f"optimism-corrected ({v.n_boot_ok} bootstrap):\n"
                   f"slope {s['slope_corrected']:.2f}, "
                   f"in-the-large {s['citl_corrected']:.2f}\n"
                   f"Brier {s['brier_corrected']:.3f}\n"
                   f"Hosmer-Lemeshow P {s['hl_p']:.2f} (apparent)")
        else:
            txt = (f"apparent only (no bootstrap)\nBrier {s['brier_apparent']:.3f}\n"
                   f"Hosmer-Lemeshow P {s['hl_p']:.2f}")
        ax.text(0.03, 0.97, txt, transform=ax.transAxes, va="top", fontsize=7.5)
        ax.set(xlim=(0, hi), ylim=(0, hi), ylabel="Observed proportion")
        ax.legend(loc="lower right", frameon=False, fontsize=8)
        axh.hist(v.p[v.y == 1], bins=40, range=(0, hi), color="#c0504d", alpha=0.7,
                 label="events")
        axh.hist(v.p[v.y == 0], bins=40, range=(0, hi), color="0.6", alpha=0.6,
                 label="non-events")
        axh.set(xlabel="Predicted probability", ylabel="n")
        axh.legend(frameon=False, fontsize=7, loc="upper right")
        return _save(fig, path)


def plot_dca(v: Validation, path: str | Path) -> Path:
    """Decision curve: net benefit of the model (apparent and optimism-corrected),
    treat-all and treat-none; the useful range only where enough patients are at risk."""
    with plt.rc_context(_STYLE):
        d = v.dca
        fig, ax = plt.subplots(figsize=(5.0, 3.8))
        ax.plot(d.threshold, d.net_benefit_model, color="#1f4e79", lw=1.0, ls=":",
                label="model, apparent")
        if v.dca_basis == "corrected":
            ax.plot(d.threshold, d.net_benefit_model_corrected, color="#1f4e79", lw=1.8,
                    label="model, optimism-corrected")
        ax.plot(d.threshold, d.net_benefit_all, color="#c0504d", lw=1.2, label="treat all")
        ax.plot(d.threshold, d.net_benefit_none, color="black", lw=1.2, label="treat none")
        few = d.threshold[d.n_at_or_above < v.dca_min_at_risk]
        if len(few):
            ax.axvspan(float(few.min()), 1.0, color="0.85", alpha=0.5, lw=0,
                       label=f"< {v.dca_min_at_risk} patients at or above")
        prev = float(np.mean(v.y))
        top = max(prev, float(d.net_benefit_model.max())) * 1.15
        ax.set(ylim=(-0.05 * max(top, 0.1), top), xlim=(0, 1), xlabel="Threshold probability",
               ylabel="Net benefit")
        if v.dca_range:
            ax.axvspan(*v.dca_range, color="#1f4e79", alpha=0.07, lw=0)
            ax.text(np.mean(v.dca_range), top * 0.95,
                    f"useful {v.dca_range[0]:.2f}–{v.dca_range[1]:.2f}\n"
                    f"({v.dca_basis}; {v.dca_range_n_at_upper} at or above "
                    f"{v.dca_range[1]:.2f})", ha="center", fontsize=7, va="top")
        ax.legend(frameon=False, fontsize=7, loc="upper right")
        return _save(fig, path)


def nomogram_scales(fit: LogisticFit, df: pd.DataFrame) -> dict:
    """Point scales of the nomogram (rms convention).

    For each predictor the contribution :math:`c_j(x) = \\sum B x` ranges over the observed
    values; the predictor with the widest range :math:`R_{max}` spans 0–100 points and
    :math:`\\text{points}_j(x) = 100\\,(c_j(x) - \\min c_j)/R_{max}`. A total of
    :math:`T` points maps to :math:`\\eta = B_0 + \\sum_j \\min c_j + T R_{max}/100`.
    """
    scales = []
    for sp in fit.predictors:
        if sp.kind == "categorical":
            ticks = [("+".join(sp.groups[0]), 0.0)]
            for g, t in zip(sp.groups[1:], sp.terms, strict=True):
                ticks.append(("+".join(g), float(fit.params[fit.names.index(t)])))
        elif sp.kind == "binary":
            b = float(fit.params[fit.names.index(sp.column)])
            ticks = [("0", 0.0), ("1", b)]
        else:
            b = float(fit.params[fit.names.index(sp.column)])
            x = pd.to_numeric(df[sp.column], errors="coerce").dropna()
            lo, hi = np.percentile(x, [1, 99]) if len(x) else (0.0, 1.0)
            vals = np.linspace(lo, hi, 6)
            ticks = [(f"{xv:.3g}", b * xv) for xv in vals]
        contrib = [c for _, c in ticks]
        scales.append({"label": sp.label(), "ticks": ticks, "min": min(contrib),
                       "range": max(contrib) - min(contrib)})
    rmax = max(s["range"] for s in scales) or 1.0
    for s in scales:
        s["points"] = [(lab, 100.0 * (c - s["min"]) / rmax) for lab, c in s["ticks"]]
    offset = float(fit.params[0]) + sum(s["min"] for s in scales)
    return {"scales": scales, "rmax": rmax, "offset": offset,
            "max_total": sum(100.0 * s["range"] / rmax for s in scales)}


def plot_nomogram(fit: LogisticFit, df: pd.DataFrame, path: str | Path,
                  outcome_label: str | None = None) -> Path:
    """Nomogram: one points axis per predictor, total points, linear predictor and risk."""
    ns = nomogram_scales(fit, df)
    scales, rmax, offset, tmax = ns["scales"], ns["rmax"], ns["offset"], ns["max_total"]
    tmax = max(tmax, 1e-9)
    rows = len(scales) + 4
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 0.55 * rows + 0.6))
        ax.set_xlim(-58, 104)
        ax.set_ylim(-0.7, rows - 0.3)
        ax.axis("off")

        def axis_row(y, label, positions, labels, minor=None):
            ax.text(-4, y, label.replace(" (ref.", "\n(ref."), va="center", ha="right",
                    fontsize=8.5, linespacing=1.1)
            if len(positions) == 0:
                return
            ax.plot([min(positions), max(positions)], [y, y], color="black", lw=0.9)
            for xpos, lab in zip(positions, labels, strict=True):
                ax.plot([xpos, xpos], [y, y + 0.12], color="black", lw=0.9)
                ax.text(xpos, y + 0.18, lab, ha="center", va="bottom", fontsize=7.5)
            for xpos in minor or []:
                ax.plot([xpos, xpos], [y, y + 0.06], color="black", lw=0.6)

        y = rows - 1
        axis_row(y, "Points", list(range(0, 101, 10)), [str(i) for i in range(0, 101, 10)],
                 minor=list(range(0, 101, 2)))
        for s in scales:
            y -= 1
            pts = s["points"]
            axis_row(y, s["label"], [p for _, p in pts], [lab for lab, _ in pts])
        # Total points mapped onto the 0..100 plotting width.
        scale = 100.0 / tmax
        y -= 1
        step = _nice_step(tmax)
        tot = np.arange(0, tmax + 1e-9, step)
        axis_row(y, "Total points", list(tot * scale), [f"{t:.0f}" for t in tot])
        y -= 1
        lp_lo, lp_hi = offset, offset + tmax * rmax / 100
        lp_ticks = np.arange(np.ceil(lp_lo * 2) / 2, lp_hi + 1e-9, 0.5)
        axis_row(y, "Linear predictor", list((lp_ticks - offset) * 100 / rmax * scale),
                 [f"{t:g}" for t in lp_ticks])
        y -= 1
        probs = [p for p in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                             0.95, 0.99)
                 if lp_lo <= np.log(p / (1 - p)) <= lp_hi]
        pos = [(np.log(p / (1 - p)) - offset) * 100 / rmax * scale for p in probs]
        axis_row(y, f"Risk of {outcome_label or fit.outcome}", pos, [f"{p:g}" for p in probs])
        return _save(fig, path)


def _nice_step(span: float) -> float:
    raw = span / 8
    mag = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)
