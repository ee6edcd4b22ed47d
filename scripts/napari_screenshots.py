"""Regenerate the napari figures of docs/napari_plugin.md.

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1200x24" \
        python scripts/napari_screenshots.py [OUT_DIR]

OUT_DIR defaults to docs/figures. The sample film SM001 post-op is copied to a temporary
folder, four vertebrae are annotated with its ground-truth points through the dock widget,
L1 is flagged treated and fractured and its cement segmented, and two points of L3 are
placed (the preview ring shows the third). Writes ``napari_widget.png`` (the whole window)
and ``napari_cement_tab.png`` (the widget on its cement tab).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicoms" / "SM001" / "SM001_postop.dcm"


def make_screenshots(out_dir: str | Path, viewer: object = None) -> dict[str, Path]:
    """Write the figures into ``out_dir``; returns their paths by name. ``viewer``: a
    napari viewer to draw in (a new window otherwise, closed at the end)."""
    import napari

    from napari_spine_measure._reader import read_paths
    from napari_spine_measure._widget import SpineAnnotationWidget

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = json.loads(SAMPLE.with_suffix(".truth.json").read_text())
    points = {v["level"]: v["points"] for v in truth["vertebrae"]}
    with tempfile.TemporaryDirectory() as tmp:
        film = Path(tmp) / SAMPLE.name
        shutil.copy(SAMPLE, film)
        own = viewer is None
        if own:
            viewer = napari.Viewer(show=True)
        try:
            viewer.window._qt_window.resize(1500, 1000)
            for data, kwargs, _kind in read_paths(str(film)):
                viewer.add_image(data, **kwargs)
            widget = SpineAnnotationWidget(viewer, ask=False, reader="figure")
            viewer.window.add_dock_widget(widget, name="Spine annotation", area="right")
            widget.select_level("T11")
            for level in ("T11", "T12", "L1", "L2"):
                while widget.controller.level == level:
                    widget.place_point(*points[level][widget.controller.next_point()[1]])
            widget.set_flag("treated", True, level="L1")
            widget.set_flag("fractured", True, level="L1")
            widget.set_genant("L2", grade=1, shape="wedge")  # a reader's own Genant value
            widget.auto_segment()
            for name in ("As", "Ms"):
                widget.place_point(*points["L3"][name])
            widget.set_placing(True)
            viewer.reset_view()
            centre = np.mean(widget.landmarks_layer.data, axis=0) * np.asarray(
                widget.landmarks_layer.scale)
            camera = getattr(getattr(viewer, "scene", None), "camera", None) or viewer.camera
            camera.center = tuple(centre)
            camera.zoom *= 1.5
            from qtpy.QtTest import QTest

            QTest.qWait(500)  # let the dock widget and the canvas lay out and draw
            paths = {"widget": out / "napari_widget.png",
                     "cement": out / "napari_cement_tab.png"}
            viewer.screenshot(str(paths["widget"]), canvas_only=False, flash=False)
            widget.tabs.setCurrentIndex(2)
            widget.grab().save(str(paths["cement"]))
            widget.controller.dirty = False  # figures only: nothing to save
        finally:
            if own:
                viewer.close()
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "figures"
    for path in make_screenshots(target).values():
        print(path)
