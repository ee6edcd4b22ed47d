"""The treated vertebra changes shape between time points (height restored by the procedure,
or lost again): its propagated corners must follow the change, so that the wedge angle measured
from the unedited proposals matches the target film's truth (``docs/propagation.md``, stage 3).

The expected angles are computed here from the truth corners with their own formula (the angle
between the endplate lines ``Ps -> As`` and ``Pi -> Ai``), not by the measurement code."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from spine_measure.io.radiograph import load_radiograph
from spine_measure.landmarks import SpineLandmarks
from spine_measure.propose import propagate_landmarks

SAMPLE = Path(__file__).resolve().parents[2] / "sample_dicoms"


def _film(pid: str, tp: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = load_radiograph(SAMPLE / pid / f"{pid}_{tp}.dcm")
    truth = json.loads((SAMPLE / pid / f"{pid}_{tp}.truth.json").read_text())
    return r, SpineLandmarks.from_dict(truth)


def _wedge_deg(points) -> float:
    """Angle (deg) from the superior endplate line Ps->As to the inferior one Pi->Ai."""
    u = np.asarray(points["As"], float) - np.asarray(points["Ps"], float)
    w = np.asarray(points["Ai"], float) - np.asarray(points["Pi"], float)
    return math.degrees(math.atan2(u[0] * w[1] - u[1] * w[0], float(u @ w)))


def _treated_level(pid: str) -> str:
    _, truth = _film(pid, "postop")
    (level,) = [v.level for v in truth if v.treated]
    return level


def _sm001_treated_pair(options):
    """SM001 pre-op -> post-op around its treated level with ``options``: (level, the source
    truth, the target truth, the propagation)."""
    level = _treated_level("SM001")
    src, slm = _film("SM001", "preop")
    tgt, tlm = _film("SM001", "postop")
    order = slm.levels()
    i = order.index(level)
    prop = propagate_landmarks(src.density, slm, tgt.density, levels=order[i - 1: i + 2],
                               options=options)
    return level, slm, tlm, prop


@pytest.mark.parametrize(("pid", "source", "target"), [
    ("SM001", "preop", "postop"),     # wedge fracture, height restored
    ("SM004", "preop", "postop"),     # the vertebra above is an old (flagged) fracture
    ("SM006", "preop", "postop"),
    ("SM003", "postop", "followup"),  # cement in both films
    ("SM001", "postop", "preop"),     # backwards: the cement disappears
])
def test_wedge_angle_of_unedited_proposals_follows_the_change(pid, source, target):
    level = _treated_level(pid)
    src, slm = _film(pid, source)
    tgt, tlm = _film(pid, target)
    order = slm.levels()
    i = order.index(level)
    levels = order[max(0, i - 1): i + 2]  # the treated vertebra and its neighbours
    prop = propagate_landmarks(src.density, slm, tgt.density, levels=levels,
                               scale_guess=src.spacing[0] / tgt.spacing[0])
    (pv,) = [v for v in prop.vertebrae if v.level == level]
    assert pv.ok, pv.reason
    want = _wedge_deg(tlm[level].points)
    got = _wedge_deg(pv.points)
    before = _wedge_deg(slm[level].points)
    if "preop" in (source, target):
        # the shape did change: copying the source's shape rigidly would be off
        assert abs(want - before) > 3.0, (want, before)
    assert got == pytest.approx(want, abs=1.0), (got, want, before, pv.notes)
    # the endplates were fitted by stage 3 and say from where
    assert {"As", "Ai", "Ps", "Pi"} & set(pv.refined) or pv.notes
    assert all(n.split(":")[0] in ("As/Ms/Ps", "Ai/Mi/Pi") for n in pv.notes), pv.notes
    # each point's confidence is at most the vertebra's
    assert all(c <= pv.confidence + 1e-9 for c in pv.point_confidence.values())


def test_a_fractured_vertebra_without_stage_3_keeps_its_source_shape():
    """Control: with the per-endplate stage switched off the proposal is the source's shape
    moved rigidly, so its wedge angle is the pre-op one (what stage 3 corrects above)."""
    from spine_measure.propose import ProposeOptions

    level, slm, tlm, prop = _sm001_treated_pair(ProposeOptions(refine_points=False))
    (pv,) = [v for v in prop.vertebrae if v.level == level]
    assert pv.ok and not pv.refined
    assert _wedge_deg(pv.points) == pytest.approx(_wedge_deg(slm[level].points), abs=0.5)
    assert abs(_wedge_deg(pv.points) - _wedge_deg(tlm[level].points)) > 3.0


def test_an_endplate_that_is_not_found_fails_the_vertebra_with_a_reason():
    """Stage 3 proposes no endplate it cannot find: with a match floor no real band reaches,
    the treated vertebra is not proposed (its reason names the endplate), the others are."""
    from spine_measure.propose import ProposeOptions

    level, _, _, prop = _sm001_treated_pair(ProposeOptions(min_endplate_confidence=0.99))
    failed = {v.level: v.reason for v in prop.failed()}
    assert set(failed) == {level}
    assert "endplate is not found" in failed[level] and "< 0.99" in failed[level]
    assert level not in prop.landmarks()
    with pytest.raises(ValueError, match="min_endplate_confidence"):
        ProposeOptions(min_endplate_confidence=1.0)
