"""``spine-measure annotate``'s window: the films first, the annotation widget right after.

napari draws the first frame of the films before the dock widget is built (building it adds
the annotation layers and the widget's controls, about a third of a cold start), so the
reader sees the film as soon as napari can show it; the widget docks a moment later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["FALLBACK_MS", "open_annotation_window"]

#: The widget is built at the latest this many ms after the window opened, even if no
#: frame was drawn (a window that is never exposed).
FALLBACK_MS = 3000


def open_annotation_window(layers: Sequence[tuple[Any, dict[str, Any], str]], *, title: str,
                           reader: str | None = None,
                           annotations_dir: str | os.PathLike[str] | None = None) -> Any:
    """A napari viewer showing ``layers`` (:func:`~napari_spine_measure._reader.read_paths`
    output); the :class:`~napari_spine_measure._widget.SpineAnnotationWidget` is docked once
    the first frame has been drawn. Returns the viewer (run napari's event loop next)."""
    import napari
    from qtpy.QtCore import QTimer

    viewer = napari.Viewer(title=title)
    for data, kwargs, _kind in layers:
        viewer.add_image(data, **kwargs)
    canvas = viewer.window._qt_viewer.canvas
    state = {"docked": False}

    def dock() -> None:
        if state["docked"]:
            return
        state["docked"] = True
        canvas.events.draw.disconnect(drawn)
        from napari_spine_measure._widget import SpineAnnotationWidget

        widget = SpineAnnotationWidget(viewer, reader=reader, annotations_dir=annotations_dir)
        viewer.window.add_dock_widget(widget, name="Spine annotation", area="right")

    def drawn(_event: Any = None) -> None:
        QTimer.singleShot(0, dock)  # after the frame is on screen

    canvas.events.draw.connect(drawn, position="last")
    fallback = QTimer(viewer.window._qt_window)  # dies with the window
    fallback.setSingleShot(True)
    fallback.timeout.connect(dock)
    fallback.start(FALLBACK_MS)
    viewer.window._qt_window.destroyed.connect(lambda *_: state.update(docked=True))
    return viewer
