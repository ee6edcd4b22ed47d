"""Pixel spacing of a projection radiograph, decided from the DICOM attributes themselves.

Projection radiographs are the one place where "the pixel spacing" is ambiguous. The detector
pixel pitch (``ImagerPixelSpacing``, 0018,1164) is measured in the detector plane, which is
magnified relative to the patient; ``PixelSpacing`` (0028,0030) may be a calibrated spacing at
the patient, or a copy of the detector pitch, or ``0\\0`` in real exports. SimpleITK / GDCM
report ``ImagerPixelSpacing`` and silently fall back to 1.0 mm when it is missing, so
spine_measure reads the attributes itself and always says which one it used.

The order (docs/calibration.md) is:

===  ==============================  =========================================================
 #   ``source``                      spacing
===  ==============================  =========================================================
 1   ``reader``                      a line of known length drawn by the reader
 2   ``pixel_spacing_calibrated``    ``PixelSpacing`` when ``PixelSpacingCalibrationType``
                                     (0028,0A02) is present (``GEOMETRY`` or ``FIDUCIAL``)
 3   ``imager_pixel_spacing_ermf``   ``ImagerPixelSpacing`` / ``EstimatedRadiographic``
                                     ``MagnificationFactor`` (0018,1114)
 4   ``imager_pixel_spacing``        ``ImagerPixelSpacing`` alone (detector plane)
 5   ``pixel_spacing``               ``PixelSpacing`` alone
 6   ``uncalibrated``                none: lengths in px, ratios and angles still valid
===  ==============================  =========================================================

A spacing that is zero, negative, not a number or outside 0.01–5 mm is treated as missing,
with a :class:`~spine_measure.errors.CalibrationWarning`; so is a magnification factor
outside 1.0–3.0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from spine_measure.errors import CalibrationWarning

__all__ = [
    "SPACING_RANGE_MM",
    "ERMF_RANGE",
    "CALIBRATION_TAGS",
    "Calibration",
    "CalibrationSource",
    "decide_calibration",
    "calibration_from_dataset",
    "calibration_from_line",
]

#: Plausible range of a pixel spacing in mm (docs/calibration.md); outside it a spacing is "absurd".
SPACING_RANGE_MM: tuple[float, float] = (0.01, 5.0)
#: Plausible range of EstimatedRadiographicMagnificationFactor (>= 1 by definition).
ERMF_RANGE: tuple[float, float] = (1.0, 3.0)

#: The DICOM keywords the calibration decision reads (for header-only reads).
CALIBRATION_TAGS: tuple[str, ...] = (
    "PixelSpacing",
    "PixelSpacingCalibrationType",
    "ImagerPixelSpacing",
    "EstimatedRadiographicMagnificationFactor",
)


class CalibrationSource(StrEnum):
    """Where a film's spacing came from, best first (docs/calibration.md)."""

    READER = "reader"
    PIXEL_SPACING_CALIBRATED = "pixel_spacing_calibrated"
    IMAGER_PIXEL_SPACING_ERMF = "imager_pixel_spacing_ermf"
    IMAGER_PIXEL_SPACING = "imager_pixel_spacing"
    PIXEL_SPACING = "pixel_spacing"
    UNCALIBRATED = "uncalibrated"


@dataclass(frozen=True)
class Calibration:
    """The spacing of a film in mm per pixel, with its source.

    Parameters
    ----------
    row_mm, col_mm : float or None
        Distance between the centres of adjacent rows / columns, in mm; both ``None`` when the
        film is uncalibrated.
    source : CalibrationSource
        Which rule of docs/calibration.md gave the spacing.
    detail : str
        Human-readable provenance, e.g. ``"ImagerPixelSpacing 0.139\\0.139 / ERMF 1.12"``.
    notes : tuple of str
        Attributes that were present but unusable, and why.

    Examples
    --------
    >>> cal = Calibration(0.2, 0.2, CalibrationSource.IMAGER_PIXEL_SPACING)
    >>> cal.unit, cal.calibrated
    ('mm', True)
    >>> round(cal.length((0, 0), (3, 4)), 6)
    1.0
    """

    row_mm: float | None
    col_mm: float | None
    source: CalibrationSource
    detail: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", CalibrationSource(self.source))
        if (self.row_mm is None) != (self.col_mm is None):
            raise ValueError(
                'Arguments "row_mm" and "col_mm" must both be given or both be None; '
                f"got {self.row_mm!r} and {self.col_mm!r}"
            )
        if self.row_mm is None:
            if self.source is not CalibrationSource.UNCALIBRATED:
                raise ValueError(f'Calibration source "{self.source}" needs a spacing')
            return
        for name in ("row_mm", "col_mm"):
            value = float(getattr(self, name))
            if not _plausible_spacing(value):
                raise ValueError(
                    f'Argument "{name}" must be a spacing within {SPACING_RANGE_MM} mm; '
                    f"got {value!r}"
                )
            object.__setattr__(self, name, value)
        if self.source is CalibrationSource.UNCALIBRATED:
            raise ValueError('Calibration source "uncalibrated" cannot carry a spacing')

    @classmethod
    def uncalibrated(cls, notes: Sequence[str] = ()) -> Calibration:
        """A film without a usable spacing: lengths stay in pixels."""
        return cls(None, None, CalibrationSource.UNCALIBRATED, "no usable spacing", tuple(notes))

    @property
    def calibrated(self) -> bool:
        """True when lengths can be given in mm."""
        return self.row_mm is not None

    @property
    def unit(self) -> str:
        """``"mm"`` when calibrated, else ``"px"``."""
        return "mm" if self.calibrated else "px"

    @property
    def spacing(self) -> tuple[float, float] | None:
        """``(row_mm, col_mm)`` or ``None``."""
        if self.row_mm is None or self.col_mm is None:
            return None
        return (self.row_mm, self.col_mm)

    def length(self, p0: Sequence[float], p1: Sequence[float]) -> float:
        """Distance between two (row, col) points in :attr:`unit`."""
        dr = float(p1[0]) - float(p0[0])
        dc = float(p1[1]) - float(p0[1])
        if self.row_mm is None or self.col_mm is None:
            return math.hypot(dr, dc)
        return math.hypot(dr * self.row_mm, dc * self.col_mm)


def _plausible_spacing(value: float) -> bool:
    return math.isfinite(value) and SPACING_RANGE_MM[0] <= value <= SPACING_RANGE_MM[1]


def _as_floats(value: Any) -> list[float] | None:
    """Tolerantly turn a DS / multi-value / string into floats; ``None`` when impossible."""
    if value is None:
        return None
    if isinstance(value, str | bytes):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        parts = [p for p in text.replace("\x00", " ").split("\\")]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = [value]
    out: list[float] = []
    for part in parts:
        try:
            out.append(float(str(part).strip()))
        except (TypeError, ValueError):
            return None
    return out or None


def _spacing_pair(keyword: str, value: Any, notes: list[str]) -> tuple[float, float] | None:
    """Validate a (row, col) spacing attribute; record why it is unusable in ``notes``."""
    if value is None or (isinstance(value, str | bytes) and not value.strip()):
        return None
    numbers = _as_floats(value)
    if numbers is None:
        notes.append(f"{keyword} {value!r} is not numeric")
        return None
    if len(numbers) == 1:
        # DICOM requires two values (row\\col). Real files sometimes carry one for square
        # pixels: used as such, but never silently (a note and a warning say so).
        if not _plausible_spacing(numbers[0]):
            notes.append(f"{keyword} {numbers[0]:g} is outside "
                         f"{SPACING_RANGE_MM[0]}-{SPACING_RANGE_MM[1]} mm")
            return None
        notes.append(f"{keyword} has one value ({numbers[0]:g}) where DICOM requires two "
                     f"(row\\column); taken as square pixels {numbers[0]:g}\\{numbers[0]:g}")
        numbers = numbers * 2
    if len(numbers) != 2:
        notes.append(f"{keyword} has {len(numbers)} values, expected 2")
        return None
    if not all(_plausible_spacing(v) for v in numbers):
        shown = "\\".join(f"{v:g}" for v in numbers)
        notes.append(
            f"{keyword} {shown} is outside {SPACING_RANGE_MM[0]}-{SPACING_RANGE_MM[1]} mm"
        )
        return None
    return (numbers[0], numbers[1])


def _fmt(pair: tuple[float, float]) -> str:
    return f"{pair[0]:g}\\{pair[1]:g}"


def decide_calibration(
    *,
    pixel_spacing: Any = None,
    pixel_spacing_calibration_type: Any = None,
    imager_pixel_spacing: Any = None,
    estimated_radiographic_magnification_factor: Any = None,
    context: str = "",
    warn: bool = True,
) -> Calibration:
    """Decide a film's spacing from its DICOM attribute values (docs/calibration.md, rules 2–6).

    Values may be anything pydicom returns for the attribute (``MultiValue`` of ``DSfloat``, a
    single number, a raw string); malformed ones count as missing.

    Parameters
    ----------
    pixel_spacing, imager_pixel_spacing : sequence of 2 numbers, optional
        ``PixelSpacing`` (0028,0030) and ``ImagerPixelSpacing`` (0018,1164), (row, col) in mm.
    pixel_spacing_calibration_type : str, optional
        ``PixelSpacingCalibrationType`` (0028,0A02); any non-empty value (``GEOMETRY``,
        ``FIDUCIAL``) marks ``PixelSpacing`` as calibrated at the patient.
    estimated_radiographic_magnification_factor : number, optional
        ``EstimatedRadiographicMagnificationFactor`` (0018,1114).
    context : str
        Prefix for warnings, usually the file path.
    warn : bool
        Emit a :class:`CalibrationWarning` for every unusable attribute.

    Returns
    -------
    Calibration

    Examples
    --------
    >>> cal = decide_calibration(imager_pixel_spacing=[0.15, 0.15],
    ...                          estimated_radiographic_magnification_factor=1.2)
    >>> cal.source.value, round(cal.row_mm, 6)
    ('imager_pixel_spacing_ermf', 0.125)
    >>> decide_calibration(pixel_spacing=[0, 0], warn=False).source.value
    'uncalibrated'
    """
    notes: list[str] = []
    ps = _spacing_pair("PixelSpacing", pixel_spacing, notes)
    ips = _spacing_pair("ImagerPixelSpacing", imager_pixel_spacing, notes)
    cal_type = str(pixel_spacing_calibration_type or "").strip()

    ermf: float | None = None
    if estimated_radiographic_magnification_factor not in (None, ""):
        numbers = _as_floats(estimated_radiographic_magnification_factor)
        if numbers and len(numbers) == 1 and ERMF_RANGE[0] <= numbers[0] <= ERMF_RANGE[1]:
            ermf = numbers[0]
        else:
            notes.append(
                "EstimatedRadiographicMagnificationFactor "
                f"{estimated_radiographic_magnification_factor!r} is outside "
                f"{ERMF_RANGE[0]}-{ERMF_RANGE[1]}"
            )

    result: Calibration
    if ps is not None and cal_type:
        result = Calibration(
            ps[0], ps[1], CalibrationSource.PIXEL_SPACING_CALIBRATED,
            f"PixelSpacing {_fmt(ps)} (PixelSpacingCalibrationType {cal_type})",
        )
    elif ips is not None and ermf is not None:
        pair = (ips[0] / ermf, ips[1] / ermf)
        if all(_plausible_spacing(v) for v in pair):
            result = Calibration(
                pair[0], pair[1], CalibrationSource.IMAGER_PIXEL_SPACING_ERMF,
                f"ImagerPixelSpacing {_fmt(ips)} / ERMF {ermf:g}",
            )
        else:  # pragma: no cover - both factors are range-checked, the ratio stays plausible
            result = Calibration(ips[0], ips[1], CalibrationSource.IMAGER_PIXEL_SPACING,
                                 f"ImagerPixelSpacing {_fmt(ips)} (detector plane)")
    elif ips is not None:
        result = Calibration(
            ips[0], ips[1], CalibrationSource.IMAGER_PIXEL_SPACING,
            f"ImagerPixelSpacing {_fmt(ips)} (detector plane, not corrected for magnification)",
        )
    elif ps is not None:
        result = Calibration(ps[0], ps[1], CalibrationSource.PIXEL_SPACING,
                             f"PixelSpacing {_fmt(ps)}")
    else:
        result = Calibration.uncalibrated()

    if notes:
        result = Calibration(result.row_mm, result.col_mm, result.source, result.detail,
                             tuple(notes))
        if warn:
            prefix = f"{context}: " if context else ""
            for note in notes:
                suffix = "" if "taken as" in note else "; ignored"
                warnings.warn(f"{prefix}{note}{suffix}", CalibrationWarning, stacklevel=2)
    return result


def calibration_from_dataset(ds: Mapping[str, Any] | Any, *, context: str = "",
                             warn: bool = True) -> Calibration:
    """Decide the spacing of a pydicom ``Dataset`` (or a mapping keyword -> value).

    Only the four attributes of :data:`CALIBRATION_TAGS` are read, so a header read with
    ``stop_before_pixels=True`` is enough.
    """
    if isinstance(ds, Mapping):
        get = ds.get
    else:
        from spine_measure.io.radiograph import raw_attribute

        def get(keyword: str) -> Any:
            return raw_attribute(ds, keyword)

    return decide_calibration(
        pixel_spacing=get("PixelSpacing"),
        pixel_spacing_calibration_type=get("PixelSpacingCalibrationType"),
        imager_pixel_spacing=get("ImagerPixelSpacing"),
        estimated_radiographic_magnification_factor=get(
            "EstimatedRadiographicMagnificationFactor"
        ),
        context=context,
        warn=warn,
    )


def calibration_from_line(
    p0: Sequence[float],
    p1: Sequence[float],
    length_mm: float,
    *,
    pixel_aspect: tuple[float, float] = (1.0, 1.0),
) -> Calibration:
    """A reader-drawn calibration: a line from ``p0`` to ``p1`` ((row, col) px) is ``length_mm``.

    The pixel aspect ratio (row spacing : col spacing) is kept from the header when known
    (pass the header spacing as ``pixel_aspect``), so only the overall scale changes:
    ``row_mm = k * aspect_row``, ``col_mm = k * aspect_col`` with
    ``k = length_mm / hypot(dr * aspect_row, dc * aspect_col)``.

    Examples
    --------
    >>> cal = calibration_from_line((0, 0), (0, 200), 50.0)
    >>> cal.source.value, cal.row_mm, cal.col_mm
    ('reader', 0.25, 0.25)
    """
    length = float(length_mm)
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f'Argument "length_mm" must be a positive length; got {length_mm!r}')
    ar, ac = (float(pixel_aspect[0]), float(pixel_aspect[1]))
    if not (ar > 0 and ac > 0 and math.isfinite(ar) and math.isfinite(ac)):
        raise ValueError(
            f'Argument "pixel_aspect" must be two positive numbers; got {pixel_aspect!r}'
        )
    dr = float(p1[0]) - float(p0[0])
    dc = float(p1[1]) - float(p0[1])
    scaled = math.hypot(dr * ar, dc * ac)
    if not math.isfinite(scaled) or scaled < 1.0 * min(ar, ac):
        raise ValueError("the calibration line must be at least one pixel long; "
                         f"got {math.hypot(dr, dc):.3g} px")
    k = length / scaled
    row_mm, col_mm = k * ar, k * ac
    if not (_plausible_spacing(row_mm) and _plausible_spacing(col_mm)):
        raise ValueError(
            f"a {length:g} mm line over {math.hypot(dr, dc):.1f} px gives a spacing of "
            f"{row_mm:.4g} mm, outside {SPACING_RANGE_MM[0]}-{SPACING_RANGE_MM[1]} mm"
        )
    return Calibration(row_mm, col_mm, CalibrationSource.READER,
                       f"reader line of {length:g} mm over {math.hypot(dr, dc):.1f} px")
