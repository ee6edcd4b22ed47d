"""Regenerate the review-mode figure of docs/napari_plugin.md.

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1200x24" \\
        python scripts/napari_review_screenshot.py [OUT_DIR]

OUT_DIR defaults to docs/figures. The sample films SM001 pre-op (annotated) and post-op are
copied to a temporary folder; the post-op film is opened in the dock widget, its landmarks
are proposed from the pre-op film (*Propose from*, tab *Proposals*), review starts, T10 is
confirmed (Enter) and the view shows T11 under review. Writes ``napari_review.png``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PATIENT = REPO / "sample_dicoms" / "SM001"


def make_screenshot(out_dir: str | Path) -> Path:
    import napari
    from qtpy.QtTest import QTest

    from napari_spine_measure._reader import read_paths
    from napari_spine_measure._widget import SpineAnnotationWidget

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("SM001_preop.dcm", "SM001_preop.sm.json", "SM001_postop.dcm"):
            shutil.copy(PATIENT / name, Path(tmp) / name)
        film = Path(tmp) / "SM001_postop.dcm"
        viewer = napari.Viewer(show=True)
        try:
            viewer.window._qt_window.resize(1800, 1150)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for data, kwargs, _kind in read_paths(str(film)):
                    viewer.add_image(data, **kwargs)
            widget = SpineAnnotationWidget(viewer, ask=False, reader="figure")
            viewer.window.add_dock_widget(widget, name="Spine annotation", area="right")
            viewer.reset_view()
            widget.tabs.setCurrentWidget(widget.review_panel)
            widget.review_panel.propose()          # from the pre-op film (a worker thread)
            while widget.review_panel.busy:        # ... then review starts
                QTest.qWait(50)
            widget.review_panel.confirm_current()  # Enter on T10: on to T11
            camera = getattr(getattr(viewer, "scene", None), "camera", None) or viewer.camera
            pts = np.array(list(widget.controller.points("T12").values()))
            camera.center = tuple(pts.mean(axis=0) * np.asarray(widget.landmarks_layer.scale))
            camera.zoom *= 1.6
            QTest.qWait(500)
            path = out / "napari_review.png"
            viewer.screenshot(str(path), canvas_only=False, flash=False)
            widget.controller.dirty = False  # figure only: nothing to save
        finally:
            viewer.close()
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "figures"
    print(make_screenshot(target))
