"""Reliability of the readings (docs/reliability.md): two readers, or one reader twice.

* :mod:`.stats`: ICC(2,1), ICC(3,1), Bland-Altman, SEM, MDC95, Cohen's kappa (pure functions).
* :mod:`.pairing`: pair two annotation folders by image reference and measure every film
  once per reader.
* :mod:`.report`: the tables (reliability, kappa, thresholds versus MDC), the Bland-Altman
  figure and :func:`run_reliability`, which ``spine-measure reliability`` calls.
* :mod:`.simulate`: simulated two-reader sets with known landmark noise.
* :mod:`.landmark_error`: the per-point landmark SD of the readers, for the measurement
  uncertainty (:mod:`spine_measure.measurements.uncertainty`).
"""

from spine_measure.reliability.pairing import Pairing, measure_pairs, pair_annotation_dirs
from spine_measure.reliability.report import (
    BootstrapOptions,
    ReliabilityRun,
    kappa_table,
    load_landmark_error_model,
    reliability_table,
    run_reliability,
    thresholds_vs_mdc,
)
from spine_measure.reliability.simulate import SimulatedReaders, simulate_readers
from spine_measure.reliability.stats import (
    BlandAltman,
    ICCResult,
    KappaResult,
    bland_altman,
    cohen_kappa,
    icc_agreement,
    icc_consistency,
    mdc95_from_sem,
    sem_from_sd_diff,
)

__all__ = [
    "BlandAltman",
    "BootstrapOptions",
    "ICCResult",
    "KappaResult",
    "Pairing",
    "ReliabilityRun",
    "SimulatedReaders",
    "bland_altman",
    "cohen_kappa",
    "icc_agreement",
    "icc_consistency",
    "kappa_table",
    "load_landmark_error_model",
    "mdc95_from_sem",
    "measure_pairs",
    "pair_annotation_dirs",
    "reliability_table",
    "run_reliability",
    "sem_from_sd_diff",
    "simulate_readers",
    "thresholds_vs_mdc",
]
