"""Loading radiographs: pydicom's real-world corpus, display, plain images, decisions."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from spine_measure.errors import ImageConversionWarning, RadiographError
from spine_measure.io.calibration import CalibrationSource
from spine_measure.io.radiograph import load_radiograph, radiograph_from_array

CORPUS = sorted(f for f in get_testdata_files() if os.path.isfile(f))


def test_corpus_is_the_real_one():
    # pydicom's test files plus the pydicom-data package: some 240 real-world files
    assert len(CORPUS) > 200
    assert any(f.endswith("RG1_UNCI.dcm") for f in CORPUS)


@pytest.mark.slow
def test_every_corpus_file_loads_or_fails_with_one_clear_line():
    """Each file either loads, or raises RadiographError whose message is one line naming
    the file and the reason; nothing else escapes and nothing hangs."""

    def alarm(signum, frame):  # pragma: no cover - only on a hang
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, alarm)
    loaded, refused, problems = 0, 0, []
    try:
        for path in CORPUS:
            signal.alarm(60)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = load_radiograph(path)
                assert r.pixels.ndim == 2 and r.pixels.shape == r.shape
                loaded += 1
            except RadiographError as exc:
                msg = str(exc)
                if "\n" in msg or not msg.startswith(f"{path}: ") or len(exc.reason) < 5:
                    problems.append(f"bad message: {msg!r}")
                refused += 1
            except TimeoutError:
                problems.append(f"{path}: hung")
            except Exception as exc:  # noqa: BLE001 - this is what the test looks for
                problems.append(f"{path}: unhandled {type(exc).__name__}: {exc}")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert not problems, "\n".join(problems[:20])
    assert loaded > 100 and refused > 50  # the corpus has both kinds


@pytest.mark.parametrize(
    "name, shape, dtype, spot",
    [
        # (file, shape, dtype, {(row, col): stored value}); spot values as in pydicom's own
        # reference tests for these files
        ("CT_small.dcm", (128, 128), np.int16, {(0, 0): 175, (0, 1): 180, (0, 2): 166}),
        ("MR_small_RLE.dcm", (64, 64), np.int16, {(0, 0): 905, (0, 1): 1019, (0, 2): 1227}),
        ("JPEG2000.dcm", (1024, 256), np.int16, None),
        ("RG1_UNCI.dcm", (1955, 1841), np.uint16, None),
    ],
)
def test_reference_files(name, shape, dtype, spot):
    r = load_radiograph(get_testdata_file(name))
    assert r.shape == shape and r.pixels.dtype == dtype
    ref = pydicom.dcmread(get_testdata_file(name)).pixel_array
    assert np.array_equal(r.pixels, ref)
    for (row, col), value in (spot or {}).items():
        assert r.pixels[row, col] == value


def test_zero_pixel_spacing_of_rg1_unci_is_uncalibrated_with_a_note():
    with pytest.warns(Warning, match=r"PixelSpacing 0\\0"):
        r = load_radiograph(get_testdata_file("RG1_UNCI.dcm"))
    assert r.calibration.source is CalibrationSource.UNCALIBRATED
    assert r.metadata.modality == "CR" and r.metadata.photometric_interpretation == "MONOCHROME1"


def test_metadata_fields():
    r = load_radiograph(get_testdata_file("CT_small.dcm"))
    m = r.metadata
    assert m.patient_id == "1CT1" and m.patient_name == "CompressedSamples^CT1"
    assert m.modality == "CT" and m.sop_instance_uid.startswith("1.3.6.1.4.1.5962")
    assert m.study_date.isoformat() == "2004-01-19"
    assert r.calibration.source is CalibrationSource.PIXEL_SPACING


def _write_dx(path: Path, pixels: np.ndarray, photometric: str, **attrs) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "P1"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_displays_like_monochrome2(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.integers(100, 4000, size=(40, 50)).astype(np.uint16)
    m2 = _write_dx(tmp_path / "m2.dcm", dense, "MONOCHROME2", WindowCenter=2000,
                   WindowWidth=3000)
    # MONOCHROME1 encodes the same film with inverted stored values (and window)
    m1 = _write_dx(tmp_path / "m1.dcm", 4095 - dense, "MONOCHROME1", WindowCenter=2095,
                   WindowWidth=3000)
    r2, r1 = load_radiograph(m2), load_radiograph(m1)
    assert r1.monochrome1 and not r2.monochrome1
    np.testing.assert_allclose(r1.display, r2.display, atol=1e-6)
    # density: bright means dense for both, up to an offset
    np.testing.assert_allclose(np.corrcoef(r1.density.ravel(), r2.density.ravel())[0, 1], 1.0)
    assert r2.display.min() >= 0 and r2.display.max() <= 1


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("rescale", [(1.0, 0.0), (0.5, -1024.0), (-2.0, 100.0)])
def test_density_crop_equals_a_crop_of_density(tmp_path, photometric, rescale):
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 4096, size=(30, 40)).astype(np.uint16)
    path = _write_dx(tmp_path / "f.dcm", stored, photometric, RescaleSlope=rescale[0],
                     RescaleIntercept=rescale[1])
    rows, cols = slice(3, 17), slice(20, 39)
    crop = load_radiograph(path).density_crop(rows, cols)   # before .density exists
    whole = load_radiograph(path).density
    assert crop.dtype == np.float32
    np.testing.assert_array_equal(crop, whole[rows, cols])


def test_percentile_window_when_the_file_has_none(tmp_path):
    ramp = np.tile(np.arange(1000, dtype=np.uint16), (10, 1))
    r = load_radiograph(_write_dx(tmp_path / "r.dcm", ramp, "MONOCHROME2"))
    w = r.default_window()
    assert w.source == "percentiles"
    # 0.5th and 99.5th percentiles of 0..999: 4.995 and 994.005
    assert w.center == pytest.approx(499.5, abs=0.01)
    assert w.width == pytest.approx(989.01, abs=0.01)


def test_rescale_is_applied_to_values_not_pixels(tmp_path):
    px = np.full((8, 8), 100, np.uint16)
    r = load_radiograph(_write_dx(tmp_path / "s.dcm", px, "MONOCHROME2", RescaleSlope=2,
                                  RescaleIntercept=-50))
    assert r.pixels[0, 0] == 100 and r.values[0, 0] == 150.0


def test_compressed_file_written_by_pydicom_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    px = rng.integers(0, 4096, size=(64, 80)).astype(np.uint16)
    path = _write_dx(tmp_path / "u.dcm", px, "MONOCHROME2", ImagerPixelSpacing=[0.15, 0.15])
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    r = load_radiograph(tmp_path / "rle.dcm")
    assert np.array_equal(r.pixels, px)
    assert r.calibration.source is CalibrationSource.IMAGER_PIXEL_SPACING


def test_multiframe_needs_a_frame():
    path = get_testdata_file("emri_small.dcm")
    with pytest.raises(RadiographError, match="multi-frame image with 10 frames"):
        load_radiograph(path)
    r = load_radiograph(path, frame=3)
    assert r.shape == (64, 64) and r.metadata.frame == 3
    assert np.array_equal(r.pixels, pydicom.dcmread(path).pixel_array[3])
    with pytest.raises(RadiographError, match="frame 10 does not exist"):
        load_radiograph(path, frame=10)


def test_colour_dicom_becomes_luminance():
    path = get_testdata_file("SC_rgb.dcm")
    with pytest.warns(ImageConversionWarning, match="luminance"):
        r = load_radiograph(path)
    rgb = pydicom.dcmread(path).pixel_array.astype(float)
    expected = np.rint(rgb @ [0.299, 0.587, 0.114])
    assert np.array_equal(r.pixels, expected.astype(r.pixels.dtype))


def test_plain_png_is_uncalibrated(tmp_path):
    arr = (np.arange(30 * 20).reshape(30, 20) % 256).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "film.png")
    r = load_radiograph(tmp_path / "film.png")
    assert np.array_equal(r.pixels, arr)
    assert r.calibration.source is CalibrationSource.UNCALIBRATED
    assert r.metadata.format == "png" and len(r.pixel_sha256) == 64


def test_plain_16bit_tiff(tmp_path):
    import tifffile

    arr = np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 300
    tifffile.imwrite(tmp_path / "film.tif", arr)
    assert np.array_equal(load_radiograph(tmp_path / "film.tif").pixels, arr)


def test_colour_png_becomes_grey(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.warns(ImageConversionWarning):
        r = load_radiograph(tmp_path / "c.png")
    assert r.pixels[0, 0] == round(0.299 * 200)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"),
     (b"hello world, not an image" * 10, "not a DICOM file or a supported image"),
     (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not a readable image")],
)
def test_bad_files_give_one_line(tmp_path, content, reason):
    name = "x.png" if content.startswith(b"\x89PNG") else "x.dcm"
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RadiographError) as info:
        load_radiograph(path)
    assert str(info.value).startswith(f"{path}: ") and reason in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(RadiographError, match="file not found"):
        load_radiograph(tmp_path / "nope.dcm")
    with pytest.raises(RadiographError, match="is a folder"):
        load_radiograph(tmp_path)


def test_truncated_pixel_data_is_reported(tmp_path):
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "t.dcm").write_bytes(data[:-5000])
    with pytest.raises(RadiographError, match="t.dcm: "):
        load_radiograph(tmp_path / "t.dcm")


def test_pixels_are_read_only_and_validated():
    r = radiograph_from_array(np.zeros((4, 5), np.uint16), spacing=(0.2, 0.2))
    with pytest.raises(ValueError):
        r.pixels[0, 0] = 1
    with pytest.raises(ValueError, match="shape"):
        radiograph_from_array(np.zeros((4, 5, 2)))
