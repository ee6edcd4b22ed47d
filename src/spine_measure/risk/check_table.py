"""Recompute the statistics of a paper's printed tables and flag what does not reproduce.

A printed number stands for an interval: ``15.12`` is anything in ``[15.115, 15.125)``, a
count ``46`` is exactly 46, a P value ``0.000`` is anything below 0.0005 and ``<0.001``
anything below 0.001. Every check below propagates the intervals of the printed *inputs*
(group means and SDs, B and SE) to an interval for the recomputed statistic and says the
printed statistic reproduces when its own rounding interval overlaps the recomputed one.

Checks
------
``t`` rows (two groups, ``mean±SD`` and sizes ``n1``, ``n2``)
    Student's pooled t, :math:`t = (m_1 - m_2) / (s_p\\sqrt{1/n_1 + 1/n_2})` with
    :math:`s_p^2 = ((n_1-1)s_1^2 + (n_2-1)s_2^2)/(n_1+n_2-2)`, and Welch's
    :math:`t = (m_1 - m_2)/\\sqrt{s_1^2/n_1 + s_2^2/n_2}` with Welch–Satterthwaite df.
    The statistic is monotone in the mean difference and in each SD, so its range over the
    rounding box is reached at the box's corners (exact for both variants).
``chi2`` rows (one row per category, counts per group)
    Pearson's :math:`\\chi^2 = \\sum (O-E)^2/E` with :math:`(r-1)(c-1)` df, and for 2 x 2
    tables also Yates' continuity-corrected version; the printed percentages are checked
    against the counts and the group sizes.
``logistic`` rows (B, SE, Wald, P, OR, CI)
    :math:`W = (B/SE)^2` (chi-square, 1 df), :math:`OR = e^B`,
    :math:`CI = e^{B \\pm 1.959964\\,SE}`; when the OR or CI disagree with B, the B and SE
    implied by the printed CI (:math:`\\ln\\sqrt{lo\\cdot hi}` and
    :math:`\\ln(hi/lo)/3.919928`) are reported to locate the typo.
``wald_joint`` rows
    A multi-df Wald test needs the coefficient covariance, which papers do not print:
    reported as not checkable.

The input format is documented in ``docs/check_table.md``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from spine_measure.risk.errors import TableFormatError
from spine_measure.risk.exact import fisher_exact_rxc

__all__ = [
    "Printed",
    "parse_number",
    "parse_p",
    "parse_mean_sd",
    "parse_count",
    "check_t_test",
    "check_chi2",
    "check_logistic_row",
    "check_table",
    "verdicts",
    "read_table_csv",
    "CHECK_COLUMNS",
]

Z975 = stats.norm.ppf(0.975)  # 1.959963984540054

#: Columns of the result of :func:`check_table`.
CHECK_COLUMNS = [
    "table",
    "item",
    "check",
    "printed",
    "recomputed",
    "recomputed_low",
    "recomputed_high",
    "variant",
    "status",
    "note",
]

_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class Printed:
    """A number as printed: its value and the interval ``[low, high)`` it stands for.

    Parameters
    ----------
    text : str
        The printed text (kept for reports).
    value : float
        The printed value.
    low, high : float
        The rounding interval: ``value -/+ 0.5 * 10**-decimals``; equal to ``value`` for
        exact numbers (counts); for P values printed as ``<x`` or ``0.000``, ``[0, x)``.
    """

    text: str
    value: float
    low: float
    high: float

    def overlaps(self, low: float, high: float) -> bool:
        """True when ``[low, high]`` meets this number's rounding interval."""
        return bool(high >= self.low - 1e-12 and low <= self.high + 1e-12)


def _clean(text: str) -> str:
    t = str(text).strip().replace("−", "-").replace("–", "-").replace(" ", "")
    return t.rstrip("*")


def parse_number(text: str, *, exact: bool = False) -> Printed:
    """Parse a printed decimal number into its rounding interval.

    ``"15.12"`` gives ``[15.115, 15.125)``; ``"-0.539"`` gives ``[-0.5395, -0.5385)``;
    with ``exact=True`` (counts) the interval is the point itself.

    >>> p = parse_number("15.12"); (round(p.low, 3), round(p.high, 3))
    (15.115, 15.125)
    """
    t = _clean(text)
    if not _NUM_RE.match(t):
        raise TableFormatError(f"not a printed number: {text!r}")
    value = float(t)
    if exact:
        return Printed(str(text), value, value, value)
    decimals = len(t.split(".")[1]) if "." in t else 0
    half = 0.5 * 10.0 ** (-decimals)
    return Printed(str(text), value, value - half, value + half)


def parse_p(text: str) -> Printed:
    """Parse a printed P value: ``"0.86"``, ``"0.000*"`` (< 0.0005), ``"<0.001"``, ``">0.05"``.

    >>> parse_p("0.000*").high
    0.0005
    >>> parse_p("<0.001").high
    0.001
    """
    t = _clean(text).lower().replace("p", "").replace("=", "")
    if t.startswith("<"):
        bound = parse_number(t[1:]).value
        return Printed(str(text), bound / 2, 0.0, bound)
    if t.startswith(">"):
        bound = parse_number(t[1:]).value
        return Printed(str(text), (bound + 1) / 2, bound, 1.0)
    p = parse_number(t)
    return Printed(p.text, p.value, max(p.low, 0.0), min(p.high, 1.0))


_MEAN_SD_RE = re.compile(r"^\s*([^±]+?)\s*(?:±|\+/-|\+-)\s*([^±]+?)\s*$")


def parse_mean_sd(text: str) -> tuple[Printed, Printed]:
    """Parse ``"74.78±11.76"`` (also ``+/-``) into (mean, SD) rounding intervals."""
    m = _MEAN_SD_RE.match(str(text))
    if not m:
        raise TableFormatError(f"not a printed mean±SD: {text!r}")
    return parse_number(m.group(1)), parse_number(m.group(2))


_COUNT_RE = re.compile(r"^\s*(\d+)\s*(?:[\(\[]\s*([0-9.]+)\s*%?\s*[\)\]])?\s*$")


def parse_count(text: str) -> tuple[int, Printed | None]:
    """Parse ``"46"``, ``"46(19.9%)"`` or ``"12[5.2%]"`` into (count, printed percentage)."""
    m = _COUNT_RE.match(str(text))
    if not m:
        raise TableFormatError(f"not a printed count: {text!r}")
    pct = parse_number(m.group(2)) if m.group(2) else None
    return int(m.group(1)), pct


def _row(table, item, check, printed, rec, lo, hi, variant, status, note=""):
    return {
        "table": table,
        "item": item,
        "check": check,
        "printed": printed,
        "recomputed": rec,
        "recomputed_low": lo,
        "recomputed_high": hi,
        "variant": variant,
        "status": status,
        "note": note,
    }


def _p_from_t(t: float, df: float) -> float:
    return float(2 * stats.t.sf(abs(t), df))


def _t_variants(m1, s1, n1, m2, s2, n2) -> dict[str, tuple[float, float]]:
    """(t, df) of Student's and Welch's t for point values."""
    d = m1 - m2
    sp2 = ((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / (n1 + n2 - 2)
    t_student = d / math.sqrt(sp2 * (1 / n1 + 1 / n2)) if sp2 > 0 else math.nan
    v1, v2 = s1**2 / n1, s2**2 / n2
    se_w = math.sqrt(v1 + v2)
    t_welch = d / se_w if se_w > 0 else math.nan
    df_w = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1)) if se_w > 0 else math.nan
    return {"student": (t_student, n1 + n2 - 2), "welch": (t_welch, df_w)}


def check_t_test(
    table: str,
    item: str,
    group1: str,
    n1: int,
    group2: str,
    n2: int,
    statistic: str | None,
    p: str | None,
) -> list[dict]:
    """Check a printed two-group t statistic and P value against printed means and SDs.

    The statistic is taken as group 1 minus group 2. Both Student's (pooled) and Welch's
    t are tried; a printed value that matches only in absolute value is reported with a
    note (the paper swapped the group order).

    Returns
    -------
    list of dict
        Rows with the columns :data:`CHECK_COLUMNS`.
    """
    (m1, s1), (m2, s2) = parse_mean_sd(group1), parse_mean_sd(group2)
    if n1 < 2 or n2 < 2:
        raise TableFormatError(f"{table} / {item}: group sizes must be >= 2; got {n1}, {n2}")
    point = _t_variants(m1.value, s1.value, n1, m2.value, s2.value, n2)
    corners: dict[str, list[tuple[float, float]]] = {"student": [], "welch": []}
    for a, b, c, d in itertools.product(
        (m1.low, m1.high), (s1.low, s1.high), (m2.low, m2.high), (s2.low, s2.high)
    ):
        for k, v in _t_variants(a, max(b, 0.0), n1, c, max(d, 0.0), n2).items():
            corners[k].append(v)
    out: list[dict] = []
    pr_t = parse_number(statistic) if statistic not in (None, "") else None
    pr_p = parse_p(p) if p not in (None, "") else None
    results = {}
    for variant in ("student", "welch"):
        ts = np.array([c[0] for c in corners[variant]])
        ps = np.array([_p_from_t(t, df) for t, df in corners[variant]])
        t_lo, t_hi = float(np.nanmin(ts)), float(np.nanmax(ts))
        if t_lo < 0 < t_hi:  # the box contains d = 0: p can reach 1, |t| can reach 0
            p_lo, p_hi = float(np.nanmin(ps)), 1.0
        else:
            p_lo, p_hi = float(np.nanmin(ps)), float(np.nanmax(ps))
        t_ok = pr_t.overlaps(t_lo, t_hi) if pr_t else None
        t_abs_ok = pr_t.overlaps(-t_hi, -t_lo) if pr_t else None
        p_ok = pr_p.overlaps(p_lo, p_hi) if pr_p else None
        results[variant] = (t_lo, t_hi, p_lo, p_hi, t_ok, t_abs_ok, p_ok)
    t_p_point = {k: _p_from_t(*v) for k, v in point.items()}
    for check, idx in (("statistic", 0), ("p", 2)):
        printed = pr_t if check == "statistic" else pr_p
        if printed is None:
            continue
        ok_variants = [v for v in ("student", "welch") if results[v][4 + 2 * (idx == 2)]]
        flip_variants = [v for v in ("student", "welch")
                         if check == "statistic" and results[v][5]]
        chosen = (ok_variants or flip_variants or ["student"])[0]
        lo, hi = results[chosen][idx], results[chosen][idx + 1]
        rec = point[chosen][0] if check == "statistic" else t_p_point[chosen]
        label = chosen
        if ok_variants:
            status = "ok"
            if len(ok_variants) == 2:
                label = "student+welch"
                note = "reproduces with Student's t and with Welch's t"
            else:
                note = "" if "student" in ok_variants else "reproduces with Welch's t only"
        elif flip_variants:
            status = "ok"
            note = "reproduces with the groups in the other order (sign differs)"
        else:
            status = "inconsistent"
            other = "welch" if chosen == "student" else "student"
            note = (
                f"Student t in [{results['student'][0]:.3f}, {results['student'][1]:.3f}], "
                f"Welch t in [{results['welch'][0]:.3f}, {results['welch'][1]:.3f}]"
                if check == "statistic"
                else f"{other} P in [{results[other][2]:.4g}, {results[other][3]:.4g}]"
            )
        out.append(
            _row(table, item, f"t_test.{check}", printed.text, rec, lo, hi, label, status, note)
        )
    if pr_t is not None and pr_p is not None:
        # P implied by the printed statistic itself (locates which of the two is off), with
        # the df of the variant that reproduced the statistic (Welch's df from the point values).
        stat_rows = [r for r in out if r["check"] == "t_test.statistic"]
        variant = stat_rows[0]["variant"].split("+")[0] if stat_rows else "student"
        df_s = point[variant][1]
        p_lo = _p_from_t(max(abs(pr_t.low), abs(pr_t.high)), df_s)
        p_hi = (_p_from_t(min(abs(pr_t.low), abs(pr_t.high)), df_s)
                if pr_t.low * pr_t.high > 0 else 1.0)
        ok = pr_p.overlaps(p_lo, p_hi)
        out.append(
            _row(
                table,
                item,
                "t_test.p_from_printed_statistic",
                pr_p.text,
                _p_from_t(pr_t.value, df_s),
                p_lo,
                p_hi,
                variant,
                "ok" if ok else "inconsistent",
                "" if ok else f"printed t = {pr_t.text} with {df_s:.1f} df",
            )
        )
    return out


def _chi2_stats(counts: np.ndarray) -> dict[str, tuple[float, float]]:
    """Pearson (and Yates for 2x2) chi-square statistic and P value of a table, and the P of
    Fisher's exact test (Freeman–Halton for r x c; no statistic, NaN)."""
    res = {}
    stat, p, _, _ = stats.chi2_contingency(counts, correction=False)
    res["pearson"] = (float(stat), float(p))
    if counts.shape == (2, 2):
        stat, p, _, _ = stats.chi2_contingency(counts, correction=True)
        res["yates"] = (float(stat), float(p))
    fr = fisher_exact_rxc(counts.astype(int), seed=0)
    res["fisher"] = (math.nan, fr.pvalue)
    return res


def check_chi2(
    table: str,
    item: str,
    levels: list[str],
    counts1: list[str],
    counts2: list[str],
    statistic: str | None,
    p: str | None,
    n1: int | None = None,
    n2: int | None = None,
) -> list[dict]:
    """Check a printed chi-square statistic, P value and percentages against printed counts.

    Parameters
    ----------
    levels : list of str
        Category labels (table rows).
    counts1, counts2 : list of str
        Printed cells of group 1 and 2, e.g. ``"46(19.9%)"``.
    n1, n2 : int, optional
        Group sizes for the percentage check (default: the column sums).
    """
    parsed1 = [parse_count(c) for c in counts1]
    parsed2 = [parse_count(c) for c in counts2]
    counts = np.array([[a[0], b[0]] for a, b in zip(parsed1, parsed2, strict=True)], dtype=float)
    out: list[dict] = []
    tot1, tot2 = counts.sum(axis=0)
    for (n_given, total, parsed, grp) in ((n1, tot1, parsed1, 1), (n2, tot2, parsed2, 2)):
        denom = n_given if n_given else total
        if n_given and int(n_given) != int(total):
            out.append(
                _row(table, item, f"counts.sum_group{grp}", str(n_given), total, total, total,
                     "", "inconsistent", f"counts add up to {int(total)}, not n = {n_given}")
            )
        for lev, (c, pct) in zip(levels, parsed, strict=True):
            if pct is None:
                continue
            rec = 100.0 * c / denom
            ok = pct.overlaps(rec, rec)
            out.append(
                _row(table, f"{item}: {lev}", f"percent.group{grp}", pct.text, rec, rec, rec, "",
                     "ok" if ok else "inconsistent", "" if ok else f"{c}/{int(denom)}")
            )
    if (counts.sum(axis=1) == 0).any() or (counts.sum(axis=0) == 0).any():
        out.append(_row(table, item, "chi2", statistic or "", math.nan, math.nan, math.nan, "",
                        "not_checkable", "a row or column of the table is empty"))
        return out
    variants = _chi2_stats(counts)
    pr_s = parse_number(statistic) if statistic not in (None, "") else None
    pr_p = parse_p(p) if p not in (None, "") else None
    for check, printed, idx in (("statistic", pr_s, 0), ("p", pr_p, 1)):
        if printed is None:
            continue
        ok = [v for v, sp in variants.items()
              if math.isfinite(sp[idx]) and printed.overlaps(sp[idx], sp[idx])]
        chosen = "+".join(ok) if ok else "pearson"
        val = variants[ok[0] if ok else "pearson"][idx]
        note = ""
        if not ok:
            note = "; ".join(f"{_VARIANT_NAME[v]}: {sp[idx]:.4g}" for v, sp in variants.items()
                             if math.isfinite(sp[idx]))
        elif len(ok) > 1:
            note = "reproduces with " + " and with ".join(_VARIANT_NAME[v] for v in ok)
        elif chosen != "pearson":
            note = f"reproduces with {_VARIANT_NAME[chosen]} only"
        out.append(_row(table, item, f"chi2.{check}", printed.text, val, val, val, chosen,
                        "ok" if ok else "inconsistent", note))
    return out


def check_logistic_row(
    table: str,
    item: str,
    b: str | None,
    se: str | None,
    wald: str | None = None,
    p: str | None = None,
    odds_ratio: str | None = None,
    ci_low: str | None = None,
    ci_high: str | None = None,
) -> list[dict]:
    """Check one printed row of a logistic regression table (B, SE, Wald, P, OR, 95 % CI).

    Every recomputed value is an interval over the rounding of the printed B and SE. The
    Wald P value is checked twice: from B and SE, and from the printed Wald statistic.
    """
    out: list[dict] = []
    pb = parse_number(b) if b not in (None, "") else None
    pse = parse_number(se) if se not in (None, "") else None
    pw = parse_number(wald) if wald not in (None, "") else None
    pp = parse_p(p) if p not in (None, "") else None
    por = parse_number(odds_ratio) if odds_ratio not in (None, "") else None
    plo = parse_number(ci_low) if ci_low not in (None, "") else None
    phi = parse_number(ci_high) if ci_high not in (None, "") else None

    def add(check, printed, rec, lo, hi, note_bad="", variant=""):
        ok = printed.overlaps(lo, hi)
        out.append(_row(table, item, check, printed.text, rec, lo, hi, variant,
                        "ok" if ok else "inconsistent", "" if ok else note_bad))
        return ok

    implied = ""
    if plo is not None and phi is not None and plo.value > 0 and phi.value > 0:
        b_ci = 0.5 * (math.log(plo.value) + math.log(phi.value))
        se_ci = (math.log(phi.value) - math.log(plo.value)) / (2 * Z975)
        implied = f"the printed CI implies B = {b_ci:.3f}, SE = {se_ci:.3f}"

    if pb is not None and pse is not None and pse.low > 0:
        zs = [bb / ss for bb in (pb.low, pb.high) for ss in (pse.low, pse.high)]
        ws = [z * z for z in zs]
        w_lo = 0.0 if min(zs) < 0 < max(zs) else min(ws)
        w_hi = max(ws)
        w_pt = (pb.value / pse.value) ** 2
        if pw is not None:
            add("logistic.wald", pw, w_pt, w_lo, w_hi,
                f"(B/SE)^2 in [{w_lo:.3f}, {w_hi:.3f}]; {implied}".rstrip("; "))
        if pp is not None:
            add("logistic.p_from_b_se", pp, float(stats.chi2.sf(w_pt, 1)),
                float(stats.chi2.sf(w_hi, 1)), float(stats.chi2.sf(w_lo, 1)), implied)
    if pw is not None and pp is not None:
        add("logistic.p_from_printed_wald", pp, float(stats.chi2.sf(pw.value, 1)),
            float(stats.chi2.sf(pw.high, 1)), float(stats.chi2.sf(max(pw.low, 0.0), 1)))
    if pb is not None and por is not None:
        lo, hi = math.exp(pb.low), math.exp(pb.high)
        ok = por.overlaps(lo, hi)
        note = ""
        if not ok:
            flipped = por.overlaps(math.exp(-pb.high), math.exp(-pb.low))
            note = (
                f"exp(-B) = {math.exp(-pb.value):.3f} matches: the sign of B is misprinted"
                if flipped
                else f"ln(OR) = {math.log(por.value):.4f}; {implied}".rstrip("; ")
            )
        out.append(_row(table, item, "logistic.odds_ratio", por.text, math.exp(pb.value), lo,
                        hi, "", "ok" if ok else "inconsistent", note))
    if pb is not None and pse is not None and (plo is not None or phi is not None):
        for printed, sign, name in ((plo, -1, "ci_low"), (phi, 1, "ci_high")):
            if printed is None:
                continue
            vals = [math.exp(bb + sign * Z975 * ss) for bb in (pb.low, pb.high)
                    for ss in (pse.low, pse.high)]
            rec = math.exp(pb.value + sign * Z975 * pse.value)
            ok = printed.overlaps(min(vals), max(vals))
            note = ""
            if not ok:
                flipped = [math.exp(-bb + sign * Z975 * ss) for bb in (pb.low, pb.high)
                           for ss in (pse.low, pse.high)]
                if printed.overlaps(min(flipped), max(flipped)):
                    note = "matches exp(-B ± 1.96 SE): the sign of B is misprinted"
                else:
                    note = implied
            out.append(_row(table, item, f"logistic.{name}", printed.text, rec, min(vals),
                            max(vals), "", "ok" if ok else "inconsistent", note))
    if por is not None and plo is not None and phi is not None and pb is None:
        # Only OR and CI printed (Xiong 2021): the OR must be the CI's geometric centre.
        centre = math.sqrt(plo.value * phi.value)
        c_lo = math.sqrt(plo.low * phi.low)
        c_hi = math.sqrt(plo.high * phi.high)
        add("logistic.or_vs_ci_centre", por, centre, c_lo, c_hi,
            "the OR is not the geometric mean of the printed CI")
        if pp is not None:
            se_ci = (math.log(phi.value) - math.log(plo.value)) / (2 * Z975)
            z = math.log(por.value) / se_ci
            pv = float(2 * stats.norm.sf(abs(z)))
            se_lo = (math.log(phi.low) - math.log(plo.high)) / (2 * Z975)
            se_hi = (math.log(phi.high) - math.log(plo.low)) / (2 * Z975)
            zs = [math.log(o) / s for o in (por.low, por.high) for s in (se_lo, se_hi)]
            pvals = [float(2 * stats.norm.sf(abs(zz))) for zz in zs]
            add("logistic.p_from_or_ci", pp, pv, min(pvals), max(pvals),
                "P does not follow from the OR and its CI")
    return out


_VARIANT_NAME = {"pearson": "Pearson chi-square", "yates": "Yates' continuity correction",
                 "fisher": "Fisher's exact test", "student": "Student's t",
                 "welch": "Welch's t"}

_TABLE_COLUMNS = ["table", "item", "level", "test", "group1", "group2", "n1", "n2",
                  "statistic", "p", "b", "se", "wald", "or", "ci_low", "ci_high"]


def read_table_csv(path: str | Path) -> pd.DataFrame:
    """Read a printed-table CSV (every cell kept as the printed text)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except (OSError, pd.errors.ParserError) as exc:
        raise TableFormatError(f"{path}: cannot read as CSV ({exc})") from exc
    missing = [c for c in ("table", "item", "test") if c not in df.columns]
    if missing:
        raise TableFormatError(f"{path}: missing column(s) {', '.join(missing)}")
    for c in _TABLE_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    return df.apply(lambda col: col.str.strip())


def _opt_int(text: str, where: str) -> int | None:
    if text in ("", None):
        return None
    try:
        return int(float(text))
    except ValueError as exc:
        raise TableFormatError(f"{where}: group size {text!r} is not a number") from exc


def check_table(table: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Run every check on a printed-table CSV (see ``docs/check_table.md``).

    Parameters
    ----------
    table : DataFrame or path
        Rows as printed; ``chi2`` items span one row per category (same ``table`` and
        ``item``), the statistic and P value on any one of them.

    Returns
    -------
    DataFrame
        One row per check, columns :data:`CHECK_COLUMNS`; ``status`` is ``ok``,
        ``inconsistent`` or ``not_checkable``.
    """
    df = read_table_csv(table) if not isinstance(table, pd.DataFrame) else table.fillna("")
    rows: list[dict] = []
    order: list[tuple[str, str]] = []
    groups: dict[tuple[str, str], list[pd.Series]] = {}
    for _, r in df.iterrows():
        key = (r["table"], r["item"])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(r)
    for key in order:
        rs = groups[key]
        test = rs[0]["test"].lower()
        where = f"{key[0]} / {key[1]}"
        first = lambda col, rs=rs: next((x[col] for x in rs if x[col] != ""), "")  # noqa: E731
        try:
            if test == "t":
                n1, n2 = _opt_int(first("n1"), where), _opt_int(first("n2"), where)
                if n1 is None or n2 is None:
                    raise TableFormatError(f"{where}: t rows need n1 and n2")
                rows += check_t_test(key[0], key[1], rs[0]["group1"], n1, rs[0]["group2"], n2,
                                     first("statistic"), first("p"))
            elif test == "chi2":
                rows += check_chi2(key[0], key[1], [x["level"] for x in rs],
                                   [x["group1"] for x in rs], [x["group2"] for x in rs],
                                   first("statistic"), first("p"),
                                   _opt_int(first("n1"), where), _opt_int(first("n2"), where))
            elif test == "logistic":
                r = rs[0]
                rows += check_logistic_row(key[0], key[1], r["b"], r["se"], r["wald"], r["p"],
                                           r["or"], r["ci_low"], r["ci_high"])
            elif test == "wald_joint":
                rows.append(_row(key[0], key[1], "wald_joint", first("wald"), math.nan,
                                 math.nan, math.nan, "", "not_checkable",
                                 "a joint Wald test needs the coefficient covariance matrix"))
            else:
                raise TableFormatError(f"{where}: unknown test {test!r} (t, chi2, logistic, "
                                       "wald_joint)")
        except TableFormatError as exc:  # one unreadable item never costs the others
            msg = str(exc)
            msg = msg[len(where) + 2:] if msg.startswith(where + ": ") else msg
            rows.append(_row(key[0], key[1], f"{test or 'row'}.parse", "", math.nan, math.nan,
                             math.nan, "", "not_checkable", f"cannot be checked: {msg}"))
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def verdicts(results: pd.DataFrame) -> list[dict]:
    """One verdict per item: ``inconsistent`` when any check fails, ``not_checkable`` when no
    check could be made, else ``ok``; with the failing (or not checkable) checks under it.

    Percentage checks of a ``chi2`` item (item ``"Gender: Male"``) belong to the item
    (``"Gender"``).
    """
    out: list[dict] = []
    index: dict[tuple[str, str], dict] = {}
    items = {(t, i) for t, i, c in zip(results["table"], results["item"], results["check"],
                                       strict=True) if not str(c).startswith("percent.")}
    for r in results.to_dict("records"):
        key = (r["table"], r["item"])
        if str(r["check"]).startswith("percent."):
            base = [i for t, i in items if t == r["table"] and r["item"].startswith(i + ": ")]
            if base:
                key = (r["table"], max(base, key=len))
        if key not in index:
            index[key] = {"table": key[0], "item": key[1], "checks": []}
            out.append(index[key])
        index[key]["checks"].append(r)
    for v in out:
        st = [c["status"] for c in v["checks"]]
        v["verdict"] = ("inconsistent" if "inconsistent" in st else
                        "not_checkable" if all(s == "not_checkable" for s in st) else "ok")
        v["failing"] = [c for c in v["checks"] if c["status"] != "ok"]
    return out


def inconsistent(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`check_table` result whose status is ``inconsistent``."""
    return results[results["status"] == "inconsistent"]


def summarize(results: pd.DataFrame) -> dict[str, int]:
    """Counts of each status in a :func:`check_table` result."""
    return {k: int(v) for k, v in results["status"].value_counts().items()}
