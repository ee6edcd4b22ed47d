"""Bone cement on post-operative films: segmentation and the features of docs/cement.md.

Pure core: arrays, landmarks and spacing in; masks and frozen result objects out. No file
I/O, no DICOM, no GUI (``docs/architecture.md``). See ``docs/cement.md``.

>>> from spine_measure.cement import analyze_cement  # doctest: +SKIP
>>> res = analyze_cement(radiograph, landmarks, "L1", radiograph.spacing)  # doctest: +SKIP
>>> res.features.npec, res.features.distribution  # doctest: +SKIP
"""

from spine_measure.cement.api import (
    CEMENT_COLUMNS,
    CementAnalysis,
    analyze_cement,
    analyze_film,
    measure_cement,
)
from spine_measure.cement.features import (
    NO_CEMENT,
    CementFeatures,
    FeatureParams,
    Leak,
    cement_features,
    distribution_features,
    shape_features,
)
from spine_measure.cement.frame import BodyFrame, CementError, body_frame, working_spacing
from spine_measure.cement.segment import (
    ALGORITHM_VERSION,
    CementSegmentation,
    SegmentationParams,
    segment_cement,
)
from spine_measure.cement.volume import (
    VOLUME_RATIO_THRESHOLD_PCT,
    VolumeRatio,
    cement_volume_ratio,
    vertebral_body_volume_ml,
)

__all__ = [
    "CEMENT_COLUMNS",
    "analyze_film",
    "measure_cement",
    "ALGORITHM_VERSION",
    "NO_CEMENT",
    "VOLUME_RATIO_THRESHOLD_PCT",
    "BodyFrame",
    "CementAnalysis",
    "CementError",
    "CementFeatures",
    "CementSegmentation",
    "FeatureParams",
    "Leak",
    "SegmentationParams",
    "VolumeRatio",
    "analyze_cement",
    "body_frame",
    "cement_features",
    "cement_volume_ratio",
    "distribution_features",
    "segment_cement",
    "shape_features",
    "vertebral_body_volume_ml",
    "working_spacing",
]
