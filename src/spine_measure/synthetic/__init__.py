"""Deterministic synthetic spine radiographs with exact ground truth.

* :mod:`~spine_measure.synthetic.anatomy`: spine, vertebra, fracture and cement geometry (mm);
* :mod:`~spine_measure.synthetic.render`: geometry -> film (:func:`render_film`);
* :mod:`~spine_measure.synthetic.dicom`: film -> DICOM DX/CR file;
* :mod:`~spine_measure.synthetic.studies`: the sample patients and ``sample_dicoms/``.

Regenerate the committed set with ``python -m spine_measure.synthetic sample_dicoms``.
"""

from spine_measure.synthetic.anatomy import (
    CementSpec,
    LeakSpec,
    LevelSpec,
    SpineGeometry,
    build_ap_spine,
    build_lateral_spine,
    default_ap_levels,
    default_lateral_levels,
)
from spine_measure.synthetic.render import Film, RenderOptions, render_film
from spine_measure.synthetic.studies import (
    CASES,
    DEFAULT_SEED,
    case_geometry,
    expected_calibration,
    generate_sample_set,
    render_case_film,
)

__all__ = [
    "CASES",
    "DEFAULT_SEED",
    "CementSpec",
    "Film",
    "LeakSpec",
    "LevelSpec",
    "RenderOptions",
    "SpineGeometry",
    "build_ap_spine",
    "build_lateral_spine",
    "case_geometry",
    "default_ap_levels",
    "default_lateral_levels",
    "expected_calibration",
    "generate_sample_set",
    "render_case_film",
    "render_film",
]
