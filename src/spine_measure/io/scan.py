"""Header-only scan of a folder of DICOM files: find, describe and group, never decode pixels.

Files are recognised as DICOM by content (the ``DICM`` preamble, or a raw dataset that
starts with a group 0002/0008 element), not by extension. Each file is read once, with
``stop_before_pixels=True`` and ``specific_tags`` limited to :data:`HEADER_TAGS`. Unreadable
files become :class:`ScanIssue` rows and the scan carries on.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spine_measure.errors import RadiographError
from spine_measure.io.calibration import CALIBRATION_TAGS, Calibration, calibration_from_dataset
from spine_measure.io.files import names_file, not_a_regular_file, walk_regular_files
from spine_measure.io.radiograph import (
    PLAIN_IMAGE_SUFFIXES,
    RadiographMetadata,
    _int,
    _tag,
    explain_exception,
    looks_like_dicom,
    metadata_from_dataset,
    raw_attribute,
)

__all__ = [
    "HEADER_TAGS",
    "DicomHeader",
    "ScanIssue",
    "ScanResult",
    "iter_files",
    "looks_like_dicom",
    "read_header",
    "scan_folder",
]

logger = logging.getLogger(__name__)

#: Every attribute the scan reads: identification, grouping, geometry and calibration.
HEADER_TAGS: tuple[str, ...] = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "PatientID", "PatientName", "StudyDate", "AcquisitionDate", "ContentDate",
    "StudyDescription", "SeriesDescription", "SeriesNumber", "InstanceNumber",
    "Modality", "ViewPosition", "BodyPartExamined", "ImageLaterality", "Laterality",
    "Manufacturer", "PhotometricInterpretation", "Rows", "Columns", "NumberOfFrames",
    "BitsStored", "SamplesPerPixel",
    *CALIBRATION_TAGS,
)

@dataclass(frozen=True)
class DicomHeader:
    """What the scan learnt of one DICOM file without decoding its pixels."""

    path: str
    metadata: RadiographMetadata
    calibration: Calibration
    is_image: bool
    series_number: int | None = None
    instance_number: int | None = None

    @property
    def sop_instance_uid(self) -> str | None:
        return self.metadata.sop_instance_uid


@dataclass(frozen=True)
class ScanIssue:
    """A file the scan could not use, with the stage and a one-line reason."""

    path: str
    stage: str  # "read" (unreadable) or "skip" (readable, but not a measurable image)
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ScanResult:
    """Headers found, plain images found, and the files that could not be used."""

    headers: list[DicomHeader] = field(default_factory=list)
    plain_images: list[str] = field(default_factory=list)
    issues: list[ScanIssue] = field(default_factory=list)
    n_files: int = 0

    @property
    def images(self) -> list[DicomHeader]:
        """Headers of DICOM files that hold an image (not SR, RT plans, DICOMDIRs ...)."""
        return [h for h in self.headers if h.is_image]

    def by_patient(self) -> dict[str, dict[str, dict[str, list[DicomHeader]]]]:
        """Group image headers patient -> study -> series, each series sorted by
        instance number then path. Missing identifiers group under ``"<unknown>"``."""
        tree: dict[str, dict[str, dict[str, list[DicomHeader]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        for h in self.images:
            m = h.metadata
            tree[m.patient_id or "<unknown>"][m.study_instance_uid or "<unknown>"][
                m.series_instance_uid or "<unknown>"
            ].append(h)
        out: dict[str, dict[str, dict[str, list[DicomHeader]]]] = {}
        for pid in sorted(tree):
            out[pid] = {}
            for study in sorted(tree[pid]):
                out[pid][study] = {
                    series: sorted(files, key=lambda h: (h.instance_number or 0, h.path))
                    for series, files in sorted(tree[pid][study].items())
                }
        return out

    def duplicate_sop_instance_uids(self) -> dict[str, list[str]]:
        """SOPInstanceUIDs carried by more than one file -> the paths."""
        seen: dict[str, list[str]] = defaultdict(list)
        for h in self.headers:
            if h.sop_instance_uid:
                seen[h.sop_instance_uid].append(h.path)
        return {uid: paths for uid, paths in seen.items() if len(paths) > 1}


def iter_files(root: str | os.PathLike[str], *, recursive: bool = True,
               on_skip: Callable[[str, str], None] | None = None) -> Iterator[str]:
    """Regular files under ``root`` in sorted order (hidden files and folders skipped).

    Pipes, devices, sockets and symbolic link loops are never opened: each is passed to
    ``on_skip(path, reason)`` (or logged) instead (:func:`~spine_measure.io.files.
    walk_regular_files`)."""
    root = os.fspath(root)

    def skipped(path: str, reason: str) -> None:
        if on_skip is not None:
            on_skip(path, reason)
        else:
            logger.warning("%s: %s; skipped", path, reason)

    if not os.path.isdir(root):
        reason = not_a_regular_file(root)
        if reason is None:
            yield root
        else:
            skipped(root, reason)
        return
    yield from walk_regular_files(root, recursive=recursive, on_skip=skipped)


def _header_tag_ints() -> list[int]:
    global _HEADER_TAG_INTS
    if _HEADER_TAG_INTS is None:
        _HEADER_TAG_INTS = [_tag(k) for k in HEADER_TAGS]
    return _HEADER_TAG_INTS


_HEADER_TAG_INTS: list[int] | None = None


def _header_from_dataset(ds: object, path: str) -> DicomHeader:
    meta = metadata_from_dataset(ds, path)
    is_image = meta.rows is not None and meta.columns is not None
    return DicomHeader(
        path=path,
        metadata=meta,
        calibration=calibration_from_dataset(ds, context=path, warn=False),
        is_image=is_image,
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
    )


@names_file
def read_header(path: str | os.PathLike[str]) -> DicomHeader:
    """Read one DICOM file's header (no pixel data).

    Raises
    ------
    RadiographError
        The file is not DICOM or cannot be parsed.
    """
    import pydicom

    path = os.fspath(path)
    problem = not_a_regular_file(path)
    if problem is not None:
        raise RadiographError(path, problem)
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
            if not looks_like_dicom(head):
                raise RadiographError(path, "not a DICOM file (no DICM preamble, not a dataset)")
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=_header_tag_ints(),
                                 force=head[128:132] != b"DICM")
            at_end = fh.read(4) == b""
    except RadiographError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - one line, never a traceback
        raise RadiographError(path, f"unreadable DICOM header: {explain_exception(exc)}"
                              ) from None
    if len(ds) == 0:
        raise RadiographError(path, "truncated or corrupt: no data elements after the "
                                    "File Meta Information")
    if at_end and _should_have_pixels(ds):
        raise RadiographError(path, "truncated: the file ends before its pixel data (inside "
                                    "the header); not measured")
    return _header_from_dataset(ds, path)


def _should_have_pixels(ds: object) -> bool:
    """True when a dataset that ended without Pixel Data should have had some: it has Rows,
    or its SOP class is an image storage class (or unknown)."""
    if _int(ds, "Rows") is not None:
        return True
    uid = raw_attribute(ds, "SOPClassUID")
    meta = getattr(ds, "file_meta", None)
    if uid is None and meta is not None:
        uid = raw_attribute(meta, "MediaStorageSOPClassUID")
    if uid is None:
        return True
    from pydicom.uid import UID

    return "Image Storage" in UID(str(uid)).name


def scan_folder(
    root: str | os.PathLike[str],
    *,
    recursive: bool = True,
    include_plain_images: bool = False,
    progress: Callable[[str], None] | None = None,
    files: Iterable[str] | None = None,
) -> ScanResult:
    """Scan ``root`` for DICOM files (by content) without decoding pixels.

    Parameters
    ----------
    root : path-like
        A folder (or a single file).
    recursive : bool
        Descend into sub-folders.
    include_plain_images : bool
        Also list PNG / JPEG / TIFF files (uncalibrated) in :attr:`ScanResult.plain_images`.
    progress : callable, optional
        Called with each path after it was looked at (the CLI drives a progress bar with it).
    files : iterable of str, optional
        Scan these files instead of listing ``root``.

    Returns
    -------
    ScanResult
        Headers, plain images and issues. Files that are neither DICOM nor (when asked) a
        plain image are counted in ``n_files`` and otherwise ignored.
    """
    result = ScanResult()

    def skipped(path: str, reason: str) -> None:
        result.n_files += 1
        result.issues.append(ScanIssue(path, "read", f"{reason}; skipped"))
        if progress is not None:
            progress(path)

    listing = files if files is not None else iter_files(root, recursive=recursive,
                                                         on_skip=skipped)
    for path in listing:
        result.n_files += 1
        try:
            header = read_header(path)
        except RadiographError as exc:
            if exc.reason.startswith("not a DICOM file"):
                if include_plain_images and Path(path).suffix.lower() in PLAIN_IMAGE_SUFFIXES:
                    result.plain_images.append(path)
            else:
                result.issues.append(ScanIssue(path, "read", exc.reason))
                logger.warning("%s", exc)
        except OSError as exc:
            result.issues.append(ScanIssue(path, "read", f"cannot open ({exc.strerror})"))
        else:
            result.headers.append(header)
            if not header.is_image:
                result.issues.append(ScanIssue(
                    path, "skip",
                    f"not an image ({header.metadata.modality or 'no modality'}, "
                    f"SOP class {header.metadata.sop_class_uid or 'unknown'})",
                ))
        if progress is not None:
            progress(path)
    return result
