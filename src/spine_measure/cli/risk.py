"""``spine-measure risk``: published risk models, model fitting and table checking."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from spine_measure.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, app
from spine_measure.errors import SpineMeasureError

if TYPE_CHECKING:  # pandas and the I/O layer are imported when a command runs (fast start-up)
    import pandas as pd

risk_app = typer.Typer(help="Risk models: apply published models, fit your own, check tables.",
                       no_args_is_help=True)
app.add_typer(risk_app, name="risk")

log = logging.getLogger(__name__)


class _StderrConsole:
    """rich's stderr console, made on first use (importing rich slows every command)."""

    _real = None

    def real(self):  # noqa: ANN201 - rich.console.Console, imported lazily
        if self._real is None:
            from rich.console import Console

            self._real = Console(stderr=True)
        return self._real

    def print(self, *args, **kwargs) -> None:  # noqa: ANN002,ANN003
        self.real().print(*args, **kwargs)


_console = _StderrConsole()


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    from spine_measure.io.files import describe_os_error

    if not path.is_file():
        _console.print(f"[red]{path}: no such file[/red]")
        raise typer.Exit(EXIT_USAGE)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        typer.echo(f"error: {path}: the file is empty (no header line, no rows)", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:
        typer.echo(f"error: {path}: cannot read ({describe_os_error(exc)})", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {path}: cannot read as CSV ({' '.join(str(exc).split())})",
                   err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _write_csv(frame: pd.DataFrame, output: Path) -> None:
    """Write ``frame`` to ``output`` or say in one line why it cannot be written."""
    from spine_measure.io.annotation import atomic_write_text
    from spine_measure.io.files import describe_os_error

    if output.is_dir():
        typer.echo(f"error: {output}: is a folder; give a file name (-o)", err=True)
        raise typer.Exit(EXIT_USAGE)
    if output.exists() and (not os.access(output, os.W_OK)
                            or not output.stat().st_mode & 0o222):  # read-only, also for root
        typer.echo(f"error: {output}: cannot write (the file is read-only)", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE)
    try:
        atomic_write_text(output, frame.to_csv(index=False, lineterminator="\n"))
    except OSError as exc:
        typer.echo(f"error: {output}: cannot write "
                   f"({describe_os_error(exc)})", err=True)
        raise typer.Exit(EXIT_NOTHING_DONE) from None


def _parse_map(items: list[str] | None) -> dict[str, str]:
    out = {}
    for it in items or []:
        var, sep, col = it.partition("=")
        if not sep or not var.strip() or not col.strip():
            _console.print(f"[red]--map {it!r}: expected VAR=COLUMN[/red]")
            raise typer.Exit(EXIT_USAGE)
        out[var.strip()] = col.strip()
    return out


def _batch_name_hint(absent: list[str], columns) -> str:
    """'; the batch writes ... (--map age=age_years)' for columns named as in a clinical
    table but written by ``spine-measure batch`` under their unit-suffixed name."""
    from spine_measure.batch.clinical import CANONICAL

    maps = []
    for col in absent:
        key = col.strip().lower().replace(" ", "_")
        for canon, aliases in CANONICAL.items():
            if key in aliases and canon != col and canon in columns:
                maps.append(f"--map {col}={canon}")
    return f"; the batch writes them under other names: use {' '.join(maps)}" if maps else ""


@risk_app.command("apply")
def apply_cmd(
    features: Path = typer.Argument(..., help="Feature CSV (batch output)."),
    model: str = typer.Option(..., "--model", "-m",
                              help="li2021, an2021, xiong2021, rules or a coefficients.json "
                                   "written by 'risk fit'."),
    output: Path = typer.Option(None, "--output", "-o", help="Output CSV (default: stdout)."),
    map_: list[str] = typer.Option(None, "--map", help="VAR=COLUMN: read model column VAR "
                                   "from input column COLUMN (repeatable)."),
    recalibrate: str = typer.Option(None, "--recalibrate-on", help="0/1 outcome column: "
                                    "re-estimate the intercept of a linear-predictor model "
                                    "(an2021) on this cohort."),
    recalibrate_slope: bool = typer.Option(False, "--recalibrate-slope",
                                           help="Also re-estimate the calibration slope."),
    show: bool = typer.Option(False, "--show", help="Print the model definition (JSON)."),
) -> None:
    """Apply a published model (or a saved fit) to every row; missing inputs give a
    missing output and a reason."""
    from spine_measure.io.files import working_on
    from spine_measure.risk.apply import apply_model
    from spine_measure.risk.fit import LogisticFit
    from spine_measure.risk.published import get_model

    df = _read_csv(features)
    cmap = _parse_map(map_)
    try:
        if model.endswith(".json"):
            if recalibrate or recalibrate_slope:
                _console.print("[red]--recalibrate-on/--recalibrate-slope apply to the "
                               "published linear-predictor model an2021, not to a saved "
                               "fit (it already has its own intercept)[/red]")
                raise typer.Exit(EXIT_USAGE)
            if not Path(model).is_file():
                _console.print(f"[red]{model}: no such file[/red]")
                raise typer.Exit(EXIT_USAGE)
            fit = LogisticFit.from_json(Path(model))
            if show:
                typer.echo(fit.to_json())
            renamed = df.rename(columns={v: k for k, v in cmap.items()})
            absent = [sp.column for sp in fit.predictors if sp.column not in renamed.columns]
            if absent:
                _console.print(f"[red]{features}: the saved model's predictor column(s) "
                               f"{', '.join(absent)} are not in the input"
                               f"{_batch_name_hint(absent, df.columns)}[/red]")
                raise typer.Exit(EXIT_USAGE)
            lp, reasons = fit.linear_predictor(renamed)
            from spine_measure.risk.apply import ID_COLUMNS, expit
            out = df[[c for c in ID_COLUMNS if c in df.columns]].copy()
            out["fit_lp"] = lp
            out["fit_probability"] = expit(lp)
            out["fit_reason"] = reasons
            scored = (reasons == "").to_numpy()
        else:
            m = get_model(model)
            if show:
                typer.echo(m.to_json())
            with working_on(features):  # its warnings name the file
                out, meta = apply_model(m, df, column_map=cmap,
                                        recalibration_outcome=recalibrate,
                                        recalibrate_slope=recalibrate_slope)
            if m.capability == "flags":
                # a row is processed when it got at least one flag; flags whose inputs are
                # missing are empty and named in flags_reason
                flags = out[[c for c in out.columns if c.startswith("flag_")]]
                scored = flags.notna().any(axis=1).to_numpy()
            else:
                scored = (out[f"{m.name}_reason"] == "").to_numpy()
            if "recalibration" in meta:
                rc = meta["recalibration"]
                _console.print(f"recalibrated on {rc['n']} rows ({rc['n_events']} events): "
                               f"intercept {rc['intercept']:.3f}, slope {rc['slope']:.3f}")
    except SpineMeasureError as exc:
        _console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    if output:
        _write_csv(out, output)
    else:
        typer.echo(out.to_csv(index=False), nl=False)
    if len(out) == 0 or not scored.any():
        raise typer.Exit(EXIT_NOTHING_DONE)
    raise typer.Exit(EXIT_OK if scored.all() else EXIT_SOME_FAILED)


@risk_app.command("fit")
def fit_cmd(
    features: Path = typer.Argument(..., help="Cohort CSV (one row per patient)."),
    outcome: str = typer.Option(..., "--outcome", "-y", help="0/1 outcome column."),
    predictors: str = typer.Option(..., "--predictors", "-x",
                                   help="Comma-separated predictors; 'col:A|B+C' groups "
                                        "levels, the first group is the reference."),
    univariate: str = typer.Option(None, "--univariate", help="Comma-separated columns for "
                                   "the univariate table (default: the predictors)."),
    outdir: Path = typer.Option(Path("risk_fit"), "--outdir", "-o", help="Output folder."),
    n_boot: int = typer.Option(1000, "--bootstrap", "-B", min=0,
                               help="Bootstrap resamples for optimism correction."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the bootstrap (and of a "
                             "Monte Carlo Fisher test too large to enumerate)."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="Progress bar of the bootstrap (stderr)."),
) -> None:
    """Univariate tests, multivariable logistic regression, ROC/AUC, c-index with bootstrap
    optimism correction, calibration, decision curve, nomogram and an HTML report."""
    import warnings

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from spine_measure.risk.report import run_fit

    df = _read_csv(features)
    preds = [p.strip() for p in predictors.split(",") if p.strip()]
    uni = [c.strip() for c in univariate.split(",")] if univariate else None
    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn(), console=_console.real(),
                   disable=not progress or n_boot == 0, transient=True)
    task = bar.add_task("bootstrap", total=n_boot)

    def tick(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            bar.update(task, completed=done)

    try:
        with warnings.catch_warnings(), bar:
            warnings.simplefilter("ignore")  # reported once below and in the HTML report
            rep = run_fit(df, outcome, preds, outdir, univariate_columns=uni, n_boot=n_boot,
                          seed=seed, progress=tick)
    except SpineMeasureError as exc:
        _console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(rep.fit.summary(with_warnings=False))
    typer.echo(rep.validation.summary())
    for w in rep.warnings:
        _console.print(f"[yellow]warning: {w}[/yellow]")
    typer.echo(f"report: {rep.files['report']}")
    raise typer.Exit(EXIT_OK)


@risk_app.command("check-table")
def check_table_cmd(
    tables: list[Path] = typer.Argument(..., help="Printed-table CSV(s), see "
                                        "docs/check_table.md."),
    output: Path = typer.Option(None, "--output", "-o", help="Write all checks to this CSV."),
    show_all: bool = typer.Option(False, "--all", help="Print every item, not only the "
                                  "inconsistent and not checkable ones."),
) -> None:
    """Recompute t / chi-square / Fisher / Wald statistics, P values, ORs and CIs from the
    printed summary numbers and flag what cannot be reproduced within their rounding.

    One verdict per item (ok / inconsistent / not checkable), the failing checks under it
    with the recomputed value and its interval. An item that cannot be parsed is reported
    as not checkable with the reason; the other items are still checked."""
    import pandas as pd

    from spine_measure.risk.check_table import check_table, summarize, verdicts

    frames = []
    for t in tables:
        if not t.is_file():
            _console.print(f"[red]{t}: no such file[/red]")
            raise typer.Exit(EXIT_USAGE)
        try:
            frames.append(check_table(t))
        except SpineMeasureError as exc:
            _console.print(f"[red]{exc}[/red]")
            raise typer.Exit(EXIT_USAGE) from None
    res = pd.concat(frames, ignore_index=True)
    if output:
        _write_csv(res, output)

    def num(x) -> str:
        return "" if pd.isna(x) else f"{x:.4g}"

    shown = 0
    for v in verdicts(res):
        if v["verdict"] == "ok" and not show_all:
            continue
        shown += 1
        typer.echo(f"{v['table']} / {v['item']}: {v['verdict'].replace('_', ' ')}")
        for c in v["failing"]:
            if c["status"] == "not_checkable":
                typer.echo(f"    {c['check']}: {c['note']}")
                continue
            iv = ("" if num(c["recomputed_low"]) == num(c["recomputed_high"]) else
                  f" [{num(c['recomputed_low'])}, {num(c['recomputed_high'])}]")
            var = f" ({c['variant']})" if c["variant"] else ""
            note = f"; {c['note']}" if c["note"] else ""
            typer.echo(f"    {c['check']}: printed {c['printed']}, recomputed "
                       f"{num(c['recomputed'])}{iv}{var}{note}")
    if not shown:
        typer.echo("no inconsistencies")
    typer.echo(json.dumps(summarize(res)))
    raise typer.Exit(EXIT_SOME_FAILED if (res.status == "inconsistent").any() else EXIT_OK)
