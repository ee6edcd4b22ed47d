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

__all__ = ["plot_roc", "plot_calibration", "plot_dca", "plot_nomogram", "nomogram_scales",
           "total_points_ticks", "pretty_name"]

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
                label=f"AUC {v.auc:.3f} (95% CI {v.auc_ci[0]:.3f}–{v.auc_ci[1]:.3f}), "
                "apparent")
        ax.plot([], [], " ", label=(f"optimism-corrected c {v.c_corrected:.3f}" if v.n_boot_ok
                                    else "no optimism correction (no bootstrap fit)"))
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


#: Display names of feature-table columns (the unit comes from the column suffix).
_PRETTY = {"ivc": "IVC (intravertebral cleft)", "bmd_t_score": "BMD (T-score)",
           "npec_postop": "NPEC (post-op)", "bmi_kg_m2": "BMI (kg/m²)"}
_UNITS = (("_kg_m2", "kg/m²"), ("_mm2", "mm²"), ("_mm", "mm"), ("_pct", "%"), ("_deg", "°"),
          ("_ml", "ml"), ("_years", "years"), ("_hu", "HU"))
_TIMES = (("_preop", "pre-op"), ("_postop", "post-op"), ("_followup", "follow-up"))
#: Width of one label character in points units (the 0-100 points axis spans ~5 in).
_CHAR = 1.5


def pretty_name(column: str) -> str:
    """``age_years`` → ``Age (years)``, ``cement_distribution_postop`` →
    ``Cement distribution (post-op)``, ``ivc`` → ``IVC (intravertebral cleft)``."""
    if column in _PRETTY:
        return _PRETTY[column]
    name, extra = column, []
    for suf, word in _TIMES:
        if name.endswith(suf):
            name, extra = name[: -len(suf)], [word]
            break
    for suf, unit in _UNITS:
        if name.endswith(suf):
            name, extra = name[: -len(suf)], [unit, *extra]
            break
    words = name.replace("_", " ").strip()
    words = words[:1].upper() + words[1:]
    return f"{words} ({', '.join(extra)})" if extra else words


def _group_label(group: tuple[str, ...]) -> str:
    """``("3", "4")`` → ``3–4``; ``("0", "1", "2")`` → ``0–2``; else joined by ``/``."""
    try:
        v = [int(g) for g in group]
        if len(v) > 1 and v == list(range(v[0], v[0] + len(v))):
            return f"{v[0]}–{v[-1]}"
    except ValueError:
        pass
    if len(group) == 1 and group[0] in ("0", "1"):
        return "no" if group[0] == "0" else "yes"
    return "/".join(group)


def _nice_step(span: float, n: int = 8) -> float:
    raw = span / max(n, 1)
    mag = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _fmt_tick(v: float, step: float) -> str:
    dec = max(0, -int(np.floor(np.log10(step)))) if step < 1 else 0
    if step < 1 and abs(step * 10**dec - round(step * 10**dec)) > 1e-9:
        dec += 1  # 2.5 x 10^-k needs one more decimal
    t = f"{v:.{dec}f}"
    return "0" if t in ("-0", "-0.0", "-0.00") else t


def _continuous_ticks(b: float, lo: float, hi: float, rmax_guess: float) -> list[tuple]:
    """Round tick values within [lo, hi] (the 1st-99th percentile of the data) whose labels
    do not overlap on the axis."""
    if hi <= lo:
        return [(_fmt_tick(lo, 1.0), lo)]
    for n in (10, 8, 6, 5, 4, 3, 2, 1):
        step = _nice_step(hi - lo, n)
        t0, t1 = np.ceil(lo / step - 1e-9) * step, np.floor(hi / step + 1e-9) * step
        if t1 - t0 < step / 2:  # fewer than two round values inside: round outward
            t0, t1 = np.floor(lo / step) * step, np.ceil(hi / step) * step
        vals = np.round(np.arange(t0, t1 + step / 2, step), 10)
        labels = [_fmt_tick(v, step) for v in vals]
        spacing = 100 * abs(b) * step / rmax_guess if rmax_guess > 0 else np.inf
        width = (max(len(x) for x in labels) + 1.5) * _CHAR
        if spacing >= width or len(vals) <= 2:
            return list(zip(labels, vals.tolist(), strict=True))
    return list(zip(labels, vals.tolist(), strict=True))


def nomogram_scales(fit: LogisticFit, df: pd.DataFrame) -> dict:
    """Point scales of the nomogram (rms convention).

    For each predictor the contribution :math:`c_j(x) = \\sum B x` ranges over its ticks (the
    levels; for a continuous predictor round values within its 1st–99th percentile); the
    predictor with the widest range :math:`R_{max}` spans 0–100 points and
    :math:`\\text{points}_j(x) = 100\\,(c_j(x) - \\min c_j)/R_{max}`. A total of :math:`T`
    points maps to :math:`\\eta = B_0 + \\sum_j \\min c_j + T R_{max}/100`.

    Returns ``scales`` (per predictor: ``label``, ``column``, ``kind``, ``ticks`` as (label,
    value, contribution), ``points`` as (label, points), ``min``, ``range``, ``b``),
    ``rmax``, ``offset`` and ``max_total``.
    """
    raw = []
    for sp in fit.predictors:
        if sp.kind == "categorical":
            ticks = [(_group_label(sp.groups[0]), sp.groups[0], 0.0)]
            for g, t in zip(sp.groups[1:], sp.terms, strict=True):
                ticks.append((_group_label(g), g, float(fit.params[fit.names.index(t)])))
            levels = " / ".join(t[0] for t in ticks)
            raw.append({"column": sp.column, "kind": "categorical", "ticks": ticks,
                        "label": f"{pretty_name(sp.column)}: {levels}", "b": None})
        elif sp.kind == "binary":
            b = float(fit.params[fit.names.index(sp.column)])
            raw.append({"column": sp.column, "kind": "binary", "b": b,
                        "ticks": [("no", 0.0, 0.0), ("yes", 1.0, b)],
                        "label": f"{pretty_name(sp.column)}: no / yes"})
        else:
            b = float(fit.params[fit.names.index(sp.column)])
            x = pd.to_numeric(df[sp.column], errors="coerce").dropna()
            lo, hi = (np.percentile(x, [1, 99]) if len(x) else (0.0, 1.0))
            raw.append({"column": sp.column, "kind": "continuous", "b": b, "lo": float(lo),
                        "hi": float(hi), "label": pretty_name(sp.column)})
    # R_max from the data ranges, then round ticks (which may widen a range slightly)
    for _ in range(2):
        ranges = []
        for s in raw:
            if s["kind"] == "continuous":
                ranges.append(abs(s["b"]) * (s["hi"] - s["lo"]))
            else:
                c = [t[2] for t in s["ticks"]]
                ranges.append(max(c) - min(c))
        rmax_guess = max(ranges) or 1.0
        for s in raw:
            if s["kind"] == "continuous":
                tk = _continuous_ticks(s["b"], s["lo"], s["hi"], rmax_guess)
                s["ticks"] = [(lab, v, s["b"] * v) for lab, v in tk]
    scales = []
    for s in raw:
        contrib = [t[2] for t in s["ticks"]]
        scales.append({**s, "min": min(contrib), "range": max(contrib) - min(contrib)})
    rmax = max(s["range"] for s in scales) or 1.0
    for s in scales:
        s["points"] = [(lab, 100.0 * (c - s["min"]) / rmax) for lab, _, c in s["ticks"]]
    offset = float(fit.params[0]) + sum(s["min"] for s in scales)
    return {"scales": scales, "rmax": rmax, "offset": offset,
            "max_total": sum(100.0 * s["range"] / rmax for s in scales)}


def total_points_ticks(max_total: float) -> np.ndarray:
    """Round ticks of the total-points axis, from 0 to the first round value at or above
    the largest possible total (so the axis is never cut short)."""
    max_total = max(float(max_total), 1e-9)
    step = _nice_step(max_total, 8)
    end = float(np.ceil(max_total / step - 1e-9) * step)
    return np.round(np.arange(0, end + step / 2, step), 10)


def _thin(positions: list[float], labels: list[str], keep_ends: bool = True) -> list[int]:
    """Indices of ticks whose labels fit side by side (greedy from the left)."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    kept: list[int] = []
    for i in order:
        if not kept:
            kept.append(i)
            continue
        j = kept[-1]
        need = (len(labels[i]) + len(labels[j])) / 2 * _CHAR + 1.0
        if positions[i] - positions[j] >= need:
            kept.append(i)
    return kept


def plot_nomogram(fit: LogisticFit, df: pd.DataFrame, path: str | Path,
                  outcome_label: str | None = None) -> Path:
    """Nomogram: one points axis per predictor, total points, linear predictor and risk.

    Continuous axes have round ticks whose labels do not overlap; levels are labelled
    (``IVC: no / yes``); units come from the column names; the total-points axis runs to a
    round value at or above the largest possible total.
    """
    ns = nomogram_scales(fit, df)
    scales, rmax, offset, tmax = ns["scales"], ns["rmax"], ns["offset"], ns["max_total"]
    tot = total_points_ticks(tmax)
    step, t_end = float(tot[1] - tot[0]), float(tot[-1])
    rows = len(scales) + 4
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(8.0, 0.62 * rows + 0.6))
        ax.set_xlim(-62, 106)
        ax.set_ylim(-0.8, rows - 0.3)
        ax.axis("off")

        def axis_row(y, label, positions, labels, minor=None):
            ax.text(-5, y, label, va="center", ha="right", fontsize=8.5)
            if len(positions) == 0:
                return
            ax.plot([min(positions), max(positions)], [y, y], color="black", lw=0.9)
            # labels that would collide alternate above and below the axis
            order = sorted(range(len(positions)), key=lambda i: positions[i])
            below_prev = None
            for k, i in enumerate(order):
                xpos, lab = positions[i], labels[i]
                below = False
                if k > 0:
                    j = order[k - 1]
                    need = (len(lab) + len(labels[j])) / 2 * _CHAR + 0.8
                    below = positions[i] - positions[j] < need and not below_prev
                ax.plot([xpos, xpos], [y, y + (-0.12 if below else 0.12)], color="black",
                        lw=0.9)
                ax.text(xpos, y - 0.18 if below else y + 0.18, lab, ha="center",
                        va="top" if below else "bottom", fontsize=7.5)
                below_prev = below
            for xpos in minor or []:
                ax.plot([xpos, xpos], [y, y + 0.06], color="black", lw=0.6)

        y = rows - 1
        axis_row(y, "Points", list(range(0, 101, 10)), [str(i) for i in range(0, 101, 10)],
                 minor=list(range(0, 101, 2)))
        for s in scales:
            y -= 1
            pts = s["points"]
            axis_row(y, s["label"], [p for _, p in pts], [lab for lab, _ in pts])
        scale = 100.0 / t_end
        y -= 1
        axis_row(y, f"Total points (max {tmax:.0f})", list(tot * scale),
                 [_fmt_tick(t, step) for t in tot])
        y -= 1
        lp_lo, lp_hi = offset, offset + t_end * rmax / 100
        lstep = _nice_step(lp_hi - lp_lo, 8)
        lp_ticks = np.arange(np.ceil(lp_lo / lstep) * lstep, lp_hi + 1e-9, lstep)
        pos = list((lp_ticks - offset) * 100 / rmax * scale)
        labs = [_fmt_tick(t, lstep) for t in lp_ticks]
        keep = _thin(pos, labs)
        axis_row(y, "Linear predictor", [pos[i] for i in keep], [labs[i] for i in keep])
        y -= 1
        probs = [p for p in (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
                             0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
                 if lp_lo <= np.log(p / (1 - p)) <= lp_hi]
        pos = [(np.log(p / (1 - p)) - offset) * 100 / rmax * scale for p in probs]
        labs = [f"{p:g}" for p in probs]
        keep = _thin(pos, labs)
        axis_row(y, f"Risk of {outcome_label or pretty_name(fit.outcome).lower()}",
                 [pos[i] for i in keep], [labs[i] for i in keep])
        if any("separation" in w or "did not converge" in w for w in fit.warnings):
            ax.text(-60, -0.75, "Warning: the fit shows separation or did not converge; these "
                    "scales rest on unreliable coefficients (see the report).", fontsize=8,
                    color="#a00", va="bottom")
        return _save(fig, path)
