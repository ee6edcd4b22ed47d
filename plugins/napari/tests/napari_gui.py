"""Real Qt input for the plugin's GUI tests: mouse clicks and drags on napari's canvas and
key presses, sent as Qt events (``QTest``), so they travel the same path as a reader's mouse
(vispy -> napari mouse callbacks -> layer -> widget). Imported by name (not a conftest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt, QTimer
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QMessageBox

LEFT = Qt.MouseButton.LeftButton


def open_film(viewer, film: Path | str, *, ask: bool = False, **kwargs: Any):
    """Films through the plugin's reader, then the dock widget (as ``annotate`` does)."""
    from napari_spine_measure._reader import read_paths
    from napari_spine_measure._widget import SpineAnnotationWidget

    for data, kw, _kind in read_paths(str(film)):
        viewer.add_image(data, **kw)
    widget = SpineAnnotationWidget(viewer, ask=ask, **kwargs)
    viewer.window.add_dock_widget(widget, name="Spine annotation", area="right")
    return widget


def canvas(viewer) -> Any:
    return viewer.window._qt_viewer.canvas


def to_canvas(viewer, layer, row: float, col: float) -> QPoint:
    """Canvas pixel (Qt widget coordinates) of data point ``(row, col)`` of ``layer``."""
    c = canvas(viewer)
    world = np.array([row, col]) * np.asarray(layer.scale) + np.asarray(layer.translate)
    transform = c.view.transform * c.view.scene.transform
    x, y = transform.map([world[1], world[0]])[:2]
    ratio = c.native.devicePixelRatioF()
    return QPoint(round(x / ratio), round(y / ratio))


def focus_canvas(qtbot, viewer) -> None:
    viewer.window._qt_window.activateWindow()
    c = canvas(viewer).native
    c.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is c or c.hasFocus(), timeout=2000)


def click(qtbot, viewer, layer, row: float, col: float) -> None:
    """A left click on the canvas at data ``(row, col)`` of ``layer``."""
    native = canvas(viewer).native
    pos = to_canvas(viewer, layer, row, col)
    QTest.mouseMove(native, pos)
    QTest.mouseClick(native, LEFT, Qt.KeyboardModifier.NoModifier, pos)
    qtbot.wait(5)


def _send(native, kind: QEvent.Type, pos: QPoint, buttons: Any) -> None:
    button = LEFT if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    ev = QMouseEvent(kind, QPointF(pos), QPointF(native.mapToGlobal(pos)), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(native, ev)


def drag(qtbot, viewer, layer, start: tuple[float, float], end: tuple[float, float], *,
         steps: int = 8, during: Callable[[int], None] | None = None) -> None:
    """Press at ``start``, move in ``steps`` steps to ``end`` (left button held), release;
    ``during(k)`` is called after each move, before the release."""
    native = canvas(viewer).native
    p0 = to_canvas(viewer, layer, *start)
    _send(native, QEvent.Type.MouseButtonPress, p0, LEFT)
    qtbot.wait(5)
    for k in range(1, steps + 1):
        r = start[0] + (end[0] - start[0]) * k / steps
        c = start[1] + (end[1] - start[1]) * k / steps
        _send(native, QEvent.Type.MouseMove, to_canvas(viewer, layer, r, c), LEFT)
        qtbot.wait(5)
        if during is not None:
            during(k)
    _send(native, QEvent.Type.MouseButtonRelease, to_canvas(viewer, layer, *end),
          Qt.MouseButton.NoButton)
    qtbot.wait(5)


def key(qtbot, viewer, key: str, modifier: Any = Qt.KeyboardModifier.NoModifier) -> None:
    """A key press on the canvas (napari dispatches it to the active layer, then the
    viewer)."""
    native = canvas(viewer).native
    QTest.keyClick(native, key, modifier)
    qtbot.wait(5)


def answer_next_question(qtbot, button_text: str, seen: list[str] | None = None) -> None:
    """Click the button labelled ``button_text`` on the next modal question box (from a
    timer: the box runs its own event loop). Its text goes into ``seen``."""

    def _click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, _click)
            return
        if seen is not None:
            seen.append(box.text())
        for b in box.buttons():
            if b.text() == button_text:
                b.click()
                return
        raise AssertionError(f"no button {button_text!r} in {[b.text() for b in box.buttons()]}")

    QTimer.singleShot(20, _click)


def click_eye(qtbot, viewer, layer) -> None:
    """A left click on the visibility (eye) icon of ``layer`` in napari's layer list."""
    from qtpy.QtWidgets import QStyle, QStyleOptionViewItem

    view = viewer.window._qt_viewer.layers
    model = view.model()
    source = model.sourceModel() if hasattr(model, "sourceModel") else model
    row = next(r for r in range(source.rowCount())
               if source.getItem(source.index(r, 0)) is layer)
    index = source.index(row, 0)
    if source is not model:  # napari lists the top layer first (a proxy reverses)
        index = model.mapFromSource(index)
    view.scrollTo(index)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    option.rect = view.visualRect(index)
    view.itemDelegate().initStyleOption(option, index)
    option.widget = view
    check = view.style().subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator,
                                        option, view)
    assert check.isValid() and option.rect.contains(check.center()), (check, option.rect)
    QTest.mouseClick(view.viewport(), LEFT, Qt.KeyboardModifier.NoModifier, check.center())
    qtbot.wait(10)


def place_level(qtbot, viewer, widget, film: Path, level: str, n: int = 6) -> None:
    """Click ``n`` points of ``level`` at the film's ground-truth positions, in the order the
    widget prompts for them."""
    from napari_samples import truth_points

    pts = truth_points(film, level)
    for _ in range(n):
        click(qtbot, viewer, widget.landmarks_layer, *pts[widget.controller.next_point()[1]])


def shown_film(make_napari_viewer, qtbot, film: Path | str, *, size: tuple[int, int] | None
               = None, **kwargs: Any):
    """A shown viewer (resized to ``size``) with ``film`` and the dock widget, the whole film
    in view and the canvas focused: ``(viewer, widget)``."""
    viewer = make_napari_viewer(show=True)
    if size is not None:
        viewer.window._qt_window.resize(*size)
    widget = open_film(viewer, film, **kwargs)
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    return viewer, widget
