"""Annotation files (``*.sm.json``, schema ``spine_measure.annotation/2``).

One file per radiograph holds everything a reader adds to it: landmarks, an optional
calibration line, the reader findings (docs/annotation_format.md), a time-point override,
cement masks, the reader id, timestamps and a revision counter. The format is described field
by field in ``docs/annotation_format.md``; its JSON Schema (draft 2020-12) ships as package data
(``spine_measure/schemas/annotation-2.schema.json``) and is copied to
``docs/annotation.schema.json`` by :func:`export_schema`.

* Version 2 adds, per vertebra, whether a reader ``confirmed`` it and, per point, its
  ``point_source`` (``reader``, ``propagated``, ``refined``) and ``confidence``
  (:class:`LevelReview`). Version-1 files still load (validated against the version-1
  schema, every point ``reader``, every vertebra confirmed) and are written as version 2.

* A file is tied to its image by the DICOM ``SOPInstanceUID`` and, for images that are not
  DICOM, by :func:`pixel_hash` of the decoded pixel array.
* :func:`load_annotation` validates against the schema, then builds the objects (which
  validate the geometry); every error is one line naming the file and the JSON path.
* :func:`save_annotation` writes atomically (temporary file in the same folder, ``fsync``,
  :func:`os.replace`) and refuses to replace a file that is newer than the one the caller
  loaded (:class:`AnnotationConflictError`).
* Points are ``(row, col)`` in pixels of the stored image (``docs/conventions.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import math
import os
import re
import tempfile
import types
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from spine_measure import __version__
from spine_measure.errors import (
    FileError,
    ImageConversionWarning,
    RadiographError,
    SpineMeasureError,
)
from spine_measure.io.files import describe_os_error, names_file, not_a_regular_file
from spine_measure.io.mask_codec import ENCODING, MaskCodecError, decode_mask, encode_mask
from spine_measure.landmarks import LEVELS, LandmarkError, SpineLandmarks

if TYPE_CHECKING:
    from spine_measure.io.calibration import Calibration

__all__ = [
    "SCHEMA_ID",
    "SIDECAR_SUFFIX",
    "Annotation",
    "AnnotationConflictError",
    "AnnotationError",
    "AnnotationFileError",
    "AnnotationIndex",
    "AnnotationMismatchError",
    "CalibrationLine",
    "CementMask",
    "CementMergeResult",
    "Findings",
    "LevelReview",
    "FLAG_SOURCES",
    "POINT_SOURCES",
    "ImageRef",
    "annotation_from_json",
    "annotation_schema",
    "annotation_to_json",
    "export_schema",
    "index_annotations",
    "load_annotation",
    "merge_cement_mask",
    "pixel_hash",
    "read_image_reference",
    "save_annotation",
    "sidecar_path",
    "validate_annotation_dict",
]

log = logging.getLogger(__name__)

SCHEMA_ID = "spine_measure.annotation/2"
"""Value of the ``schema`` key of every annotation file this version writes."""

SCHEMA_V1 = "spine_measure.annotation/1"
"""The previous version, still read (and upgraded to :data:`SCHEMA_ID` on save)."""

READABLE_SCHEMAS = {SCHEMA_ID: "annotation-2.schema.json", SCHEMA_V1: "annotation-1.schema.json"}

POINT_SOURCES = ("reader", "propagated", "refined")
"""Where a point comes from: placed by a reader, carried from another film, or moved to the
image edge by the click refinement (``docs/propagation.md``)."""

FLAGS = ("fractured", "treated", "excluded")
FLAG_SOURCES = ("propagated", "cement", "clinical")
"""Why a machine set a vertebra's flag on a proposal: carried from the other film, cement seen
in the body on this film, or the clinical table's treated level (``docs/propagation.md``)."""

SIDECAR_SUFFIX = ".sm.json"
"""Suffix of annotation files; ``X.dcm`` is annotated by ``X.sm.json``."""

IMAGE_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
                  ".bmp")
"""Image suffixes replaced (not extended) by :data:`SIDECAR_SUFFIX`."""

TIME_POINTS = ("preop", "postop", "followup")
CEMENT_SOURCES = ("auto", "edited")
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}
_MAX_MESSAGE = 200


# --------------------------------------------------------------------------- errors


class AnnotationError(SpineMeasureError, ValueError):
    """Annotation content that is not valid (raised on construction, names the field)."""


class AnnotationFileError(FileError):
    """An annotation file that cannot be read, validated or written: ``"<path>: <reason>"``."""


class AnnotationConflictError(AnnotationFileError):
    """Saving would replace a file newer than the version the caller loaded.

    Attributes ``file_revision`` and ``loaded_revision`` hold both revisions.
    """

    def __init__(self, path: str | os.PathLike[str], file_revision: int,
                 loaded_revision: int, detail: str = "") -> None:
        self.file_revision = file_revision
        self.loaded_revision = loaded_revision
        super().__init__(
            path,
            f"conflict: the file is at revision {file_revision} but this annotation was "
            f"loaded at revision {loaded_revision}{detail}; reload it and edit again, or "
            "save with overwrite=True to replace the newer file",
        )


class AnnotationMismatchError(AnnotationFileError):
    """An annotation file found by name refers to a different image (UID or pixel hash)."""


# --------------------------------------------------------------------------- helpers


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_timestamp(value: dt.datetime) -> str:
    """UTC ISO 8601 with microseconds and ``Z``: ``2024-03-11T10:22:33.000123Z``."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(value: Any, name: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise AnnotationError(f'"{name}" must be an ISO 8601 date and time; '
                                  f"got {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise AnnotationError(f'"{name}" must be a datetime; got {type(value).__name__}')
    if value.tzinfo is None or value.utcoffset() is None:
        raise AnnotationError(f'"{name}" must carry a time zone (UTC); got {value.isoformat()}')
    return value.astimezone(dt.UTC)


def _parse_date(value: Any, name: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        raise AnnotationError(f'"{name}" must be a date without time; got {value.isoformat()}')
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise AnnotationError(f'"{name}" must be a date YYYY-MM-DD; got {value!r}') from None
    if isinstance(value, dt.date):
        return value
    raise AnnotationError(f'"{name}" must be a date; got {type(value).__name__}')


def _finite_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise AnnotationError(f'"{name}" must be a number; got {value!r}')
    out = float(value)
    if not math.isfinite(out):
        raise AnnotationError(f'"{name}" must be finite; got {out}')
    return out


def _point(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple | np.ndarray) or len(value) != 2:
        raise AnnotationError(f'"{name}" must be two numbers (row, col); got {value!r}')
    return (_finite_float(value[0], f"{name}[0]"), _finite_float(value[1], f"{name}[1]"))


def _opt_bool(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise AnnotationError(f'"{name}" must be true, false or null (unknown); got {value!r}')


def _opt_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise AnnotationError(f'"{name}" must be a string or null; got {value!r}')


def _check_level(level: Any, where: str) -> str:
    if level not in _LEVEL_INDEX:
        raise AnnotationError(f'{where}: "{level}" is not a vertebral level (C2-C7, T1-T12, '
                              "L1-L5, S1)")
    return level


# --------------------------------------------------------------------------- pixel hash


def pixel_hash(array: np.ndarray) -> str:
    """SHA-256 (hex) of a decoded pixel array, covering its dtype, shape and C-order bytes.

    This is :func:`spine_measure.io.radiograph.pixel_sha256` (one definition: the
    ``pixel_sha256`` of every :class:`~spine_measure.io.radiograph.Radiograph` is this hash of
    its ``pixels``): ``sha256(dtype.str + str(shape) + bytes)``. Two arrays hash equal exactly
    when dtype (including byte order), shape and values are equal, whatever the memory layout.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(6, dtype=np.uint16).reshape(2, 3)
    >>> pixel_hash(a) == pixel_hash(np.asfortranarray(a))
    True
    >>> pixel_hash(a) == pixel_hash(a.astype(np.uint8))
    False
    """
    from spine_measure.io.radiograph import pixel_sha256

    return pixel_sha256(np.asarray(array))


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """Which image an annotation belongs to.

    At least one of ``sop_instance_uid`` (DICOM) and ``pixel_sha256`` (:func:`pixel_hash`,
    for PNG/JPEG/TIFF) is required; ``file_name`` is a hint only, never used for matching.
    """

    rows: int
    cols: int
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    pixel_sha256: str | None = None
    file_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise AnnotationError(f'image "{name}" must be a positive integer; got {v!r}')
            object.__setattr__(self, name, int(v))
        for name in ("sop_instance_uid", "study_instance_uid", "series_instance_uid"):
            v = _opt_str(getattr(self, name), f"image.{name}")
            if v is not None:
                v = v.strip().rstrip("\0")
                if not v or len(v) > 64 or not all(p.isdigit() and p.isascii()
                                                   for p in v.split(".")):
                    raise AnnotationError(f'image "{name}" is not a DICOM UID: {v!r}')
            object.__setattr__(self, name, v)
        h = _opt_str(self.pixel_sha256, "image.pixel_sha256")
        if h is not None and (len(h) != 64 or any(ch not in "0123456789abcdef" for ch in h)):
            raise AnnotationError(f'image "pixel_sha256" must be 64 lower-case hex digits; '
                                  f"got {h!r}")
        _opt_str(self.file_name, "image.file_name")
        if self.sop_instance_uid is None and self.pixel_sha256 is None:
            raise AnnotationError("image needs a sop_instance_uid (DICOM) or a pixel_sha256 "
                                  "(other images) to be matched to its file")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (every key present, ``null`` when unknown)."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "pixel_sha256": self.pixel_sha256,
            "file_name": self.file_name,
            "rows": self.rows,
            "cols": self.cols,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageRef:
        """Build from :meth:`to_dict` output."""
        return cls(**{k: data.get(k) for k in ("sop_instance_uid", "study_instance_uid",
                                               "series_instance_uid", "pixel_sha256",
                                               "file_name")},
                   rows=data.get("rows"), cols=data.get("cols"))

    def matches(self, *, sop_instance_uid: str | None = None,
                pixel_sha256: str | None = None) -> bool | None:
        """True/False when a UID (first) or pixel hash can be compared; None when neither can."""
        if sop_instance_uid is not None and self.sop_instance_uid is not None:
            return self.sop_instance_uid == sop_instance_uid
        if pixel_sha256 is not None and self.pixel_sha256 is not None:
            return self.pixel_sha256 == pixel_sha256
        return None


@dataclass(frozen=True)
class CalibrationLine:
    """A line of known length drawn by the reader (ruler, calibration ball diameter).

    ``p0``/``p1`` are ``(row, col)`` pixels; ``length_mm`` > 0; the ends must differ.
    """

    p0: tuple[float, float]
    p1: tuple[float, float]
    length_mm: float

    def __post_init__(self) -> None:
        p0 = _point(self.p0, "calibration.p0")
        p1 = _point(self.p1, "calibration.p1")
        length = _finite_float(self.length_mm, "calibration.length_mm")
        if length <= 0:
            raise AnnotationError(f'"calibration.length_mm" must be > 0; got {length}')
        if p0 == p1:
            raise AnnotationError("calibration line has zero length (p0 == p1)")
        object.__setattr__(self, "p0", p0)
        object.__setattr__(self, "p1", p1)
        object.__setattr__(self, "length_mm", length)

    def calibration(self, *, pixel_aspect: tuple[float, float] = (1.0, 1.0)) -> Calibration:
        """The film's :class:`~spine_measure.io.calibration.Calibration` (source ``reader``).

        Delegates to :func:`spine_measure.io.calibration.calibration_from_line`: with
        ``pixel_aspect = (a_r, a_c)`` (the header's row:column spacing ratio, from
        ``PixelSpacing``/``ImagerPixelSpacing`` or ``PixelAspectRatio``; square by default)
        the spacing is ``(k a_r, k a_c)`` with
        :math:`k = L / \\sqrt{(\\Delta r\\, a_r)^2 + (\\Delta c\\, a_c)^2}`: the aspect
        ratio is kept and only the scale comes from the line.

        Raises
        ------
        ValueError
            The line is shorter than one pixel or implies an implausible spacing.
        """
        from spine_measure.io.calibration import calibration_from_line

        return calibration_from_line(self.p0, self.p1, self.length_mm, pixel_aspect=pixel_aspect)

    def spacing(self, *, pixel_aspect: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float]:
        """``(row_mm, col_mm)`` implied by the line (see :meth:`calibration`)."""
        cal = self.calibration(pixel_aspect=pixel_aspect)
        return (float(cal.row_mm), float(cal.col_mm))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict ``{"p0": [r, c], "p1": [r, c], "length_mm": L}``."""
        return {"p0": list(self.p0), "p1": list(self.p1), "length_mm": self.length_mm}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationLine:
        """Build from :meth:`to_dict` output."""
        return cls(data.get("p0"), data.get("p1"), data.get("length_mm"))


_FINDING_FLAGS = ("ivc", "endplate_disruption", "posterior_fascia_oedema",
                  "bone_marrow_oedema", "leakage_other_views")


@dataclass(frozen=True, kw_only=True)
class Findings:
    """Reader findings that are not geometry (docs/annotation_format.md); ``None`` always
    means unknown.

    Parameters
    ----------
    ivc : bool or None
        Intravertebral cleft.
    endplate_disruption : bool or None
        Endplate cortical disruption.
    posterior_fascia_oedema : bool or None
    goutallier_grade : int 0-4 or None
        Fatty infiltration of the paraspinal muscle.
    muscle_fat_fraction : float in [0, 1] or None
        Fat fraction measured in a T1 MR region of interest (a fraction, not percent).
    bone_marrow_oedema : bool or None
        At follow-up (needed by the ``refracture`` flag).
    leakage_other_views : bool or None
        Cement leakage seen on other views (CT, AP).
    ct_hu : Mapping[str, float or None]
        Mean HU of a trabecular region of interest per level (treated and adjacent).
    """

    ivc: bool | None = None
    endplate_disruption: bool | None = None
    posterior_fascia_oedema: bool | None = None
    goutallier_grade: int | None = None
    muscle_fat_fraction: float | None = None
    bone_marrow_oedema: bool | None = None
    leakage_other_views: bool | None = None
    ct_hu: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _FINDING_FLAGS:
            object.__setattr__(self, name, _opt_bool(getattr(self, name), f"findings.{name}"))
        g = self.goutallier_grade
        if g is not None:
            if isinstance(g, bool) or not isinstance(g, int | np.integer) or not 0 <= g <= 4:
                raise AnnotationError(f'"findings.goutallier_grade" must be an integer 0-4 or '
                                      f"null; got {g!r}")
            object.__setattr__(self, "goutallier_grade", int(g))
        f = self.muscle_fat_fraction
        if f is not None:
            f = _finite_float(f, "findings.muscle_fat_fraction")
            if not 0.0 <= f <= 1.0:
                raise AnnotationError(f'"findings.muscle_fat_fraction" must be in [0, 1] '
                                      f"(a fraction, not percent); got {f}")
            object.__setattr__(self, "muscle_fat_fraction", f)
        if not isinstance(self.ct_hu, Mapping):
            raise AnnotationError(f'"findings.ct_hu" must map level -> HU; '
                                  f"got {type(self.ct_hu).__name__}")
        hu: dict[str, float | None] = {}
        for level, value in self.ct_hu.items():
            _check_level(level, "findings.ct_hu")
            hu[level] = None if value is None else _finite_float(value, f"findings.ct_hu.{level}")
        ordered = {k: hu[k] for k in sorted(hu, key=_LEVEL_INDEX.__getitem__)}
        object.__setattr__(self, "ct_hu", types.MappingProxyType(ordered))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, every key present (``null`` = unknown)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in
                               ("ivc", "endplate_disruption", "posterior_fascia_oedema",
                                "goutallier_grade", "muscle_fat_fraction",
                                "bone_marrow_oedema", "leakage_other_views")}
        out["ct_hu"] = dict(self.ct_hu)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Findings:
        """Build from :meth:`to_dict` output; missing keys are unknown."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = set(data) - set(names)
        if unknown:
            raise AnnotationError(f'findings: unknown field "{sorted(unknown)[0]}"')
        kwargs = {k: data[k] for k in names if k in data}
        if kwargs.get("ct_hu") is None:
            kwargs.pop("ct_hu", None)
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class CementMask:
    """The cement mask of one treated level, kept in its compact encoded form.

    Build it with :meth:`from_array`; get the boolean array back with :meth:`to_array`.
    The encoding is canonical (``spine_measure.io.mask_codec``), so two masks are equal
    exactly when their pixels, level, source and parameters hash are equal.

    Parameters
    ----------
    level : str
        The treated level the cement is in.
    shape : (rows, cols)
        Shape of the image (and of the mask).
    bbox : (row0, col0, height, width) or None
        Tight bounding box of the mask, None when empty.
    counts : str
        Base64 run lengths inside the box.
    source : {"auto", "edited"}
        ``"auto"`` for the automatic segmentation, ``"edited"`` once a reader changed it.
    params_hash : str or None
        Hash of the segmentation parameters that produced an ``"auto"`` mask.
    """

    level: str
    shape: tuple[int, int]
    bbox: tuple[int, int, int, int] | None
    counts: str
    source: Literal["auto", "edited"] = "auto"
    params_hash: str | None = None

    def __post_init__(self) -> None:
        _check_level(self.level, "cement")
        if self.source not in CEMENT_SOURCES:
            raise AnnotationError(f'{self.level}: cement "source" must be "auto" or "edited"; '
                                  f"got {self.source!r}")
        _opt_str(self.params_hash, f"cement.{self.level}.params_hash")
        record = {"encoding": ENCODING,
                  "shape": list(self.shape) if isinstance(self.shape, list | tuple) else
                  self.shape,
                  "bbox": list(self.bbox) if isinstance(self.bbox, list | tuple) else self.bbox,
                  "counts": self.counts}
        try:
            canonical = encode_mask(decode_mask(record))
        except MaskCodecError as exc:
            raise AnnotationError(f"{self.level}: cement {exc}") from None
        object.__setattr__(self, "shape", tuple(canonical["shape"]))
        bbox = canonical["bbox"]
        object.__setattr__(self, "bbox", None if bbox is None else tuple(bbox))
        object.__setattr__(self, "counts", canonical["counts"])

    @classmethod
    def from_array(cls, level: str, mask: np.ndarray, *,
                   source: Literal["auto", "edited"] = "auto",
                   params_hash: str | None = None) -> CementMask:
        """Encode a boolean ``(rows, cols)`` array."""
        try:
            rec = encode_mask(mask)
        except MaskCodecError as exc:
            raise AnnotationError(f"{level}: cement {exc}") from None
        return cls(level=level, shape=tuple(rec["shape"]),
                   bbox=None if rec["bbox"] is None else tuple(rec["bbox"]),
                   counts=rec["counts"], source=source, params_hash=params_hash)

    def encoded(self) -> dict[str, Any]:
        """The ``mask`` record of the file (``mask_codec`` format)."""
        return {"encoding": ENCODING, "shape": list(self.shape),
                "bbox": None if self.bbox is None else list(self.bbox), "counts": self.counts}

    def to_array(self) -> np.ndarray:
        """Decode to a boolean array of shape :attr:`shape`."""
        return decode_mask(self.encoded())

    def same_pixels(self, other: CementMask) -> bool:
        """True when both masks cover exactly the same pixels."""
        return (self.shape, self.bbox, self.counts) == (other.shape, other.bbox, other.counts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict ``{"level", "source", "params_hash", "mask"}``."""
        return {"level": self.level, "source": self.source, "params_hash": self.params_hash,
                "mask": self.encoded()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CementMask:
        """Build from :meth:`to_dict` output."""
        mask = data.get("mask") or {}
        enc = mask.get("encoding", ENCODING)
        if enc != ENCODING:
            raise AnnotationError(f'{data.get("level")}: cement mask encoding "{enc}" is not '
                                  f'supported (expected "{ENCODING}")')
        return cls(level=data.get("level"), shape=mask.get("shape"), bbox=mask.get("bbox"),
                   counts=mask.get("counts", ""), source=data.get("source", "auto"),
                   params_hash=data.get("params_hash"))


@dataclass(frozen=True)
class CementMergeResult:
    """Outcome of :func:`merge_cement_mask`.

    ``action`` is ``"added"`` (no mask before), ``"replaced"``, ``"unchanged"`` (same
    automatic result again) or ``"kept_edit"`` (the reader's hand edit wins over a re-run).
    """

    mask: CementMask
    action: Literal["added", "replaced", "unchanged", "kept_edit"]
    reason: str


def merge_cement_mask(existing: CementMask | None, incoming: CementMask) -> CementMergeResult:
    """Decide which cement mask to keep when a new one arrives for a level.

    Rules, in order:

    1. no mask yet -> the incoming one (``"added"``);
    2. the incoming mask was edited by a reader -> it wins (``"replaced"``): a new hand edit
       always replaces what was there;
    3. the stored mask was edited by a reader and the incoming one is automatic -> the edit
       is kept (``"kept_edit"``), whatever the segmentation parameters: re-running the
       automatic segmentation never discards a reader's correction. To start again from the
       automatic result, delete the stored mask first;
    4. both automatic: same pixels and same ``params_hash`` -> the stored one
       (``"unchanged"``); otherwise the incoming one (``"replaced"``).

    Raises
    ------
    AnnotationError
        The two masks are for different levels or images of different shapes.
    """
    if existing is None:
        return CementMergeResult(incoming, "added", "no cement mask was stored for this level")
    if existing.level != incoming.level:
        raise AnnotationError(f"cannot merge cement masks of levels {existing.level} and "
                              f"{incoming.level}")
    if existing.shape != incoming.shape:
        raise AnnotationError(f"{existing.level}: cement mask shapes differ "
                              f"({existing.shape} vs {incoming.shape})")
    if incoming.source == "edited":
        return CementMergeResult(incoming, "replaced", "a reader's edit replaces the stored mask")
    if existing.source == "edited":
        why = ("same segmentation parameters" if existing.params_hash == incoming.params_hash
               else "segmentation parameters changed")
        return CementMergeResult(existing, "kept_edit",
                                 f"the reader's hand edit is kept over the automatic re-run "
                                 f"({why})")
    if existing.same_pixels(incoming) and existing.params_hash == incoming.params_hash:
        return CementMergeResult(existing, "unchanged", "the automatic result is identical")
    return CementMergeResult(incoming, "replaced", "a new automatic result replaces the old one")


# --------------------------------------------------------------------------- review state


@dataclass(frozen=True)
class LevelReview:
    """Review state of one vertebra: whether a reader confirmed it, and each point's source.

    Parameters
    ----------
    confirmed : bool
        False for a proposal a reader has not accepted yet: ``measure`` and ``batch`` leave
        it out unless ``--accept-proposed`` is given.
    point_source : Mapping[str, str]
        Point name -> one of :data:`POINT_SOURCES`; a point not listed is ``reader``.
    confidence : Mapping[str, float]
        Point name -> confidence in [0, 1] of a propagated point (``docs/propagation.md``).
    flag_source : Mapping[str, str]
        Flag (``fractured``, ``treated``, ``excluded``) -> one of :data:`FLAG_SOURCES` for a
        flag a machine set on a proposal (kept after confirmation, like the point sources); a
        flag not listed was set by a reader. Only flags that are set are kept.
    """

    confirmed: bool = True
    point_source: Mapping[str, str] = field(default_factory=dict)
    confidence: Mapping[str, float] = field(default_factory=dict)
    flag_source: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.confirmed, bool | np.bool_):
            raise AnnotationError(f'"confirmed" must be true or false; got {self.confirmed!r}')
        object.__setattr__(self, "confirmed", bool(self.confirmed))
        src: dict[str, str] = {}
        for name, value in dict(self.point_source).items():
            if value not in POINT_SOURCES:
                raise AnnotationError(f'point_source of "{name}" must be reader, propagated or '
                                      f"refined; got {value!r}")
            src[str(name)] = value
        conf: dict[str, float] = {}
        for name, value in dict(self.confidence).items():
            v = _finite_float(value, f"confidence.{name}")
            if not 0.0 <= v <= 1.0:
                raise AnnotationError(f'"confidence.{name}" must be in [0, 1]; got {v}')
            conf[str(name)] = v
        flags: dict[str, str] = {}
        for name, value in dict(self.flag_source).items():
            if name not in FLAGS or value not in FLAG_SOURCES:
                raise AnnotationError(f'flag_source must map fractured / treated / excluded to '
                                      f'propagated, cement or clinical; got {name!r}: {value!r}')
            flags[name] = value
        object.__setattr__(self, "point_source", types.MappingProxyType(src))
        object.__setattr__(self, "confidence", types.MappingProxyType(conf))
        object.__setattr__(self, "flag_source", types.MappingProxyType(
            {k: flags[k] for k in FLAGS if k in flags}))

    def source(self, point: str) -> str:
        """The source of ``point`` (``reader`` when not recorded)."""
        return self.point_source.get(point, "reader")

    def summary(self, points: Iterable[str]) -> str:
        """One word for a set of points: their common source, or ``mixed``."""
        found = {self.source(p) for p in points}
        return found.pop() if len(found) == 1 else "mixed"

    @property
    def is_default(self) -> bool:
        """True for a confirmed vertebra whose points were all placed by a reader."""
        return (self.confirmed and not self.confidence and not self.flag_source
                and all(v == "reader" for v in self.point_source.values()))


_READER_REVIEW = LevelReview()


# --------------------------------------------------------------------------- annotation


@dataclass(frozen=True)
class Annotation:
    """Everything a reader added to one image; valid once constructed.

    Parameters
    ----------
    image : ImageRef
        The image (UID / pixel hash, rows, cols).
    landmarks : SpineLandmarks
        Landmarks (may hold no vertebra); its ``view`` is the annotation's :attr:`view`.
    calibration : CalibrationLine or None
        Reader-drawn calibration line (docs/calibration.md, source 1).
    findings : Findings
    time_point : {"preop", "postop", "followup"} or None
        Overrides the time point derived from the DICOM dates.
    procedure_date : datetime.date or None
    cement : tuple of CementMask
        At most one per level, stored sorted cranial to caudal; shapes equal the image's.
    reader : str or None
    created, modified : datetime.datetime
        Time-zone aware (stored in UTC).
    revision : int
        0 for an annotation never saved; :func:`save_annotation` increments it.
    spine_measure_version : str
        Version that wrote the file (set by :func:`save_annotation`).
    review : Mapping[str, LevelReview]
        Level -> review state; a level not listed was placed by a reader and is confirmed.
        Entries follow the landmarks: those of levels or points no longer annotated are
        dropped (a deleted vertebra has no review state).
    """

    image: ImageRef
    landmarks: SpineLandmarks
    _: KW_ONLY
    calibration: CalibrationLine | None = None
    findings: Findings = field(default_factory=Findings)
    time_point: Literal["preop", "postop", "followup"] | None = None
    procedure_date: dt.date | None = None
    cement: tuple[CementMask, ...] = ()
    reader: str | None = None
    created: dt.datetime = field(default_factory=_utcnow)
    modified: dt.datetime | None = None
    revision: int = 0
    spine_measure_version: str = __version__
    review: Mapping[str, LevelReview] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.image, ImageRef):
            raise AnnotationError(f'"image" must be an ImageRef; got {type(self.image).__name__}')
        if not isinstance(self.landmarks, SpineLandmarks):
            raise AnnotationError(f'"landmarks" must be SpineLandmarks; '
                                  f"got {type(self.landmarks).__name__}")
        if self.calibration is not None and not isinstance(self.calibration, CalibrationLine):
            raise AnnotationError('"calibration" must be a CalibrationLine or None')
        if not isinstance(self.findings, Findings):
            raise AnnotationError(f'"findings" must be Findings; '
                                  f"got {type(self.findings).__name__}")
        if self.time_point is not None and self.time_point not in TIME_POINTS:
            raise AnnotationError(f'"time_point" must be preop, postop, followup or null; '
                                  f"got {self.time_point!r}")
        object.__setattr__(self, "procedure_date",
                           _parse_date(self.procedure_date, "procedure_date"))
        cement = tuple(self.cement)
        seen: set[str] = set()
        shape = (self.image.rows, self.image.cols)
        for m in cement:
            if not isinstance(m, CementMask):
                raise AnnotationError(f'"cement" must hold CementMask objects; '
                                      f"got {type(m).__name__}")
            if m.level in seen:
                raise AnnotationError(f"{m.level}: two cement masks for the same level")
            seen.add(m.level)
            if m.shape != shape:
                raise AnnotationError(f"{m.level}: cement mask shape {m.shape} differs from the "
                                      f"image (rows, cols) {shape}")
        object.__setattr__(self, "cement", tuple(sorted(cement,
                                                        key=lambda m: _LEVEL_INDEX[m.level])))
        _opt_str(self.reader, "reader")
        created = _parse_timestamp(self.created, "created")
        modified = created if self.modified is None else _parse_timestamp(self.modified,
                                                                            "modified")
        object.__setattr__(self, "created", created)
        object.__setattr__(self, "modified", modified)
        r = self.revision
        if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 0:
            raise AnnotationError(f'"revision" must be an integer >= 0; got {r!r}')
        object.__setattr__(self, "revision", int(r))
        if not isinstance(self.spine_measure_version, str) or not self.spine_measure_version:
            raise AnnotationError('"spine_measure_version" must be a non-empty string')
        if not isinstance(self.review, Mapping):
            raise AnnotationError(f'"review" must map level -> LevelReview; '
                                  f"got {type(self.review).__name__}")
        review: dict[str, LevelReview] = {}
        for level, state in self.review.items():
            if not isinstance(state, LevelReview):
                raise AnnotationError(f'{level}: review state must be a LevelReview; '
                                      f"got {type(state).__name__}")
            v = self.landmarks.get(level)
            if v is None:
                continue
            keep = set(v.points)
            state = LevelReview(
                confirmed=state.confirmed,
                point_source={k: x for k, x in state.point_source.items() if k in keep},
                confidence={k: x for k, x in state.confidence.items() if k in keep},
                flag_source={k: x for k, x in state.flag_source.items() if getattr(v, k)})
            if not state.is_default:
                review[level] = state
        object.__setattr__(self, "review", types.MappingProxyType(
            {k: review[k] for k in sorted(review, key=_LEVEL_INDEX.__getitem__)}))

    def review_of(self, level: str) -> LevelReview:
        """The review state of ``level`` (reader-placed and confirmed when not recorded)."""
        return self.review.get(level, _READER_REVIEW)

    def unconfirmed_levels(self) -> tuple[str, ...]:
        """Annotated levels whose points a reader has not confirmed, cranial to caudal."""
        return tuple(lv for lv in self.landmarks.levels() if not self.review_of(lv).confirmed)

    def landmark_source(self, level: str) -> str:
        """``reader``, ``propagated``, ``refined`` or ``mixed`` for the points of ``level``."""
        return self.review_of(level).summary(self.landmarks[level].points)

    def with_review(self, level: str, state: LevelReview) -> Annotation:
        """A copy with the review state of ``level`` replaced."""
        if level not in self.landmarks:
            raise AnnotationError(f"{level}: level not annotated; cannot set its review state")
        return dataclasses.replace(self, review={**self.review, level: state})

    def for_measurement(self, *, accept_proposed: bool = False
                        ) -> tuple[Annotation, tuple[tuple[str, str], ...]]:
        """``(annotation to measure, ((level, reason), ...) left out)``: by default the
        unconfirmed vertebrae are left out (``measure`` / ``batch`` list them with stage
        ``unconfirmed``); with ``accept_proposed`` nothing is left out."""
        left_out = () if accept_proposed else self.unconfirmed_levels()
        if not left_out:
            return self, ()
        notes = tuple((lv, self.unconfirmed_reason(lv)) for lv in left_out)
        return self.replace(landmarks=self.confirmed_landmarks()), notes

    def unconfirmed_reason(self, level: str) -> str:
        """The one-line note for an unconfirmed vertebra left out of the measurements."""
        return (f"{level}: {self.landmark_source(level)} landmarks not confirmed by a reader; "
                "not measured (confirm them, or pass --accept-proposed)")

    def confirmed_landmarks(self) -> SpineLandmarks:
        """The landmarks of the confirmed vertebrae only (what is measured by default)."""
        unconfirmed = set(self.unconfirmed_levels())
        if not unconfirmed:
            return self.landmarks
        return SpineLandmarks(self.landmarks.view,
                              tuple(v for v in self.landmarks if v.level not in unconfirmed))

    @property
    def view(self) -> str:
        """``"lateral"`` or ``"ap"`` (the view of :attr:`landmarks`)."""
        return self.landmarks.view

    def cement_mask(self, level: str) -> CementMask | None:
        """The stored cement mask of ``level`` or None."""
        return next((m for m in self.cement if m.level == level), None)

    def with_cement_mask(self, incoming: CementMask) -> tuple[Annotation, CementMergeResult]:
        """Return a copy holding ``incoming`` merged by :func:`merge_cement_mask`."""
        result = merge_cement_mask(self.cement_mask(incoming.level), incoming)
        others = tuple(m for m in self.cement if m.level != incoming.level)
        return dataclasses.replace(self, cement=(*others, result.mask)), result

    def replace(self, **changes: Any) -> Annotation:
        """``dataclasses.replace`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def _landmarks_dict(self) -> dict[str, Any]:
        data = self.landmarks.to_dict()
        for entry in data["vertebrae"]:
            state = self.review_of(entry["level"])
            entry["confirmed"] = state.confirmed
            entry["point_source"] = {n: state.source(n) for n in entry["points"]}
            if state.confidence:
                entry["confidence"] = {n: state.confidence[n] for n in entry["points"]
                                       if n in state.confidence}
            if state.flag_source:
                entry["flag_source"] = dict(state.flag_source)
        return data

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the file format (``schema`` key first)."""
        return {
            "schema": SCHEMA_ID,
            "image": self.image.to_dict(),
            "view": self.view,
            "landmarks": self._landmarks_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "findings": self.findings.to_dict(),
            "time_point": self.time_point,
            "procedure_date": (None if self.procedure_date is None
                               else self.procedure_date.isoformat()),
            "cement": [m.to_dict() for m in self.cement],
            "reader": self.reader,
            "created": format_timestamp(self.created),
            "modified": format_timestamp(self.modified),
            "revision": self.revision,
            "spine_measure_version": self.spine_measure_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, validate_schema: bool = True) -> Annotation:
        """Build from a file's JSON object (validated against the schema first).

        Raises
        ------
        AnnotationError
            Schema violation (message starts with the JSON path) or invalid content.
        """
        if validate_schema:
            problem = validate_annotation_dict(data)
            if problem:
                raise AnnotationError(problem)
        lm_data, review = _split_review(data.get("landmarks"))
        try:
            landmarks = SpineLandmarks.from_dict(lm_data)
        except LandmarkError as exc:
            raise AnnotationError(f"$.landmarks: {exc}") from None
        if data.get("view", landmarks.view) != landmarks.view:
            raise AnnotationError(f'$.view: "{data["view"]}" differs from the landmarks view '
                                  f'"{landmarks.view}"')
        calib = data.get("calibration")
        return cls(
            image=ImageRef.from_dict(data["image"]),
            landmarks=landmarks,
            calibration=None if calib is None else CalibrationLine.from_dict(calib),
            findings=Findings.from_dict(data.get("findings") or {}),
            time_point=data.get("time_point"),
            procedure_date=data.get("procedure_date"),
            cement=tuple(CementMask.from_dict(m) for m in data.get("cement", [])),
            reader=data.get("reader"),
            created=data["created"],
            modified=data["modified"],
            revision=data["revision"],
            spine_measure_version=data["spine_measure_version"],
            review=review,
        )


_REVIEW_KEYS = ("confirmed", "point_source", "confidence", "flag_source")


def _split_review(landmarks: Any) -> tuple[Any, dict[str, LevelReview]]:
    """Split the version-2 review keys off the vertebra entries of a ``landmarks`` block."""
    if not isinstance(landmarks, Mapping) or not isinstance(landmarks.get("vertebrae"), list):
        return landmarks, {}
    entries = []
    review: dict[str, LevelReview] = {}
    for entry in landmarks["vertebrae"]:
        if isinstance(entry, Mapping) and any(k in entry for k in _REVIEW_KEYS):
            level = entry.get("level")
            try:
                review[level] = LevelReview(confirmed=entry.get("confirmed", True),
                                            point_source=entry.get("point_source") or {},
                                            confidence=entry.get("confidence") or {},
                                            flag_source=entry.get("flag_source") or {})
            except AnnotationError as exc:
                raise AnnotationError(f"$.landmarks: {level}: {exc}") from None
            entry = {k: v for k, v in entry.items() if k not in _REVIEW_KEYS}
        entries.append(entry)
    return {**landmarks, "vertebrae": entries}, review


# --------------------------------------------------------------------------- schema


@lru_cache(maxsize=2)
def _schema_text(version: str = SCHEMA_ID) -> str:
    return (resources.files("spine_measure") / "schemas" / READABLE_SCHEMAS[version]).read_text(
        encoding="utf-8")


def annotation_schema(version: str = SCHEMA_ID) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``spine_measure.annotation/2`` (or of a readable
    older ``version``), a fresh copy."""
    return json.loads(_schema_text(version))


def export_schema(path: str | os.PathLike[str]) -> Path:
    """Write the packaged schema to ``path`` (e.g. ``docs/annotation.schema.json``).

    The packaged file is the source; the docs copy is regenerated with
    ``python -c "from spine_measure.io.annotation import export_schema;
    export_schema('docs/annotation.schema.json')"`` and a test checks they are identical.
    """
    out = Path(path)
    out.write_text(_schema_text(), encoding="utf-8")
    return out


@lru_cache(maxsize=2)
def _validator(version: str = SCHEMA_ID) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(annotation_schema(version))


def _describe(error: Any) -> str:
    path = error.json_path
    if error.validator == "anyOf" and path == "$.image":
        msg = "needs a sop_instance_uid (DICOM) or a pixel_sha256 (other images)"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        msg = f'unknown field "{extra[0]}"' if extra else error.message
        if extra and allowed:
            import difflib

            close = difflib.get_close_matches(extra[0], sorted(allowed), n=1)
            if close:
                msg += f'; did you mean "{close[0]}"?'
    elif error.validator in ("enum", "const"):
        options = error.validator_value if error.validator == "enum" else [error.validator_value]
        shown = ", ".join("null" if o is None else str(o) for o in options)
        msg = f"{json.dumps(error.instance)[:60]} is not one of: {shown}"
    elif error.validator == "propertyNames":
        msg = f'"{error.instance}" is not an allowed name here'
    elif error.validator == "pattern":
        msg = f"{json.dumps(error.instance)[:80]} has the wrong format"
    else:
        msg = error.message
    return _one_line(f"{path}: {msg}")


def validate_annotation_dict(data: Any) -> str | None:
    """Check a decoded JSON value against the schema.

    Returns
    -------
    str or None
        None when valid, else one line ``"<JSON path>: <problem>"`` for the most relevant
        error (``jsonschema.exceptions.best_match``).
    """
    from jsonschema.exceptions import best_match

    if not isinstance(data, Mapping):
        return f"$: an annotation file holds a JSON object; got {type(data).__name__}"
    schema = data.get("schema")
    if schema is None:
        return '$: no "schema" key; not a spine_measure annotation file'
    if schema not in READABLE_SCHEMAS:
        if isinstance(schema, str) and schema.startswith("spine_measure.annotation/"):
            return (f'$.schema: version "{schema}" is not supported by spine_measure '
                    f'{__version__} (it reads "{SCHEMA_ID}" and "{SCHEMA_V1}")')
        return f'$.schema: "{schema}" is not "{SCHEMA_ID}"; not a spine_measure annotation file'
    image = data.get("image")
    if isinstance(image, Mapping) and image.get("sop_instance_uid") is None \
            and image.get("pixel_sha256") is None:
        # the schema says so with anyOf, whose best_match message would be obscure
        return "$.image: needs a sop_instance_uid (DICOM) or a pixel_sha256 (other images)"
    try:  # fast path: a compiled validator says "valid" in ~0.2 ms instead of ~7 ms
        _fast_validator(schema)(data)
        return None
    except Exception:  # invalid (or the fast validator cannot decide): explain with jsonschema
        pass
    error = best_match(_validator(schema).iter_errors(data))
    return None if error is None else _describe(error)


@functools.lru_cache(maxsize=2)
def _fast_validator(version: str = SCHEMA_ID) -> Any:
    """The schema compiled to Python by fastjsonschema (used only to accept valid files
    quickly; every error message comes from jsonschema)."""
    import fastjsonschema

    return fastjsonschema.compile(annotation_schema(version))


# --------------------------------------------------------------------------- text / files


# A list of numbers spread over lines by ``indent``; JSON strings cannot hold a raw newline,
# so this only ever matches structure, never text inside a string.
_NUMBER_LIST = re.compile(r"\[\n\s*(-?[0-9][0-9.eE+-]*(?:,\n\s*-?[0-9][0-9.eE+-]*)*)\n\s*\]")


# A vertebra's review maps (point name -> source or confidence, flag -> source), kept on one
# line.
_POINT_MAP = re.compile(r'("(?:point_source|confidence|flag_source)": )\{\n((?:\s*"[A-Za-z]+": '
                        r'(?:"[a-z]+"|[0-9.eE+-]+),?\n)+)\s*\}')


def annotation_to_json(annotation: Annotation) -> str:
    """Serialise as the file text: indented UTF-8, lists of numbers (points, boxes) and the
    per-point review maps on one line, floats written with ``repr`` (so they read back
    exactly)."""
    text = json.dumps(annotation.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(","))
                            + "]", text)
    text = _POINT_MAP.sub(lambda m: m.group(1) + "{" + ", ".join(
        x.strip().rstrip(",") for x in m.group(2).strip().splitlines()) + "}", text)
    return text + "\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: Largest annotation file read (bytes). A film's landmarks take a few kB; edited cement
#: masks a few hundred kB at most.
MAX_ANNOTATION_BYTES = 64 * 1024 * 1024
#: Deepest nesting of arrays and objects read; the schema's deepest path is 6 levels.
MAX_JSON_DEPTH = 64

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings (a linear pass, no recursion)."""
    bare = _JSON_STRING.sub('""', text).encode("utf-8", "replace")
    arr = np.frombuffer(bare, dtype=np.uint8)
    step = (((arr == 0x5B) | (arr == 0x7B)).astype(np.int32)
            - ((arr == 0x5D) | (arr == 0x7D)).astype(np.int32))
    return int(np.cumsum(step).max()) if step.size else 0


def parse_annotation_json(text: str, *, source: str | os.PathLike[str]) -> Any:
    """Parse annotation file text, bounded: at most :data:`MAX_JSON_DEPTH` levels of
    nesting (so ``RecursionError`` cannot happen), every key unique within its object (JSON
    allows duplicates and keeps the last; an appended ``"landmarks"`` would silently drop
    every landmark), no NaN or Infinity.

    Raises
    ------
    AnnotationFileError
        One line naming ``source`` and the problem.
    """
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise AnnotationFileError(source, f"JSON nested {depth} levels deep; an annotation "
                                          f"file has at most {MAX_JSON_DEPTH}: not read")
    try:
        return json.loads(text, parse_constant=_reject_constant,
                          object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise AnnotationFileError(source, f'duplicate key "{_one_line(str(exc.args[0]))}" in '
                                          "one JSON object: keys must be unique (the later "
                                          "one would silently replace the earlier)") from None
    except json.JSONDecodeError as exc:
        raise AnnotationFileError(source, f"not valid JSON (line {exc.lineno}, column "
                                          f"{exc.colno}: {exc.msg})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise AnnotationFileError(source, "JSON nested too deeply: not read") from None
    except ValueError as exc:
        raise AnnotationFileError(source, f"not valid JSON ({_one_line(str(exc))})") from None


def _read_json(path: Path) -> Any:
    problem = not_a_regular_file(path) if os.path.lexists(path) else "file not found"
    if problem is not None:
        raise AnnotationFileError(path, problem)
    try:
        size = path.stat().st_size
        if size > MAX_ANNOTATION_BYTES:
            raise AnnotationFileError(path, f"{size / 2**20:.0f} MB is too large for an "
                                            f"annotation file (at most "
                                            f"{MAX_ANNOTATION_BYTES // 2**20} MB): not read")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_ANNOTATION_BYTES + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise AnnotationFileError(path, "file not found") from None
    except OSError as exc:
        raise AnnotationFileError(path, f"cannot read ({describe_os_error(exc)})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationFileError(path, f"not UTF-8 text (byte {exc.start}): not an "
                                        "annotation file") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return parse_annotation_json(text, source=path)


def annotation_from_json(text: str, *, source: str = "<string>") -> Annotation:
    """Parse and validate file text; errors name ``source``."""
    data = parse_annotation_json(text, source=source)
    try:
        return Annotation.from_dict(data)
    except (AnnotationError, LandmarkError, MaskCodecError) as exc:
        raise AnnotationFileError(source, str(exc)) from None


@names_file
def load_annotation(path: str | os.PathLike[str]) -> Annotation:
    """Read, schema-validate and build the annotation in ``path``.

    Raises
    ------
    AnnotationFileError
        One line: ``"<path>: <JSON path>: <problem>"`` (not found, not JSON, wrong schema
        version, schema violation, invalid landmarks or mask).
    """
    p = Path(path)
    data = _read_json(p)
    try:
        return Annotation.from_dict(data)
    except (AnnotationError, LandmarkError, MaskCodecError) as exc:
        raise AnnotationFileError(p, str(exc)) from None


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Exclusive advisory lock on a folder (``flock``), so two savers check-and-replace in turn.

    Best effort: where ``fcntl`` or directory locks are unavailable it does nothing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # pragma: no cover - file systems without flock
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically: temporary file in the same folder, fsync, rename.

    Readers see either the old file or the new one, never a part; after a crash (or any
    exception) the old file is intact and the temporary file is removed.
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(p.parent)


def _existing_state(path: Path) -> tuple[int, dt.datetime | None] | None:
    """(revision, modified) of the file at ``path``; None when there is no file."""
    if not path.exists():
        return None
    data = _read_json(path)
    rev = data.get("revision") if isinstance(data, dict) else None
    if isinstance(rev, bool) or not isinstance(rev, int):
        raise AnnotationFileError(path, "exists but has no integer revision (not an annotation "
                                        "file?); refusing to replace it without overwrite=True")
    try:
        modified = _parse_timestamp(data.get("modified"), "modified")
    except AnnotationError:
        modified = None
    return rev, modified


def save_annotation(annotation: Annotation, path: str | os.PathLike[str], *,
                    expected_revision: int | None = None, overwrite: bool = False) -> Annotation:
    """Write ``annotation`` to ``path`` atomically, refusing to replace newer work.

    Conflict rule: when ``path`` exists and ``overwrite`` is false, the file's revision is
    compared with the revision the caller loaded (``expected_revision``, by default
    ``annotation.revision``). A file with a *higher* revision, or the same revision but a
    later ``modified`` time (checked only when ``expected_revision`` is not given), was
    written by someone else since: :class:`AnnotationConflictError`. A new annotation
    (revision 0) therefore never replaces an existing file silently.

    The written annotation gets ``revision = max(loaded, file) + 1``, ``modified = now``
    (UTC) and the running ``spine_measure_version``; it is returned (the caller should keep
    it for the next save). Check and rename happen under an advisory lock on the folder.

    Raises
    ------
    AnnotationConflictError
        The file is newer than the loaded version.
    AnnotationFileError
        The folder does not exist, the file cannot be written, or an existing file is not an
        annotation (and ``overwrite`` is false).
    """
    if not isinstance(annotation, Annotation):
        raise TypeError(f'Argument "annotation" must be an Annotation; '
                        f"got {type(annotation).__name__}")
    p = Path(path)
    if not p.parent.is_dir():
        raise AnnotationFileError(p, f"folder {p.parent} does not exist")
    base = annotation.revision if expected_revision is None else int(expected_revision)
    with _directory_lock(p.parent):
        state = None
        if overwrite:
            with contextlib.suppress(AnnotationFileError):
                state = _existing_state(p)
        else:
            state = _existing_state(p)
            if state is not None:
                file_rev, file_modified = state
                if file_rev > base:
                    raise AnnotationConflictError(p, file_rev, base)
                if (expected_revision is None and file_rev == base and file_modified is not None
                        and file_modified > annotation.modified):
                    raise AnnotationConflictError(
                        p, file_rev, base,
                        f" and it was modified later ({format_timestamp(file_modified)} > "
                        f"{format_timestamp(annotation.modified)})")
        file_rev = state[0] if state is not None else 0
        now = _utcnow()
        modified = max(now, annotation.created)
        if state is not None and state[1] is not None and state[1] >= modified:
            modified = state[1] + dt.timedelta(microseconds=1)  # keep modified monotonic
        written = dataclasses.replace(annotation, revision=max(annotation.revision, file_rev) + 1,
                                      modified=modified, spine_measure_version=__version__)
        try:
            atomic_write_text(p, annotation_to_json(written))
        except OSError as exc:
            raise AnnotationFileError(p, f"cannot write: {exc}") from exc
    log.info("saved %s (revision %d)", p, written.revision)
    return written


# --------------------------------------------------------------------------- finding files


def sidecar_path(image_path: str | os.PathLike[str]) -> Path:
    """The annotation file next to an image: ``X.dcm`` -> ``X.sm.json``.

    Known image suffixes (:data:`IMAGE_SUFFIXES`, any case) are replaced; other names (DICOM
    files without suffix, UID-named files like ``1.2.840.1``) get ``.sm.json`` appended.
    """
    p = Path(image_path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return p.with_name(p.stem + SIDECAR_SUFFIX)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def _peek_image(path: Path) -> dict[str, Any]:
    """The ``image`` block of an annotation file, checked only for its schema key."""
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("schema") not in READABLE_SCHEMAS:
        raise AnnotationFileError(path, f'not a "{SCHEMA_ID}" (or "{SCHEMA_V1}") file')
    image = data.get("image")
    if not isinstance(image, dict):
        raise AnnotationFileError(path, '$.image: missing or not an object')
    return image


@dataclass(frozen=True)
class IndexEntry:
    """One annotation file of an :class:`AnnotationIndex`."""

    path: Path
    sop_instance_uid: str | None
    pixel_sha256: str | None
    file_name: str | None


@dataclass(frozen=True)
class AnnotationIndex:
    """Annotation files of a folder, by the image they refer to (built by
    :func:`index_annotations`, read once for a whole batch).

    Attributes
    ----------
    entries : tuple of IndexEntry
    errors : tuple of (Path, str)
        Files that could not be read as annotations, with the reason.
    duplicates : tuple of (str, tuple of Path)
        UIDs or pixel hashes claimed by more than one file (the first, in sorted path order,
        is used).
    """

    directory: Path
    entries: tuple[IndexEntry, ...]
    errors: tuple[tuple[Path, str], ...] = ()
    duplicates: tuple[tuple[str, tuple[Path, ...]], ...] = ()
    by_uid: Mapping[str, Path] = field(default_factory=dict, repr=False)
    by_pixel_hash: Mapping[str, Path] = field(default_factory=dict, repr=False)

    def lookup(self, *, sop_instance_uid: str | None = None,
               pixel_sha256: str | None = None) -> Path | None:
        """Path of the annotation of the image with this UID (first) or pixel hash, or None."""
        if sop_instance_uid is not None and sop_instance_uid in self.by_uid:
            return self.by_uid[sop_instance_uid]
        if pixel_sha256 is not None and pixel_sha256 in self.by_pixel_hash:
            return self.by_pixel_hash[pixel_sha256]
        return None

    def unmatched(self, sop_instance_uids: Iterable[str] = (),
                  pixel_hashes: Iterable[str] = ()) -> tuple[IndexEntry, ...]:
        """Annotations whose image is none of the given UIDs / pixel hashes (orphans to report)."""
        uids = set(sop_instance_uids)
        hashes = set(pixel_hashes)
        return tuple(e for e in self.entries
                     if not ((e.sop_instance_uid is not None and e.sop_instance_uid in uids)
                             or (e.pixel_sha256 is not None and e.pixel_sha256 in hashes)))


def index_annotations(annotations_dir: str | os.PathLike[str], *,
                      recursive: bool = True) -> AnnotationIndex:
    """Scan a folder once for ``*.sm.json`` files and map UID / pixel hash -> path.

    Only each file's ``image`` block is read (full validation happens on
    :func:`load_annotation`); unreadable files are listed in ``errors``, never raised.

    Raises
    ------
    AnnotationFileError
        ``annotations_dir`` is not a folder.
    """
    d = Path(annotations_dir)
    if not d.is_dir():
        raise AnnotationFileError(d, "annotations folder not found")
    files = sorted(d.rglob("*" + SIDECAR_SUFFIX) if recursive else d.glob("*" + SIDECAR_SUFFIX))
    entries: list[IndexEntry] = []
    errors: list[tuple[Path, str]] = []
    by_uid: dict[str, list[Path]] = {}
    by_hash: dict[str, list[Path]] = {}
    for f in files:
        problem = not_a_regular_file(f)
        if problem is not None:
            if not f.is_dir():
                errors.append((f, f"{problem}; skipped"))
            continue
        try:
            image = _peek_image(f)
        except AnnotationFileError as exc:
            errors.append((f, exc.reason))
            continue
        uid = image.get("sop_instance_uid") if isinstance(image.get("sop_instance_uid"),
                                                          str) else None
        ph = image.get("pixel_sha256") if isinstance(image.get("pixel_sha256"), str) else None
        name = image.get("file_name") if isinstance(image.get("file_name"), str) else None
        entries.append(IndexEntry(f, uid, ph, name))
        if uid:
            by_uid.setdefault(uid, []).append(f)
        if ph:
            by_hash.setdefault(ph, []).append(f)
    dups = tuple((key, tuple(paths)) for table in (by_uid, by_hash)
                 for key, paths in table.items() if len(paths) > 1)
    for key, paths in dups:
        log.warning("%s: image %s is annotated by %d files (%s); using the first", d, key,
                    len(paths), ", ".join(str(p) for p in paths))
    return AnnotationIndex(
        directory=d, entries=tuple(entries), errors=tuple(errors), duplicates=dups,
        by_uid=types.MappingProxyType({k: v[0] for k, v in by_uid.items()}),
        by_pixel_hash=types.MappingProxyType({k: v[0] for k, v in by_hash.items()}),
    )


# --------------------------------------------------------------------------- image headers


def read_image_reference(path: str | os.PathLike[str]) -> ImageRef:
    """Build the :class:`ImageRef` of an image file, reading as little as possible.

    DICOM (recognised by content, as :func:`~spine_measure.io.radiograph.load_radiograph`
    does): the header only (``dcmread(stop_before_pixels=True)``) gives the three UIDs,
    ``Rows`` and ``Columns``; pixels are decoded only when ``SOPInstanceUID`` is missing.
    Plain images (PNG, JPEG, TIFF, BMP) are opened with
    :func:`~spine_measure.io.radiograph.load_radiograph` and identified by its
    ``pixel_sha256`` (:func:`pixel_hash` of the array spine_measure measures on), so the
    annotation tool and the importer always agree on the hash.

    Raises
    ------
    RadiographError
        The file is missing or is neither DICOM nor a readable image.
    """
    from spine_measure.io.radiograph import PLAIN_IMAGE_SUFFIXES, load_radiograph

    p = Path(path)
    if not p.is_file():
        raise RadiographError(p, "image not found")
    ds = None
    if p.suffix.lower() not in PLAIN_IMAGE_SUFFIXES or _has_dicom_preamble(p):
        ds = _read_dicom_header(p)
    if ds is None or ds.get("SOPInstanceUID") is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageConversionWarning)
            radiograph = load_radiograph(p)
        rows, cols = radiograph.shape
        meta = radiograph.metadata
        return ImageRef(rows=int(rows), cols=int(cols), sop_instance_uid=None,
                        study_instance_uid=meta.study_instance_uid,
                        series_instance_uid=meta.series_instance_uid,
                        pixel_sha256=radiograph.pixel_sha256, file_name=p.name)
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise RadiographError(p, "DICOM file has no Rows/Columns (not an image)")
    return ImageRef(
        rows=int(rows), cols=int(cols), sop_instance_uid=_uid(ds, "SOPInstanceUID"),
        study_instance_uid=_uid(ds, "StudyInstanceUID"),
        series_instance_uid=_uid(ds, "SeriesInstanceUID"), file_name=p.name,
    )


def _uid(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip().rstrip("\0") if value is not None else ""
    return text or None


def _has_dicom_preamble(path: Path) -> bool:
    from spine_measure.io.radiograph import _has_dicom_preamble as has_preamble

    return has_preamble(os.fspath(path))


def _read_dicom_header(p: Path) -> Any:
    """The DICOM header without pixels; accepts raw datasets without preamble (``force``)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(p, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except Exception as exc:
        raise RadiographError(p, f"cannot read DICOM header ({type(exc).__name__}: {exc})") \
            from None
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
        if "Rows" not in ds and "SOPClassUID" not in ds:
            raise ValueError("no image attributes")
        return ds
    except Exception:
        raise RadiographError(p, "neither DICOM nor a readable image (PNG, JPEG, TIFF, BMP)") \
            from None
