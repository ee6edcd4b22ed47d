"""Simulated cohorts drawn from a published model (for validation and teaching)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spine_measure.risk.apply import expit
from spine_measure.risk.published import MODELS

__all__ = ["simulate_li2021", "LI2021_PREVALENCE"]

#: Predictor distribution of the simulation, close to Li 2021 Tables 2-3 (whole cohort):
#: IVC 7.5 %, posterior fascia oedema 6.7 %, Goutallier 0/1/2/3/4 = 15/20/40/15/10 %,
#: blocky cement 36 %; the predictors are drawn independently.
LI2021_PREVALENCE = {"ivc": 0.075, "posterior_fascia_oedema": 0.067,
                     "goutallier_grade": (0.15, 0.20, 0.40, 0.15, 0.10), "blocky": 0.36}


def simulate_li2021(n: int, seed: int = 0, *, intercept: float | None = None) -> pd.DataFrame:
    """Draw ``n`` patients and their outcome ``residual_back_pain`` from the Li 2021 model.

    :math:`P(y=1) = 1/(1+e^{-\\eta})`, :math:`\\eta` from :data:`MODELS["li2021"]`
    (B as used, i.e. +0.800 for blocky). Columns use the batch feature-table names, plus
    ``true_lp`` and ``true_probability``. ``intercept`` replaces the published constant
    (-3.361, about 23 % events with this predictor mix); -5.4 gives about 5 % events (rare
    outcome).
    """
    rng = np.random.default_rng(seed)
    pr = LI2021_PREVALENCE
    ivc = (rng.random(n) < pr["ivc"]).astype(int)
    fascia = (rng.random(n) < pr["posterior_fascia_oedema"]).astype(int)
    grade = rng.choice(5, size=n, p=pr["goutallier_grade"])
    blocky = rng.random(n) < pr["blocky"]
    m = MODELS["li2021"]
    b = {t.name: t.b_used for t in m.terms}
    b0 = m.intercept if intercept is None else float(intercept)
    lp = (b0 + b["ivc"] * ivc + b["posterior_fascia_oedema"] * fascia
          + b["goutallier_2"] * (grade == 2) + b["goutallier_3_4"] * (grade >= 3)
          + b["cement_blocky"] * blocky)
    p = expit(lp)
    y = (rng.random(n) < p).astype(int)
    return pd.DataFrame({
        "patient_pseudo_id": [f"SIM{i:05d}" for i in range(n)],
        "ivc": ivc, "posterior_fascia_oedema": fascia, "goutallier_grade": grade,
        "cement_distribution_postop": np.where(blocky, "blocky", "spongy"),
        "residual_back_pain": y, "true_lp": lp, "true_probability": p,
    })
