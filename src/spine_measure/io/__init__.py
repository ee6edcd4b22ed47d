"""I/O at the edge: radiographs (DICOM and plain images), folder scans, annotation files."""

from spine_measure.io.calibration import (
    Calibration,
    CalibrationSource,
    calibration_from_dataset,
    calibration_from_line,
    decide_calibration,
)
from spine_measure.io.radiograph import (
    Radiograph,
    RadiographMetadata,
    load_radiograph,
    radiograph_from_array,
)

__all__ = [
    "Calibration",
    "CalibrationSource",
    "Radiograph",
    "RadiographMetadata",
    "calibration_from_dataset",
    "calibration_from_line",
    "decide_calibration",
    "load_radiograph",
    "radiograph_from_array",
]
