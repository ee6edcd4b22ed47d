"""One call per treated vertebra: segment (or take a reader's mask), then measure.

>>> import numpy as np
>>> from spine_measure.landmarks import SpineLandmarks, Vertebra
>>> img = np.zeros((120, 120)); img[20:80, 30:90] = 1.0; img[20:60, 50:70] = 6.0
>>> v = Vertebra("L1", "lateral", {"As": (20, 89.5), "Ai": (79.5, 89.5),
...                               "Ps": (20, 30), "Pi": (79.5, 30)}, treated=True)
>>> res = analyze_cement(img, SpineLandmarks("lateral", (v,)), "L1", (0.5, 0.5))
>>> res.source, res.features.npec, res.features.gap_inferior  # (79.5 - 59) px * 0.5 mm
('auto', 'inferior', 10.25)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from spine_measure.cement.features import CementFeatures, FeatureParams, cement_features
from spine_measure.cement.segment import CementSegmentation, SegmentationParams, segment_cement
from spine_measure.landmarks import SpineLandmarks

__all__ = ["CementAnalysis", "analyze_cement", "analyze_film"]


@dataclass(frozen=True)
class CementAnalysis:
    """Mask and features of one treated vertebra.

    ``mask`` is the full-image boolean mask; ``source`` is ``"auto"`` (segmented here) or
    ``"edited"`` (a reader's mask passed in); ``segmentation`` is None for an edited mask.
    """

    level: str
    source: Literal["auto", "edited"]
    edited_mask: np.ndarray | None = field(repr=False)
    features: CementFeatures
    segmentation: CementSegmentation | None = field(default=None, repr=False)
    params_hash: str | None = None

    @property
    def mask(self) -> np.ndarray:
        """The full-image boolean mask (built on demand from the search-region crop)."""
        if self.edited_mask is not None:
            return self.edited_mask
        assert self.segmentation is not None
        return self.segmentation.mask


def analyze_cement(density: np.ndarray, landmarks: SpineLandmarks, level: str,
                   spacing: tuple[float, float] | None, *, mask: np.ndarray | None = None,
                   seg_params: SegmentationParams | None = None,
                   feature_params: FeatureParams | None = None) -> CementAnalysis:
    """Segment the cement of ``level`` (unless ``mask``, a reader's edit, is given) and
    compute its features. Raises :class:`~spine_measure.cement.frame.CementError` for
    this vertebra only (no landmarks, body outside the image, mask of the wrong shape)."""
    from spine_measure.cement.frame import CementError

    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        dens = np.asarray(density)
        if m.shape != dens.shape:
            raise CementError(f"{level}: cement mask is {m.shape[0]}x{m.shape[1]} but the "
                              f"image is {dens.shape[0]}x{dens.shape[1]}; the mask falls "
                              f"outside the image")
        feats = cement_features(m, landmarks, level, spacing, params=feature_params)
        return CementAnalysis(level, "edited", m, feats, None, None)
    seg = segment_cement(density, landmarks, level, spacing, params=seg_params)
    feats = cement_features(seg, landmarks, level, spacing, params=feature_params)
    return CementAnalysis(level, "auto", None, feats, seg, seg.params_hash)


def analyze_film(density: np.ndarray, landmarks: SpineLandmarks,
                 spacing: tuple[float, float] | None, *,
                 masks: Mapping[str, np.ndarray] | None = None,
                 levels: list[str] | None = None,
                 seg_params: SegmentationParams | None = None,
                 feature_params: FeatureParams | None = None
                 ) -> dict[str, CementAnalysis | Exception]:
    """Analyse every treated vertebra of a film (or ``levels``); a vertebra that fails maps
    to its :class:`~spine_measure.cement.frame.CementError`, the others are still measured.
    """
    from spine_measure.cement.frame import CementError

    todo = list(levels) if levels is not None else \
        [v.level for v in landmarks if v.treated]
    out: dict[str, Any] = {}
    for lv in todo:
        try:
            out[lv] = analyze_cement(density, landmarks, lv, spacing,
                                     mask=(masks or {}).get(lv), seg_params=seg_params,
                                     feature_params=feature_params)
        except CementError as exc:
            out[lv] = exc
    return out
