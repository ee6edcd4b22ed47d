"""Risk models for vertebral augmentation studies (``docs/risk_models.md``).

* :mod:`~spine_measure.risk.published` — Li 2021, An 2021, Xiong 2021 and the rule flags of
  Zeng 2025 / Yassavoly 2025 as data with provenance.
* :mod:`~spine_measure.risk.apply` — apply them to a feature table, row by row.
* :mod:`~spine_measure.risk.fit`, :mod:`~spine_measure.risk.validate`,
  :mod:`~spine_measure.risk.univariate`, :mod:`~spine_measure.risk.report` — fit and validate a
  logistic model on the user's cohort, as the papers do.
* :mod:`~spine_measure.risk.check_table` — recompute a paper's printed statistics.
"""

from spine_measure.risk.apply import Recalibration, apply_model, recalibrate
from spine_measure.risk.check_table import check_table
from spine_measure.risk.errors import (
    FewEventsWarning,
    NonConvergenceWarning,
    RiskInputError,
    RiskModelError,
    RiskWarning,
    SeparationWarning,
    TableFormatError,
)
from spine_measure.risk.fit import LogisticFit, PredictorSpec, fit_logistic, parse_predictors
from spine_measure.risk.published import MODELS, PublishedModel, RuleSet, get_model, model_names
from spine_measure.risk.simulate import simulate_li2021
from spine_measure.risk.univariate import univariate_table
from spine_measure.risk.validate import Validation, delong_auc, validate

__all__ = [
    "MODELS", "PublishedModel", "RuleSet", "get_model", "model_names", "apply_model", "recalibrate",
    "Recalibration", "check_table", "LogisticFit", "PredictorSpec", "fit_logistic",
    "parse_predictors", "univariate_table", "Validation", "validate", "delong_auc",
    "simulate_li2021", "RiskModelError", "RiskInputError", "TableFormatError", "RiskWarning",
    "SeparationWarning", "NonConvergenceWarning", "FewEventsWarning",
]
