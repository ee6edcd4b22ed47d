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

import datetime as _dt
import hashlib
import logging
import os
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from spine_measure.errors import ImageConversionWarning, RadiographError
from spine_measure.io.calibration import Calibration, calibration_from_dataset

__all__ = [
    "DECODER_PREFERENCE",
    "PLAIN_IMAGE_SUFFIXES",
    "RadiographMetadata",
    "Radiograph",
    "Window",
    "load_radiograph",
    "radiograph_from_array",
    "metadata_from_dataset",
    "pixel_sha256",
]

logger = logging.getLogger(__name__)

#: Modalities accepted as projection radiographs (SPEC §1.1).
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
        Spacing with its source (SPEC §1.1).
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


def _plugin_message(exc: Exception) -> str:
    """The specific reason in pydicom's "all plugins failed" message, on one line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = [ln for ln in lines[1:] if ":" in ln] or lines or [type(exc).__name__]
    return detail[0]


def _decode(ds: Any, path: str, frame: int | None) -> tuple[np.ndarray, bool]:
    """Decode the pixel data with the preferred plugin for its transfer syntax.

    Returns the array and whether the modality LUT is already applied (only the
    SimpleITK/GDCM last resort does that).
    """
    tsuid = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    plugins: Sequence[str] = DECODER_PREFERENCE.get(tsuid, ())
    errors: list[str] = []
    for plugin in (*plugins, ""):
        try:
            kwargs: dict[str, Any] = {"decoding_plugin": plugin} if plugin else {}
            if frame is not None:
                kwargs["index"] = frame
            ds.pixel_array_options(**kwargs)
            return ds.pixel_array, False
        except Exception as exc:  # try the next plugin
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
        except Exception as exc:
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


def _voi_lut(ds: Any) -> tuple[np.ndarray, int] | None:
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


def _window(ds: Any) -> Window | None:
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
    except Exception as exc:
        raise RadiographError(path, f"not a readable DICOM file ({type(exc).__name__}: "
                                    f"{exc})") from None
    return radiograph_from_dataset(ds, path, frame=frame)


def radiograph_from_dataset(ds: Any, path: str | os.PathLike[str] = "<dataset>", *,
                            frame: int | None = None) -> Radiograph:
    """Build a :class:`Radiograph` from a pydicom ``Dataset`` (decodes its pixel data)."""
    path = os.fspath(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if len(ds) == 0 or "SOPClassUID" not in ds and "Rows" not in ds:
            raise RadiographError(path, _NOT_AN_IMAGE)
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
            window=_window(ds),
            voi_lut=_voi_lut(ds),
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
        raise RadiographError(path, f"not a readable image ({type(exc).__name__}: {exc})") from None
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
    if not os.path.exists(path):
        raise RadiographError(path, "file not found")
    if os.path.isdir(path):
        raise RadiographError(path, "is a folder; give a file (or use the folder scan)")
    if os.path.getsize(path) == 0:
        raise RadiographError(path, "empty file")
    suffix = Path(path).suffix.lower()
    if suffix in PLAIN_IMAGE_SUFFIXES and not _has_dicom_preamble(path):
        return _load_plain(path)
    try:
        return _load_dicom(path, frame)
    except RadiographError:
        raise
    except MemoryError:
        raise RadiographError(path, "not enough memory to decode the pixel data") from None
    except Exception as exc:  # the documented contract: one line, never a traceback
        raise RadiographError(path, f"{type(exc).__name__}: {exc}") from None


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
