"""docs/calibration.md calibration order, attribute by attribute."""

from __future__ import annotations

import math
import warnings

import pytest
from pydicom.dataset import Dataset

from spine_measure.errors import CalibrationWarning
from spine_measure.io.calibration import (
    Calibration,
    CalibrationSource,
    calibration_from_dataset,
    calibration_from_line,
    decide_calibration,
)

S = CalibrationSource


def decide(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid input must not warn
        return decide_calibration(**kw)


def test_calibrated_pixel_spacing_wins_over_imager_spacing():
    cal = decide(pixel_spacing=[0.12, 0.13], pixel_spacing_calibration_type="GEOMETRY",
                 imager_pixel_spacing=[0.15, 0.15],
                 estimated_radiographic_magnification_factor=1.1)
    assert cal.source is S.PIXEL_SPACING_CALIBRATED
    assert (cal.row_mm, cal.col_mm) == (0.12, 0.13)
    assert "GEOMETRY" in cal.detail


def test_fiducial_calibration_type_also_counts():
    cal = decide(pixel_spacing=[0.1, 0.1], pixel_spacing_calibration_type="FIDUCIAL")
    assert cal.source is S.PIXEL_SPACING_CALIBRATED


def test_imager_spacing_divided_by_ermf():
    cal = decide(imager_pixel_spacing=[0.148, 0.160],
                 estimated_radiographic_magnification_factor="1.25",
                 pixel_spacing=[0.148, 0.160])  # uncalibrated PixelSpacing copy: ignored
    assert cal.source is S.IMAGER_PIXEL_SPACING_ERMF
    # hand calculation: 0.148 / 1.25 = 0.1184, 0.160 / 1.25 = 0.128
    assert cal.row_mm == pytest.approx(0.1184, abs=1e-12)
    assert cal.col_mm == pytest.approx(0.128, abs=1e-12)


def test_imager_spacing_alone_beats_plain_pixel_spacing():
    cal = decide(imager_pixel_spacing=[0.2, 0.2], pixel_spacing=[0.1, 0.1])
    assert cal.source is S.IMAGER_PIXEL_SPACING
    assert cal.spacing == (0.2, 0.2)


def test_pixel_spacing_alone():
    cal = decide(pixel_spacing=["0.3", "0.25"])
    assert cal.source is S.PIXEL_SPACING
    assert cal.spacing == (0.3, 0.25)


def test_nothing_is_uncalibrated():
    cal = decide()
    assert cal.source is S.UNCALIBRATED
    assert not cal.calibrated and cal.unit == "px" and cal.spacing is None
    assert cal.length((0, 0), (3, 4)) == 5.0


@pytest.mark.parametrize("bad", [[0, 0], [-0.1, 0.1], [float("nan"), 0.1], [7.0, 7.0],
                                 [0.001, 0.001], "abc\\def", [0.1, 0.1, 0.1]])
def test_unusable_pixel_spacing_is_missing_with_a_warning(bad):
    with pytest.warns(CalibrationWarning, match="PixelSpacing"):
        cal = decide_calibration(pixel_spacing=bad, context="x.dcm")
    assert cal.source is S.UNCALIBRATED
    assert cal.notes and "PixelSpacing" in cal.notes[0]


def test_zero_pixel_spacing_falls_back_to_imager_spacing():
    with pytest.warns(CalibrationWarning, match=r"x.dcm: PixelSpacing 0\\0"):
        cal = decide_calibration(pixel_spacing="0\\0", imager_pixel_spacing=[0.139, 0.139],
                                 context="x.dcm")
    assert cal.source is S.IMAGER_PIXEL_SPACING and cal.row_mm == 0.139


def test_zero_calibrated_pixel_spacing_is_not_calibrated():
    with pytest.warns(CalibrationWarning):
        cal = decide_calibration(pixel_spacing=[0, 0], pixel_spacing_calibration_type="GEOMETRY",
                                 imager_pixel_spacing=[0.2, 0.2],
                                 estimated_radiographic_magnification_factor=1.25)
    assert cal.source is S.IMAGER_PIXEL_SPACING_ERMF
    assert cal.row_mm == pytest.approx(0.16)


@pytest.mark.parametrize("ermf", [0.0, -1.0, 0.5, 12.0, "x"])
def test_absurd_ermf_is_ignored(ermf):
    with pytest.warns(CalibrationWarning, match="MagnificationFactor"):
        cal = decide_calibration(imager_pixel_spacing=[0.2, 0.2],
                                 estimated_radiographic_magnification_factor=ermf)
    assert cal.source is S.IMAGER_PIXEL_SPACING and cal.row_mm == 0.2


def test_single_value_spacing_is_square_but_never_silently():
    """ImagerPixelSpacing / PixelSpacing with one value (DICOM requires two): used as square
    pixels, with a note on the calibration and a warning naming the file (issue 18.9)."""
    with pytest.warns(CalibrationWarning, match=r"x.dcm: ImagerPixelSpacing has one value "
                                                r"\(0.15\).*taken as square pixels"):
        cal = decide_calibration(imager_pixel_spacing="0.15", context="x.dcm")
    assert cal.spacing == (0.15, 0.15)
    assert any("one value" in n for n in cal.notes)


def test_from_dataset_reads_the_four_attributes():
    ds = Dataset()
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.EstimatedRadiographicMagnificationFactor = 1.2
    cal = calibration_from_dataset(ds)
    assert cal.source is S.IMAGER_PIXEL_SPACING_ERMF
    assert cal.row_mm == pytest.approx(0.125)


def test_reader_line_isotropic():
    # 200 px horizontal line over a 50 mm ruler: 0.25 mm/px
    cal = calibration_from_line((10, 10), (10, 210), 50.0)
    assert cal.source is S.READER and cal.spacing == (0.25, 0.25)


def test_reader_line_keeps_pixel_aspect():
    # Header aspect (0.2, 0.1) mm: pixels twice as tall as wide. Line of 30 rows, 40 cols.
    # scaled length = hypot(30 * 0.2, 40 * 0.1) = hypot(6, 4) = 7.2111
    # given length = 0.5 * hypot(60, 40) = 36.0555 -> k = 36.0555 / 7.2111 = 5.0
    # row_mm = 5.0 * 0.2 = 1.0, col_mm = 5.0 * 0.1 = 0.5
    length = 0.5 * math.hypot(60, 40)
    cal = calibration_from_line((0, 0), (30, 40), length, pixel_aspect=(0.2, 0.1))
    assert cal.row_mm == pytest.approx(1.0, rel=1e-12)
    assert cal.col_mm == pytest.approx(0.5, rel=1e-12)
    # the result reproduces the given length along the line and keeps the 2:1 ratio
    assert cal.length((0, 0), (30, 40)) == pytest.approx(length, rel=1e-12)
    assert cal.row_mm / cal.col_mm == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("length", [0, -5, float("nan")])
def test_reader_line_rejects_bad_length(length):
    with pytest.raises(ValueError, match="length_mm"):
        calibration_from_line((0, 0), (0, 100), length)


def test_reader_line_rejects_degenerate_line():
    with pytest.raises(ValueError, match="one pixel"):
        calibration_from_line((5, 5), (5, 5.2), 10)


def test_calibration_is_validated_on_construction():
    with pytest.raises(ValueError, match="row_mm"):
        Calibration(0.0, 0.1, S.PIXEL_SPACING)
    with pytest.raises(ValueError, match="both"):
        Calibration(0.1, None, S.PIXEL_SPACING)
    with pytest.raises(ValueError, match="needs a spacing"):
        Calibration(None, None, S.PIXEL_SPACING)


def test_anisotropic_length():
    cal = Calibration(0.5, 0.25, S.PIXEL_SPACING)
    # 6 rows * 0.5 = 3 mm, 16 cols * 0.25 = 4 mm -> 5 mm
    assert cal.length((0, 0), (6, 16)) == pytest.approx(5.0)
