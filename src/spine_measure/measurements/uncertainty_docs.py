"""The uncertainty section of ``docs/measurements.md`` and its figure.

``uncertainty_markdown()`` is appended to the generated measurements page by
:mod:`spine_measure.measurements.docs_gen` (its table is computed here, on an exact synthetic
spine, so the docs test catches a stale page). The figure is drawn by::

    python -m spine_measure.measurements.uncertainty_docs [--out docs/figures]

(not by the tests): the angle SD against the endplate width and the compression-rate SD
against the vertebral height, first order (lines) against Monte Carlo (dots, seeded).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spine_measure.landmarks import SpineLandmarks, Vertebra
from spine_measure.measurements.api import measure_film
from spine_measure.measurements.uncertainty import (
    LandmarkErrorModel,
    film_uncertainty,
    longitudinal_uncertainty,
    monte_carlo_film,
)

__all__ = ["FIGURE", "example_spine", "main", "uncertainty_markdown"]

FIGURE = "measurement_uncertainty.png"


def example_spine(*, depth: float = 35.0, l1_anterior: float = 15.0,
                  l1_posterior: float = 25.0, height: float = 25.0) -> SpineLandmarks:
    """T11-L3, 1 px = 1 mm, bodies ``depth`` mm deep and ``height`` mm high, 8 mm discs;
    L1 fractured (anterior height ``l1_anterior``) and treated."""
    verts, top = [], 0.0
    for lv in ("T11", "T12", "L1", "L2", "L3"):
        ha = l1_anterior if lv == "L1" else height
        hp = l1_posterior if lv == "L1" else height
        pts = {"Ps": (top, 0.0), "Pi": (top + hp, 0.0),
               "As": (top + (hp - ha), depth), "Ai": (top + hp, depth),
               "Ms": (top + (hp - ha) / 2, depth / 2), "Mi": (top + hp, depth / 2)}
        verts.append(Vertebra(lv, "lateral", pts, fractured=lv == "L1", treated=lv == "L1"))
        top += hp + 8.0
    return SpineLandmarks("lateral", tuple(verts))


def _fmt(v: float, nd: int = 2) -> str:
    return "-" if not math.isfinite(v) else f"{v:.{nd}f}"


def _table() -> list[str]:
    model = LandmarkErrorModel.isotropic(1.0)
    pre = measure_film(example_spine(l1_anterior=15.0), spacing=(1.0, 1.0),
                       calibration_source="pixel_spacing")
    post = measure_film(example_spine(l1_anterior=21.0), spacing=(1.0, 1.0),
                        calibration_source="pixel_spacing")
    fu = measure_film(example_spine(l1_anterior=18.0), spacing=(1.0, 1.0),
                      calibration_source="pixel_spacing")
    fu_post = film_uncertainty(post, model)
    rows = ["| family | measurement (L1, post-op) | value | u | 95 % interval |",
            "|---|---|---|---|---|"]
    fams = [("heights", "ha"), ("heights", "hp"), ("angles", "wedge_angle"),
            ("angles", "regional_kyphotic_angle"), ("compression", "cr_anterior"),
            ("compression", "compression_pct"), ("morphometry", "wedge_ratio"),
            ("morphometry", "biconcavity_ratio")]
    for fam, name in fams:
        it = fu_post.get("L1", name)
        rows.append(f"| {fam} | `{it.column}` | {_fmt(it.value)} | {_fmt(it.u)} | "
                    f"{_fmt(it.ci_low)} to {_fmt(it.ci_high)} |")
    lu = longitudinal_uncertainty(pre, post, [fu], model=model, bone_marrow_oedema=True)
    for name in ("height_loss_pct", "kyphosis_progression", "compression_rate_increase",
                 "avhr_recovery"):
        it = lu[name]
        rows.append(f"| longitudinal | `{it.column}` | {_fmt(it.value)} | {_fmt(it.u)} | "
                    f"{_fmt(it.ci_low)} to {_fmt(it.ci_high)} |")
    rows += ["", f"Three-state flags of this series: recompression "
                 f"**{lu.flags['recompression']}**, refracture **{lu.flags['refracture']}**."]
    return rows


_TEXT = """\
## Measurement uncertainty from landmark error

Every number above is a function of landmarks a reader placed, and every landmark is placed
with error. Given a **landmark error model** — the standard deviation (SD) of one reader's
placement of one point, in mm, the same in every direction or split into the components
*along* and *across* the endplate the point lies on — `spine_measure.measurements.uncertainty`
gives every single-film and longitudinal measurement its standard uncertainty `u` and the
95 % interval `value ± 1.96 u`.

```python
from spine_measure.measurements import measure_annotation
from spine_measure.measurements.uncertainty import LandmarkErrorModel, film_uncertainty
fm = measure_annotation(radiograph, annotation)
fu = film_uncertainty(fm, LandmarkErrorModel.isotropic(1.0))   # 1 mm per coordinate
fu.get("L1", "wedge_angle").u                                   # degrees
```

On the command line, `spine-measure measure FILM --uncertainty 1.0` (or `--uncertainty-from
RELIABILITY_DIR`) prints every value as `value ± u`; with `--json` every row gains
`<column>_u` for each numeric column (empty when the value or its uncertainty is undefined),
`uncertainty_model` (the SDs and where they came from), `compression_ge_38_5_state` per
vertebra and `degenerative_scoliosis_state` on the AP film's flag line (three states, below).
The two options exclude each other.

**Method.** First-order (delta-method) propagation through the measurement's own function:
`u² = Σ_p J_p Σ_p J_pᵀ` over the points `p`, with `J_p` the derivative of the measurement with
respect to the point's `(row, col)` — a central difference (step 0.001 px) of the very
function that produced the reported number, so the propagation can never drift from the
definition — and `Σ_p` the point's 2 × 2 covariance converted from mm to px with the film's
spacing. Points are independent; so are the films of a longitudinal measurement, whose
Jacobian covers the whole chain (each film re-measured, the change recomputed). A model in mm
cannot be applied to an uncalibrated film: those values get no `u`, with the reason. The
coronal Cobb angles *select* the most tilted pair of endplates, and a re-reading may select
another pair; first order holds the selection fixed (about 5 % too large at 1 mm), so their
`u` is the SD of 4000 simulated re-readings (seeded, labelled in `method`).

**What to expect** (first order, isotropic SD `σ`): a height `|As − Ai|` has `u = √2 σ`; an
endplate line through two corners `w` mm apart turns by `σ/w` rad per corner, so a wedge or
regional kyphotic angle (two lines) has `u = 2σ/w` rad — it depends on the endplate width,
not on the height (2.9° for 40 mm, 3.8° for 30 mm at `σ` = 1 mm); a ratio `h / h_ref` has
relative uncertainty `√((u_h/h)² + (u_ref/h_ref)²)`: relative to its value the compression
rate of a collapsed vertebra is the least certain, while in percentage points its `u` grows
with the height (the reference term scales with the rate); a change between two films adds
the two films' variances.

On the example spine (T11–L3 bodies 35 mm deep, 25 mm high, 8 mm discs; L1 fractured:
anterior height 15 mm pre-op, 21 mm post-op, 18 mm at follow-up) with `σ` = 1 mm:

{table}

![Measurement uncertainty](figures/{figure})

*Left: SD of the wedge and regional kyphotic angles against the endplate width for landmark
SDs of 0.5, 1 and 2 mm. Right: SD of the anterior compression rate against the vertebral
height (its neighbours 25 mm high), 1 mm landmark SD. Lines: first order; dots: Monte Carlo
(2000 re-readings, seeded). Drawn by `python -m spine_measure.measurements.uncertainty_docs`.*

**Checked against Monte Carlo.** `monte_carlo_check` re-reads a film with simulated landmark
error (seeded) and compares (`monte_carlo_longitudinal` re-reads all films of a series): on
every sample film (`sample_dicoms/`, 1 mm) first order agrees with the Monte Carlo SD within
5 % for every measurement, and so does every longitudinal measurement of the 7 sample series;
the 95 % interval covers the true value in 93–97 % of 2000 simulated re-readings of
SM001_postop (`tests/core/test_uncertainty.py`). First order loses accuracy when `σ` is not
small against the distances a measurement divides by (a reference height of a few mm).

**Where σ comes from.** `LandmarkErrorModel.isotropic(sd_mm)` (`--uncertainty SD_MM`), or
the readers' own error from a reliability run: `spine-measure reliability` writes
`landmark_error.json` — per reader and point, `σ = √(mean(d²)/2)` of the two readings'
differences `d` along and across the endplate — and
`spine_measure.reliability.load_landmark_error_model(DIR)` (`--uncertainty-from DIR`) turns it
into a model with a per-point SD where a point has at least 20 pairs
([reliability.md](reliability.md)). No default is assumed: the error depends on the readers,
the films and the fracture. As an order of magnitude: if the intra-observer kyphotic-angle
interval of ±7–9° quoted for compression fractures is read as the 95 % limits of the
difference of two readings, one reading has SD 2.5–3.2°, which with 35 mm endplates is `σ` of
about 0.8–1 mm.

**Threshold flags in three states.** When an uncertainty model is given, the flags that
threshold a measured value — recompression (height loss ≥ 15 % or kyphosis progression
≥ 10°), refracture (compression rate increase ≥ 15 % with bone marrow oedema), vertebral
compression ≥ 38.5 % and the coronal Cobb angle ≥ 10° — are `true`, `false` or **`uncertain`**:

    uncertain  when |value − threshold| < 1.96 u    (the 95 % interval contains the threshold)
    true / false by the plain comparison otherwise

Recompression is `true` when either criterion is true, `false` when both are false, and
`uncertain` otherwise; refracture is `false` without oedema and follows the compression rate
increase with it. Without a model the flags are two-state as above.
"""


def uncertainty_markdown() -> str:
    """The section, with its table computed now."""
    return _TEXT.format(table="\n".join(_table()), figure=FIGURE)


def figure(path: str | Path, *, seed: int = 20240607, n_mc: int = 2000) -> Path:
    """Draw the figure (first order lines, Monte Carlo dots) to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    widths = np.linspace(20, 50, 13)
    for sd, color in ((0.5, "tab:green"), (1.0, "tab:blue"), (2.0, "tab:red")):
        model = LandmarkErrorModel.isotropic(sd)
        wa, ka, mc_w, mc_wa = [], [], [], []
        for w in widths:
            fm = measure_film(example_spine(depth=float(w)), spacing=(1.0, 1.0),
                              calibration_source="pixel_spacing")
            fu = film_uncertainty(fm, model)
            wa.append(fu.get("L1", "wedge_angle").u)
            ka.append(fu.get("L1", "regional_kyphotic_angle").u)
            if w in (20.0, 35.0, 50.0):
                keys, vals = monte_carlo_film(fm, model, n=n_mc, seed=seed)
                mc_w.append(w)
                mc_wa.append(float(np.std(vals[:, keys.index(("L1", "wedge_angle"))],
                                          ddof=1)))
        ax1.plot(widths, wa, color=color, label=f"wedge angle, σ = {sd:g} mm")
        ax1.plot(widths, ka, color=color, ls="--", lw=1)
        ax1.plot(mc_w, mc_wa, "o", color=color, ms=4)
    ax1.set_xlabel("endplate width (mm)")
    ax1.set_ylabel("SD of the angle (deg)")
    ax1.set_title("Wedge (solid) and regional kyphotic (dashed) angle", fontsize=9)
    ax1.legend(fontsize=7)
    heights = np.linspace(8, 25, 18)
    model = LandmarkErrorModel.isotropic(1.0)
    cr, mh, mc = [], [], []
    for h in heights:
        fm = measure_film(example_spine(l1_anterior=float(h)), spacing=(1.0, 1.0),
                          calibration_source="pixel_spacing")
        cr.append(film_uncertainty(fm, model).get("L1", "cr_anterior").u)
        if round(float(h)) in (8, 17, 25) and abs(h - round(float(h))) < 1e-9:
            keys, vals = monte_carlo_film(fm, model, n=n_mc, seed=seed)
            mh.append(h)
            mc.append(float(np.std(vals[:, keys.index(("L1", "cr_anterior"))], ddof=1)))
    ax2.plot(heights, cr, color="tab:blue", label="first order")
    ax2.plot(mh, mc, "o", color="tab:blue", ms=4, label=f"Monte Carlo ({n_mc}, seed {seed})")
    ax2.set_xlabel("anterior height of L1 (mm)")
    ax2.set_ylabel("SD of cr_anterior (percentage points)")
    ax2.set_title("Anterior compression rate, σ = 1 mm", fontsize=9)
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spine_measure.measurements.uncertainty_docs [--out docs/figures]``."""
    ap = argparse.ArgumentParser(description="Draw the measurement-uncertainty figure.")
    ap.add_argument("--out", default="docs/figures", help="figures folder")
    args = ap.parse_args(argv)
    print(figure(Path(args.out) / FIGURE))  # noqa: T201 - a developer tool's output
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
