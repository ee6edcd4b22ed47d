"""Issue 18.1 and 18.9: decoding can never take the run down, and a pixel module that lies
is refused, not decoded as garbage. Each test is the minimal reproducer the issue names."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from conftest import SAMPLE, film_copy, good_folder, one_line_error, run_cli

from spine_measure.batch import BatchOptions, run_batch
from spine_measure.errors import RadiographError
from spine_measure.io import radiograph as radiograph_module
from spine_measure.io.radiograph import load_radiograph

J2K = "SM001/SM001_postop.dcm"     # JPEG 2000 lossless, grey
JLS = "SM003/SM003_followup.dcm"   # JPEG-LS lossless
RLE = "SM001/SM001_followup.dcm"   # RLE lossless
RAW = "SM001/SM001_preop.dcm"      # explicit VR little endian


@pytest.mark.parametrize("src, changes, reason", [
    (J2K, {"PhotometricInterpretation": "RGB"},
     "PhotometricInterpretation RGB needs SamplesPerPixel 3, but the file says 1"),
    (J2K, {"PhotometricInterpretation": "RGB", "SamplesPerPixel": 3},
     "SamplesPerPixel 3, but the compressed image has 1 component"),
    (JLS, {"Rows": 65535}, "Rows 65535 x Columns 506, but the compressed image is 1050 x 506"),
    (RAW, {"BitsAllocated": 32}, "needs 2,080,000"),
    (RAW, {"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7}, "needs 520,000"),
    (RAW, {"PixelRepresentation": 7}, "PixelRepresentation 7 is not 0 (unsigned) or 1"),
    (RAW, {"BitsStored": 17}, "BitsStored 17 does not fit BitsAllocated 16"),
    (RLE, {"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7},
     "the RLE data has 2 segments, but 1 sample(s) of 8 bits need 1"),
])
def test_inconsistent_pixel_module_is_refused_before_decoding(tmp_path, src, changes, reason):
    """The header lies (the GDCM aborts of the issue among them): one line, never decoded.
    In a child process, so that an abort (exit 134) would show as such."""
    bad = film_copy(src, tmp_path / "bad.dcm", **changes)
    with pytest.raises(RadiographError) as info:
        load_radiograph(bad)
    assert str(info.value).startswith(f"{bad}: inconsistent pixel module: ")
    assert reason in str(info.value)
    if src in (J2K, JLS):  # the films that aborted info/measure/export-sr (exit 134)
        proc = run_cli("info", bad)
        one_line_error(proc)
        assert proc.returncode == 3 and reason in proc.stdout
        proc = run_cli("measure", bad)
        one_line_error(proc)
        if src == J2K:  # treated film: the cement needs its pixels, so the film fails
            assert proc.returncode == 3 and reason in proc.stderr
        proc = run_cli("export-sr", bad, "--out", tmp_path / "sr")
        one_line_error(proc)


def test_pixel_data_one_byte_short_is_refused(tmp_path):
    """Pixel Data whose length field and data are one byte short (an odd length pydicom
    itself would pad when saving): refused as truncated."""
    data = bytearray((SAMPLE / RAW).read_bytes())
    at = data.rfind(b"\xe0\x7f\x10\x00")
    n = int.from_bytes(data[at + 8:at + 12], "little")
    data[at + 8:at + 12] = (n - 1).to_bytes(4, "little")
    (tmp_path / "short.dcm").write_bytes(bytes(data[:-1]))
    with pytest.raises(RadiographError, match=r"holds 1,039,999 bytes.*needs 1,040,000.*"
                                              r"truncated"):
        load_radiograph(tmp_path / "short.dcm")


def _rle_that_panics() -> bytes:
    """SM001's RLE film with 11 bytes of its pixel data flipped (seed 2): pylibjpeg-rle's
    decoder panics (a Rust panic is raised as ``pyo3_runtime.PanicException``, which is a
    ``BaseException``, not an ``Exception``)."""
    b = (SAMPLE / RLE).read_bytes()
    ds = pydicom.dcmread(SAMPLE / RLE)
    start = b.index(ds.PixelData[:64])
    r = random.Random(2)
    x = bytearray(b)
    for _ in range(11):
        p = r.randrange(start, len(b))
        x[p] ^= r.randrange(1, 256)
    return bytes(x)


def test_rust_panic_in_a_decoder_is_caught(tmp_path):
    data = _rle_that_panics()
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.pixel_array_options(decoding_plugin="pylibjpeg")
    with pytest.raises(BaseException) as raw:  # noqa: PT011 - the precondition itself
        _ = ds.pixel_array
    assert not isinstance(raw.value, Exception)  # really the panic, not a Python error
    (tmp_path / "panic.dcm").write_bytes(data)
    try:  # another decoder may manage; either way no BaseException escapes
        film = load_radiograph(tmp_path / "panic.dcm")
        assert film.shape == (1006, 500)
    except RadiographError as exc:
        assert "\n" not in str(exc)


def test_keyboard_interrupt_in_a_decoder_is_not_swallowed(tmp_path, monkeypatch):
    class Boom:
        def pixel_array_options(self, **kw):
            pass

        @property
        def pixel_array(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        radiograph_module._decode(Boom(), "x.dcm", None)


def test_a_decoder_that_kills_its_process_costs_only_its_film(tmp_path, monkeypatch):
    """The pre-flight switched off, GDCM really aborts (SIGABRT) on the RGB-labelled grey
    JPEG 2000 film, inside a batch worker: that film becomes a failed row, the other films'
    rows are those of a clean run, and a re-run resumes without aborting."""
    clean_in = good_folder(tmp_path / "clean")
    run_batch(BatchOptions(str(clean_in), str(tmp_path / "clean_out"), overlays=False))
    mixed = good_folder(tmp_path / "mixed")
    film_copy(J2K, mixed / "bad.dcm", PhotometricInterpretation="RGB")
    monkeypatch.setattr(radiograph_module, "check_pixel_module", lambda ds: None)
    out = tmp_path / "out"
    for _ in range(2):  # the second run reads the failed film from the journal
        summary = run_batch(BatchOptions(str(mixed), str(out), overlays=False))
        assert summary.n_failed == 1 and summary.n_done == 3
        err = pd.read_csv(out / "errors.csv", dtype=str, keep_default_na=False)
        row = err[err.file == "bad.dcm"].iloc[0]
        assert row.stage == "decode" and row.status == "failed"
        assert "ended abruptly (SIGABRT)" in row.reason
    clean = pd.read_csv(tmp_path / "clean_out" / "features_wide.csv", dtype=str)
    got = pd.read_csv(out / "features_wide.csv", dtype=str)
    pd.testing.assert_frame_equal(got[got.patient_pseudo_id.isin(clean.patient_pseudo_id)]
                                  .reset_index(drop=True), clean)
    assert summary.n_from_journal == 4


def test_truncated_header_is_not_measured_as_an_uncalibrated_film(tmp_path):
    """A DICOM cut inside its header: ``measure`` used to measure it uncalibrated, exit 0."""
    src = film_copy(RAW, tmp_path / "cut.dcm")
    src.write_bytes(src.read_bytes()[:900])
    proc = run_cli("measure", src)
    one_line_error(proc)
    assert proc.returncode == 3
    assert "truncated: the file ends before its pixel data" in proc.stderr


def test_measure_fails_when_the_pixels_cannot_be_decoded(tmp_path):
    """A treated lateral film whose pixel data is cut: the cement features need the pixels,
    so the film fails (exit non-zero), not a quiet error in the cement line."""
    src = film_copy("SM001/SM001_postop.dcm", tmp_path / "cut.dcm")
    data = src.read_bytes()
    src.write_bytes(data[:len(data) - 100_000])
    proc = run_cli("measure", src)
    one_line_error(proc)
    assert proc.returncode != 0 and f"Error: {src}:" in proc.stderr


def test_decoding_results_unchanged_on_the_sample_films():
    """The pre-flight refuses nothing real: every sample film decodes as pydicom decodes it."""
    for f in sorted(SAMPLE.glob("*/*.dcm")):
        ds = pydicom.dcmread(f)
        np.testing.assert_array_equal(load_radiograph(f).pixels, ds.pixel_array)


def test_imager_pixel_spacing_with_one_value_is_noted(tmp_path):
    bad = film_copy(RAW, tmp_path / "one.dcm", ImagerPixelSpacing="0.3")
    with pytest.warns(UserWarning, match="one.dcm: ImagerPixelSpacing has one value"):
        film = load_radiograph(bad)
    assert any("taken as square pixels" in n for n in film.calibration.notes)
    assert Path(bad).exists()


def test_truncated_jpeg2000_film_is_not_called_not_dicom(tmp_path):
    """A JPEG 2000 film cut inside its pixel data was reported as "not a DICOM file"."""
    data = (SAMPLE / J2K).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:50_000])
    with pytest.raises(RadiographError, match="truncated or corrupt DICOM file"):
        load_radiograph(tmp_path / "cut.dcm")
