"""Fisher's exact test for r x c tables (Freeman–Halton), exact or seeded Monte Carlo.

Under independence with both margins fixed, a table :math:`x` has the multivariate
hypergeometric probability

.. math:: P(x) = \\frac{\\prod_i R_i! \\prod_j C_j!}{N! \\prod_{ij} x_{ij}!}

and the two-sided P value is the sum of :math:`P(x)` over all tables with these margins that
are no more probable than the observed one (relative tolerance :math:`10^{-7}`, as R's
``fisher.test``). The tables are enumerated exactly when there are at most ``max_tables`` of
them (vectorised for r x 2 and 2 x c; recursive otherwise). Larger problems use a Monte Carlo
estimate from ``n_resamples`` random tables with the same margins (a seeded permutation of
the column labels): :math:`\\hat P = (1 + \\#\\{P(x^*) \\le P(x_{obs})\\})/(B + 1)` with
Monte Carlo standard error :math:`\\sqrt{\\hat P(1-\\hat P)/B}`. The same table and seed give
the same result, always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

__all__ = ["FisherResult", "fisher_exact_rxc"]

_REL_TOL = 1 + 1e-7


@dataclass(frozen=True)
class FisherResult:
    """P value of the Freeman–Halton test and how it was obtained.

    ``method`` is ``"exact"`` (``n_tables`` enumerated) or ``"monte_carlo"`` (``seed``,
    ``n_resamples``, ``mc_se``); :attr:`label` says so in words.
    """

    pvalue: float
    method: str
    n_tables: int | None = None
    seed: int | None = None
    n_resamples: int | None = None
    mc_se: float | None = None

    @property
    def label(self) -> str:
        if self.method == "exact":
            return f"exact (complete enumeration of {self.n_tables} tables)"
        return (f"Monte Carlo (seed {self.seed}, {self.n_resamples} resamples, MC SE "
                f"{self.mc_se:.4f})")


def _log_cells(x: np.ndarray) -> np.ndarray:
    return -gammaln(np.asarray(x, float) + 1)


def _count_rx2(rows: np.ndarray, c1: int, cap: int) -> int:
    """Number of r x 2 tables with row sums ``rows`` and first-column total ``c1`` (capped)."""
    ways = np.zeros(c1 + 1)
    ways[0] = 1.0
    for r in rows:
        cs = np.concatenate([[0.0], np.cumsum(ways)])
        lo = np.maximum(np.arange(c1 + 1) - int(r), 0)
        ways = np.minimum(cs[np.arange(c1 + 1) + 1] - cs[lo], float(cap) * 10)
    return int(min(ways[c1], cap + 1))


def _exact_rx2(rows: np.ndarray, c1: int,
               obs_lp: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Log-kernels (sum of -log x!) of every r x 2 table with these margins, the mask of
    those no more probable than the observed one, and their number.

    Row by row, each partial table only takes the first-column counts that can still reach
    the total ``c1``, so memory stays proportional to the number of tables.
    """
    remaining = np.concatenate([np.cumsum(rows[::-1])[::-1][1:], [0]])
    s = np.zeros(1, dtype=np.int64)
    lp = np.zeros(1)
    for r, rest in zip(rows, remaining, strict=True):
        lo = np.maximum(0, c1 - s - int(rest))
        hi = np.minimum(int(r), c1 - s)
        length = hi - lo + 1
        ok = length > 0
        s, lp, lo, length = s[ok], lp[ok], lo[ok], length[ok]
        start = np.repeat(np.cumsum(length) - length, length)
        x = np.repeat(lo, length) + (np.arange(int(length.sum())) - start)
        s = np.repeat(s, length) + x
        lp = np.repeat(lp, length) + _log_cells(x) + _log_cells(int(r) - x)
    keep = lp <= obs_lp + math.log(_REL_TOL)
    return lp, keep, len(lp)


def _enumerate_rxc(rows: list[int], cols: list[int], cap: int) -> list[float] | None:
    """log P-kernels (sum of -log x!) of every r x c table with these margins, or None when
    there are more than ``cap``."""
    out: list[float] = []
    r, c = len(rows), len(cols)

    def fill_col(j: int, rem_rows: list[int], acc: float) -> bool:
        if j == c - 1:  # the last column is forced
            out.append(acc + float(_log_cells(np.array(rem_rows)).sum()))
            return len(out) <= cap
        return fill_cell(j, 0, cols[j], rem_rows, list(rem_rows), acc)

    def fill_cell(j: int, i: int, left: int, rem_rows: list[int], new_rem: list[int],
                  acc: float) -> bool:
        if i == r - 1:
            if left > rem_rows[i]:
                return True
            new_rem[i] = rem_rows[i] - left
            ok = fill_col(j + 1, list(new_rem), acc - math.lgamma(left + 1))
            new_rem[i] = rem_rows[i]
            return ok
        cap_after = sum(rem_rows[i + 1:])
        for x in range(max(0, left - cap_after), min(rem_rows[i], left) + 1):
            new_rem[i] = rem_rows[i] - x
            if not fill_cell(j, i + 1, left - x, rem_rows, new_rem, acc - math.lgamma(x + 1)):
                return False
        new_rem[i] = rem_rows[i]
        return True

    return out if fill_col(0, list(rows), 0.0) else None


def fisher_exact_rxc(table, *, max_tables: int = 2_000_000, n_resamples: int = 10_000,
                     seed: int = 0) -> FisherResult:
    """Two-sided Fisher–Freeman–Halton test of an r x c table of counts.

    Examples
    --------
    >>> r = fisher_exact_rxc([[2, 0], [1, 2], [0, 2]])
    >>> round(r.pvalue, 6), r.method
    (0.314286, 'exact')
    """
    t = np.asarray(table, dtype=np.int64)
    if t.ndim != 2 or (t < 0).any():
        raise ValueError(f"table must be a 2-D array of non-negative counts; got {t.tolist()}")
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return FisherResult(1.0, "exact", n_tables=1)
    if t.shape[1] > 2 and t.shape[0] == 2:
        t = t.T
    rows, cols = t.sum(axis=1), t.sum(axis=0)
    n = int(t.sum())
    const = float(gammaln(rows + 1).sum() + gammaln(cols + 1).sum() - gammaln(n + 1))
    obs_lp = float(_log_cells(t).sum())
    if t.shape[1] == 2:
        if _count_rx2(rows, int(cols[0]), max_tables) <= max_tables:
            lp, keep, count = _exact_rx2(rows, int(cols[0]), obs_lp)
            p = float(np.exp(lp[keep] + const).sum())
            return FisherResult(min(p, 1.0), "exact", n_tables=count)
    else:
        lps = _enumerate_rxc([int(v) for v in rows], [int(v) for v in cols],
                             min(max_tables, 200_000))
        if lps is not None:
            a = np.array(lps)
            p = float(np.exp(a[a <= obs_lp + math.log(_REL_TOL)] + const).sum())
            return FisherResult(min(p, 1.0), "exact", n_tables=len(a))
    # Monte Carlo: permute the column labels of the n subjects
    rng = np.random.default_rng(seed)
    row_lab = np.repeat(np.arange(t.shape[0]), rows)
    col_lab = np.repeat(np.arange(t.shape[1]), cols)
    hits = 0
    done = 0
    chunk = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        perm = rng.permuted(np.broadcast_to(col_lab, (b, n)), axis=1)
        cells = row_lab[None, :] * t.shape[1] + perm
        counts = np.stack([np.bincount(c, minlength=t.size) for c in cells])
        sim_lp = _log_cells(counts).sum(axis=1)
        hits += int((sim_lp <= obs_lp + math.log(_REL_TOL)).sum())
        done += b
    p = (1 + hits) / (n_resamples + 1)
    return FisherResult(p, "monte_carlo", seed=seed, n_resamples=n_resamples,
                        mc_se=math.sqrt(p * (1 - p) / n_resamples))
