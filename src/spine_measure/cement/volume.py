"""Cement-to-vertebral-body volume ratio (docs/cement.md, Zeng 2025's 13.82 % threshold).

Part of the pure core. A radiograph shows the body in two projections only, so its volume is
*estimated* as an elliptic cylinder: the axial cross-section is an ellipse whose axes are the
body's sagittal depth (lateral film) and its coronal width (AP film), and its height is the
body's mean height on the lateral film::

    V_body = pi / 4 * depth * width * height          (mm^3; / 1000 -> ml)
    depth  = (|As - Ps| + |Ai - Pi|) / 2               (lateral, superior and inferior depth)
    height = mean(ha, hm, hp)  (hm only when Ms, Mi exist)
    width  = (|SL - SR| + |IL - IR|) / 2               (AP)
    ratio  = 100 * cement_volume_ml * 1000 / V_body    (%)

The flag ``ratio > 13.82 %`` is the threshold Zeng 2025 reports (from Zhou et al. 2023) for a
higher risk of adjacent-level fracture. Zhou measured the cement of the *larger side* against
the body volume on CT; on plain films this estimate is the closest available, and it
over-estimates the true body volume slightly where the endplates are concave (document the
choice next to any result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spine_measure.landmarks import Vertebra

__all__ = ["VOLUME_RATIO_THRESHOLD_PCT", "VolumeRatio", "cement_volume_ratio",
           "vertebral_body_volume_ml"]

VOLUME_RATIO_THRESHOLD_PCT = 13.82
"""Cement / vertebral volume ratio above which Zeng 2025 flags a higher adjacent-fracture risk."""


@dataclass(frozen=True)
class VolumeRatio:
    """Result of :func:`cement_volume_ratio`: ``ratio_pct`` (NaN + ``reason`` when it cannot
    be estimated), the body volume estimate and its three dimensions (mm), and the flag
    ``ratio_pct > 13.82`` (None when the ratio is missing)."""

    ratio_pct: float
    above_threshold: bool | None
    body_volume_ml: float
    depth_mm: float
    width_mm: float
    height_mm: float
    reason: str | None = None


def _dist(v: Vertebra, a: str, b: str, sp: tuple[float, float]) -> float:
    d = (v.point(a) - v.point(b)) * np.asarray(sp)
    return float(math.hypot(*d))


def vertebral_body_volume_ml(lateral: Vertebra, lateral_spacing: tuple[float, float],
                             ap: Vertebra, ap_spacing: tuple[float, float]
                             ) -> tuple[float, float, float, float]:
    """Elliptic-cylinder body volume (ml) and its depth, width, height (mm).

    >>> lat = Vertebra("L1", "lateral",
    ...                {"As": (0, 30), "Ai": (20, 30), "Ps": (0, 0), "Pi": (20, 0)})
    >>> ap = Vertebra("L1", "ap", {"SL": (0, 0), "SR": (0, 40), "IL": (20, 0), "IR": (20, 40)})
    >>> v, d, w, h = vertebral_body_volume_ml(lat, (1.0, 1.0), ap, (1.0, 1.0))
    >>> round(v, 4), d, w, h   # pi/4 * 30 * 40 * 20 mm3 = 18.8496 ml
    (18.8496, 30.0, 40.0, 20.0)
    """
    depth = (_dist(lateral, "As", "Ps", lateral_spacing)
             + _dist(lateral, "Ai", "Pi", lateral_spacing)) / 2
    hs = [_dist(lateral, "As", "Ai", lateral_spacing), _dist(lateral, "Ps", "Pi", lateral_spacing)]
    if lateral.has("Ms") and lateral.has("Mi"):
        hs.append(_dist(lateral, "Ms", "Mi", lateral_spacing))
    height = float(np.mean(hs))
    width = (_dist(ap, "SL", "SR", ap_spacing) + _dist(ap, "IL", "IR", ap_spacing)) / 2
    return math.pi / 4 * depth * width * height / 1000.0, depth, width, height


def cement_volume_ratio(cement_volume_ml: float | None, lateral: Vertebra | None,
                        lateral_spacing: tuple[float, float] | None, ap: Vertebra | None,
                        ap_spacing: tuple[float, float] | None) -> VolumeRatio:
    """``100 * cement volume / elliptic-cylinder body volume`` (%), with the 13.82 % flag.

    Needs the clinical cement volume (ml), the treated vertebra on a calibrated lateral film
    *and* on a calibrated AP film; otherwise the ratio is NaN with the reason.

    >>> lat = Vertebra("L1", "lateral",
    ...                {"As": (0, 30), "Ai": (20, 30), "Ps": (0, 0), "Pi": (20, 0)})
    >>> ap = Vertebra("L1", "ap", {"SL": (0, 0), "SR": (0, 40), "IL": (20, 0), "IR": (20, 40)})
    >>> r = cement_volume_ratio(3.0, lat, (1.0, 1.0), ap, (1.0, 1.0))
    >>> round(r.ratio_pct, 3), r.above_threshold   # 100 * 3 / 18.8496
    (15.915, True)
    """
    nan = float("nan")
    why = None
    if cement_volume_ml is None or not math.isfinite(cement_volume_ml) or cement_volume_ml < 0:
        why = "no clinical cement volume (ml) for this patient"
    elif lateral is None or ap is None:
        why = "needs the treated vertebra on both a lateral and an AP film"
    elif lateral_spacing is None or ap_spacing is None:
        why = "needs calibrated lateral and AP films (mm) to estimate the body volume"
    elif lateral.level == "S1":
        why = "S1 has no body outline on the lateral film"
    if why is not None:
        return VolumeRatio(nan, None, nan, nan, nan, nan, why)
    vol, d, w, h = vertebral_body_volume_ml(lateral, lateral_spacing, ap, ap_spacing)
    if not vol > 0:
        return VolumeRatio(nan, None, vol, d, w, h, "estimated body volume is zero")
    ratio = 100.0 * float(cement_volume_ml) / vol
    return VolumeRatio(ratio, ratio > VOLUME_RATIO_THRESHOLD_PCT, vol, d, w, h)
