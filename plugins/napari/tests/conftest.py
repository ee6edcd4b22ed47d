"""Fixtures: sample films copied to a temporary folder (annotation files are written beside
them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from napari_samples import copy_film


@pytest.fixture(autouse=True)
def _private_settings(tmp_path, monkeypatch):
    """The widget's remembered preferences go to a temporary INI file, never the user's."""
    monkeypatch.setenv("SPINE_MEASURE_NAPARI_SETTINGS", str(tmp_path / "settings.ini"))


@pytest.fixture
def postop_film(tmp_path: Path) -> Path:
    """SM001_postop.dcm (L1 treated, cement) in a temporary folder."""
    return copy_film(tmp_path, "SM001", "SM001_postop")


@pytest.fixture
def window(make_napari_viewer, qtbot, postop_film):
    """A shown viewer with SM001_postop.dcm and the dock widget, the canvas focused."""
    from napari_gui import shown_film

    viewer, widget = shown_film(make_napari_viewer, qtbot, postop_film)
    yield viewer, widget
    widget.ask = False


@pytest.fixture
def study_folder(tmp_path: Path) -> Path:
    """The three lateral films of SM001 in a temporary folder."""
    for tp in ("preop", "postop", "followup"):
        copy_film(tmp_path, "SM001", f"SM001_{tp}")
    return tmp_path / "SM001"


@pytest.fixture
def make_napari_viewer(make_napari_viewer):
    """napari's factory, with one guard: before the test's windows are closed, no widget may
    ask a question any more. A test that fails half-way leaves unsaved work, and the "Save /
    Discard / Cancel" question of the window's close would wait for an answer forever."""
    from napari_spine_measure._widget import SpineAnnotationWidget

    viewers = []

    def factory(*args, **kwargs):
        viewer = make_napari_viewer(*args, **kwargs)
        viewers.append(viewer)
        return viewer

    yield factory
    for viewer in viewers:
        qt_window = getattr(viewer.window, "_qt_window", None)
        if qt_window is None:
            continue
        for widget in qt_window.findChildren(SpineAnnotationWidget):
            widget.ask = False
