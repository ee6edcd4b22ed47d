"""``--uncertainty SD_MM`` / ``--uncertainty-from RELIABILITY_DIR``: the landmark error model
of ``measure`` (and the commands that add uncertainty fields), resolved in one place.

The model and what it gives: the uncertainty section of ``docs/measurements.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["UncertaintyOptionError", "resolve_uncertainty"]

HELP_SD = ("Landmark SD in mm (per coordinate, one reader): every measurement gets its "
           "standard uncertainty (<column>_u) and the threshold flags a third state "
           "'uncertain' (docs/measurements.md).")
HELP_FROM = ("Output folder of 'spine-measure reliability': the readers' landmark SD "
             "estimated there (landmark_error.json) is the error model.")


class UncertaintyOptionError(ValueError):
    """A bad ``--uncertainty`` / ``--uncertainty-from``; ``str()`` is one line naming the
    option."""


def resolve_uncertainty(sd_mm: float | None, from_dir: Path | None) -> Any:
    """The :class:`~spine_measure.measurements.uncertainty.LandmarkErrorModel` the two options
    ask for, or ``None`` when neither is given.

    Raises
    ------
    UncertaintyOptionError
        Both are given, the SD is not a positive finite number, or the folder has no usable
        ``landmark_error.json``.
    """
    if sd_mm is None and from_dir is None:
        return None
    if sd_mm is not None and from_dir is not None:
        raise UncertaintyOptionError("--uncertainty and --uncertainty-from are two sources of "
                                     "the same landmark SD: give one of them")
    from spine_measure.measurements.uncertainty import LandmarkErrorModel

    if sd_mm is not None:
        if not (math.isfinite(sd_mm) and sd_mm > 0):
            raise UncertaintyOptionError(f"--uncertainty: {sd_mm!r} is not a landmark SD in mm "
                                         "(a positive number, e.g. 1.0)")
        return LandmarkErrorModel.isotropic(float(sd_mm), source=f"--uncertainty {sd_mm:g}")
    assert from_dir is not None
    if not from_dir.is_dir():
        raise UncertaintyOptionError(f"--uncertainty-from: {from_dir}: not a folder")
    from spine_measure.reliability.report import load_landmark_error_model

    try:
        return load_landmark_error_model(from_dir)
    except ValueError as exc:
        raise UncertaintyOptionError(f"--uncertainty-from: {exc}") from None
