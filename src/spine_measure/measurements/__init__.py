"""Every geometric measurement of docs/measurements.md-3, from one self-documenting registry.

Pure core: landmarks in, numbers out (numpy only; no DICOM, no GUI). The registry
(:data:`REGISTRY`) is filled by importing the measurement modules below; ``api`` runs them.

Where is X computed? Heights, wedge/kyphotic/Cobb angles, compression rates, morphometry and
Genant grade: :mod:`.single_film`; coronal Cobb angles: :mod:`.coronal`; changes across time
points and the recompression/refracture/new-fracture flags: :mod:`.longitudinal`.
"""

from spine_measure.measurements import coronal, longitudinal, single_film  # noqa: F401  (register)
from spine_measure.measurements.api import (
    FilmMeasurements,
    LongitudinalMeasurements,
    measure_annotation,
    measure_film,
    measure_longitudinal,
    measure_radiograph,
)
from spine_measure.measurements.context import (
    COBB_KEYWORDS,
    Endplate,
    FilmContext,
    MeasureOptions,
    parse_cobb_spec,
    parse_endplate,
    parse_endplate_pair,
)
from spine_measure.measurements.longitudinal import LongitudinalOptions
from spine_measure.measurements.registry import REGISTRY, MeasurementDef, PaperTerm, Result

__all__ = [
    "COBB_KEYWORDS",
    "REGISTRY",
    "Endplate",
    "FilmContext",
    "FilmMeasurements",
    "LongitudinalMeasurements",
    "LongitudinalOptions",
    "MeasureOptions",
    "MeasurementDef",
    "PaperTerm",
    "Result",
    "measure_annotation",
    "measure_film",
    "measure_longitudinal",
    "measure_radiograph",
    "parse_cobb_spec",
    "parse_endplate",
    "parse_endplate_pair",
]
