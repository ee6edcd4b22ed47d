"""The ``risk fit`` pipeline: univariate table, model, validation, figures and HTML report."""

from __future__ import annotations

import base64
import html
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spine_measure.risk.errors import RiskWarning
from spine_measure.risk.fit import LogisticFit, fit_logistic, parse_predictors
from spine_measure.risk.plots import plot_calibration, plot_dca, plot_nomogram, plot_roc
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


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _fmt_table(df: pd.DataFrame) -> str:
    return df.to_html(float_format=lambda x: f"{x:.3f}", na_rep="", border=0,
                      classes="tbl", escape=True)


def _html(fit: LogisticFit, v: Validation, uni: pd.DataFrame, files: dict[str, Path],
          warns: Sequence[str], title: str) -> str:
    coef = fit.table().copy()
    coef["P"] = coef["P"].map(lambda p: "<0.001" if p < 0.001 else f"{p:.3f}")
    uni = uni.copy()
    uni["p"] = uni["p"].map(lambda p: "" if pd.isna(p) else ("<0.001" if p < 0.001
                                                            else f"{p:.3f}"))
    w_html = "".join(f"<li>{html.escape(w)}</li>" for w in warns) or "<li>none</li>"
    r = v.dca_range
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: 'DejaVu Sans', Arial, sans-serif; max-width: 60em; margin: 2em auto;
       color: #222; }}
table.tbl {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }}
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
Fisher's exact test for sparse tables. The reason for each choice is listed.</p>
{_fmt_table(uni.set_index("variable"))}
<h2>Multivariable logistic regression</h2>
<p>Maximum likelihood (statsmodels, Newton); Wald tests; 95 % CI = exp(B ± 1.96 SE).
Rows without B are joint Wald tests of a multi-level predictor.</p>
{_fmt_table(coef)}
<h2>Discrimination</h2>
<p>AUC {v.auc:.3f} (95 % CI {v.auc_ci[0]:.3f}–{v.auc_ci[1]:.3f}, DeLong). Harrell's c-index
{v.c_apparent:.3f} apparent; optimism {v.c_optimism:.4f} from {v.n_boot_ok} of {v.n_boot}
bootstrap resamples (seed {v.seed}); optimism-corrected c-index {v.c_corrected:.3f}.</p>
<h2>Calibration and clinical usefulness</h2>
<p>Calibration intercept {v.calibration_stats['calibration_intercept']:.3f}, slope
{v.calibration_stats['calibration_slope']:.3f}, Brier score
{v.calibration_stats['brier']:.4f}. Decision curve: the model's net benefit exceeds
treat-all and treat-none for thresholds
{f"{r[0]:.2f} to {r[1]:.2f}" if r else "nowhere"}.</p>
{_img(files['roc'])}{_img(files['calibration'])}{_img(files['dca'])}
<h2>Nomogram</h2>
{_img(files['nomogram'])}
{_fmt_table(v.calibration.set_index("group"))}
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
) -> FitReport:
    """Fit, validate and write CSV tables, PNG figures, the coefficients JSON and a
    self-contained HTML report into ``outdir``.

    Files: ``univariate.csv``, ``coefficients.csv``, ``coefficients.json``,
    ``calibration_groups.csv``, ``calibration_curve.csv``, ``decision_curve.csv``,
    ``validation.csv``, ``roc.png``, ``calibration.png``, ``dca.png``, ``nomogram.png``,
    ``report.html``.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    specs = parse_predictors(list(predictors), df)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RiskWarning)
        fit = fit_logistic(df, outcome, specs)
    for w in caught:  # re-emit so callers see them, but the report keeps them too
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    uni_cols = list(univariate_columns) if univariate_columns else [s.column for s in specs]
    uni = univariate_table(df, outcome, uni_cols)
    v = validate(fit, df, n_boot=n_boot, seed=seed)
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
        "dca_useful_low": v.dca_range[0] if v.dca_range else None,
        "dca_useful_high": v.dca_range[1] if v.dca_range else None,
    }]).to_csv(files["validation"], index=False)
    files["roc"] = plot_roc(v, out / "roc.png")
    files["calibration"] = plot_calibration(v, out / "calibration.png")
    files["dca"] = plot_dca(v, out / "dca.png")
    files["nomogram"] = plot_nomogram(fit, df, out / "nomogram.png")
    warns = fit.warnings
    if v.n_boot_ok < v.n_boot:
        warns = warns + (f"{v.n_boot - v.n_boot_ok} bootstrap resamples could not be fitted "
                         "and were skipped",)
    files["report"] = out / "report.html"
    files["report"].write_text(
        _html(fit, v, uni, files, warns, title or f"Risk model for {outcome}"), encoding="utf-8")
    log.info("risk fit: wrote %d files to %s", len(files), out)
    return FitReport(fit, v, uni, files, warns)
