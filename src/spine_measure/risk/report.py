"""The ``risk fit`` pipeline: univariate table, model, validation, figures and HTML report."""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spine_measure.risk.errors import RiskWarning
from spine_measure.risk.fit import LogisticFit, fit_logistic, parse_predictors
from spine_measure.risk.plots import (
    _group_label,
    plot_calibration,
    plot_dca,
    plot_nomogram,
    plot_roc,
    pretty_name,
)
from spine_measure.risk.univariate import univariate_table
from spine_measure.risk.validate import Validation, validate

__all__ = ["FitReport", "run_fit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitReport:
    """Everything ``risk fit`` produced, with the paths written."""

    fit: LogisticFit
    validation: Validation
    univariate: pd.DataFrame
    files: dict[str, Path]
    warnings: tuple[str, ...]


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _num(x) -> str:
    """A number for the report: 3 decimals, exponent form when large, never run together."""
    if isinstance(x, str):
        return x
    if x is None or pd.isna(x):
        return ""
    x = float(x)
    if not math.isfinite(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1e4:
        return f"{x:.3g}"
    t = f"{x:.3f}"
    return "0.000" if t == "-0.000" else t


def _fmt_table(df: pd.DataFrame, caption: str, int_cols: Sequence[str] = ()) -> str:
    df = df.copy()
    for c in df.columns:
        if c in int_cols:
            df[c] = df[c].map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif pd.api.types.is_numeric_dtype(df[c]):
            df[c] = df[c].map(_num)
    df = df.reset_index()  # the row labels become the first, named column
    body = df.to_html(na_rep="", border=0, index=False, escape=True)
    body = re.sub(r"^<table[^>]*>", f'<table class="tbl"><caption>{html.escape(caption)}'
                  "</caption>", body, count=1)
    return body.replace(' style="text-align: right;"', "")


def _level_label(column: str, group: tuple[str, ...]) -> str:
    if "sex" in column.lower() and all(g in ("f", "m", "w") for g in group):
        return "/".join({"f": "female", "w": "female", "m": "male"}[g] for g in group)
    return _group_label(group)


def _term_label(fit: LogisticFit, term: str) -> str:
    """Readable row label of the coefficient table: levels and reference spelled out
    (``Goutallier grade: 3–4 vs 0–1``, ``IVC (intravertebral cleft): yes vs no``)."""
    if term == "Constant":
        return term
    for sp in fit.predictors:
        name = pretty_name(sp.column)
        if sp.kind == "binary" and term == sp.column:
            return f"{name}: yes vs no"
        if sp.kind == "continuous" and term == sp.column:
            return f"{name}, per unit"
        if sp.kind == "categorical":
            ref = _level_label(sp.column, sp.groups[0])
            if term == sp.label():
                return f"{name} (joint test, {len(sp.terms)} df)"
            for g, t in zip(sp.groups[1:], sp.terms, strict=True):
                if term == t:
                    return f"{name}: {_level_label(sp.column, g)} vs {ref}"
    return term


def _fmt_p(p) -> str:
    if p is None or pd.isna(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _html(fit: LogisticFit, v: Validation, uni: pd.DataFrame, files: dict[str, Path],
          warns: Sequence[str], title: str) -> str:
    coef = fit.table().copy()
    coef.index = [_term_label(fit, str(t)) for t in coef.index]
    coef.index.name = "term"
    coef["P"] = coef["P"].map(_fmt_p)
    uni = uni.copy()
    uni["p"] = uni["p"].map(_fmt_p)
    w_html = "".join(f"<li>{html.escape(w)}</li>" for w in dict.fromkeys(warns)) \
        or "<li>none</li>"
    s = v.calibration_stats
    cal_rows = pd.DataFrame([
        {"measure": "calibration slope (shrinkage factor)", "apparent": s["slope_apparent"],
         "optimism": s["slope_optimism"], "optimism-corrected": s["slope_corrected"]},
        {"measure": "calibration intercept (with the slope)",
         "apparent": s["intercept_apparent"], "optimism": s["intercept_optimism"],
         "optimism-corrected": s["intercept_corrected"]},
        {"measure": "calibration-in-the-large (slope fixed at 1)",
         "apparent": s["citl_apparent"], "optimism": s["citl_optimism"],
         "optimism-corrected": s["citl_corrected"]},
        {"measure": "Brier score", "apparent": s["brier_apparent"],
         "optimism": s["brier_optimism"], "optimism-corrected": s["brier_corrected"]},
        {"measure": "Harrell's c-index (= AUC)", "apparent": v.c_apparent,
         "optimism": v.c_optimism, "optimism-corrected": v.c_corrected},
    ]).set_index("measure")
    groups = v.calibration.set_index("group").rename(columns={
        "observed_low": "observed, 95 % CI low", "observed_high": "observed, 95 % CI high",
        "predicted": "mean predicted"})
    dca = v.dca.set_index("threshold")
    dca = dca[dca.index.isin([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])]
    dca = dca[["n_at_or_above", "net_benefit_model", "net_benefit_model_corrected",
               "net_benefit_all", "net_benefit_none"]].rename(columns={
        "n_at_or_above": "patients at or above", "net_benefit_model": "model (apparent)",
        "net_benefit_model_corrected": "model (optimism-corrected)",
        "net_benefit_all": "treat all", "net_benefit_none": "treat none"})
    boot = (f"{v.n_boot_ok} of {v.n_boot} bootstrap resamples (seed {v.seed})"
            if v.n_boot else "no bootstrap (--bootstrap 0): nothing is corrected")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: 'DejaVu Sans', Arial, sans-serif; max-width: 60em; margin: 2em auto;
       color: #222; }}
table.tbl {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }}
table.tbl caption {{ text-align: left; font-weight: bold; padding: 0.3em 0; }}
table.tbl th, table.tbl td {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ccc;
                               text-align: right; }}
table.tbl th:first-child, table.tbl td:first-child {{ text-align: left; }}
img {{ max-width: 48%; margin: 0.5em 1%; vertical-align: top; }}
img[alt=nomogram] {{ max-width: 98%; }}
.warn {{ color: #a00; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Outcome <code>{html.escape(fit.outcome)}</code>: {fit.n} complete cases, {fit.n_events}
events ({100 * fit.n_events / fit.n:.1f} %); {fit.n_dropped} rows dropped for missing inputs;
events per variable {fit.events_per_variable:.1f}.</p>
<h2>Warnings</h2><ul class="warn">{w_html}</ul>
<h2>Univariate comparison</h2>
<p>group0 = outcome 0, group1 = outcome 1. Continuous: Shapiro–Wilk per group, then
Student's or Welch's t-test (Levene) or Mann–Whitney U; categorical: Pearson chi-square,
Fisher's exact test for sparse tables (exact Freeman–Halton P for tables larger than 2 x 2
where enumeration is feasible, otherwise a seeded Monte Carlo, labelled). The reason for each
choice is listed.</p>
{_fmt_table(uni.set_index("variable"), "Table 1. Univariate comparison by outcome",
            int_cols=("n_missing",))}
<h2>Multivariable logistic regression</h2>
<p>Maximum likelihood (statsmodels, Newton); Wald tests; 95 % CI = exp(B ± 1.96 SE).
Rows without B are joint Wald tests of a multi-level predictor.</p>
{_fmt_table(coef, "Table 2. Multivariable logistic regression", int_cols=("df",))}
<h2>Discrimination</h2>
<p>AUC {v.auc:.3f} (95 % CI {v.auc_ci[0]:.3f}–{v.auc_ci[1]:.3f}, DeLong; apparent, on the
development data). Harrell's c-index {v.c_apparent:.3f} apparent; optimism {v.c_optimism:.4f}
from {boot}; optimism-corrected c-index {v.c_corrected:.3f}.</p>
<h2>Calibration</h2>
<p>On the development data a maximum-likelihood model has an apparent calibration slope of
1 and intercept of 0 by construction; the optimism-corrected values (Harrell's bootstrap,
{boot}) estimate how the model will calibrate in new patients from the same population.
The slope is the shrinkage factor to apply to the coefficients. Hosmer–Lemeshow (apparent,
{len(groups)} risk groups): {s['hl_statistic']:.2f} on {s['hl_df']} df, P
{_fmt_p(s['hl_p'])}.</p>
{_fmt_table(cal_rows, "Table 3. Calibration and overall performance: apparent and "
            "optimism-corrected")}
{_fmt_table(groups, "Table 4. Calibration by risk group (deciles of predicted risk; "
            "observed proportion with Wilson 95 % CI)", int_cols=("n", "events"))}
<h2>Clinical usefulness</h2>
<p>{html.escape(v.dca_sentence())}.</p>
{_fmt_table(dca, "Table 5. Decision curve: net benefit at selected thresholds (apparent "
            "and optimism-corrected)", int_cols=("patients at or above",))}
<h2>Figures</h2>
{_img(files['roc'], 'ROC curve')}{_img(files['calibration'], 'calibration')}\
{_img(files['dca'], 'decision curve')}
<h2>Nomogram</h2>
{_img(files['nomogram'], 'nomogram')}
</body></html>
"""


def run_fit(
    df: pd.DataFrame,
    outcome: str,
    predictors: Sequence[str],
    outdir: str | Path,
    *,
    univariate_columns: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    title: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FitReport:
    """Fit, validate and write CSV tables, PNG figures, the coefficients JSON and a
    self-contained HTML report into ``outdir``.

    Files: ``univariate.csv``, ``coefficients.csv``, ``coefficients.json``,
    ``calibration_groups.csv``, ``calibration_curve.csv``, ``decision_curve.csv``,
    ``validation.csv``, ``roc.png``, ``calibration.png``, ``dca.png``, ``nomogram.png``,
    ``report.html``.

    All or nothing: everything is computed and written into a temporary folder next to
    ``outdir`` and moved into ``outdir`` only when every file was written; on any error
    ``outdir`` is left as it was.
    """
    out = Path(outdir)
    specs = parse_predictors(list(predictors), df)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RiskWarning)
        fit = fit_logistic(df, outcome, specs)
    for w in caught:  # re-emit so callers see them, but the report keeps them too
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    uni_cols = list(univariate_columns) if univariate_columns else [s.column for s in specs]
    uni = univariate_table(df, outcome, uni_cols, seed=seed)
    v = validate(fit, df, n_boot=n_boot, seed=seed, progress=progress)
    warns = tuple(dict.fromkeys(fit.warnings))
    if v.n_boot_ok < v.n_boot:
        warns = warns + (f"{v.n_boot - v.n_boot_ok} of {v.n_boot} bootstrap resamples could "
                         "not be fitted (one outcome class or separation) and were skipped",)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        files = _write_all(tmp, fit, v, uni, df, warns, title or f"Risk model for {outcome}")
        out.mkdir(parents=True, exist_ok=True)
        final = {}
        for key, path in files.items():
            os.replace(path, out / path.name)
            final[key] = out / path.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("risk fit: wrote %d files to %s", len(final), out)
    return FitReport(fit, v, uni, final, warns)


def _write_all(out: Path, fit: LogisticFit, v: Validation, uni: pd.DataFrame,
               df: pd.DataFrame, warns: tuple[str, ...], title: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    files["univariate"] = out / "univariate.csv"
    uni.to_csv(files["univariate"], index=False)
    files["coefficients"] = out / "coefficients.csv"
    fit.table().to_csv(files["coefficients"])
    files["coefficients_json"] = out / "coefficients.json"
    fit.to_json(files["coefficients_json"])
    files["calibration_groups"] = out / "calibration_groups.csv"
    v.calibration.to_csv(files["calibration_groups"], index=False)
    files["calibration_curve"] = out / "calibration_curve.csv"
    v.calibration_curve.to_csv(files["calibration_curve"], index=False)
    files["decision_curve"] = out / "decision_curve.csv"
    v.dca.to_csv(files["decision_curve"], index=False)
    files["validation"] = out / "validation.csv"
    pd.DataFrame([{
        "n": fit.n, "events": fit.n_events, "auc": v.auc, "auc_se_delong": v.auc_se,
        "auc_ci_low": v.auc_ci[0], "auc_ci_high": v.auc_ci[1], "c_apparent": v.c_apparent,
        "c_optimism": v.c_optimism, "c_corrected": v.c_corrected, "n_boot": v.n_boot,
        "n_boot_ok": v.n_boot_ok, "seed": v.seed, **v.calibration_stats,
        "dca_basis": v.dca_basis, "dca_min_at_risk": v.dca_min_at_risk,
        "dca_useful_low": v.dca_range[0] if v.dca_range else None,
        "dca_useful_high": v.dca_range[1] if v.dca_range else None,
        "dca_n_at_or_above_upper": v.dca_range_n_at_upper,
    }]).to_csv(files["validation"], index=False)
    files["roc"] = plot_roc(v, out / "roc.png")
    files["calibration"] = plot_calibration(v, out / "calibration.png")
    files["dca"] = plot_dca(v, out / "dca.png")
    files["nomogram"] = plot_nomogram(fit, df, out / "nomogram.png")
    files["report"] = out / "report.html"
    files["report"].write_text(_html(fit, v, uni, files, warns, title), encoding="utf-8")
    return files
