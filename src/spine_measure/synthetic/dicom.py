"""Write synthetic films as DICOM Digital X-Ray (or Computed Radiography) objects.

The objects follow the DX Image Storage - For Presentation IOD
(``1.2.840.10008.5.1.4.1.1.1.1``): Patient, General Study, Patient Study, General Series,
DX Series, Frame of Reference-free General Equipment, General Acquisition, General Image,
Image Pixel, DX Anatomy Imaged, DX Image, DX Detector, DX Positioning, VOI LUT, Acquisition
Context and SOP Common modules. A film with no usable spacing is written as a CR object
(``1.2.840.10008.5.1.4.1.1.1``), where ``ImagerPixelSpacing`` is optional, as real CR exports
with ``PixelSpacing`` ``0\\0`` are.

Compressed transfer syntaxes use pydicom's ``Dataset.compress`` (JPEG 2000 and JPEG-LS lossless
via pylibjpeg-openjpeg / pyjpegls, RLE via pydicom's own encoder); after compressing, the
pixel data are decoded again and compared with the source, so a file is never lossy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    PYDICOM_ROOT_UID,
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

__all__ = [
    "TRANSFER_SYNTAXES",
    "FilmHeader",
    "deterministic_uid",
    "build_dataset",
    "write_film",
    "format_ds",
]

#: short names of the transfer syntaxes the generator writes
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "j2k": JPEG2000Lossless,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
}
_PLUGIN = {"j2k": "pylibjpeg", "rle": "pydicom", "jpegls": "pyjpegls"}


class SyntheticDicomError(RuntimeError):
    """Writing a synthetic DICOM file failed (e.g. a codec did not round-trip)."""


def deterministic_uid(*parts: object) -> str:
    """A UID under pydicom's root derived only from ``parts`` (SHA-512 of their text).

    >>> deterministic_uid(1, "SM001", "study") == deterministic_uid(1, "SM001", "study")
    True
    """
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=[str(p) for p in parts]))


def format_ds(value: float) -> str:
    """A Decimal String of at most 16 characters that round-trips ``value`` closely."""
    for digits in range(10, 2, -1):
        s = f"{value:.{digits}g}"
        if len(s) <= 16:
            return s
    raise ValueError(f"cannot write {value!r} as a DICOM decimal string")


@dataclass(frozen=True)
class FilmHeader:
    """Everything about a film that goes into its DICOM header.

    Calibration attributes: ``imager_pixel_spacing`` (mm, written to ImagerPixelSpacing),
    ``ermf`` (EstimatedRadiographicMagnificationFactor), ``pixel_spacing`` (text exactly as
    written to PixelSpacing, e.g. ``"0\\0"``), ``pixel_spacing_calibration_type`` and
    ``pixel_spacing_calibration_description``. ``sop_class`` is ``DX`` or ``CR``.
    """

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    age: int
    study_date: str
    study_time: str
    study_uid: str
    series_uid: str
    sop_uid: str
    frame_uid: str
    accession: str
    study_description: str
    series_description: str
    series_number: int
    instance_number: int
    view: str  # lateral | ap
    facing: str  # left | right (lateral)
    polarity: str
    bits_stored: int
    transfer_syntax: str = "explicit"
    sop_class: str = "DX"
    imager_pixel_spacing: float | None = None
    ermf: float | None = None
    pixel_spacing: str | None = None
    pixel_spacing_calibration_type: str | None = None
    pixel_spacing_calibration_description: str | None = None
    manufacturer: str = "spine_measure synthetic"
    model: str = "SynthDX 1"
    station: str = "SYNTH01"
    institution: str = "Synthetic Spine Clinic"
    device_serial: str = "SMX-0001"
    kvp: float = 85.0
    exposure_mas: float = 32.0
    sid_mm: float = 1150.0


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue = value
    c.CodingSchemeDesignator = scheme
    c.CodeMeaning = meaning
    return c


def build_dataset(pixels: np.ndarray, h: FilmHeader) -> Dataset:
    """An uncompressed DICOM dataset (Explicit VR Little Endian) holding ``pixels``."""
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError(f'Argument "pixels" must be a 2-D uint16 array; got {pixels.dtype} '
                         f"{pixels.shape}")
    if h.sop_class not in ("DX", "CR"):
        raise ValueError(f'Argument "sop_class" must be DX or CR; got {h.sop_class!r}')
    sop_class = DigitalXRayImageStorageForPresentation if h.sop_class == "DX" \
        else ComputedRadiographyImageStorage
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = h.sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "SPINE_MEASURE"

    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = h.sop_uid
    ds.InstanceCreationDate = h.study_date
    ds.InstanceCreationTime = h.study_time
    # Patient
    ds.PatientName = h.patient_name
    ds.PatientID = h.patient_id
    ds.PatientBirthDate = h.birth_date
    ds.PatientSex = h.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic data: no real patient"
    # General Study / Patient Study
    ds.StudyInstanceUID = h.study_uid
    ds.StudyDate = h.study_date
    ds.StudyTime = h.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = h.accession[-8:]
    ds.AccessionNumber = h.accession
    ds.StudyDescription = h.study_description
    ds.PatientAge = f"{h.age:03d}Y"
    # General Series / DX Series
    ds.Modality = h.sop_class
    ds.SeriesInstanceUID = h.series_uid
    ds.SeriesNumber = h.series_number
    ds.SeriesDate = h.study_date
    ds.SeriesTime = h.study_time
    ds.SeriesDescription = h.series_description
    ds.BodyPartExamined = "TLSPINE"
    ds.PatientPosition = ""
    if h.sop_class == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    else:
        ds.ViewPosition = "LL" if h.view == "lateral" else "AP"
    # General Equipment
    ds.Manufacturer = h.manufacturer
    ds.InstitutionName = h.institution
    ds.StationName = h.station
    ds.ManufacturerModelName = h.model
    ds.DeviceSerialNumber = h.device_serial
    ds.SoftwareVersions = "spine_measure.synthetic"
    # General Acquisition / General Image
    ds.AcquisitionDate = h.study_date
    ds.AcquisitionTime = h.study_time
    ds.ContentDate = h.study_date
    ds.ContentTime = h.study_time
    ds.InstanceNumber = h.instance_number
    if h.view == "lateral":
        ds.PatientOrientation = ["P", "F"] if h.facing == "left" else ["A", "F"]
    else:
        ds.PatientOrientation = ["L", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Image Pixel / DX Image
    maxval = (1 << h.bits_stored) - 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = h.polarity
    ds.Rows, ds.Columns = (int(x) for x in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = h.bits_stored
    ds.HighBit = h.bits_stored - 1
    ds.PixelRepresentation = 0
    if h.sop_class == "DX":
        ds.PixelIntensityRelationship = "LOG"
        # -1: higher values mean less X-ray intensity (bone bright), as in MONOCHROME2 here
        ds.PixelIntensityRelationshipSign = -1 if h.polarity == "MONOCHROME2" else 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY" if h.polarity == "MONOCHROME2" else "INVERSE"
    lo, hi = np.percentile(pixels, [1.0, 99.0])
    ds.WindowCenter = format_ds(float(round((lo + hi) / 2.0)))
    ds.WindowWidth = format_ds(float(max(round(hi - lo), 1)))
    ds.WindowCenterWidthExplanation = "SYNTHETIC DEFAULT"
    ds.VOILUTFunction = "LINEAR"
    ds.SmallestImagePixelValue = int(pixels.min())
    ds.LargestImagePixelValue = int(pixels.max())
    if int(pixels.max()) > maxval:
        raise ValueError(f"pixel value {int(pixels.max())} exceeds BitsStored {h.bits_stored}")
    # DX Anatomy Imaged
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = [_code("1217256009", "SCT", "Thoraco-lumbar spine")]
    # DX Detector
    if h.sop_class == "DX":
        ds.DetectorType = "SCINTILLATOR"
        ds.DetectorConfiguration = "AREA"
        ds.DetectorID = "SYNTH-DET-1"
        ds.DetectorConditionsNominalFlag = "YES"
        ds.DetectorBinning = [1, 1]
        ds.FieldOfViewShape = "RECTANGLE"
        ds.FieldOfViewDimensions = [430, 430]
    if h.imager_pixel_spacing is not None:
        ips = format_ds(h.imager_pixel_spacing)
        ds.ImagerPixelSpacing = [ips, ips]
    if h.pixel_spacing is not None:
        ds.PixelSpacing = h.pixel_spacing.split("\\")
    if h.pixel_spacing_calibration_type is not None:
        ds.PixelSpacingCalibrationType = h.pixel_spacing_calibration_type
    if h.pixel_spacing_calibration_description is not None:
        ds.PixelSpacingCalibrationDescription = h.pixel_spacing_calibration_description
    # DX Positioning and acquisition
    if h.sop_class == "DX":
        ds.ViewPosition = "LL" if h.view == "lateral" else "AP"
        ds.ViewCodeSequence = [
            _code("399173006", "SCT", "left lateral") if h.view == "lateral"
            else _code("399348003", "SCT", "antero-posterior")
        ]
        ds.PositionerType = "NONE"
    ds.KVP = format_ds(h.kvp)
    ds.ExposureInuAs = int(h.exposure_mas * 1000)
    ds.DistanceSourceToDetector = format_ds(h.sid_mm)
    if h.ermf is not None:
        ds.EstimatedRadiographicMagnificationFactor = format_ds(h.ermf)
        ds.DistanceSourceToPatient = format_ds(h.sid_mm / h.ermf)
    if h.sop_class == "DX":  # Acquisition Context
        ds.AcquisitionContextSequence = []
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def write_film(path: str | os.PathLike[str], pixels: np.ndarray, header: FilmHeader) -> Dataset:
    """Write ``pixels`` with ``header`` to ``path`` and return the written dataset.

    Compressed syntaxes are checked by decoding: the decoded array must equal ``pixels``
    exactly, otherwise :class:`SyntheticDicomError` is raised.
    """
    if header.transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f'Argument "transfer_syntax" must be one of {sorted(TRANSFER_SYNTAXES)}'
                         f"; got {header.transfer_syntax!r}")
    ds = build_dataset(pixels, header)
    if header.transfer_syntax != "explicit":
        uid = TRANSFER_SYNTAXES[header.transfer_syntax]
        ds.compress(uid, pixels, encoding_plugin=_PLUGIN[header.transfer_syntax],
                    generate_instance_uid=False)
        decoded = ds.pixel_array
        if not np.array_equal(decoded, pixels):
            raise SyntheticDicomError(f"{path}: {header.transfer_syntax} did not round-trip")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds
