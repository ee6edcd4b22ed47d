"""Reader, writer and sample-data contributions (through npe2's manifest where it matters)."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest
from napari_samples import SAMPLES

from napari_spine_measure._reader import assign_time_points, get_reader, read_paths


def test_manifest_declares_every_contribution():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("napari-spine-measure")
    c = mf.contributions
    assert [r.command for r in c.readers] == ["napari-spine-measure.get_reader"]
    # no writer: the widget's Save is the one way to write an annotation (it keeps the
    # findings, calibration, cement and conflict check that a layer cannot carry)
    assert not c.writers
    assert c.sample_data[0].key == "SM001" and c.widgets


def test_reader_file_scale_contrast_metadata(postop_film, tmp_path):
    assert get_reader(str(postop_film)) is not None
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    [(data, kw, kind)] = read_paths(str(postop_film))
    assert kind == "image" and kw["scale"] == (0.25, 0.25)
    info = kw["metadata"]["spine_measure"]
    assert info["calibration_source"] == "imager_pixel_spacing_ermf"
    assert info["patient_id"] == "SM001" and info["window"]["source"] == "window_attributes"
    # the layer holds the modality values (never clipped); the DICOM window is the initial
    # contrast: limits = (c - w/2, c + w/2)
    r = kw["metadata"]["radiograph"]
    c, w = r.window.center, r.window.width
    assert data is r.values
    assert data.max() > c + w / 2 or data.min() < c - w / 2
    assert kw["contrast_limits"] == pytest.approx((c - w / 2, c + w / 2))
    assert kw["colormap"] == "gray"


def test_monochrome1_film_shows_dense_bright():
    film = SAMPLES / "SM002" / "SM002_postop.dcm"
    if not film.is_file():
        pytest.skip("sample not generated")
    [(data, kw, _)] = read_paths(str(film))
    r = kw["metadata"]["radiograph"]
    assert r.monochrome1 and kw["colormap"] == "gray_r"
    cement = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(
        film.with_suffix(".cement.png"))) > 0
    # on screen with the inverted grey scale: brightness = (hi - v) / (hi - lo), clipped
    lo, hi = kw["contrast_limits"]
    shown = np.clip((hi - data) / (hi - lo), 0, 1)
    # cement (densest) is brighter than the film's median on screen despite MONOCHROME1
    assert shown[cement].mean() > np.median(shown) + 0.2


def test_folder_one_layer_per_film_with_time_points(study_folder):
    layers = read_paths(str(study_folder))
    names = [kw["name"] for _, kw, _ in layers]
    assert [n.split(" · ")[1] for n in names] == ["preop", "postop", "followup"]
    assert all(n.startswith("SM001 · ") for n in names)
    assert [kw["visible"] for _, kw, _ in layers] == [True, False, False]


def test_assign_time_points_by_date():
    d = [dt.date(2023, 5, 1), dt.date(2023, 3, 14), dt.date(2023, 3, 16), None]
    assert assign_time_points(d) == ["followup", "preop", "postop", None]
    assert assign_time_points([dt.date(2023, 1, 1)]) == [None]


def test_sample_data_opens_the_study(monkeypatch, tmp_path):
    if not (SAMPLES / "SM001").is_dir():
        pytest.skip("sample not generated")
    shutil.copytree(SAMPLES / "SM001", tmp_path / "SM001")
    monkeypatch.setenv("SPINE_MEASURE_SAMPLE_DIR", str(tmp_path))
    from napari_spine_measure._sample_data import sample_study

    layers = sample_study()
    assert len(layers) == 3 and all(k == "image" for _, _, k in layers)
