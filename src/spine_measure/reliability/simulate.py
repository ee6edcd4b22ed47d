"""Simulated two-reader annotation sets with known landmark noise (for tests and docs).

Each source annotation is taken as the truth; reader a and reader b each get an independent
copy whose every landmark coordinate is moved by Gaussian noise of standard deviation
``sd_px`` (row and column independently), optionally with a systematic scaling
error for reader b. Everything else (flags, findings, calibration line,
time point) is copied unchanged. Seeds are fixed: the same call writes the same landmarks.

What to expect: a height ``|As - Ai|`` read by one reader has error ``~ N(0, 2 sd^2)``
(two points, noise along the line), so the difference of two readers has
``SD_diff ~= 2 sd`` px, ``SEM ~= sqrt(2) sd`` px and ``MDC95 ~= 3.92 sd`` px.

Usage: ``simulate_readers("sample_dicoms", "sim", sd_px=2.0)`` writes ``sim/reader_a`` and
``sim/reader_b``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spine_measure.io.annotation import Annotation, load_annotation, save_annotation

__all__ = ["SimulatedReaders", "simulate_readers", "noisy_annotation"]


@dataclass(frozen=True)
class SimulatedReaders:
    """Where :func:`simulate_readers` wrote the two annotation sets."""

    dir_a: Path
    dir_b: Path
    files: tuple[str, ...]      # relative paths written in both folders
    sd_px: float
    seed: int


def noisy_annotation(annotation: Annotation, rng: np.random.Generator, *, sd_px: float,
                     scale: float = 1.0, reader: str | None = None) -> Annotation:
    """A copy of ``annotation`` whose landmarks moved by ``N(0, sd_px^2)`` per coordinate.

    ``scale`` first scales each vertebra's points about their centroid (a systematic reader
    error: ``scale = 1.05`` reads every height 5 % too large; angles are unchanged). Draws
    ``2 * n_points`` normals from ``rng`` per vertebra, cranial to caudal.
    """
    if not (sd_px >= 0 and np.isfinite(sd_px)):
        raise ValueError(f'Argument "sd_px" must be a finite number >= 0; got {sd_px!r}')
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f'Argument "scale" must be a finite number > 0; got {scale!r}')

    def move(points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, float)
        centre = pts.mean(axis=0)
        return centre + (pts - centre) * scale + rng.normal(0.0, sd_px, size=pts.shape)

    return annotation.replace(landmarks=annotation.landmarks.transformed(move),
                              reader=reader if reader is not None else annotation.reader,
                              revision=0, modified=None)


def simulate_readers(source: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                     sd_px: float, seed: int = 20240607,
                     scale_b: float = 1.0,
                     files: Iterable[str | os.PathLike[str]] | None = None) -> SimulatedReaders:
    """Write ``out_dir/reader_a`` and ``out_dir/reader_b`` from the truth annotations.

    Parameters
    ----------
    source : path-like
        Folder searched recursively for ``*.sm.json`` (e.g. ``sample_dicoms``).
    out_dir : path-like
        Created if needed; the two reader folders keep the source's relative paths.
    sd_px : float
        Landmark noise, pixels, per coordinate and reader.
    seed : int
        Base seed; each file and reader gets its own stream derived from ``seed``, the
        file's relative path and the reader, so adding a file does not change the others.
    scale_b : float
        Systematic error of reader b: each vertebra's points scaled about their centroid
        (``1.05``: heights read 5 % larger; a pure shift would change no measurement).
    files : iterable of path-like, optional
        Only these annotation files (absolute, or relative to ``source``).

    Returns
    -------
    SimulatedReaders
    """
    src = Path(source)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    if files is None:
        chosen = sorted(src.rglob("*.sm.json"))
    else:
        chosen = sorted(Path(f) if Path(f).is_absolute() else src / f for f in files)
    out = Path(out_dir)
    dirs = {"a": out / "reader_a", "b": out / "reader_b"}
    written: list[str] = []
    for path in chosen:
        rel = path.relative_to(src).as_posix()
        truth = load_annotation(path)
        for r, d in dirs.items():
            stream = zlib.crc32(f"{rel}|{r}".encode())
            rng = np.random.default_rng([int(seed), stream])
            ann = noisy_annotation(truth, rng, sd_px=sd_px,
                                   scale=scale_b if r == "b" else 1.0,
                                   reader=f"simulated-{r}")
            target = d / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            save_annotation(ann, target, overwrite=True)
        written.append(rel)
    return SimulatedReaders(dirs["a"], dirs["b"], tuple(written), float(sd_px), int(seed))
