"""The napari widget's live values are the values every command computes for the film.

The plugin's controller (no Qt needed) measures the loaded annotation; the service's
``measure_with_calibration`` -- the call the controller makes -- and ``measure_film_file``
(``measure``, ``batch``, ``export-sr``) must give the same value for every measurement.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

from spine_measure.io.annotation import sidecar_path
from spine_measure.io.radiograph import load_radiograph
from spine_measure.service import measure_film_file, measure_with_calibration

controller = pytest.importorskip("napari_spine_measure.controller")

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicoms"
FILMS = sorted(SAMPLE.rglob("*.dcm"))


def _values(fm):
    out = {(lv, name): r.value for lv, per in fm.vertebrae.items() for name, r in per.items()}
    out.update({("film", r.name, r.detail.get("upper")): r.value for r in fm.film})
    return out


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("film", FILMS, ids=lambda p: p.stem)
def test_controller_service_and_commands_agree(film):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rg = load_radiograph(film)
        ctl = controller.AnnotationController.from_radiograph(rg)
        ctl.load(sidecar_path(film))
        by_command = measure_film_file(film, cement=False).measurements
    live = ctl.measurements()
    by_service = measure_with_calibration(ctl.header_calibration, ctl.annotation())
    assert live.calibration_source == by_service.calibration_source \
        == by_command.calibration_source
    assert live.spacing == by_service.spacing == by_command.spacing
    a, b, c = _values(live), _values(by_service), _values(by_command)
    assert a.keys() == b.keys() == c.keys() and len(a) >= 3
    for k in a:
        assert _same(a[k], b[k]) and _same(b[k], c[k]), k


def test_cement_of_a_stored_mask_is_the_same_in_the_widget_and_the_commands(tmp_path):
    """A reader's cement mask saved by the widget: its features in the widget equal what
    ``measure``/``batch`` report for that film (edited mask, same spacing and tolerance)."""
    import numpy as np
    from PIL import Image

    from spine_measure.service import AnnotationChoice

    film = SAMPLE / "SM001" / "SM001_postop.dcm"
    mask = np.asarray(Image.open(film.with_name("SM001_postop.cement.png"))) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctl = controller.AnnotationController.from_radiograph(load_radiograph(film))
        ctl.load(sidecar_path(film))
        ctl.set_cement_mask("L1", mask, source="edited")
        saved = ctl.save(tmp_path / "SM001_postop.sm.json")
        res = measure_film_file(film, annotation=AnnotationChoice(saved, "given", saved.name))
    live = ctl.cement_features("L1")
    row = res.cement["L1"]
    assert row["cement_mask_source"] == "edited"
    pairs = {"npec": live.npec, "cement_fill_pct": live.fill_pct,
             "cement_distribution": live.distribution}
    for col, want in pairs.items():
        assert row[col] == want, col
    assert row["cement_found"] is True and live.found
