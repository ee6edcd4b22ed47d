"""Errors and warnings of :mod:`spine_measure.risk`.

Errors are one line and name the thing (model, column, table row) and the problem. Warnings
are specific classes so that a caller (or a test) can filter or escalate exactly one kind.
"""

from __future__ import annotations

from spine_measure.errors import SpineMeasureError, SpineMeasureWarning


class RiskModelError(SpineMeasureError):
    """A risk model could not be built, applied or fitted (bad argument, unknown model)."""


class RiskInputError(RiskModelError):
    """An input table lacks a required column or holds a value that cannot be coded."""


class TableFormatError(RiskModelError):
    """A printed-table CSV for ``check-table`` is malformed (names the row and the cell)."""


class RiskWarning(SpineMeasureWarning):
    """Base class of the warnings of the risk-model code."""


class SeparationWarning(RiskWarning):
    """Complete or quasi-complete separation: some coefficients are not finite estimates."""


class NonConvergenceWarning(RiskWarning):
    """The maximum-likelihood fit did not converge."""


class FewEventsWarning(RiskWarning):
    """Fewer than 10 events (of the rarer outcome class) per estimated coefficient."""


class SmallSampleTestWarning(RiskWarning):
    """A univariate test was chosen or run under a small-sample caveat (e.g. sparse table)."""
