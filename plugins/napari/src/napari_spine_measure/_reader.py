"""Reader contribution: radiographs -> napari image layers, in mm, with the right contrast.

This is the boundary between spine_measure's films and napari layers. Everything comes from
the toolkit: :func:`spine_measure.io.radiograph.load_radiograph` decodes; the layer shows the
modality values (``Radiograph.values``, never clipped, so cement keeps its grey levels) with
the film's window as the initial contrast limits (:func:`initial_window`) and MONOCHROME1
shown inverted (``gray_r``); its calibration gives the layer ``scale``
(``(row_mm, col_mm)``, or 1 px when
uncalibrated); :func:`spine_measure.io.scan.scan_folder` finds and groups the DICOM files of a
folder without decoding them.

A folder gives one layer per DICOM film (plain images only when it holds no DICOM film:
beside films, PNGs are masks or figures), named ``<patient> · <time point> · <date> · <file>``;
only the first film of the folder is visible, and only it is decoded when the folder opens:
the others are read from their headers (:class:`LazyRadiograph`, with the header's window as
contrast limits; a film whose window needs its pixels is decoded at once) and decoded when
first shown or annotated (:func:`decode_film_layer`). Measurements are always made on the decoded
film, never on what the header said. The time point is the annotation file's when
it has one, else it follows docs/batch.md without a procedure date: per patient, the earliest
film date is ``preop``, the next ``postop``, later ones ``followup``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spine_measure.errors import SpineMeasureError
from spine_measure.io.radiograph import (
    PLAIN_IMAGE_SUFFIXES,
    Radiograph,
    load_radiograph,
    looks_like_dicom,
)

__all__ = ["LazyRadiograph", "assign_time_points", "decode_film_layer", "film_layer_data",
           "get_reader", "initial_window", "read_paths", "window_preset"]

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]


def _is_film(path: Path) -> bool:
    if path.name.endswith(".sm.json") or path.suffix.lower() == ".json":
        return False
    if path.suffix.lower() in PLAIN_IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            return looks_like_dicom(fh.read(132))
    except OSError:
        return False


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: :func:`read_paths` for DICOM files, folders with DICOM files and
    plain images; None for anything else (napari then asks other readers)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    for p in map(Path, paths):
        if p.is_dir():
            continue
        if not p.is_file() or not _is_film(p):
            return None
    return read_paths


def assign_time_points(dates: Sequence[Any]) -> list[str | None]:
    """Time point of each film of one patient from its date (docs/batch.md, no procedure date).

    The earliest date is ``preop``, the second ``postop``, later ones ``followup``; films of
    the same date share a time point; an undated film (or a lone film) gets None.

    >>> import datetime as dt
    >>> d = [dt.date(2023, 5, 1), dt.date(2023, 3, 14), dt.date(2023, 3, 16)]
    >>> assign_time_points(d)
    ['followup', 'preop', 'postop']
    """
    known = sorted({d for d in dates if d is not None})
    if len(known) < 2:
        return [None] * len(dates)
    names = {d: ("preop", "postop")[i] if i < 2 else "followup" for i, d in enumerate(known)}
    return [names.get(d) if d is not None else None for d in dates]


def _sidecar_time_point(path: str) -> str | None:
    from spine_measure.io.annotation import load_annotation, sidecar_path

    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return load_annotation(side).time_point
    except SpineMeasureError as exc:  # a broken sidecar must not stop the image opening
        log.warning("%s", exc)
        return None


def initial_window(radiograph: Radiograph) -> tuple[float, float]:
    """Contrast limits ``(lo, hi)`` in modality values: the DICOM window (WindowCenter /
    Width), else the input range of the VOI LUT, else the 0.5th-99.5th percentiles."""
    if radiograph.voi_lut is not None and radiograph.window is None:
        lut, first = radiograph.voi_lut
        return float(first), float(first + len(lut) - 1)
    w = radiograph.default_window()
    return float(w.center - w.width / 2.0), float(w.center + w.width / 2.0)


def window_preset(radiograph: Radiograph, name: str) -> tuple[float, float]:
    """Contrast limits of a preset, in modality values: ``film`` (:func:`initial_window`),
    ``bone`` (the 1st-99th percentiles of the film: bone and soft tissue both graded) or
    ``cement`` (the densest 3 % of the film spread over the whole grey scale, so the inside
    of a cement cast is not flat white). Display only: no measurement reads it."""
    if name == "film":
        return initial_window(radiograph)
    v = radiograph.values
    sample = v[:: max(1, v.shape[0] // 768), :: max(1, v.shape[1] // 768)]
    if name == "bone":
        lo, hi = np.percentile(sample, [1.0, 99.0])
    elif name == "cement":
        # dense = high values, or low ones on a MONOCHROME1 film
        if radiograph.monochrome1:
            lo, hi = float(sample.min()), float(np.percentile(sample, 3.0))
        else:
            lo, hi = float(np.percentile(sample, 97.0)), float(sample.max())
    else:
        raise ValueError(f'window preset "{name}" must be film, bone or cement')
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def film_layer_data(radiograph: Radiograph, *, name: str | None = None,
                    time_point: str | None = None, visible: bool = True) -> LayerData:
    """The image layer of one film: modality values, ``scale`` in mm, metadata attached.

    ``metadata["spine_measure"]`` holds the path, calibration (spacing, source, detail),
    patient, dates, UIDs, view and time point; ``metadata["radiograph"]`` the
    :class:`Radiograph` itself (the annotation widget measures and segments on it).
    """
    meta = radiograph.metadata
    cal = radiograph.calibration
    scale = cal.spacing if cal.spacing is not None else (1.0, 1.0)
    date = meta.date.isoformat() if meta.date else None
    if name is None:
        parts = [meta.patient_id, time_point, date, Path(meta.path).name]
        name = " · ".join(p for p in parts if p)
    info = {
        "path": meta.path,
        "patient_id": meta.patient_id,
        "date": date,
        "time_point": time_point,
        "modality": meta.modality,
        "view_position": meta.view_position,
        "sop_instance_uid": meta.sop_instance_uid,
        "study_instance_uid": meta.study_instance_uid,
        "series_instance_uid": meta.series_instance_uid,
        "calibration_source": cal.source.value,
        "calibration_detail": cal.detail,
        "spacing_mm": None if cal.spacing is None else list(cal.spacing),
        "unit": cal.unit,
        "window": None if radiograph.window is None else
        {"center": radiograph.window.center, "width": radiograph.window.width,
         "source": radiograph.window.source},
        "monochrome1": radiograph.monochrome1,
    }
    kwargs = {
        "name": name,
        "scale": tuple(float(s) for s in scale),
        "units": ("mm", "mm") if cal.calibrated else ("pixel", "pixel"),
        "colormap": "gray_r" if radiograph.monochrome1 else "gray",
        "contrast_limits": initial_window(radiograph),
        "interpolation2d": "linear",
        "visible": visible,
        "metadata": {"spine_measure": info, "radiograph": radiograph},
    }
    return (radiograph.values, kwargs, "image")


class LazyRadiograph:
    """A film of a folder known by its header only, decoded on first use.

    ``metadata`` and ``shape`` come from the header; any other attribute of the
    :class:`Radiograph` (pixels, values, calibration, window ...) decodes the file first
    (:meth:`load`, once). :func:`decode_film_layer` replaces it in the layer by the decoded
    :class:`Radiograph`.
    """

    def __init__(self, header: Any) -> None:
        self.header = header
        self._radiograph: Radiograph | None = None

    @property
    def decoded(self) -> bool:
        return self._radiograph is not None

    def load(self) -> Radiograph:
        """The decoded film (decoded now if needed).

        Raises
        ------
        spine_measure.errors.RadiographError
            The file cannot be decoded (one line naming it)."""
        if self._radiograph is None:
            self._radiograph = load_radiograph(self.header.path)
        return self._radiograph

    @property
    def metadata(self) -> Any:
        return self.header.metadata if self._radiograph is None else self._radiograph.metadata

    @property
    def shape(self) -> tuple[int, int]:
        m = self.header.metadata
        return (int(m.rows), int(m.columns))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("header", "_radiograph"):
            raise AttributeError(name)
        return getattr(self.load(), name)


class _LazyValues:
    """Array-like for napari over a :class:`LazyRadiograph`: the shape and dtype of
    ``Radiograph.values`` without decoding; the pixels are decoded at the first slice.
    A film that cannot be decoded shows black, with one warning naming it (the widget
    refuses to annotate it, with the reason)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, film: LazyRadiograph) -> None:
        self.film = film
        self.shape = film.shape
        self._failed = False

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return int(self.shape[0]) * int(self.shape[1])

    def _values(self) -> np.ndarray:
        if not self._failed:
            try:
                return self.film.load().values
            except SpineMeasureError as exc:
                self._failed = True
                log.warning("%s", exc)
        return np.zeros(self.shape, dtype=self.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._values()[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._values(), dtype=dtype)


def _header_window(path: str) -> tuple[float, float] | None:
    """:func:`initial_window` of a DICOM film from its header alone (the VOI LUT or the
    WindowCenter/Width the decoder would use); None when it needs the pixels (percentiles)
    or the header cannot be read."""
    import pydicom

    from spine_measure.io.radiograph import header_voi_lut, header_window

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # the decoder says why, when the film is shown
        return None
    window, lut = header_window(ds), header_voi_lut(ds)
    if lut is not None and window is None:
        values, first = lut
        return float(first), float(first + len(values) - 1)
    if window is None:
        return None
    return (float(window.center - window.width / 2.0),
            float(window.center + window.width / 2.0))


def _lazy_film_layer_data(header: Any, window: tuple[float, float], *,
                          time_point: str | None) -> LayerData:
    """The (hidden) image layer of a folder's film from its header (``window``: the
    contrast limits it gives): decoded when shown."""
    film = LazyRadiograph(header)
    meta, cal = header.metadata, header.calibration
    scale = cal.spacing if cal.spacing is not None else (1.0, 1.0)
    date = meta.date.isoformat() if meta.date else None
    parts = [meta.patient_id, time_point, date, Path(meta.path).name]
    monochrome1 = (meta.photometric_interpretation or "").upper() == "MONOCHROME1"
    info = {
        "path": meta.path, "patient_id": meta.patient_id, "date": date,
        "time_point": time_point, "modality": meta.modality,
        "view_position": meta.view_position, "sop_instance_uid": meta.sop_instance_uid,
        "study_instance_uid": meta.study_instance_uid,
        "series_instance_uid": meta.series_instance_uid,
        "calibration_source": cal.source.value, "calibration_detail": cal.detail,
        "spacing_mm": None if cal.spacing is None else list(cal.spacing),
        "unit": cal.unit, "window": None,  # the full window record once decoded
        "monochrome1": monochrome1, "decoded": False,
    }
    kwargs = {
        "name": " · ".join(p for p in parts if p),
        "scale": tuple(float(s) for s in scale),
        "units": ("mm", "mm") if cal.calibrated else ("pixel", "pixel"),
        "colormap": "gray_r" if monochrome1 else "gray",
        "contrast_limits": window,
        "interpolation2d": "linear",
        "visible": False,
        "metadata": {"spine_measure": info, "radiograph": film},
    }
    return (_LazyValues(film), kwargs, "image")


def decode_film_layer(layer: Any) -> Radiograph:
    """The decoded :class:`Radiograph` of a film layer. A film read lazily from a folder is
    decoded now: the layer gets the full metadata, and its scale and colour map are checked
    against the decoded film.

    Raises
    ------
    spine_measure.errors.RadiographError
        The film cannot be decoded."""
    rg = layer.metadata["radiograph"]
    if not isinstance(rg, LazyRadiograph):
        return rg
    r = rg.load()
    decoded = film_layer_data(r, name=layer.name,
                              time_point=layer.metadata["spine_measure"].get("time_point"))[1]
    layer.metadata["spine_measure"] = decoded["metadata"]["spine_measure"]
    layer.metadata["radiograph"] = r
    # the contrast limits stay: the header's window is the decoder's (same tags, same
    # rule), and the reader may have changed them already
    if tuple(layer.scale) != decoded["scale"]:  # the header said otherwise: the film wins
        layer.scale = decoded["scale"]
    if layer.colormap.name != decoded["colormap"]:
        layer.colormap = decoded["colormap"]
    return r


def _films_in_folder(folder: Path) -> list[tuple[str, str | None, Any]]:
    """(path, time point, header or None) of every film in ``folder``, by patient then
    date."""
    from spine_measure.io.scan import scan_folder

    scan = scan_folder(folder, include_plain_images=True)
    for issue in scan.issues:
        log.warning("%s", issue)
    out: list[tuple[str, str | None, Any]] = []
    for _pid, studies in scan.by_patient().items():
        headers = [h for series in studies.values() for files in series.values() for h in files]
        headers.sort(key=lambda h: (h.metadata.date is None, h.metadata.date or 0, h.path))
        # time points are decided on the lateral films (an AP film shares its study date)
        points = assign_time_points([h.metadata.date for h in headers])
        out += [(h.path, tp, h) for h, tp in zip(headers, points, strict=True)]
    if not out:  # a folder of scans; beside DICOM films, PNGs are masks or figures
        out = [(p, None, None) for p in sorted(scan.plain_images)]
    return out


def read_paths(path: str | Sequence[str]) -> list[LayerData]:
    """Read a film, a folder of films, or a list of them into image layer data.

    Raises
    ------
    spine_measure.errors.RadiographError
        A single file that cannot be read (one line: ``<path>: <reason>``). In a folder,
        unreadable films are logged and skipped.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    films: list[tuple[str, str | None, Any, bool]] = []  # path, time point, header, folder
    for p in map(Path, paths):
        if p.is_dir():
            films += [(f, tp, h, True) for f, tp, h in _films_in_folder(p)]
        else:
            films.append((str(p), None, None, False))
    layers: list[LayerData] = []
    for f, tp, header, in_folder in films:
        tp = _sidecar_time_point(f) or tp
        window = _header_window(f) if layers and header is not None and _lazy_ok(header) \
            else None
        if window is not None:  # shown right when made visible, decoded then
            layers.append(_lazy_film_layer_data(header, window, time_point=tp))
            continue
        try:
            radiograph = load_radiograph(f)
        except SpineMeasureError as exc:
            if not in_folder:
                raise
            log.warning("%s", exc)
            continue
        layers.append(film_layer_data(radiograph, time_point=tp, visible=not layers))
    return layers


def _lazy_ok(header: Any) -> bool:
    """A folder's film can wait for decoding: a single-frame image of known size (and a
    window in its header, :func:`_header_window`)."""
    m = header.metadata
    return bool(m.rows and m.columns) and (m.number_of_frames or 1) == 1
