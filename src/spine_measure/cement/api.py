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
from spine_measure.cement.segment import (
    CementSegmentation,
    SegmentationParams,
    density_reader,
    segment_cement,
)
from spine_measure.landmarks import SpineLandmarks

__all__ = ["CEMENT_COLUMNS", "CementAnalysis", "analyze_cement", "analyze_film", "measure_cement"]


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


def analyze_cement(density: Any, landmarks: SpineLandmarks, level: str,
                   spacing: tuple[float, float] | None, *, mask: np.ndarray | None = None,
                   seg_params: SegmentationParams | None = None,
                   feature_params: FeatureParams | None = None) -> CementAnalysis:
    """Segment the cement of ``level`` (unless ``mask``, a reader's edit, is given) and
    compute its features. ``density`` is the density array or the
    :class:`~spine_measure.io.radiograph.Radiograph` (then only the search region is
    converted; see :func:`~spine_measure.cement.segment.segment_cement`). Raises
    :class:`~spine_measure.cement.frame.CementError` for this vertebra only (no landmarks,
    body outside the image, mask of the wrong shape)."""
    from spine_measure.cement.frame import CementError

    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        _, shape = density_reader(density)
        if m.shape != shape:
            raise CementError(f"{level}: cement mask is {m.shape[0]}x{m.shape[1]} but the "
                              f"image is {shape[0]}x{shape[1]}; the mask falls "
                              f"outside the image")
        feats = cement_features(m, landmarks, level, spacing, params=feature_params)
        return CementAnalysis(level, "edited", m, feats, None, None)
    seg = segment_cement(density, landmarks, level, spacing, params=seg_params)
    feats = cement_features(seg, landmarks, level, spacing, params=feature_params)
    return CementAnalysis(level, "auto", None, feats, seg, seg.params_hash)


def analyze_film(density: Any, landmarks: SpineLandmarks,
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


#: Definitions of the flat cement columns :func:`measure_cement` returns (the batch's data
#: dictionary reads them); lengths end in ``_mm`` or ``_px`` after the film's calibration.
CEMENT_COLUMNS: dict[str, tuple[str, str]] = {
    "cement_found": ("flag", "Cement found at the treated level (False = 'no cement found')."),
    "cement_status": ("text", "found / not found, with the segmentation's reason."),
    "cement_mask_source": ("text", "auto (segmented) or edited (a reader's mask, which wins)."),
    "cement_contact_tolerance": ("mm|px", "Tolerance of endplate contact and of leakage."),
    "cement_contacts_superior": ("flag", "Cement reaches the superior endplate polyline "
                                         "within the tolerance (docs/cement.md)."),
    "cement_contacts_inferior": ("flag", "Cement reaches the inferior endplate polyline "
                                         "within the tolerance (docs/cement.md)."),
    "cement_contacts_both": ("flag", "Cement reaches both endplates (Zeng 2025; An 2021)."),
    "npec": ("category", "Non-endplate-contact pattern: none / superior / inferior / both "
                         "(Xiong 2021)."),
    "cement_gap_superior": ("mm|px", "Shortest distance from the cement to the superior "
                                     "endplate."),
    "cement_gap_inferior": ("mm|px", "Shortest distance from the cement to the inferior "
                                     "endplate."),
    "cement_gap_superior_pct": ("%", "Superior gap as % of the local body height."),
    "cement_gap_inferior_pct": ("%", "Inferior gap as % of the local body height."),
    "cement_fill_pct": ("%", "Cement area inside the body / body area (lateral film)."),
    "cement_area": ("mm2|px2", "Area of the cement mask."),
    "cement_distribution": ("category", "spongy / blocky on lateral films (Li 2021); H / O on "
                                        "AP films (An 2021)."),
    "cement_leak": ("flag", "At least one leak (cement outside the body beyond the "
                            "tolerance)."),
    "cement_leak_count": ("count", "Number of leak components."),
    "leak_locations": ("text", "Locations of the leaks, ';'-separated (superior_disc, "
                               "inferior_disc, anterior, posterior, lateral)."),
    "leak_intradiscal_spike": ("flag", "An intradiscal leak of spike type (Yassavoly 2025)."),
    "leak_intradiscal_round": ("flag", "An intradiscal leak of round type (Yassavoly 2025)."),
    "leak_touches_adjacent_endplate": ("flag", "A leak touches the adjacent vertebra's "
                                               "endplate (Zeng 2025)."),
    "cement_reasons": ("text", "Why values are missing, one 'name: reason' per item."),
}


_HEADER = object()


def measure_cement(radiograph: Any, landmarks: SpineLandmarks, level: str, *,
                   mask: np.ndarray | None = None,
                   tolerance_mm: float = 1.0,
                   with_mask: bool = False,
                   spacing: Any = _HEADER) -> dict[str, Any] | tuple[dict[str, Any], Any]:
    """docs/cement.md features of the cement at ``level`` of a film, as one flat table row.

    ``radiograph`` is a :class:`~spine_measure.io.radiograph.Radiograph` (its ``density`` and
    ``calibration.spacing`` are used); ``mask`` a reader's edited mask, which wins over the
    automatic segmentation. ``spacing`` is the film's ``(row_mm, col_mm)`` or None
    (uncalibrated); by default the radiograph's own calibration. Pass the spacing the film's
    measurements used (``FilmMeasurements.spacing``), so a reader's calibration line measures
    the cement in mm too. Leak details are summarised (locations, spike/round, touching the
    adjacent endplate); the shape and texture features the distribution was decided from are
    included (``cement_*``). Raises :class:`~spine_measure.cement.frame.CementError` for this
    vertebra only.
    """
    if spacing is _HEADER:
        spacing = radiograph.calibration.spacing
    params = FeatureParams(contact_tolerance_mm=float(tolerance_mm))
    res = analyze_cement(radiograph, landmarks, level, spacing, mask=mask,
                         feature_params=params)
    row = res.features.to_dict()
    leaks = row.pop("leaks")
    reasons = row.pop("reasons")
    row.pop("level", None)
    row.pop("view", None)
    row.pop("params_hash", None)
    row["cement_mask_source"] = res.source
    found = res.features.found
    intradiscal = [lk for lk in leaks if lk["location"] in ("superior_disc", "inferior_disc")]
    row["leak_locations"] = ";".join(lk["location"] for lk in leaks) if found else None
    row["leak_intradiscal_spike"] = any(lk["type"] == "spike" for lk in intradiscal) \
        if found else None
    row["leak_intradiscal_round"] = any(lk["type"] == "round" for lk in intradiscal) \
        if found else None
    row["leak_touches_adjacent_endplate"] = any(bool(lk["touches_adjacent_endplate"])
                                                for lk in leaks) if found else None
    row["cement_reasons"] = "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
    return (row, res.mask) if with_mask else row
