"""Measurement uncertainty from landmark error: every number with its standard uncertainty.

Every measurement is a function of the landmarks a reader placed, and every landmark is
placed with error. Given a *landmark error model* — the standard deviation of one reader's
placement of one point, in mm (or px), isotropic or split into the components along and
across the endplate the point lies on — this module gives each single-film and longitudinal
measurement its standard uncertainty ``u`` and a 95 % interval ``value -/+ 1.96 u``.

Method: first-order (delta-method) propagation through the measurement's own function.
For a measurement ``f`` of the landmark coordinates ``x`` (every point's ``(row, col)`` in
pixels of the film)::

    u(f)^2 = sum_p  J_p  Sigma_p  J_p^T          J_p = df/dx_p  (1 x 2),  Sigma_p (2 x 2, px^2)

``J`` is the Jacobian of the registered function itself (the one :func:`measure_film` and
:func:`measure_longitudinal` call), by central differences with a step of ``1e-3`` px: a
numerical derivative of the exact formula, so it can never drift from what is reported.
Points are independent (one reader's placement errors of different points are taken as
uncorrelated); for a longitudinal measurement the films are independent too.

``Sigma_p`` in mm is ``sd_along^2 e e^T + sd_across^2 n n^T``, ``e`` the unit direction of the
point's endplate (``Ps -> As`` for the superior points ``As, Ms, Ps``; ``Pi -> Ai`` for the
inferior ones; ``SL -> SR`` / ``IL -> IR`` on AP films) and ``n`` its normal, both in mm;
it is converted to px with the film's spacing ``D = diag(row_mm, col_mm)``:
``Sigma_px = D^-1 Sigma_mm D^-1``. An isotropic model has ``sd_along = sd_across``. A model in
mm cannot be applied to an uncalibrated film (no spacing): those values get no uncertainty
and say why.

First order is accurate when the landmark SD is small against the distances the measurement
divides by (vertebral heights and endplate widths of 20-40 mm against SDs of about 1 mm);
:func:`monte_carlo_film` re-reads a film many times with simulated landmark noise to check it
(the tests require agreement within 5 % on every sample film).

Threshold flags get a third state when an uncertainty is known (:func:`threshold_state`):
``"uncertain"`` when ``|value - threshold| < 1.96 u``, else ``"true"`` / ``"false"``.

Pure core: numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.measurements.api import (
    FilmMeasurements,
    measure_film,
    measure_longitudinal,
)
from spine_measure.measurements.longitudinal import LongitudinalOptions
from spine_measure.measurements.registry import REGISTRY, Result

__all__ = [
    "FIRST_ORDER_METHOD",
    "FilmUncertainty",
    "LandmarkErrorModel",
    "LongitudinalUncertainty",
    "MeasurementUncertainty",
    "THRESHOLD_RULES",
    "Z95",
    "COMPRESSION_THRESHOLD_PCT",
    "film_flag_states",
    "film_result_u",
    "film_uncertainty",
    "uncertainty_columns",
    "uncertainty_fields",
    "longitudinal_uncertainty",
    "MonteCarloCheck",
    "monte_carlo_check",
    "monte_carlo_film",
    "monte_carlo_longitudinal",
    "point_covariances",
    "recompression_state",
    "refracture_state",
    "threshold_state",
]

#: Two-sided 95 % normal quantile of the intervals and of the ``uncertain`` rule.
Z95 = 1.959963984540054

#: Central-difference step of the Jacobian, px.
STEP_PX = 1e-3

FIRST_ORDER_METHOD = ("first-order propagation: numerical Jacobian (central differences, "
                      f"step {STEP_PX:g} px) of the measurement function")

#: Measurements whose definition *selects* among candidates by their values: the coronal Cobb
#: angles take the most tilted pair of endplates, and a re-reading may pick another pair.
#: First order holds the selection fixed and overstates their SD by about 5 % at a 1 mm
#: landmark SD on the sample AP film, so their ``u`` is a seeded Monte Carlo instead.
SELECTION_MEASUREMENTS = frozenset({"coronal_cobb_angle", "coronal_cobb_angle_midline"})

#: Re-readings and seed of the Monte Carlo used for :data:`SELECTION_MEASUREMENTS`.
MC_READINGS = 4000
MC_SEED = 20240607
MC_METHOD = (f"Monte Carlo: SD of {MC_READINGS} simulated re-readings (seed {MC_SEED}); the "
             "end vertebrae are re-selected on each")

_NUMERIC = ("length", "angle", "ratio")
_SUPERIOR = {"As": ("Ps", "As"), "Ms": ("Ps", "As"), "Ps": ("Ps", "As"),
             "Ai": ("Pi", "Ai"), "Mi": ("Pi", "Ai"), "Pi": ("Pi", "Ai"),
             "SL": ("SL", "SR"), "SR": ("SL", "SR"), "IL": ("IL", "IR"), "IR": ("IL", "IR")}


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class LandmarkErrorModel:
    """Standard deviation of one reader's placement of one landmark.

    Parameters
    ----------
    sd_along, sd_across : float
        SD of the displacement along the point's endplate and across it (perpendicular),
        in ``unit``. Equal for an isotropic model (:meth:`isotropic`): then each coordinate
        has this SD.
    unit : {"mm", "px"}
        ``"mm"`` needs a calibrated film; ``"px"`` applies to any film as it is.
    per_point : mapping, optional
        Point name (``"As"``, ``"Pi"``, ...) -> ``(sd_along, sd_across)`` for points that
        differ from the default (e.g. estimated from a reliability run).
    source : str
        Where the numbers come from (``"--uncertainty 1.0"``, a reliability folder, ...);
        copied into every result.

    Raises
    ------
    ValueError
        A SD is negative or not finite, or the unit is not mm or px.
    """

    sd_along: float
    sd_across: float
    unit: str = "mm"
    per_point: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.unit not in ("mm", "px"):
            raise ValueError(f'Argument "unit" must be "mm" or "px"; got {self.unit!r}')
        for name, v in (("sd_along", self.sd_along), ("sd_across", self.sd_across)):
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f'Argument "{name}" must be a finite number >= 0; got {v!r}')
        clean = {}
        for p, pair in dict(self.per_point).items():
            if p not in _SUPERIOR:
                raise ValueError(f'per_point: "{p}" is not a landmark name')
            al, ac = (float(x) for x in pair)
            if not (math.isfinite(al) and math.isfinite(ac) and al >= 0 and ac >= 0):
                raise ValueError(f'per_point["{p}"] must be two finite numbers >= 0; '
                                 f"got {pair!r}")
            clean[p] = (al, ac)
        object.__setattr__(self, "per_point", clean)
        object.__setattr__(self, "sd_along", float(self.sd_along))
        object.__setattr__(self, "sd_across", float(self.sd_across))

    @classmethod
    def isotropic(cls, sd: float, *, unit: str = "mm", source: str = "") -> LandmarkErrorModel:
        """Every coordinate of every point has SD ``sd`` (``unit``)."""
        return cls(sd, sd, unit, {}, source or f"isotropic landmark SD {sd:g} {unit}")

    def sd_of(self, point: str) -> tuple[float, float]:
        """``(sd_along, sd_across)`` of ``point``."""
        return self.per_point.get(point, (self.sd_along, self.sd_across))

    def describe(self) -> str:
        """One line: the SDs, the unit and the source."""
        if self.sd_along == self.sd_across and not self.per_point:
            core = f"landmark SD {self.sd_along:.3g} {self.unit} per coordinate"
        else:
            core = (f"landmark SD {self.sd_along:.3g} {self.unit} along / "
                    f"{self.sd_across:.3g} {self.unit} across the endplate"
                    + (f", {len(self.per_point)} point(s) with their own SDs"
                       if self.per_point else ""))
        return f"{core} ({self.source})" if self.source else core


def point_covariances(landmarks: SpineLandmarks, model: LandmarkErrorModel,
                      spacing: tuple[float, float] | None
                      ) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Every point of a film and its ``2 x 2`` covariance in px^2 (``(row, col)`` order).

    Returns
    -------
    points : list of (level, point name)
    cov : array, shape (n_points, 2, 2)

    Raises
    ------
    ValueError
        The model is in mm and the film has no spacing.
    """
    if model.unit == "mm" and spacing is None:
        raise ValueError("the film is uncalibrated (lengths in px): a landmark SD in mm "
                         "cannot be converted to px")
    d = np.array(spacing if model.unit == "mm" else (1.0, 1.0), float)
    pts: list[tuple[str, str]] = []
    covs = []
    for v in landmarks:
        for name in v.points:
            al, ac = model.sd_of(name)
            a, b = _SUPERIOR[name]
            if v.has(a) and v.has(b) and a != b:
                e = (v.point(b) - v.point(a)) * d        # endplate direction, model units
                norm = float(np.hypot(*e))
                e = e / norm if norm > 0 else np.array([0.0, 1.0])
            else:  # S1 has As, Ps only: both on the superior endplate, so never here
                e = np.array([0.0, 1.0])
            n = np.array([-e[1], e[0]])
            cov_m = al ** 2 * np.outer(e, e) + ac ** 2 * np.outer(n, n)
            covs.append(cov_m / np.outer(d, d))
            pts.append((v.level, name))
    return pts, np.array(covs).reshape(-1, 2, 2)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MeasurementUncertainty:
    """A measured value with its standard uncertainty and 95 % interval.

    ``u`` is NaN when the value is missing or the derivative is undefined (a perturbed
    landmark makes the measurement undefined, or the film is uncalibrated with a model in
    mm); ``reason`` says why.
    """

    name: str
    level: str | None
    column: str
    value: float
    unit: str
    u: float
    ci_low: float
    ci_high: float
    method: str = FIRST_ORDER_METHOD
    reason: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return math.isfinite(self.u)


def _make(r: Result, level: str | None, u: float, why: str | None,
          method: str = FIRST_ORDER_METHOD) -> MeasurementUncertainty:
    v = float(r)
    if not r.ok:
        why = r.reason or "no value"
        u = math.nan
    if not math.isfinite(u):
        return MeasurementUncertainty(r.name, level, r.column, v, r.unit, math.nan, math.nan,
                                      math.nan, method, why or "uncertainty undefined",
                                      dict(r.detail))
    return MeasurementUncertainty(r.name, level, r.column, v, r.unit, u, v - Z95 * u,
                                  v + Z95 * u, method, None, dict(r.detail))


def _numeric_results(fm: FilmMeasurements) -> list[tuple[str | None, int, Result]]:
    """(level, index among the film results or -1, result) of every numeric result."""
    out: list[tuple[str | None, int, Result]] = []
    for level, per in fm.vertebrae.items():
        for r in per.values():
            if REGISTRY[r.name].kind in _NUMERIC:
                out.append((level, -1, r))
    for i, r in enumerate(fm.film):
        if REGISTRY[r.name].kind in _NUMERIC:
            out.append((None, i, r))
    return out


def _values(fm: FilmMeasurements, keys: Sequence[tuple[str | None, int, Result]]) -> np.ndarray:
    out = np.empty(len(keys))
    for j, (level, i, r) in enumerate(keys):
        if level is not None:
            res = fm.vertebrae.get(level, {}).get(r.name)
            out[j] = float(res) if res is not None else math.nan
        else:
            out[j] = float(fm.film[i]) if i < len(fm.film) else math.nan
    return out


def _moved(landmarks: SpineLandmarks, level: str, point: str, axis: int,
           delta: float) -> SpineLandmarks:
    v = landmarks[level]
    pts = {n: tuple(p) for n, p in v.points.items()}
    p = list(pts[point])
    p[axis] += delta
    pts[point] = (p[0], p[1])
    return landmarks.replace(level, dataclasses.replace(v, points=pts))


def _remeasure(fm: FilmMeasurements) -> Callable[[SpineLandmarks], FilmMeasurements]:
    def run(lm: SpineLandmarks) -> FilmMeasurements:
        return measure_film(lm, spacing=fm.spacing, calibration_source=fm.calibration_source,
                            options=fm.options, metadata=fm.metadata)
    return run


def _jacobian(fm: FilmMeasurements, points: Sequence[tuple[str, str]],
              evaluate: Callable[[FilmMeasurements], np.ndarray]) -> np.ndarray:
    """d evaluate / d (row, col) of every point: shape (n_outputs, n_points, 2)."""
    remeasure = _remeasure(fm)
    cols = []
    for level, name in points:
        for axis in (0, 1):
            hi = evaluate(remeasure(_moved(fm.landmarks, level, name, axis, STEP_PX)))
            lo = evaluate(remeasure(_moved(fm.landmarks, level, name, axis, -STEP_PX)))
            cols.append((hi - lo) / (2 * STEP_PX))
    if not cols:
        return np.zeros((len(evaluate(fm)), 0, 2))
    return np.array(cols).T.reshape(-1, len(points), 2)


def _propagate(jac: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(np.einsum("mpi,pij,mpj->m", jac, cov, jac), 0.0))


@dataclass(frozen=True)
class FilmUncertainty:
    """Every numeric single-film measurement of one film with its uncertainty.

    ``items`` maps ``(level, name)`` (``level`` None for film-level results; several Cobb
    pairs get ``name#1``, ``name#2`` ...) to :class:`MeasurementUncertainty`.
    """

    model: LandmarkErrorModel
    measurements: FilmMeasurements
    items: Mapping[tuple[str | None, str], MeasurementUncertainty]
    reason: str | None = None

    def get(self, level: str | None, name: str) -> MeasurementUncertainty:
        return self.items[(level, name)]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items.values())


def _film_key(level: str | None, i: int, r: Result, fm: FilmMeasurements) -> tuple[Any, str]:
    if level is not None:
        return level, r.name
    same = [k for k, x in enumerate(fm.film) if x.name == r.name]
    return None, r.name if len(same) == 1 else f"{r.name}#{same.index(i) + 1}"


def film_result_u(fu: FilmUncertainty) -> list[float | None]:
    """``u`` of each of ``fu.measurements.film`` in order (``None`` where it has none)."""
    fm = fu.measurements
    out: list[float | None] = []
    for i, r in enumerate(fm.film):
        it = fu.items.get(_film_key(None, i, r, fm)) if REGISTRY[r.name].kind in _NUMERIC \
            else None
        out.append(it.u if it is not None and it.ok else None)
    return out


def film_uncertainty(measurements: FilmMeasurements, model: LandmarkErrorModel
                     ) -> FilmUncertainty:
    """Standard uncertainty of every numeric measurement of one measured film.

    Parameters
    ----------
    measurements : FilmMeasurements
        From :func:`~spine_measure.measurements.measure_film` (or ``measure_annotation``):
        its landmarks, spacing and options are re-used, so the uncertainty is that of exactly
        the reported numbers.
    model : LandmarkErrorModel

    Returns
    -------
    FilmUncertainty

    Examples
    --------
    >>> from spine_measure.landmarks import SpineLandmarks, Vertebra
    >>> box = lambda lv, top, h: Vertebra(lv, "lateral", {
    ...     "As": (top, 40), "Ai": (top + h, 40), "Ps": (top, 0), "Pi": (top + h, 0)})
    >>> spine = SpineLandmarks("lateral", (box("T12", 0, 25), box("L1", 30, 20),
    ...                                    box("L2", 55, 25)))
    >>> fm = measure_film(spine, spacing=(1.0, 1.0), calibration_source="pixel_spacing")
    >>> fu = film_uncertainty(fm, LandmarkErrorModel.isotropic(1.0))
    >>> round(fu.get("L1", "ha").u, 4)   # two points, each 1 mm along the height: sqrt(2)
    1.4142
    """
    fm = measurements
    keys = _numeric_results(fm)
    try:
        points, cov = point_covariances(fm.landmarks, model, fm.spacing)
    except ValueError as exc:
        items = {_film_key(lv, i, r, fm): _make(r, lv, math.nan, str(exc))
                 for lv, i, r in keys}
        return FilmUncertainty(model, fm, items, str(exc))
    jac = _jacobian(fm, points, lambda m: _values(m, keys))
    u = _propagate(jac, cov)
    bad = ~np.isfinite(jac).all(axis=(1, 2))
    methods = [FIRST_ORDER_METHOD] * len(keys)
    if any(r.name in SELECTION_MEASUREMENTS and r.ok for _, _, r in keys):
        _, _, _, vals = _monte_carlo(fm, model, MC_READINGS, MC_SEED, None)
        for j, (_, _, r) in enumerate(keys):
            if r.name in SELECTION_MEASUREMENTS:
                col = vals[:, j][np.isfinite(vals[:, j])]
                u[j] = float(np.std(col, ddof=1)) if col.size > 1 else math.nan
                bad[j] = col.size < 0.99 * MC_READINGS
                methods[j] = MC_METHOD
    items = {}
    for j, (lv, i, r) in enumerate(keys):
        why = ("undefined: moving a landmark by a fraction of a pixel makes the value "
               "undefined" if bad[j] else None)
        items[_film_key(lv, i, r, fm)] = _make(r, lv, math.nan if bad[j] else float(u[j]),
                                               why, methods[j])
    return FilmUncertainty(model, fm, items)


# --------------------------------------------------------------------------- longitudinal


@dataclass(frozen=True)
class LongitudinalUncertainty:
    """Every numeric longitudinal measurement of one treated level with its uncertainty,
    and the threshold flags in three states (:func:`recompression_state`,
    :func:`refracture_state`)."""

    level: str
    model: LandmarkErrorModel
    items: Mapping[str, MeasurementUncertainty]
    flags: Mapping[str, str]

    def __getitem__(self, name: str) -> MeasurementUncertainty:
        return self.items[name]


def _longitudinal_run(films: Sequence[FilmMeasurements | None], level: str | None,
                      oedema: bool | None, opts: LongitudinalOptions) -> Any:
    return measure_longitudinal(films[0], films[1], [f for f in films[2:] if f is not None],
                                level=level, bone_marrow_oedema=oedema, options=opts)


def _longitudinal_jacobians(films: Sequence[FilmMeasurements | None],
                            model: LandmarkErrorModel, level: str | None,
                            oedema: bool | None, opts: LongitudinalOptions
                            ) -> tuple[Any, list[str], list[tuple[int, list[tuple[str, str]],
                                                                  np.ndarray, np.ndarray]],
                                       str | None]:
    """Base result, numeric names, and per film ``(index, points, cov, jacobian)``."""
    base = _longitudinal_run(films, level, oedema, opts)
    names = [n for n, r in base.results.items() if REGISTRY[n].kind in _NUMERIC]

    def vec(res: Any) -> np.ndarray:
        return np.array([float(res.results[n]) for n in names])

    parts = []
    why = None
    for k, fm in enumerate(films):
        if fm is None:
            continue
        try:
            points, cov = point_covariances(fm.landmarks, model, fm.spacing)
        except ValueError as exc:
            why = str(exc)
            continue

        def evaluate(m: FilmMeasurements, k: int = k) -> np.ndarray:
            fs = list(films)
            fs[k] = m
            return vec(_longitudinal_run(fs, level, oedema, opts))

        parts.append((k, points, cov, _jacobian(fm, points, evaluate)))
    return base, names, parts, why


def monte_carlo_longitudinal(preop: FilmMeasurements | None,
                             postop: FilmMeasurements | None,
                             followups: Sequence[FilmMeasurements] = (), *,
                             model: LandmarkErrorModel, n: int = 500, seed: int = 20240607,
                             level: str | None = None, bone_marrow_oedema: bool | None = None,
                             options: LongitudinalOptions | None = None
                             ) -> MonteCarloCheck:
    """Re-read every film of a series ``n`` times (seeded) and compare the SD of each
    longitudinal measurement with :func:`longitudinal_uncertainty` (plain and
    control-variate Monte Carlo, as :class:`MonteCarloCheck`)."""
    opts = options or LongitudinalOptions()
    films = [preop, postop, *followups]
    base, names, parts, why = _longitudinal_jacobians(films, model, level,
                                                      bone_marrow_oedema, opts)
    if why is not None:
        raise ValueError(why)
    rng = np.random.default_rng(int(seed))
    noises = {}
    for k, points, cov, _ in parts:
        chol = np.array([np.linalg.cholesky(c + 1e-18 * np.eye(2)) for c in cov])
        noises[k] = np.einsum("pij,npj->npi", chol,
                              rng.standard_normal((int(n), len(points), 2)))
    vals = np.empty((int(n), len(names)))
    lin = np.zeros((int(n), len(names)))
    for k, _, _, jac in parts:
        lin += np.einsum("mpi,npi->nm", np.where(np.isfinite(jac), jac, 0.0), noises[k])
    for t in range(int(n)):
        fs: list[FilmMeasurements | None] = list(films)
        for k, points, _, _ in parts:
            fm = films[k]
            assert fm is not None
            moved = {}
            for j, (lv, name) in enumerate(points):
                moved.setdefault(lv, {})[name] = (fm.landmarks[lv].points[name][0]
                                                  + noises[k][t, j, 0],
                                                  fm.landmarks[lv].points[name][1]
                                                  + noises[k][t, j, 1])
            lm = SpineLandmarks(fm.landmarks.view, tuple(
                Vertebra(v.level, v.view, moved[v.level], v.fractured, v.treated, v.excluded)
                for v in fm.landmarks))
            fs[k] = _remeasure(fm)(lm)
        res = _longitudinal_run(fs, level, bone_marrow_oedema, opts)
        vals[t] = [float(res.results[m]) for m in names]
    lu = longitudinal_uncertainty(preop, postop, followups, model=model, level=level,
                                  bone_marrow_oedema=bone_marrow_oedema, options=opts)
    u = np.array([lu[m].u for m in names])
    with np.errstate(invalid="ignore"):
        s2 = np.nanvar(vals, axis=0, ddof=1)
        l2 = np.var(lin, axis=0, ddof=1)
    return MonteCarloCheck([(base.level, m) for m in names], u, np.sqrt(s2),
                           np.sqrt(np.maximum(s2 - l2 + u ** 2, 0.0)), int(n), int(seed))


def longitudinal_uncertainty(preop: FilmMeasurements | None, postop: FilmMeasurements | None,
                             followups: Sequence[FilmMeasurements] = (), *,
                             model: LandmarkErrorModel, level: str | None = None,
                             bone_marrow_oedema: bool | None = None,
                             options: LongitudinalOptions | None = None
                             ) -> LongitudinalUncertainty:
    """Uncertainty of every numeric longitudinal measurement of one treated level.

    Arguments as :func:`~spine_measure.measurements.measure_longitudinal`. Every landmark of
    every film is perturbed (films read independently), each film is re-measured and the
    longitudinal measurements recomputed: the Jacobian covers the whole chain.
    """
    opts = options or LongitudinalOptions()
    base, names, parts, why = _longitudinal_jacobians(
        [preop, postop, *followups], model, level, bone_marrow_oedema, opts)
    var = np.zeros(len(names))
    bad = np.zeros(len(names), bool) | (why is not None)
    for _, _, cov, jac in parts:
        bad |= ~np.isfinite(jac).all(axis=(1, 2))
        jac = np.where(np.isfinite(jac), jac, 0.0)
        var += np.einsum("mpi,pij,mpj->m", jac, cov, jac)
    items = {}
    for j, n in enumerate(names):
        reason = why or ("undefined: moving a landmark by a fraction of a pixel makes "
                         "the value undefined" if bad[j] else None)
        items[n] = _make(base.results[n], base.level,
                         math.nan if bad[j] else math.sqrt(max(var[j], 0.0)), reason)
    flags = {
        "recompression": recompression_state(items.get("height_loss_pct"),
                                             items.get("kyphosis_progression"), opts),
        "refracture": refracture_state(items.get("compression_rate_increase"),
                                       bone_marrow_oedema, opts),
    }
    return LongitudinalUncertainty(base.level, model, items, flags)


# --------------------------------------------------------------------------- thresholds

#: The threshold flags that get a third state, with the measurement each thresholds.
THRESHOLD_RULES: dict[str, tuple[str, str, float]] = {
    # flag component: (measurement, comparison, default threshold)
    "recompression (height loss)": ("height_loss_pct", ">=", 15.0),
    "recompression (kyphosis progression)": ("kyphosis_progression", ">=", 10.0),
    "refracture (compression rate increase)": ("compression_rate_increase", ">=", 15.0),
    "vertebral compression (Zeng 2025)": ("compression_pct", ">=", 38.5),
    "degenerative scoliosis (coronal Cobb)": ("coronal_cobb_angle", ">=", 10.0),
}


def threshold_state(value: float, u: float | None, threshold: float, *,
                    z: float = Z95) -> str:
    """``"true"``, ``"false"`` or ``"uncertain"`` for ``value >= threshold``.

    Rule: ``"uncertain"`` when ``u`` is known and ``|value - threshold| < z u`` (the 95 %
    interval of the value contains the threshold); otherwise the plain comparison. Without an
    uncertainty (``u`` None or NaN) the plain comparison; a missing value gives
    ``"unknown"``.

    >>> threshold_state(9.0, 0.8, 10.0), threshold_state(9.0, 0.4, 10.0)
    ('uncertain', 'false')
    """
    if value is None or not math.isfinite(value):
        return "unknown"
    if u is not None and math.isfinite(u) and abs(value - threshold) < z * u:
        return "uncertain"
    return "true" if value >= threshold else "false"


def _state(m: MeasurementUncertainty | None, threshold: float) -> str:
    if m is None:
        return "unknown"
    return threshold_state(m.value, m.u if m.ok else None, threshold)


def recompression_state(height_loss: MeasurementUncertainty | None,
                        kyphosis_progression: MeasurementUncertainty | None,
                        options: LongitudinalOptions | None = None) -> str:
    """Recompression (height loss >= 15 % or kyphosis progression >= 10 deg) in three
    states: ``"true"`` when either criterion is true, ``"false"`` when both are false,
    ``"uncertain"`` when neither is true and one is uncertain; ``"unknown"`` otherwise."""
    o = options or LongitudinalOptions()
    states = [_state(height_loss, o.height_loss_threshold_pct),
              _state(kyphosis_progression, o.kyphosis_threshold_deg)]
    if "true" in states:
        return "true"
    if "uncertain" in states:
        return "uncertain"
    return "false" if states == ["false", "false"] else "unknown"


def refracture_state(cri: MeasurementUncertainty | None, bone_marrow_oedema: bool | None,
                     options: LongitudinalOptions | None = None) -> str:
    """Refracture (compression rate increase >= 15 % and bone marrow oedema) in three
    states: oedema absent gives ``"false"``, unknown oedema ``"unknown"``; with oedema the
    state of the compression rate increase."""
    o = options or LongitudinalOptions()
    if bone_marrow_oedema is False:
        return "false"
    s = _state(cri, o.refracture_cri_threshold_pct)
    if bone_marrow_oedema is None:
        return "false" if s == "false" else "unknown"
    return s


#: Vertebral compression threshold of Zeng 2025 (percent).
COMPRESSION_THRESHOLD_PCT = 38.5


def film_flag_states(fu: FilmUncertainty) -> dict[str | None, dict[str, str]]:
    """The single-film threshold flags in three states, per level (``None``: the film).

    * ``compression_ge_38_5_state`` per vertebra: ``compression_pct >= 38.5`` (Zeng 2025);
    * ``degenerative_scoliosis_state`` per AP film: ``coronal_cobb_angle >=`` the film's
      ``scoliosis_threshold_deg`` (default 10).
    """
    out: dict[str | None, dict[str, str]] = {}
    for (level, name), it in fu.items.items():
        if level is not None and name == "compression_pct":
            out.setdefault(level, {})["compression_ge_38_5_state"] = _state(
                it, COMPRESSION_THRESHOLD_PCT)
        elif level is None and name == "coronal_cobb_angle":
            out.setdefault(None, {})["degenerative_scoliosis_state"] = _state(
                it, fu.measurements.options.scoliosis_threshold_deg)
    return out


def uncertainty_fields(it: MeasurementUncertainty) -> dict[str, Any]:
    """The fields a record gets for one measurement: ``u``, ``ci95_low``, ``ci95_high``
    (``None`` when undefined), ``uncertainty_method`` and ``uncertainty_reason``."""
    def num(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return {"u": num(it.u), "ci95_low": num(it.ci_low), "ci95_high": num(it.ci_high),
            "uncertainty_method": it.method if it.ok else "",
            "uncertainty_reason": it.reason or ""}


def uncertainty_columns(fu: FilmUncertainty) -> dict[str | None, dict[str, Any]]:
    """Wide-table columns per level (``None``: the film): ``<column>_u`` for every numeric
    measurement (empty when undefined) and the three-state flags of
    :func:`film_flag_states`."""
    out: dict[str | None, dict[str, Any]] = {}
    for (level, _), it in fu.items.items():
        out.setdefault(level, {})[f"{it.column}_u"] = it.u if it.ok else None
    for level, states in film_flag_states(fu).items():
        out.setdefault(level, {}).update(states)
    return out


# --------------------------------------------------------------------------- Monte Carlo


def _monte_carlo(fm: FilmMeasurements, model: LandmarkErrorModel, n: int, seed: int,
                 truth: SpineLandmarks | None
                 ) -> tuple[list[tuple[str | None, int, Result]], list[tuple[str, str]],
                            np.ndarray, np.ndarray]:
    base = truth if truth is not None else fm.landmarks
    keys = _numeric_results(fm)
    points, cov = point_covariances(base, model, fm.spacing)
    chol = np.array([np.linalg.cholesky(c + 1e-18 * np.eye(2)) for c in cov]).reshape(-1, 2, 2)
    rng = np.random.default_rng(int(seed))
    draws = rng.standard_normal((int(n), len(points), 2))
    noise = np.einsum("pij,npj->npi", chol, draws)
    # simulated re-readings are measured without the plausibility refusal: the error model,
    # not a reader, moved the points (a large SD can cross a body's endplates)
    remeasure = _remeasure(dataclasses.replace(
        fm, options=dataclasses.replace(fm.options, check_plausibility=False)))
    index = {p: k for k, p in enumerate(points)}
    out = np.empty((int(n), len(keys)))
    for t in range(int(n)):
        verts = []
        for v in base:
            pts = {name: (v.points[name][0] + noise[t, index[(v.level, name)], 0],
                          v.points[name][1] + noise[t, index[(v.level, name)], 1])
                   for name in v.points}
            verts.append(Vertebra(v.level, v.view, pts, v.fractured, v.treated, v.excluded))
        out[t] = _values(remeasure(SpineLandmarks(base.view, tuple(verts))), keys)
    return keys, points, noise, out


def monte_carlo_film(measurements: FilmMeasurements, model: LandmarkErrorModel, *,
                     n: int = 2000, seed: int = 20240607,
                     truth: SpineLandmarks | None = None
                     ) -> tuple[list[tuple[str | None, str]], np.ndarray]:
    """Re-read a film ``n`` times with simulated landmark error; measure each re-reading.

    Each point of ``truth`` (default: the film's landmarks) moves by an independent draw from
    ``N(0, Sigma_p)`` (:func:`point_covariances`), seeded (``numpy.random.default_rng(seed)``).

    Returns
    -------
    keys : list of (level, name)
        As in :attr:`FilmUncertainty.items`.
    values : array, shape (n, len(keys))
        The measurements of every re-reading (NaN where undefined).
    """
    fm = measurements
    keys, _, _, out = _monte_carlo(fm, model, n, seed, truth)
    return [_film_key(lv, i, r, fm) for lv, i, r in keys], out


@dataclass(frozen=True)
class MonteCarloCheck:
    """First-order ``u`` of every measurement of a film next to two Monte Carlo estimates.

    ``sd_mc``: the plain SD of ``n`` simulated re-readings. ``sd_mc_cv``: the same draws with
    the linear term as a control variate, ``sqrt(s^2(f) - s^2(J delta) + u^2)``; an unbiased
    estimate of the same variance whatever ``J`` is (``E s^2(J delta) = u^2``), with far less
    sampling noise when ``f`` is nearly linear, so that a 5 % difference is a real one.
    """

    keys: list[tuple[str | None, str]]
    u: np.ndarray
    sd_mc: np.ndarray
    sd_mc_cv: np.ndarray
    n: int
    seed: int


def monte_carlo_check(measurements: FilmMeasurements, model: LandmarkErrorModel, *,
                      n: int = 1000, seed: int = 20240607) -> MonteCarloCheck:
    """Compare :func:`film_uncertainty` with a seeded Monte Carlo on the same film."""
    fm = measurements
    keys, points, noise, vals = _monte_carlo(fm, model, n, seed, None)
    fu = film_uncertainty(fm, model)
    jac = _jacobian(fm, points, lambda m: _values(m, keys))
    lin = np.einsum("mpi,npi->nm", jac, noise)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(vals)
        s2 = np.array([np.var(vals[ok[:, j], j], ddof=1) if ok[:, j].sum() > 1 else np.nan
                       for j in range(len(keys))])
        l2 = np.array([np.var(lin[ok[:, j], j], ddof=1) if ok[:, j].sum() > 1 else np.nan
                       for j in range(len(keys))])
    names = [_film_key(lv, i, r, fm) for lv, i, r in keys]
    u = np.array([fu.items[k].u for k in names])
    return MonteCarloCheck(names, u, np.sqrt(s2), np.sqrt(np.maximum(s2 - l2 + u ** 2, 0.0)),
                           int(n), int(seed))
