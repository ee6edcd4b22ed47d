"""Loading benchmarks: the header-only folder scan and a full film load, each against bare
pydicom on the same files in the same run.

    .venv/bin/python benchmarks/bench_loading.py [--files 600] [--size 3000] [--repeat 3]

Targets (issue 2):

* ``scan_folder`` over >= 500 files runs at >= 0.8x the speed of a bare
  ``pydicom.dcmread(stop_before_pixels=True)`` loop over the same files;
* ``load_radiograph`` of a 3000x3000 16-bit film costs <= 1.2x a bare ``dcmread`` +
  ``pixel_array`` of the same file, per transfer syntax.

Prints one table; the figures go into ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from spine_measure.io.radiograph import load_radiograph
from spine_measure.io.scan import scan_folder

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def film(size: int, seed: int = 0) -> np.ndarray:
    """A 12-bit film-like image: smooth anatomy-scale structure plus quantum noise (so that
    lossless codecs see realistic entropy)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 1500 + 800 * np.sin(6 * x + 2 * y) * np.cos(4 * y) + 600 * np.exp(-((x - 0.5) ** 2) * 20)
    noisy = base + rng.normal(0, 25, size=(size, size)).astype(np.float32)
    return np.clip(noisy, 0, 4095).astype(np.uint16)


def dx_dataset(pixels: np.ndarray, *, patient: str, index: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DX
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = DX
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName = patient, f"BENCH^{patient}"
    ds.StudyDate = ds.AcquisitionDate = "20240301"
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "DX", "LL", "LSPINE"
    ds.Manufacturer = "spine_measure benchmark"
    ds.InstanceNumber = index
    ds.ImagerPixelSpacing = [0.139, 0.139]
    ds.EstimatedRadiographicMagnificationFactor = 1.12
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.tobytes()
    return ds


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_scan(root: Path, n_files: int, repeat: int) -> tuple[float, float]:
    small = film(64)
    for i in range(n_files):
        sub = root / f"P{i % 25:03d}"
        sub.mkdir(exist_ok=True)
        dx_dataset(small, patient=f"P{i % 25:03d}", index=i).save_as(
            sub / f"IM{i:05d}", enforce_file_format=True)
    files = sorted(str(p) for p in root.rglob("IM*"))

    def bare() -> None:
        for f in files:
            pydicom.dcmread(f, stop_before_pixels=True)

    def ours() -> None:
        result = scan_folder(root)
        assert len(result.images) == n_files

    bare()  # warm the page cache and imports
    ours()
    return best_of(bare, repeat), best_of(ours, repeat)


def bench_load(root: Path, size: int, repeat: int) -> list[tuple[str, float, float]]:
    pixels = film(size)
    rows = []
    for name, tsuid in [("Explicit VR Little Endian", ExplicitVRLittleEndian),
                        ("RLE Lossless", RLELossless),
                        ("JPEG-LS Lossless", JPEGLSLossless),
                        ("JPEG 2000 Lossless", JPEG2000Lossless)]:
        ds = dx_dataset(pixels, patient="LOAD", index=0)
        if tsuid != ExplicitVRLittleEndian:
            ds.compress(tsuid)
        path = root / f"film_{tsuid}.dcm"
        ds.save_as(path, enforce_file_format=True)

        def bare(path: Path = path) -> None:
            pydicom.dcmread(path).pixel_array  # noqa: B018 - the work measured

        def ours(path: Path = path) -> None:
            load_radiograph(path)

        reps = 1 if tsuid == JPEG2000Lossless else repeat
        # interleave so that drift affects both equally
        b = [best_of(bare, 1) for _ in range(reps)]
        o = [best_of(ours, 1) for _ in range(reps)]
        rows.append((name, statistics.median(b), statistics.median(o)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "scan").mkdir()
        bare, ours = bench_scan(root / "scan", args.files, args.repeat)
        print(f"header scan, {args.files} files")
        print(f"  bare dcmread(stop_before_pixels) loop : {bare * 1e3 / args.files:7.3f} ms/file")
        print(f"  spine_measure scan_folder             : {ours * 1e3 / args.files:7.3f} ms/file")
        print(f"  speed ratio (bare time / ours)        : {bare / ours:7.2f}x   target >= 0.80x")
        print()
        print(f"full load, {args.size}x{args.size} 16-bit film (cost ratio: ours / bare; "
              "target <= 1.20x)")
        print(f"  {'transfer syntax':28s} {'bare pydicom':>13s} {'load_radiograph':>16s} "
              f"{'ratio':>7s}")
        for name, b, o in bench_load(root, args.size, args.repeat):
            print(f"  {name:28s} {b * 1e3:10.1f} ms {o * 1e3:13.1f} ms {o / b:6.2f}x")


if __name__ == "__main__":
    main()
