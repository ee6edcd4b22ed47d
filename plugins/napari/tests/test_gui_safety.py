"""Data safety in a real napari window (Xvfb), driven by Qt mouse and key events on the
canvas and by clicking the buttons of the plugin's questions: the session always belongs to
the film on screen, unreadable annotations, File > Open of another film, read-only folders,
unsaved work on Load and on closing, and the conflict dialog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from napari_gui import answer_next_question, click, focus_canvas, key, open_film
from napari_samples import copy_film, truth_points

from spine_measure.io.annotation import load_annotation

pytestmark = pytest.mark.gui

CORRUPT = b'{"schema": "spine_measure.annotation/1", "image": {'  # cut short


def _two_films(tmp_path: Path) -> tuple[Path, Path]:
    a = copy_film(tmp_path, "SM001", "SM001_preop")
    b = copy_film(tmp_path, "SM001", "SM001_postop")
    return a, b


def _click_truth(qtbot, viewer, widget, film: Path, level: str, n: int) -> None:
    pts = truth_points(film, level)
    for _ in range(n):
        name = widget.controller.next_point()[1]
        click(qtbot, viewer, widget.landmarks_layer, *pts[name])


def _film_layer(viewer, film: Path):
    return next(ly for ly in viewer.layers if ly.name.endswith(film.name))


@pytest.mark.parametrize("kind", ["corrupt", "other_image", "newer_schema"])
def test_switching_to_a_film_with_an_unreadable_annotation_start_over(
        make_napari_viewer, qtbot, tmp_path, kind):
    a, b = _two_films(tmp_path)
    side_b = b.with_suffix(".sm.json")
    if kind == "corrupt":
        side_b.write_bytes(CORRUPT)
    else:  # a valid annotation of film A, renamed to B's sidecar / a future schema
        from napari_spine_measure.controller import AnnotationController
        from spine_measure.io.radiograph import load_radiograph

        ctl = AnnotationController.from_radiograph(load_radiograph(a), autosave=False)
        ctl.select_level("L1")
        for name, p in truth_points(a, "L1").items():
            ctl.place(*p) if ctl.next_point() and ctl.next_point()[1] == name else None
        ctl.save(side_b)
        if kind == "newer_schema":
            data = json.loads(side_b.read_text())
            data["schema"] = "spine_measure.annotation/99"
            side_b.write_text(json.dumps(data))
    unreadable = side_b.read_bytes()

    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, a.parent, ask=True)
    viewer.reset_view()
    assert widget.controller.image.file_name == a.name
    widget.select_level("L1")
    focus_canvas(qtbot, viewer)
    _click_truth(qtbot, viewer, widget, a, "L1", 2)
    ctl_a = widget.controller
    assert set(ctl_a.points("L1")) == {"As", "Ms"}
    autosave_a = ctl_a.autosave_path.read_bytes()

    # the reader picks film B in the Film box; the question is answered "start over"
    seen: list[str] = []
    answer_next_question(qtbot, "Start over (keep a backup)", seen)
    widget.film_combo.setCurrentIndex(widget.film_combo.findText(_film_layer(viewer, b).name))
    qtbot.waitUntil(lambda: widget.controller is not None
                    and widget.controller.image.file_name == b.name, timeout=5000)
    assert "cannot be read" in seen[0] and side_b.name in seen[0]
    ctl_b = widget.controller
    assert ctl_b is not ctl_a and ctl_b.read_only is None and not ctl_b.points()
    backups = list(b.parent.glob(side_b.name + ".unreadable-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == unreadable
    assert side_b.read_bytes() == unreadable  # untouched until the reader saves

    # clicks on B go to B's session, never to A's (nor A's autosave)
    viewer.reset_view()
    widget.select_level("L1")
    _click_truth(qtbot, viewer, widget, b, "L1", 3)
    assert set(ctl_b.points("L1")) == {"As", "Ms", "Ps"}
    assert set(ctl_a.points("L1")) == {"As", "Ms"}
    assert ctl_a.autosave_path.read_bytes() == autosave_a
    pts_b = truth_points(b, "L1")
    assert np.allclose(ctl_b.points("L1")["As"], pts_b["As"], atol=1.5)

    # saving replaces the unreadable file (its backup stays)
    widget.ask = False
    assert widget.save() == side_b
    assert load_annotation(side_b).image.file_name == b.name
    assert backups[0].read_bytes() == unreadable
    ctl_a.dirty = False


def test_unreadable_annotation_read_only_refuses_clicks(make_napari_viewer, qtbot, tmp_path):
    a, b = _two_films(tmp_path)
    side_b = b.with_suffix(".sm.json")
    side_b.write_bytes(CORRUPT)
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, a.parent, ask=True)
    ctl_a = widget.controller
    answer_next_question(qtbot, "Open read-only")
    widget.film_combo.setCurrentIndex(widget.film_combo.findText(_film_layer(viewer, b).name))
    qtbot.waitUntil(lambda: widget.controller is not None
                    and widget.controller.image.file_name == b.name, timeout=5000)
    ctl_b = widget.controller
    assert ctl_b.read_only is not None
    assert widget.notice_label.isVisible() and "Read-only" in widget.notice_label.text()
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    click(qtbot, viewer, widget.landmarks_layer, *truth_points(b, "T12")["As"])
    assert not ctl_b.points() and not ctl_a.points()
    assert len(widget.landmarks_layer.data) == 0  # the click left no stray point
    assert "read-only" in widget.status_label.text()
    assert side_b.read_bytes() == CORRUPT
    assert not list(b.parent.glob("*.unreadable-*"))
    assert widget.save() is None and side_b.read_bytes() == CORRUPT


def test_file_open_of_a_second_film_keeps_layers_on_top_and_follows(
        make_napari_viewer, qtbot, tmp_path):
    a, b = _two_films(tmp_path)
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, a)
    # what File > Open does once a file is chosen (the plugin as reader)
    viewer.window._qt_viewer._qt_open([str(b)], stack=False)  # File > Open after the dialog
    qtbot.waitUntil(lambda: widget.controller.image.file_name == b.name, timeout=5000)
    qtbot.wait(50)
    names = [ly.name for ly in viewer.layers]
    film_b = _film_layer(viewer, b)
    assert names.index(film_b.name) < names.index("cement")  # below every annotation layer
    assert names[-1] == "landmarks"
    assert viewer.layers.selection.active is widget.landmarks_layer
    assert not _film_layer(viewer, a).visible and film_b.visible
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    _click_truth(qtbot, viewer, widget, b, "L1", 1)
    assert "As" in widget.controller.points("L1")
    assert widget._controllers[str(a)].points() == {}
    widget.controller.dirty = False


@pytest.fixture
def read_only_film(tmp_path):
    """A film in a folder that cannot be written (a read-only bind mount when running as
    root, where permissions do not stop writes)."""
    (tmp_path / "src").mkdir()
    src = copy_film(tmp_path / "src", "SM001", "SM001_postop")
    folder = src.parent
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield src
        folder.chmod(0o755)
        return
    mnt = tmp_path / "cd"
    mnt.mkdir()
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(mnt)],
                       capture_output=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot make a read-only folder here: {r.stderr.decode().strip()}")
    try:
        yield mnt / src.name
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_read_only_folder_never_breaks_the_widget(make_napari_viewer, qtbot, tmp_path,
                                                  read_only_film):
    film = read_only_film
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, film)
    qtbot.wait(10)
    assert "is read-only" in widget.notice_label.text(), widget.notice_label.text()
    assert widget.notice_label.isVisible()
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    _click_truth(qtbot, viewer, widget, film, "L1", 6)  # every click autosaves
    ctl = widget.controller
    assert set(ctl.points("L1")) == {"As", "Ms", "Ps", "Pi", "Mi", "Ai"}
    assert ctl.level == "L2" and widget.prompt_label.text().startswith("L2 · As")
    assert "nan" not in widget.prompt_label.text()
    assert widget.table.columnCount() == 1
    # saving there fails with one line, and the session goes on
    assert widget.save() is None
    assert "Read-only file system" in widget.status_label.text() or \
        "Permission denied" in widget.status_label.text()
    # the reader chooses an annotations folder: autosave and save go there
    out = tmp_path / "annotations"
    out.mkdir()
    widget.set_annotations_dir(out)
    assert (out / "SM001_postop.sm.json.autosave.json").is_file()
    assert not widget.notice_label.isVisible()
    assert widget.save() == out / "SM001_postop.sm.json"
    assert load_annotation(out / "SM001_postop.sm.json").landmarks["L1"]


def test_load_asks_when_work_is_unsaved(make_napari_viewer, qtbot, postop_film, tmp_path):
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, postop_film, ask=True)
    ctl = widget.controller
    other = tmp_path / "other.sm.json"
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    _click_truth(qtbot, viewer, widget, postop_film, "L1", 6)
    widget.ask = False
    ctl.save(other)  # a saved annotation of this film to load later
    widget.ask = True
    _click_truth(qtbot, viewer, widget, postop_film, "L2", 2)
    assert ctl.dirty
    seen: list[str] = []
    answer_next_question(qtbot, "Cancel", seen)
    widget.load(other)
    assert "unsaved changes" in seen[0]
    assert set(ctl.points("L2")) == {"As", "Ms"} and ctl.can_undo  # kept
    answer_next_question(qtbot, "Discard")
    widget.load(other)
    assert "L2" not in ctl.points() and not ctl.dirty
    assert ctl.level == "L2"  # resumes at the next unannotated level


def test_closing_the_window_asks_when_work_is_unsaved(make_napari_viewer, qtbot,
                                                      postop_film):
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, postop_film, ask=True)
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    _click_truth(qtbot, viewer, widget, postop_film, "T12", 1)
    window = viewer.window._qt_window
    seen: list[str] = []
    answer_next_question(qtbot, "Cancel", seen)
    window.close()
    qtbot.wait(50)
    assert "Closing the window" in seen[0] and window.isVisible()
    answer_next_question(qtbot, "Save")
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=3000)
    assert load_annotation(postop_film.with_suffix(".sm.json")).revision == 1
    assert widget.controller.points("T12")  # saved (T12 has one point: not in the file)
    del viewer.window._qt_window  # really closed: the fixture must not close it again


def test_conflict_dialog_names_who_and_when(make_napari_viewer, qtbot, postop_film):
    viewer = make_napari_viewer(show=True)
    widget = open_film(viewer, postop_film, ask=True, reader="reader-A")
    ctl = widget.controller
    viewer.reset_view()
    focus_canvas(qtbot, viewer)
    widget.select_level("L1")
    _click_truth(qtbot, viewer, widget, postop_film, "L1", 6)
    side = postop_film.with_suffix(".sm.json")
    # another reader saves the same film meanwhile
    from napari_spine_measure.controller import AnnotationController
    from spine_measure.io.radiograph import load_radiograph

    theirs = AnnotationController.from_radiograph(load_radiograph(postop_film),
                                                  reader="reader-B", autosave=False)
    theirs.select_level("T12")
    for name in ("As", "Ms", "Ps", "Pi", "Mi", "Ai"):
        theirs.place(*truth_points(postop_film, "T12")[name])
    theirs.save()

    seen: list[str] = []
    answer_next_question(qtbot, "Save mine as a copy", seen)
    key(qtbot, viewer, "S", __import__("qtpy.QtCore").QtCore.Qt.KeyboardModifier.ShiftModifier)
    assert "reader-B saved SM001_postop.sm.json at" in seen[0]
    assert "Save mine as a copy" in seen[0] or "copy" in seen[0]
    copies = list(postop_film.parent.glob("SM001_postop.reader-A-*.sm.json"))
    assert len(copies) == 1 and load_annotation(copies[0]).landmarks["L1"]
    assert load_annotation(side).reader == "reader-B"  # theirs untouched

    # reload theirs
    ctl.annotation_path = side
    ctl._base = None
    ctl.place(*truth_points(postop_film, "L2")["As"])
    answer_next_question(qtbot, "Reload theirs")
    widget.save()
    assert "T12" in ctl.points() and "L1" not in ctl.points() and not ctl.dirty

    # replace
    ctl._base = None  # as if loaded before they saved
    ctl.dirty = True
    answer_next_question(qtbot, "Replace")
    assert widget.save() == side
    assert load_annotation(side).reader == "reader-A"
    shutil.rmtree(postop_film.parent / "__none__", ignore_errors=True)


def test_annotate_command_opens_a_film_with_an_unreadable_annotation(
        qtbot, postop_film, tmp_path, monkeypatch, capsys):
    """``spine-measure annotate FILM`` with a corrupt sidecar: the viewer opens, the
    question is asked, the film opens read-only with the message; exit 0, no traceback."""
    import napari

    from spine_measure.cli import main

    side = postop_film.with_suffix(".sm.json")
    side.write_bytes(CORRUPT)
    out = tmp_path / "notes"
    out.mkdir()
    state = {}

    def fake_run() -> None:  # instead of the event loop: look at the window, then close it
        viewer = napari.current_viewer()
        widget = next(iter(viewer.window.dock_widgets.values()))
        state["notice"] = widget.notice_label.text()
        state["dir"] = widget.annotations_dir
        state["reader"] = widget.reader
        widget.controller.dirty = False
        viewer.close()

    monkeypatch.setattr(napari, "run", fake_run)
    seen: list[str] = []
    answer_next_question(qtbot, "Open read-only", seen)
    rc = main(["annotate", str(postop_film), "--reader", "r1", "--annotations", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "cannot be read" in seen[0]
    assert state["notice"].startswith("Read-only:") and "SM001_postop.sm.json" in \
        state["notice"]
    assert state["dir"] == out and state["reader"] == "r1"
    assert side.read_bytes() == CORRUPT
    assert "Traceback" not in capsys.readouterr().err


def test_annotate_command_bad_annotations_folder_is_one_line(postop_film, tmp_path, capsys):
    from spine_measure.cli import main

    assert main(["annotate", str(postop_film), "--annotations",
                 str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--annotations" in err[0]
