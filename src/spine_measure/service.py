"""Measure one film: the one composition every command and the napari plugin share.

``spine-measure measure``, ``batch`` (in its workers), ``export-sr`` and the annotation
widget all measure a film through this module, so the same film with the same annotation
gives the same numbers everywhere by construction:

1. **Which annotation** (:class:`AnnotationFinder`). One precedence, for every command: an
   annotations folder given explicitly (``--annotations DIR``) wins for every film it
   covers -- matched by SOP Instance UID, else pixel hash (plain images), else by file name
   (``X.dcm`` -> ``X.sm.json``); then the sidecar ``X.sm.json`` next to the film; then (batch
   only) an annotation elsewhere in the input folder naming the film's UID. Which file was
   used, and from which folder, is part of the result (:class:`AnnotationChoice`); files of
   the annotations folder that no film used are listed by :meth:`AnnotationFinder.unused`.
2. **Does it belong to this film** (:func:`check_identity`): the annotation's SOP Instance
   UID (or pixel hash) and rows x columns must be the film's; otherwise the film fails with
   one line naming the annotation file.
3. **Measure** (:func:`measure_with_calibration`): every single-film measurement with the
   calibration in force -- the reader's calibration line when drawn (keeping the header's
   pixel aspect ratio), else the header calibration (``docs/calibration.md``).
4. **Cement** (:func:`measure_cement_levels`): the cement features of the treated vertebrae
   and of every level with a stored mask (lateral films), measured with the spacing of the
   measurements, the reader's edited mask winning over the automatic segmentation.

Files are read through :mod:`spine_measure.io`; nothing here writes a file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from spine_measure.errors import FileError, SpineMeasureError
from spine_measure.landmarks import LEVELS

if TYPE_CHECKING:
    import numpy as np

    from spine_measure.io.annotation import Annotation, AnnotationIndex
    from spine_measure.io.calibration import Calibration
    from spine_measure.io.radiograph import Radiograph, RadiographMetadata
    from spine_measure.io.scan import DicomHeader
    from spine_measure.measurements import FilmMeasurements

__all__ = [
    "ANNOTATION_SOURCES",
    "AnnotationChoice",
    "AnnotationFinder",
    "FilmError",
    "FilmResult",
    "cement_levels",
    "check_identity",
    "measure_cement_levels",
    "measure_film_file",
    "measure_with_calibration",
]

ANNOTATION_SOURCES = ("annotations_folder", "sidecar", "input_folder", "given")
"""Where a film's annotation came from: the ``--annotations`` folder, the sidecar next to
the film, another file of the input folder naming the film's UID (batch), or named by the
caller."""

_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}


class FilmError(FileError):
    """One film could not be measured; ``stage`` says where (``read``, ``annotation``,
    ``measure``, ``decode``) and ``str(err)`` is one line naming the file."""

    def __init__(self, path: str | os.PathLike[str], reason: str, stage: str) -> None:
        super().__init__(path, reason)
        self.stage = stage


# ------------------------------------------------------------------------ which annotation


@dataclass(frozen=True)
class AnnotationChoice:
    """The annotation file a film is measured with.

    Attributes
    ----------
    path : Path
    source : str
        One of :data:`ANNOTATION_SOURCES`.
    relative : str
        ``path`` relative to its folder (the annotations folder for ``annotations_folder``,
        else the input folder when known, else the file name), ``/``-separated. This is what
        the outputs record; never an absolute path.
    """

    path: Path
    source: str
    relative: str

    def describe(self) -> str:
        """``annotations folder: readerB/SM001.sm.json`` and the like."""
        where = {"annotations_folder": "annotations folder", "sidecar": "sidecar",
                 "input_folder": "input folder", "given": "given"}[self.source]
        return f"{where}: {self.relative}"


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def _safe_resolve(path: Path) -> Path:
    """``path`` resolved; a symbolic link loop (reported by the index) stays as given."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


class AnnotationFinder:
    """Finds each film's annotation with the one precedence of every command.

    Parameters
    ----------
    annotations_dir : path, optional
        The folder given with ``--annotations``: it wins over the sidecars for every film it
        covers (by UID, else pixel hash, else file name -- mirrored sub-folders first).
    input_root : path, optional
        The folder the films come from (batch). Used for relative names and, after the
        sidecar, to find an annotation anywhere in it by the film's UID.

    Raises
    ------
    AnnotationFileError
        ``annotations_dir`` is not a folder.
    """

    def __init__(self, annotations_dir: str | os.PathLike[str] | None = None, *,
                 input_root: str | os.PathLike[str] | None = None) -> None:
        from spine_measure.io.annotation import index_annotations

        self.annotations_dir = None if annotations_dir is None else Path(annotations_dir)
        self.input_root = None if input_root is None else Path(input_root)
        self.index: AnnotationIndex | None = (
            None if self.annotations_dir is None else index_annotations(self.annotations_dir))
        self.root_index: AnnotationIndex | None = (
            None if self.input_root is None else index_annotations(self.input_root))
        self._used: set[Path] = set()
        self._by_name: dict[str, list[Path]] = {}
        if self.index is not None:
            for e in self.index.entries:
                self._by_name.setdefault(e.path.name, []).append(e.path)
            for p, _reason in self.index.errors:   # unreadable files still match by name
                self._by_name.setdefault(p.name, []).append(p)

    # -- lookup -----------------------------------------------------------------------
    def find(self, image_path: str | os.PathLike[str], *,
             sop_instance_uid: str | None = None,
             pixel_sha256: str | None = None) -> AnnotationChoice | None:
        """The annotation of the image at ``image_path`` (identified by its UID or pixel
        hash), or None. The identity is *not* checked here (:func:`check_identity`)."""
        from spine_measure.io.annotation import sidecar_path

        image = Path(image_path)
        name = sidecar_path(image).name
        if self.index is not None and self.annotations_dir is not None:
            hit = self.index.lookup(sop_instance_uid=sop_instance_uid,
                                    pixel_sha256=pixel_sha256)
            if hit is None:
                hit = self._by_file_name(image, name)
            if hit is not None:
                return self._choice(hit, "annotations_folder", self.annotations_dir)
        side = sidecar_path(image)
        if side.is_file():
            return self._choice(side, "sidecar", self.input_root or image.parent)
        if self.root_index is not None and sop_instance_uid is not None:
            hit = self.root_index.lookup(sop_instance_uid=sop_instance_uid)
            if hit is not None:
                return self._choice(hit, "input_folder", self.input_root)
        return None

    def _by_file_name(self, image: Path, name: str) -> Path | None:
        assert self.annotations_dir is not None
        if self.input_root is not None:
            try:
                rel_parent = image.resolve().parent.relative_to(self.input_root.resolve())
            except ValueError:
                rel_parent = None
            if rel_parent is not None:
                mirrored = self.annotations_dir / rel_parent / name
                if mirrored.is_file():
                    return mirrored
        top = self.annotations_dir / name
        if top.is_file():
            return top
        same = self._by_name.get(name, [])
        return same[0] if len(same) == 1 else None

    def _choice(self, path: Path, source: str, root: Path | None) -> AnnotationChoice:
        self._used.add(_safe_resolve(path))
        return AnnotationChoice(path, source, _relative(path, root))

    # -- what is left over ------------------------------------------------------------
    def unused(self) -> list[Path]:
        """Files of the annotations folder (readable or not) that no film was measured
        with, sorted: annotations that match no image given."""
        if self.index is None:
            return []
        files = [e.path for e in self.index.entries] + [p for p, _ in self.index.errors]
        return sorted(p for p in files if _safe_resolve(p) not in self._used)

    def relative(self, path: Path) -> str:
        """``path`` relative to the annotations folder (else the input folder)."""
        root = self.annotations_dir if self.annotations_dir is not None else self.input_root
        return _relative(path, root)


# ------------------------------------------------------------------------ identity


def check_identity(annotation: Annotation, annotation_path: str | os.PathLike[str], *,
                   film: str | os.PathLike[str],
                   sop_instance_uid: str | None = None, pixel_sha256: str | None = None,
                   rows: int | None = None, cols: int | None = None) -> None:
    """Refuse an annotation that belongs to another image.

    The SOP Instance UID is compared when both sides have one, else the pixel hash; the
    image size (rows x columns) whenever the film's is known.

    Raises
    ------
    AnnotationMismatchError
        Naming the annotation file, what it annotates and what the film is.
    """
    from spine_measure.io.annotation import AnnotationMismatchError

    ref = annotation.image
    name = Path(film).name
    if sop_instance_uid and ref.sop_instance_uid:
        if ref.sop_instance_uid != sop_instance_uid:
            raise AnnotationMismatchError(
                annotation_path, f"annotates SOPInstanceUID {ref.sop_instance_uid}, but "
                                 f"{name} has {sop_instance_uid}")
    elif pixel_sha256 and ref.pixel_sha256 and ref.pixel_sha256 != pixel_sha256:
        raise AnnotationMismatchError(
            annotation_path, f"annotates pixel hash {ref.pixel_sha256[:12]}..., but {name} "
                             f"hashes to {pixel_sha256[:12]}...")
    if rows and cols and (ref.rows, ref.cols) != (int(rows), int(cols)):
        raise AnnotationMismatchError(
            annotation_path, f"annotates a {ref.rows}x{ref.cols} image, but {name} is "
                             f"{int(rows)}x{int(cols)}")


# ------------------------------------------------------------------------ measurements


def measure_with_calibration(calibration: Calibration, annotation: Annotation, *,
                             cobb: Iterable[str | tuple[Any, Any]] = (),
                             metadata: Mapping[str, Any] | None = None) -> FilmMeasurements:
    """Every single-film measurement of ``annotation`` on a film whose own (header)
    calibration is ``calibration``: the reader's calibration line wins when drawn.

    This is the call the napari widget makes for its live values: the batch, ``measure``
    and ``export-sr`` reach the same function through :func:`measure_film_file`.

    Raises
    ------
    ValueError
        The reader's calibration line implies an implausible spacing.
    """
    from spine_measure.measurements import measure_annotation

    film = SimpleNamespace(calibration=calibration, metadata={})
    fm = measure_annotation(film, annotation, cobb=cobb)
    return dataclasses.replace(fm, metadata=dict(metadata or {}))


def cement_levels(annotation: Annotation) -> tuple[str, ...]:
    """Levels whose cement is measured: on a lateral film, every treated vertebra and every
    level with a stored cement mask (not S1), cranial to caudal; none on an AP film."""
    if annotation.view != "lateral":
        return ()
    levels = {v.level for v in annotation.landmarks if v.treated}
    levels |= {m.level for m in annotation.cement}
    levels.discard("S1")
    return tuple(sorted(levels, key=_LEVEL_INDEX.__getitem__))


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def measure_cement_levels(radiograph: Radiograph, annotation: Annotation,
                          spacing: tuple[float, float] | None, *,
                          levels: Sequence[str] | None = None,
                          tolerance_mm: float = 1.0,
                          ) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray],
                                     dict[str, str]]:
    """Cement features of ``levels`` (default :func:`cement_levels`) of a decoded film.

    ``spacing`` is the spacing the film's measurements used
    (``FilmMeasurements.spacing``), so a reader's calibration line measures the cement in mm
    too. Returns ``(rows, masks, errors)``: level -> feature row (NaN as None), level -> the
    mask the features were computed from (when cement was found), level -> reason for a
    vertebra that cannot be analysed. "No cement found" (a pre-op film) is a value.
    """
    from spine_measure.cement import measure_cement

    rows: dict[str, dict[str, Any]] = {}
    masks: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    for level in (cement_levels(annotation) if levels is None else levels):
        edited = annotation.cement_mask(level)
        try:
            row, used = measure_cement(radiograph, annotation.landmarks, level,
                                       mask=None if edited is None else edited.to_array(),
                                       tolerance_mm=tolerance_mm, with_mask=True,
                                       spacing=spacing)
        except SpineMeasureError as exc:
            errors[level] = " ".join(str(exc).split())
            continue
        except Exception as exc:  # a cement problem is this level's, never the film's
            from spine_measure.io.radiograph import explain_exception

            errors[level] = explain_exception(exc)
            continue
        rows[level] = {k: _clean(v) for k, v in dict(row).items()}
        if row.get("cement_found"):
            masks[level] = used
    return rows, masks, errors


# ------------------------------------------------------------------------ one film


@dataclass(frozen=True)
class FilmResult:
    """One film measured with its annotation.

    Attributes
    ----------
    path : Path
    choice : AnnotationChoice
        The annotation file used and where it came from.
    annotation : Annotation
    metadata : RadiographMetadata
    calibration : Calibration
        The film's own (header) calibration; ``measurements.calibration_source`` says which
        calibration the values use.
    measurements : FilmMeasurements
    cement : dict
        Level -> cement feature row (:func:`measure_cement_levels`).
    cement_masks : dict
        Level -> the cement mask measured (for overlays).
    cement_errors : dict
        Level -> why its cement could not be analysed.
    radiograph : Radiograph or None
        The decoded film when pixels were needed (cement, or ``decode=True``).
    plausibility : tuple of str
        Problems of the landmarks (``spine_measure.measurements.plausibility``): refused
        vertebrae and warnings, one line each; callers report them.
    unconfirmed : tuple of (level, reason)
        Vertebrae a reader has not confirmed, left out of ``annotation`` and
        ``measurements`` (none with ``accept_proposed``; ``docs/propagation.md``).
    landmark_source : dict
        Level -> ``reader``, ``propagated``, ``refined`` or ``mixed``, for the measured
        vertebrae.
    """

    path: Path
    choice: AnnotationChoice
    annotation: Annotation
    metadata: RadiographMetadata
    calibration: Calibration
    measurements: FilmMeasurements
    cement: dict[str, dict[str, Any]] = field(default_factory=dict)
    cement_masks: dict[str, Any] = field(default_factory=dict)
    cement_errors: dict[str, str] = field(default_factory=dict)
    radiograph: Radiograph | None = None
    plausibility: tuple[str, ...] = ()
    unconfirmed: tuple[tuple[str, str], ...] = ()
    landmark_source: dict[str, str] = field(default_factory=dict)


def _film_identity(path: Path, header: DicomHeader | None
                   ) -> tuple[bool, Any, Radiograph | None]:
    """(is_dicom, header-or-radiograph metadata source, radiograph if decoded)."""
    from spine_measure.errors import RadiographError
    from spine_measure.io.radiograph import (
        PLAIN_IMAGE_SUFFIXES,
        load_radiograph,
        looks_like_dicom,
    )
    from spine_measure.io.scan import read_header

    if header is not None:
        return True, header, None
    from spine_measure.io.files import not_a_regular_file

    problem = not_a_regular_file(path)  # a pipe, device or link loop is never opened
    if problem is not None:
        raise FilmError(path, problem, "read")
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise FilmError(path, f"cannot read ({exc.strerror or exc})", "read") from None
    try:
        if looks_like_dicom(head):
            return True, read_header(path), None
        if path.suffix.lower() in PLAIN_IMAGE_SUFFIXES:
            rg = load_radiograph(path)  # its warnings name the file (io.files.route_warnings)
            return False, rg, rg
    except RadiographError as exc:
        raise FilmError(path, exc.reason, "read") from None
    raise FilmError(path, "not a DICOM file (no DICM preamble, not a dataset) and not a "
                          "PNG/JPEG/TIFF/BMP image", "read")


def measure_film_file(path: str | os.PathLike[str], *,
                      finder: AnnotationFinder | None = None,
                      annotation: AnnotationChoice | None = None,
                      header: DicomHeader | None = None,
                      cobb: Iterable[str | tuple[Any, Any]] = (),
                      cement: bool = True,
                      cement_tolerance_mm: float = 1.0,
                      decode: bool = False, accept_proposed: bool = False) -> FilmResult:
    """Measure the film at ``path`` with the annotation that belongs to it.

    Parameters
    ----------
    path : path
        A DICOM film (read header-only unless pixels are needed) or a plain image.
    finder : AnnotationFinder, optional
        Finds the annotation (default: sidecars only).
    annotation : AnnotationChoice, optional
        The annotation to use, already chosen (the batch plans it); else ``finder``'s.
    header : DicomHeader, optional
        The film's header when already read (the batch's scan).
    cobb : iterable of str, optional
        Sagittal Cobb angles: endplate pairs (``"T10:superior,L2:inferior"``, ``"T10s-L2i"``)
        or keywords the film's flags resolve (``"treated"``, ``"treated+1"``).
    cement : bool
        Measure the cement of :func:`cement_levels` (decodes the pixels when there are any).
    decode : bool
        Decode the pixels even without cement (the batch's overlays).
    accept_proposed : bool
        Also measure vertebrae no reader has confirmed (proposals); by default they are left
        out and listed in :attr:`FilmResult.unconfirmed`.

    Raises
    ------
    FilmError
        ``stage`` ``read`` (missing, not DICOM, unreadable), ``annotation`` (none, invalid,
        another image's), ``measure`` (e.g. an absurd calibration line) or ``decode`` (the
        pixels cannot be decoded or their size is not the annotation's).
    """
    from spine_measure.errors import RadiographError
    from spine_measure.io.annotation import load_annotation
    from spine_measure.io.radiograph import load_radiograph

    p = Path(path)
    is_dicom, src, radiograph = _film_identity(p, header)
    meta = src.metadata
    uid = meta.sop_instance_uid
    pixel_sha = None if is_dicom else radiograph.pixel_sha256  # type: ignore[union-attr]
    if is_dicom:
        rows, cols = meta.rows, meta.columns
    else:
        rows, cols = radiograph.shape  # type: ignore[union-attr]
    choice = annotation
    if choice is None:
        finder = finder or AnnotationFinder()
        try:
            choice = finder.find(p, sop_instance_uid=uid, pixel_sha256=pixel_sha)
        except SpineMeasureError as exc:
            raise FilmError(getattr(exc, "path", p), getattr(exc, "reason", str(exc)),
                            "annotation") from None
        if choice is None:
            where = (f" or in {finder.annotations_dir}"
                     if finder.annotations_dir is not None else "")
            raise FilmError(p, f"no annotation file (looked next to the image{where})",
                            "annotation")
    try:
        ann = load_annotation(choice.path)
        check_identity(ann, choice.path, film=p, sop_instance_uid=uid, pixel_sha256=pixel_sha,
                       rows=rows, cols=cols)
    except FileError as exc:
        raise FilmError(exc.path, exc.reason, "annotation") from None
    except SpineMeasureError as exc:
        raise FilmError(choice.path, str(exc), "annotation") from None
    ann, unconfirmed = ann.for_measurement(accept_proposed=accept_proposed)
    sources = {lv: ann.landmark_source(lv) for lv in ann.landmarks.levels()}
    metadata = {"image": os.fspath(p), "annotation": choice.relative,
                "annotation_source": choice.source}
    for key in ("sop_instance_uid", "study_date", "acquisition_date"):
        val = getattr(meta, key, None)
        if val is not None:
            metadata[key] = val if isinstance(val, str) else str(val)
    try:
        fm = measure_with_calibration(src.calibration, ann, cobb=cobb, metadata=metadata)
    except ValueError as exc:  # e.g. a reader calibration line giving an absurd spacing
        raise FilmError(choice.path, str(exc), "measure") from None
    levels = cement_levels(ann) if cement else ()
    if (levels or decode) and radiograph is None:
        try:
            radiograph = load_radiograph(p)  # warnings name the file, once (route_warnings)
        except RadiographError as exc:
            raise FilmError(p, exc.reason, "decode") from None
        if radiograph.shape != (ann.image.rows, ann.image.cols):
            raise FilmError(p, f"decoded image is {radiograph.shape[0]}x"
                               f"{radiograph.shape[1]}; the annotation "
                               f"{choice.relative} says {ann.image.rows}x{ann.image.cols}",
                            "decode")
    rows_c: dict[str, dict[str, Any]] = {}
    masks: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if levels:
        assert radiograph is not None
        rows_c, masks, errors = measure_cement_levels(radiograph, ann, fm.spacing,
                                                      levels=levels,
                                                      tolerance_mm=cement_tolerance_mm)
    from spine_measure.measurements.plausibility import check_landmarks

    problems = tuple(check_landmarks(ann.landmarks, (ann.image.rows, ann.image.cols))
                     .messages())
    return FilmResult(p, choice, ann, meta, src.calibration, fm, rows_c, masks, errors,
                      radiograph, problems, unconfirmed, sources)
