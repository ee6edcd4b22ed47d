"""Opening a radiograph: DICOM (every transfer syntax pydicom can decode) or a plain image.

:func:`load_radiograph` is the one entry point. It returns a :class:`Radiograph`, valid once
built, holding the stored pixel array in (row, col) order, the spacing with its source
(:mod:`spine_measure.io.calibration`) and the identifying metadata. Display settings (modality
LUT, VOI LUT / window, MONOCHROME1 inversion) are applied lazily in :attr:`Radiograph.display`
and never affect measurements.

Decisions, documented in ``docs/loading.md``:

* **Multi-frame** images (XA/RF cine, multi-frame DX) need a frame index (``frame=``); without
  one a :class:`~spine_measure.errors.RadiographError` names the number of frames. Only the
  chosen frame is decoded.
* **Colour** images (RGB, YBR, PALETTE COLOR; e.g. a screenshot stored as SC, or a PNG) are
  converted to luminance with the ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B) with an
  :class:`~spine_measure.errors.ImageConversionWarning`.
* The decoder is chosen per transfer syntax (:data:`DECODER_PREFERENCE`); when it fails the
  other installed plugins are tried, GDCM last but one and pydicom's own decoders last.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import hashlib
import io
import logging
import os
import struct
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from spine_measure.errors import ImageConversionWarning, RadiographError
from spine_measure.io.calibration import Calibration, calibration_from_dataset
from spine_measure.io.files import names_file, not_a_regular_file

__all__ = [
    "DECODER_PREFERENCE",
    "PLAIN_IMAGE_SUFFIXES",
    "RadiographMetadata",
    "Radiograph",
    "Window",
    "header_voi_lut",
    "header_window",
    "load_radiograph",
    "radiograph_from_array",
    "metadata_from_dataset",
    "pixel_sha256",
]

logger = logging.getLogger(__name__)

#: Modalities accepted as projection radiographs (docs/calibration.md).
PROJECTION_MODALITIES = frozenset({"CR", "DX", "RF", "XA", "OT", "SC", "RG", "PX", "MG", "IO"})
#: File suffixes opened as plain (uncalibrated) images.
PLAIN_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

#: Preferred pydicom decoding plugin per transfer syntax UID, fastest first (measured, see
#: ``docs/performance.md``). Anything not listed uses pydicom's default order.
DECODER_PREFERENCE: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.5": ("pylibjpeg", "gdcm", "pydicom"),  # RLE Lossless
    "1.2.840.10008.1.2.4.80": ("pyjpegls", "gdcm", "pylibjpeg"),  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": ("pyjpegls", "gdcm", "pylibjpeg"),  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.57": ("gdcm", "pylibjpeg"),  # JPEG Lossless P14
    "1.2.840.10008.1.2.4.70": ("gdcm", "pylibjpeg"),  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.50": ("pylibjpeg", "gdcm", "pillow"),  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": ("pylibjpeg", "gdcm", "pillow"),  # JPEG Extended
    "1.2.840.10008.1.2.4.90": ("gdcm", "pylibjpeg", "pillow"),  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": ("gdcm", "pylibjpeg", "pillow"),  # JPEG 2000
}

_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float64)


@dataclass(frozen=True)
class Window:
    """A display window: ``center`` and ``width`` in modality units, and where it came from
    (``voi_lut``, ``window_attributes``, ``percentiles``)."""

    center: float
    width: float
    source: str


@dataclass(frozen=True)
class RadiographMetadata:
    """Identifying and descriptive attributes of a radiograph (all optional but ``path``)."""

    path: str
    format: str = "dicom"  # "dicom" or the plain-image format ("png", "jpeg", "tiff", ...)
    patient_id: str | None = None
    patient_name: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    study_date: _dt.date | None = None
    acquisition_date: _dt.date | None = None
    modality: str | None = None
    view_position: str | None = None
    body_part: str | None = None
    laterality: str | None = None
    manufacturer: str | None = None
    photometric_interpretation: str | None = None
    transfer_syntax_uid: str | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int = 1
    frame: int | None = None

    @property
    def date(self) -> _dt.date | None:
        """The film's date: acquisition date, else study date."""
        return self.acquisition_date or self.study_date


@dataclass(frozen=True, eq=False)
class Radiograph:
    """A radiograph ready to measure. Valid once built.

    Parameters
    ----------
    pixels : ndarray, shape (rows, cols)
        Stored values (after decoding; before any LUT), read-only, (row, col) order.
    calibration : Calibration
        Spacing with its source (docs/calibration.md).
    metadata : RadiographMetadata
    rescale : (slope, intercept)
        Modality LUT as a linear rescale (``RescaleSlope``, ``RescaleIntercept``).
    monochrome1 : bool
        True when low stored values are bright (MONOCHROME1): :attr:`display` and
        :attr:`density` are inverted so that bright always means dense.
    window : Window or None
        The default window from the file (VOI LUT or WindowCenter/Width); percentiles when
        ``None``.
    voi_lut : ndarray or None
        The VOI LUT (first of VOILUTSequence) when present, applied by :attr:`display`.
    """

    pixels: np.ndarray
    calibration: Calibration
    metadata: RadiographMetadata
    rescale: tuple[float, float] = (1.0, 0.0)
    monochrome1: bool = False
    window: Window | None = None
    voi_lut: tuple[np.ndarray, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.ndim != 2:
            raise ValueError(
                f'Argument "pixels" must have shape (rows, cols); got {pixels.shape}'
            )
        if pixels.shape[0] < 2 or pixels.shape[1] < 2:
            raise ValueError(f'Argument "pixels" must be at least 2x2; got {pixels.shape}')
        if not (np.issubdtype(pixels.dtype, np.integer)
                or np.issubdtype(pixels.dtype, np.floating)):
            raise ValueError(f'Argument "pixels" must be numeric; got dtype {pixels.dtype}')
        if pixels.flags.writeable:
            pixels = pixels.view()
            pixels.flags.writeable = False
        object.__setattr__(self, "pixels", pixels)
        slope, intercept = (float(self.rescale[0]), float(self.rescale[1]))
        if not (np.isfinite(slope) and np.isfinite(intercept) and slope != 0):
            raise ValueError(f'Argument "rescale" must be a finite non-zero slope and an '
                             f"intercept; got {self.rescale!r}")
        object.__setattr__(self, "rescale", (slope, intercept))

    @cached_property
    def pixel_sha256(self) -> str:
        """SHA-256 of dtype, shape and bytes of :attr:`pixels` (:func:`pixel_sha256`); ties
        annotations to non-DICOM images. Computed on first use (18 ms for a 3000x3000 film)."""
        return pixel_sha256(self.pixels)

    # -- geometry ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def spacing(self) -> tuple[float, float] | None:
        """``(row_mm, col_mm)``, or ``None`` when uncalibrated."""
        return self.calibration.spacing

    # -- intensities ------------------------------------------------------------------
    @cached_property
    def values(self) -> np.ndarray:
        """Modality values (``pixels * slope + intercept``) as float32."""
        slope, intercept = self.rescale
        out = self.pixels.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            out = out * np.float32(slope) + np.float32(intercept)
        out.flags.writeable = False
        return out

    @cached_property
    def density(self) -> np.ndarray:
        """Modality values oriented so that higher means more attenuation (MONOCHROME1
        flipped about its value range), float32. Segmentation works on this, never on
        :attr:`display`."""
        values = self.values
        if not self.monochrome1:
            return values
        lo, hi = float(values.min()), float(values.max())
        out = (np.float32(lo + hi) - values).astype(np.float32)
        out.flags.writeable = False
        return out

    @cached_property
    def _flip_constant(self) -> np.float32:
        """``lo + hi`` of :attr:`values`, the MONOCHROME1 flip of :attr:`density`, from the
        stored pixels' range (no full-film float conversion)."""
        slope, intercept = self.rescale
        ends = (float(self.pixels.min()), float(self.pixels.max()))
        v = [np.float32(e) * np.float32(slope) + np.float32(intercept)
             if (slope, intercept) != (1.0, 0.0) else np.float32(e) for e in ends]
        return np.float32(float(min(v)) + float(max(v)))

    def density_crop(self, rows: slice, cols: slice) -> np.ndarray:
        """:attr:`density` of the region ``[rows, cols]``, converting only that region.

        Equal to ``self.density[rows, cols]`` bit for bit; the cement segmentation reads its
        search region through this, so a 3000 x 3000 film is never converted to float whole.
        """
        cached = self.__dict__.get("density")
        if cached is not None:
            return cached[rows, cols]
        slope, intercept = self.rescale
        out = self.pixels[rows, cols].astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            out = out * np.float32(slope) + np.float32(intercept)
        if self.monochrome1:
            out = (self._flip_constant - out).astype(np.float32)
        return out

    @cached_property
    def display(self) -> np.ndarray:
        """A display-ready view: float32 in [0, 1], bright = dense, default window applied."""
        values = self.values
        if self.voi_lut is not None:
            lut, first = self.voi_lut
            idx = np.clip(np.rint(values).astype(np.int64) - first, 0, len(lut) - 1)
            mapped = lut[idx].astype(np.float32)
            lo, hi = float(lut.min()), float(lut.max())
            out = (mapped - lo) / max(hi - lo, 1e-12)
        else:
            window = self.window or self.default_window()
            lo = window.center - window.width / 2.0
            out = (values - np.float32(lo)) / np.float32(max(window.width, 1e-6))
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        if self.monochrome1:
            out = 1.0 - out
        out.flags.writeable = False
        return out

    def default_window(self) -> Window:
        """The file's window, else the 0.5th–99.5th percentiles of the modality values."""
        if self.window is not None:
            return self.window
        sample = self.values[:: max(1, self.shape[0] // 512), :: max(1, self.shape[1] // 512)]
        lo, hi = np.percentile(sample, [0.5, 99.5])
        width = float(max(hi - lo, 1.0))
        return Window(float(lo + hi) / 2.0, width, "percentiles")


def pixel_sha256(array: np.ndarray) -> str:
    """SHA-256 (hex) over an array's dtype, shape and C-order bytes."""
    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(arr.dtype.str).encode())
    h.update(str(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


# -------------------------------------------------------------------------------------
# DICOM
# -------------------------------------------------------------------------------------


_TAG_CACHE: dict[str, int] = {}
_NUMERIC_VRS = {"US": "<H", "UL": "<I", "SS": "<h", "SL": "<i"}


def _tag(keyword: str) -> int:
    tag = _TAG_CACHE.get(keyword)
    if tag is None:
        from pydicom.datadict import tag_for_keyword

        tag = _TAG_CACHE[keyword] = int(tag_for_keyword(keyword))
    return tag


def raw_attribute(ds: Any, keyword: str) -> str | int | None:
    """An attribute's value without pydicom's value conversion: text for string VRs
    (multi-values joined by backslash, as stored), int for binary integers.

    The header scan reads some 25 attributes of every file; converting each through pydicom
    costs more than reading the file, so only PatientName (character sets) is converted.
    """
    try:
        elem = ds.get_item(_tag(keyword))
    except Exception:
        return None
    if elem is None:
        return None
    value = elem.value
    if value is None:
        return None
    if isinstance(value, bytes):
        vr = elem.VR
        if vr is None:
            from pydicom.datadict import dictionary_VR

            vr = dictionary_VR(_tag(keyword))
        fmt = _NUMERIC_VRS.get(vr)
        if fmt is not None:
            if len(value) < struct.calcsize(fmt):
                return None
            _, little = getattr(ds, "original_encoding", (None, True))
            order = "<" if little is not False else ">"
            return int(struct.unpack_from(order + fmt[1], value)[0])
        text = value.decode("latin-1", "replace").strip(" \x00")
        return text or None
    if isinstance(value, str | int | float):
        text = str(value).strip(" \x00")
        return (value if isinstance(value, int) else text) or None
    try:  # converted multi-values (MultiValue) and person names
        if isinstance(value, Sequence) and not isinstance(value, str):
            return "\\".join(str(v) for v in value) or None
        return str(value).strip() or None
    except Exception:
        return None


def _text(ds: Any, keyword: str) -> str | None:
    value = raw_attribute(ds, keyword)
    return None if value is None else str(value)


def _date(ds: Any, keyword: str) -> _dt.date | None:
    text = _text(ds, keyword)
    if not text:
        return None
    text = text.replace(".", "").replace("-", "")[:8]
    try:
        return _dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _int(ds: Any, keyword: str, default: int | None = None) -> int | None:
    value = raw_attribute(ds, keyword)
    if value is None:
        return default
    try:
        return int(str(value).split("\\")[0].strip())
    except ValueError:
        return default


def _person_name(ds: Any) -> str | None:
    raw = raw_attribute(ds, "PatientName")
    if raw is None or (isinstance(raw, str) and raw.isascii()):
        return raw if raw is None else str(raw)
    try:
        value = ds.get("PatientName")  # non-ASCII: convert, honouring SpecificCharacterSet
    except Exception:
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def metadata_from_dataset(ds: Any, path: str | os.PathLike[str]) -> RadiographMetadata:
    """Read :class:`RadiographMetadata` from a pydicom ``Dataset`` (header is enough)."""
    file_meta = getattr(ds, "file_meta", None)
    tsuid = _text(file_meta, "TransferSyntaxUID") if file_meta is not None else None
    frames = _int(ds, "NumberOfFrames", 1) or 1
    return RadiographMetadata(
        path=os.fspath(path),
        format="dicom",
        patient_id=_text(ds, "PatientID"),
        patient_name=_person_name(ds),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        study_date=_date(ds, "StudyDate"),
        acquisition_date=_date(ds, "AcquisitionDate") or _date(ds, "ContentDate"),
        modality=_text(ds, "Modality"),
        view_position=_text(ds, "ViewPosition"),
        body_part=_text(ds, "BodyPartExamined"),
        laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        manufacturer=_text(ds, "Manufacturer"),
        photometric_interpretation=_text(ds, "PhotometricInterpretation"),
        transfer_syntax_uid=tsuid,
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=max(frames, 1),
    )


# -------------------------------------------------------------------------------------
# Pre-flight: the pixel module must agree with itself and with the data before any
# native decoder sees it (a lie can abort the process inside GDCM; docs/robustness.md).
# -------------------------------------------------------------------------------------

#: Samples per pixel each photometric interpretation requires.
_SAMPLES_FOR_PHOTOMETRIC = {
    "MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1,
    "RGB": 3, "YBR_FULL": 3, "YBR_FULL_422": 3, "YBR_PARTIAL_422": 3, "YBR_PARTIAL_420": 3,
    "YBR_ICT": 3, "YBR_RCT": 3, "HSV": 3, "ARGB": 4, "CMYK": 4,
}
#: Largest frame decoded (bytes); a radiograph of 4,000 x 4,000 x 16 bit is 32 MB.
MAX_FRAME_BYTES = 1 << 30
_JPEG_TS = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                      "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
                      "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
_J2K_TS = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                     "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                     "1.2.840.10008.1.2.4.203"})
_RLE_TS = "1.2.840.10008.1.2.5"
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF, 0xF7})


class _Inconsistent(Exception):
    """The pixel module contradicts itself or its data (message in the user's terms)."""


def _jpeg_frame_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(precision, rows, columns, components) of a JPEG / JPEG-LS codestream's SOF, or None
    when the stream has none before its first scan."""
    if data[:2] != b"\xff\xd8":
        raise _Inconsistent("the JPEG data does not start with a JPEG start-of-image marker")
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise _Inconsistent("the JPEG data is corrupt (marker expected in its header)")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 10 > n:
                break
            p = data[i + 4]
            rows = int.from_bytes(data[i + 5:i + 7], "big")
            cols = int.from_bytes(data[i + 7:i + 9], "big")
            return p, rows, cols, data[i + 9]
        if marker == 0xDA or length < 2:
            return None
        i += 2 + length
    raise _Inconsistent("the JPEG data ends inside its header (truncated)")


def _j2k_frame_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(precision, rows, columns, components) of a JPEG 2000 codestream's SIZ segment."""
    if data[:4] != b"\xff\x4f\xff\x51":
        return None  # a JP2 file wrapper or another layout: left to the decoder
    if len(data) < 4 + 38 + 3:
        raise _Inconsistent("the JPEG 2000 data ends inside its header (truncated)")
    siz = data[4:]
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", siz[4:20])
    ncomp = int.from_bytes(siz[36:38], "big")
    if ncomp == 0 or len(siz) < 38 + 3 * ncomp:
        raise _Inconsistent("the JPEG 2000 header is corrupt (component count)")
    precision = (siz[38] & 0x7F) + 1
    return precision, ysiz - yo, xsiz - xo, ncomp


def check_pixel_module(ds: Any) -> None:
    """Refuse a pixel module that contradicts itself or its data, before decoding.

    Checked: PhotometricInterpretation against SamplesPerPixel; BitsAllocated (1 or a
    multiple of 8 up to 64), BitsStored and HighBit within it; PixelRepresentation 0 or 1;
    the frame size; for native data its length against Rows x Columns x samples x bits x
    frames; for encapsulated data the fragments and, for JPEG, JPEG-LS, JPEG 2000 and RLE,
    the codestream's own rows, columns, components and precision against the header.

    Raises
    ------
    _Inconsistent
        With the reason in the user's terms (the caller names the file).
    """
    if "PixelData" not in ds:
        return  # float pixel data: pydicom's own checks
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if not rows or not cols:
        raise _Inconsistent(f"Rows {rows} x Columns {cols} is not an image size")
    frames = _int(ds, "NumberOfFrames", 1)
    if frames is None or frames < 1:
        raise _Inconsistent(f"NumberOfFrames {raw_attribute(ds, 'NumberOfFrames')} is not a "
                            "frame count")
    photometric = (_text(ds, "PhotometricInterpretation") or "").upper().strip()
    spp = _int(ds, "SamplesPerPixel", 1) or 0
    want = _SAMPLES_FOR_PHOTOMETRIC.get(photometric)
    if photometric and want is None:
        raise _Inconsistent(f"PhotometricInterpretation {photometric!r} is not a DICOM value")
    if want is not None and spp != want:
        raise _Inconsistent(f"PhotometricInterpretation {photometric} needs SamplesPerPixel "
                            f"{want}, but the file says {spp}")
    if spp not in (1, 3, 4):
        raise _Inconsistent(f"SamplesPerPixel {spp} is not 1, 3 or 4")
    bits = _int(ds, "BitsAllocated")
    if bits is None or not (bits == 1 or (bits % 8 == 0 and 8 <= bits <= 64)):
        raise _Inconsistent(f"BitsAllocated {bits} is not 1 or a multiple of 8 up to 64")
    stored = _int(ds, "BitsStored", bits)
    if stored is None or not 1 <= stored <= bits:
        raise _Inconsistent(f"BitsStored {stored} does not fit BitsAllocated {bits}")
    high = _int(ds, "HighBit", stored - 1)
    if high is None or not stored - 1 <= high < bits:
        raise _Inconsistent(f"HighBit {high} does not fit BitsStored {stored} and "
                            f"BitsAllocated {bits}")
    rep = _int(ds, "PixelRepresentation", 0)
    if rep not in (0, 1):
        raise _Inconsistent(f"PixelRepresentation {rep} is not 0 (unsigned) or 1 (signed)")
    frame_bytes = rows * cols * spp * max(bits, 8) // 8
    if frame_bytes > MAX_FRAME_BYTES:
        raise _Inconsistent(f"a {rows} x {cols} frame of {spp} x {bits} bits would need "
                            f"{frame_bytes / 2**30:.1f} GB: too large to decode")
    elem = ds["PixelData"]
    data = elem.value
    if not isinstance(data, bytes | bytearray):
        return
    tsuid = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    encapsulated = getattr(elem, "is_undefined_length", False) or (
        tsuid in _JPEG_TS or tsuid in _J2K_TS or tsuid == _RLE_TS)
    if not encapsulated:
        if bits == 1:
            need = (rows * cols * frames * spp + 7) // 8
        elif photometric in ("YBR_FULL_422", "YBR_PARTIAL_422") and spp == 3:
            need = rows * cols * 2 * (bits // 8) * frames
        else:
            need = rows * cols * spp * (bits // 8) * frames
        have = len(data)
        # Shorter than the header says: truncated or a lie. At least twice as long: the
        # header describes other data (e.g. BitsAllocated 8 on 16-bit pixels). A little
        # longer (padding some writers add) is decoded; the excess is ignored.
        if have < need or have >= 2 * need:
            raise _Inconsistent(
                f"the pixel data holds {have:,} bytes, but Rows {rows} x Columns {cols} x "
                f"{spp} sample(s) x {bits} bits"
                + (f" x {frames} frames" if frames > 1 else "")
                + f" needs {need:,}: the header does not describe the data"
                + (" (truncated?)" if have < need else ""))
        return
    _check_encapsulated(data, tsuid, rows, cols, spp, bits, frames)


def _check_encapsulated(data: bytes | bytearray, tsuid: str, rows: int, cols: int, spp: int,
                        bits: int, frames: int) -> None:
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    buf = io.BytesIO(data)
    try:
        parse_basic_offsets(buf)
        fragments = generate_fragments(buf)
        first = next(fragments, None)
        n = 0 if first is None else 1
        if frames > 1:
            n += sum(1 for _ in fragments)
    except Exception:  # noqa: BLE001 - any parse failure is the same problem to the user
        raise _Inconsistent("the compressed pixel data is not a valid sequence of "
                            "fragments") from None
    if not first:
        raise _Inconsistent("the compressed pixel data holds no image fragment")
    if n < frames:
        raise _Inconsistent(f"{frames} frames, but the compressed pixel data holds only "
                            f"{n} fragment(s)")
    head: tuple[int, int, int, int] | None = None
    if tsuid in _JPEG_TS:
        head = _jpeg_frame_header(first)
    elif tsuid in _J2K_TS:
        head = _j2k_frame_header(first)
    elif tsuid == _RLE_TS:
        if len(first) < 64:
            raise _Inconsistent("the RLE data ends inside its header (truncated)")
        offsets = struct.unpack("<16I", first[:64])
        n_seg = offsets[0]
        want = spp * (max(bits, 8) // 8)
        if n_seg != want:
            raise _Inconsistent(f"the RLE data has {n_seg} segments, but {spp} sample(s) of "
                                f"{bits} bits need {want}")
        segs = offsets[1:1 + n_seg]
        if segs[0] != 64 or any(b <= a for a, b in zip(segs, segs[1:], strict=False)) \
                or segs[-1] >= len(first):
            raise _Inconsistent("the RLE header is corrupt (segment offsets)")
        return
    if head is None:
        return
    precision, h_rows, h_cols, ncomp = head
    if h_cols != cols or (h_rows not in (0, rows)):
        raise _Inconsistent(f"the header says Rows {rows} x Columns {cols}, but the "
                            f"compressed image is {h_rows} x {h_cols}")
    if ncomp != spp:
        raise _Inconsistent(f"the header says SamplesPerPixel {spp}, but the compressed image "
                            f"has {ncomp} component(s)")
    if precision > bits:
        raise _Inconsistent(f"the compressed image has {precision}-bit samples, more than "
                            f"BitsAllocated {bits}")


def _plugin_message(exc: BaseException) -> str:
    """The specific reason in pydicom's "all plugins failed" message, on one line, in the
    user's terms where it is one of the known library messages."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = [ln for ln in lines[1:] if ":" in ln] or lines or [type(exc).__name__]
    return explain_exception(exc, detail[0])


#: Library messages and what they mean for the file (matched as substrings, lower case).
_EXPLAINED = (
    ("unpack requires a buffer", "the file ends in the middle of a data element (truncated "
                                 "or corrupt)"),
    ("end of file", "the file ends before its data does (truncated)"),
    ("codec can't decode", "a text element holds bytes that are not valid in the file's "
                           "character set (SpecificCharacterSet)"),
    ("'nonetype' object", "an element the image needs is empty or missing"),
    ("object of type 'nonetype'", "an element the image needs is empty or missing"),
    ("float too large to pack", "a number (e.g. a landmark coordinate) is too large to be "
                                "stored in DICOM"),
    ("no iod found for sop class", "its SOP Class UID is not a valid DICOM storage class"),
    ("cannot reshape array", "the pixel data does not match Rows x Columns (header and data "
                             "disagree)"),
    ("buffer is smaller than requested size", "the pixel data is shorter than the header "
                                              "says (truncated or inconsistent)"),
    ("panicked", "the decoder found the compressed pixel data corrupt"),
    ("panic", "the decoder found the compressed pixel data corrupt"),
)


def explain_exception(exc: BaseException, text: str | None = None) -> str:
    """An exception from a library as one line in the user's terms: a known library message
    is translated (``docs/robustness.md``), anything else keeps its text without the
    exception's class name or a traceback."""
    text = " ".join((text if text is not None else str(exc)).split())
    low = text.lower()
    for needle, meaning in _EXPLAINED:
        if needle in low:
            return meaning
    if isinstance(exc, MemoryError):
        return "not enough memory to decode the pixel data"
    if isinstance(exc, RecursionError):
        return "nested too deeply to be read"
    return text[:200] or "unreadable (no detail given by the decoder)"


#: (pid, temporary file) that :func:`native_stderr` collects into; one per process.
_STDERR_SINK: tuple[int, Any] | None = None


@contextlib.contextmanager
def native_stderr(path: str) -> Iterator[None]:
    """Collect what native decoders write straight to the process's standard error (e.g.
    OpenJPEG's "Unknown progression order") and log it once, naming the file, instead of
    letting it interleave with the tool's own output."""
    global _STDERR_SINK
    try:
        fd = sys.stderr.fileno()
        if _STDERR_SINK is None or _STDERR_SINK[0] != os.getpid():
            _STDERR_SINK = (os.getpid(), tempfile.TemporaryFile())
            atexit.register(_STDERR_SINK[1].close)
        tmp = _STDERR_SINK[1]
        tmp.seek(0)
        tmp.truncate()
        sys.stderr.flush()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):
        yield
        return
    os.dup2(tmp.fileno(), fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
    tmp.seek(0)
    text = tmp.read(4096).decode("utf-8", "replace")
    lines = list(dict.fromkeys(ln.strip() for ln in text.splitlines() if ln.strip()))
    if lines:
        more = f" (and {len(lines) - 1} more line(s))" if len(lines) > 1 else ""
        logger.warning("%s: decoder message: %s%s", path, lines[0][:200], more)


def _decode(ds: Any, path: str, frame: int | None) -> tuple[np.ndarray, bool]:
    """Decode the pixel data with the preferred plugin for its transfer syntax.

    Returns the array and whether the modality LUT is already applied (only the
    SimpleITK/GDCM last resort does that). Everything a decoder raises is caught, including
    ``BaseException`` subclasses of native bindings (a Rust ``PanicException``), but not
    ``KeyboardInterrupt`` or ``SystemExit``.
    """
    tsuid = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    plugins: Sequence[str] = DECODER_PREFERENCE.get(tsuid, ())
    errors: list[str] = []
    with native_stderr(path):
        for plugin in (*plugins, ""):
            try:
                kwargs: dict[str, Any] = {"decoding_plugin": plugin} if plugin else {}
                if frame is not None:
                    kwargs["index"] = frame
                ds.pixel_array_options(**kwargs)
                return ds.pixel_array, False
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - try the next plugin
                errors.append(_plugin_message(exc))
                logger.debug("%s: decoder %s failed: %s", path, plugin or "default", exc)
        if frame is None and os.path.isfile(path):
            # Last resort: GDCM through SimpleITK, which tolerates some broken encodings.
            # Its pixel values come back with RescaleSlope/Intercept applied.
            try:
                import SimpleITK as sitk

                sitk.ProcessObject.SetGlobalWarningDisplay(False)
                arr = sitk.GetArrayFromImage(sitk.ReadImage(path))
                if arr.ndim == 3 and arr.shape[0] == 1:
                    arr = arr[0]
                if arr.ndim == 2:
                    logger.info("%s: decoded by SimpleITK/GDCM after pydicom failed (%s)",
                                path, errors[0])
                    return arr, True
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001
                errors.append(f"SimpleITK: {' '.join(str(exc).split())[:120]}")
    raise RadiographError(path, f"pixel data could not be decoded: {errors[0]}")


def _palette_to_rgb(ds: Any, arr: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    return apply_color_lut(arr, ds)


def _to_grey(arr: np.ndarray, path: str, what: str) -> np.ndarray:
    warnings.warn(
        f"{path}: {what} image converted to luminance (0.299 R + 0.587 G + 0.114 B)",
        ImageConversionWarning,
        stacklevel=3,
    )
    grey = arr[..., :3].astype(np.float64) @ _BT601
    if np.issubdtype(arr.dtype, np.integer):
        return np.rint(grey).astype(arr.dtype)
    return grey.astype(np.float32)


def header_voi_lut(ds: Any) -> tuple[np.ndarray, int] | None:
    """The first VOI LUT of a DICOM dataset's header (``VOILUTSequence``) as ``(values,
    first mapped pixel value)``; None when there is none or it cannot be read. Needs no
    pixel data (a ``stop_before_pixels`` read is enough)."""
    try:
        seq = ds.get("VOILUTSequence")
        if not seq:
            return None
        item = seq[0]
        descriptor = [int(v) for v in item.LUTDescriptor]
        n_entries = descriptor[0] or 65536
        first = descriptor[1]
        bits = descriptor[2]
        data = item.LUTData
        if isinstance(data, bytes):
            dtype = np.uint16 if bits > 8 or len(data) == 2 * n_entries else np.uint8
            lut = np.frombuffer(data, dtype=dtype)
        else:
            lut = np.asarray(data)
        if lut.size < 2:
            return None
        return (lut.astype(np.float32), first)
    except Exception:
        return None


def header_window(ds: Any) -> Window | None:
    """The first WindowCenter/WindowWidth pair of a DICOM dataset's header; None when either
    is missing, not a number or the width is not positive. Needs no pixel data."""
    try:
        center = ds.get("WindowCenter")
        width = ds.get("WindowWidth")
        if center is None or width is None:
            return None
        c = float(center[0] if isinstance(center, Sequence) and not isinstance(center, str)
                  else center)
        w = float(width[0] if isinstance(width, Sequence) and not isinstance(width, str)
                  else width)
    except Exception:
        return None
    if not (np.isfinite(c) and np.isfinite(w) and w > 0):
        return None
    return Window(c, w, "window_attributes")


def _rescale(ds: Any) -> tuple[float, float]:
    try:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    except Exception:
        return (1.0, 0.0)
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        return (1.0, 0.0)
    return (slope, intercept)


#: First two bytes of a raw (preamble-less) little-endian dataset: group 0002, 0008 or 0010.
_RAW_STARTS = (b"\x02\x00", b"\x08\x00", b"\x10\x00")
_NOT_AN_IMAGE = "not a DICOM file or a supported image (PNG, JPEG, TIFF)"


def looks_like_dicom(head: bytes) -> bool:
    """True when the first 132 bytes of a file look like DICOM: the ``DICM`` preamble, or a
    raw dataset starting with a low-numbered element of group 0002, 0008 or 0010."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return (len(head) >= 8 and head[:2] in _RAW_STARTS
            and int.from_bytes(head[2:4], "little") < 0x1000)


def _load_dicom(path: str, frame: int | None) -> Radiograph:
    import pydicom

    with open(path, "rb") as fh:
        head = fh.read(132)
    if not looks_like_dicom(head):
        raise RadiographError(path, _NOT_AN_IMAGE)
    try:
        # force=True only for raw datasets without preamble / File Meta
        ds = pydicom.dcmread(path, force=head[128:132] != b"DICM")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - one line, never a traceback
        raise RadiographError(path, f"not a readable DICOM file: {explain_exception(exc)}"
                              ) from None
    if len(ds) == 0 and head[128:132] == b"DICM":
        # pydicom gives up on a file cut inside its (encapsulated) data and returns nothing
        raise RadiographError(path, "truncated or corrupt DICOM file: it ends before its data "
                                    "elements are complete (no element could be read)")
    return radiograph_from_dataset(ds, path, frame=frame)


def radiograph_from_dataset(ds: Any, path: str | os.PathLike[str] = "<dataset>", *,
                            frame: int | None = None) -> Radiograph:
    """Build a :class:`Radiograph` from a pydicom ``Dataset`` (decodes its pixel data)."""
    path = os.fspath(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if len(ds) == 0 or "SOPClassUID" not in ds and "Rows" not in ds:
            raise RadiographError(path, _NOT_AN_IMAGE)
        if "Rows" in ds:
            raise RadiographError(path, "no Pixel Data (7FE0,0010) element although the header "
                                        "describes an image: the file is truncated before "
                                        "its pixel data")
        raise RadiographError(path, "no Pixel Data (7FE0,0010) element: not an image")
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        # A raw dataset without File Meta: record the encoding pydicom read it with.
        import pydicom.uid as uid
        from pydicom.dataset import FileMetaDataset

        implicit, little = getattr(ds, "original_encoding", (True, True))
        if not hasattr(ds, "file_meta") or ds.file_meta is None:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            uid.ImplicitVRLittleEndian if implicit is not False
            else uid.ExplicitVRLittleEndian if little is not False else uid.ExplicitVRBigEndian
        )
    meta = metadata_from_dataset(ds, path)
    if meta.rows is None or meta.columns is None:
        raise RadiographError(path, "Rows/Columns missing: cannot lay out the pixel data")
    if meta.modality and meta.modality.upper() not in PROJECTION_MODALITIES:
        logger.info("%s: modality %s is not a projection radiograph; loading anyway",
                    path, meta.modality)
    if meta.number_of_frames > 1:
        if frame is None:
            raise RadiographError(
                path,
                f"multi-frame image with {meta.number_of_frames} frames; choose one with "
                "frame=K (--frame K)",
            )
        if not 0 <= frame < meta.number_of_frames:
            raise RadiographError(path, f"frame {frame} does not exist "
                                        f"({meta.number_of_frames} frames)")
    elif frame not in (None, 0):
        raise RadiographError(path, f"frame {frame} does not exist (single-frame image)")

    try:
        check_pixel_module(ds)
    except _Inconsistent as exc:
        raise RadiographError(path, f"inconsistent pixel module: {exc}; not decoded") from None
    arr, rescaled = _decode(ds, path, frame if meta.number_of_frames > 1 else None)
    photometric = (meta.photometric_interpretation or "MONOCHROME2").upper()
    if photometric == "PALETTE COLOR":
        arr = _to_grey(_palette_to_rgb(ds, arr), path, "PALETTE COLOR")
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = _to_grey(arr, path, photometric)
    if arr.ndim != 2:
        raise RadiographError(path, f"decoded pixel data has shape {arr.shape}, expected "
                                    "(rows, cols)")
    meta = RadiographMetadata(**{**meta.__dict__, "frame": frame})

    calibration = calibration_from_dataset(ds, context=path)
    try:
        return Radiograph(
            pixels=arr,
            calibration=calibration,
            metadata=meta,
            rescale=(1.0, 0.0) if rescaled else _rescale(ds),
            monochrome1=photometric == "MONOCHROME1",
            window=header_window(ds),
            voi_lut=header_voi_lut(ds),
        )
    except ValueError as exc:
        raise RadiographError(path, str(exc)) from None


# -------------------------------------------------------------------------------------
# Plain images
# -------------------------------------------------------------------------------------


def _load_plain(path: str) -> Radiograph:
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
            fmt = "tiff"
        else:
            from PIL import Image

            with Image.open(path) as img:
                fmt = (img.format or suffix.lstrip(".")).lower()
                if img.mode in ("I;16", "I;16B", "I;16L"):
                    arr = np.asarray(img).astype(np.uint16)
                elif img.mode in ("L", "I", "F", "RGB", "RGBA"):
                    arr = np.asarray(img)
                else:
                    arr = np.asarray(img.convert("RGB"))
    except Exception as exc:
        raise RadiographError(path, f"not a readable image: {explain_exception(exc)}") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.shape[-1] == 4 or not (np.array_equal(arr[..., 0], arr[..., 1])
                                      and np.array_equal(arr[..., 1], arr[..., 2])):
            arr = _to_grey(arr, path, "colour")
        else:
            arr = np.ascontiguousarray(arr[..., 0])
    if arr.ndim != 2:
        raise RadiographError(path, f"image has shape {arr.shape}; expected a single 2-D "
                                    "grey-scale image")
    meta = RadiographMetadata(path=path, format=fmt, rows=arr.shape[0], columns=arr.shape[1],
                              photometric_interpretation="MONOCHROME2")
    try:
        return Radiograph(pixels=arr, calibration=Calibration.uncalibrated(), metadata=meta)
    except ValueError as exc:
        raise RadiographError(path, str(exc)) from None


# -------------------------------------------------------------------------------------
# Entry points
# -------------------------------------------------------------------------------------


@names_file
def load_radiograph(path: str | os.PathLike[str], *, frame: int | None = None) -> Radiograph:
    """Open a DICOM file or a plain PNG / JPEG / TIFF image as a :class:`Radiograph`.

    DICOM is recognised by content (the ``DICM`` preamble, or a raw dataset that parses), not
    by extension. Plain images are uncalibrated.

    Parameters
    ----------
    path : path-like
    frame : int, optional
        Frame to load from a multi-frame image (0-based); required when it has several.

    Raises
    ------
    RadiographError
        One line naming the file and the problem: not found, not an image, undecodable,
        multi-frame without ``frame``, unsupported layout.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise RadiographError(path, "file not found")
    if os.path.isdir(path):
        raise RadiographError(path, "is a folder; give a file (or use the folder scan)")
    problem = not_a_regular_file(path)
    if problem is not None:
        raise RadiographError(path, problem)
    if os.path.getsize(path) == 0:
        raise RadiographError(path, "empty file")
    suffix = Path(path).suffix.lower()
    if suffix in PLAIN_IMAGE_SUFFIXES and not _has_dicom_preamble(path):
        return _load_plain(path)
    try:
        return _load_dicom(path, frame)
    except RadiographError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        raise RadiographError(path, explain_exception(exc)) from None


def _has_dicom_preamble(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def radiograph_from_array(
    array: np.ndarray,
    *,
    spacing: tuple[float, float] | None = None,
    calibration: Calibration | None = None,
    path: str = "<array>",
    monochrome1: bool = False,
    **metadata: Any,
) -> Radiograph:
    """Wrap an in-memory array as a :class:`Radiograph` (for tests and the Python API).

    ``spacing`` is taken as a calibrated ``PixelSpacing`` source; pass ``calibration`` for
    another source.
    """
    from spine_measure.io.calibration import CalibrationSource

    if calibration is None:
        calibration = (
            Calibration(spacing[0], spacing[1], CalibrationSource.PIXEL_SPACING, "given")
            if spacing is not None else Calibration.uncalibrated()
        )
    arr = np.asarray(array)
    meta = RadiographMetadata(path=path, format="array", rows=arr.shape[0] if arr.ndim else None,
                              columns=arr.shape[1] if arr.ndim > 1 else None, **metadata)
    return Radiograph(pixels=arr, calibration=calibration, metadata=meta,
                      monochrome1=monochrome1)
