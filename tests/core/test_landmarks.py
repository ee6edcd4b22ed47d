"""The landmark model: validation, ordering, neighbours, transforms, dict round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spine_measure.errors import SpineMeasureError
from spine_measure.landmarks import (
    AP_POINTS,
    LATERAL_POINTS,
    LEVELS,
    LandmarkError,
    SpineLandmarks,
    Vertebra,
    required_points,
)

BOX = {"As": (10, 40), "Ai": (30, 40), "Ps": (10, 10), "Pi": (30, 10)}


def test_levels_and_points_constants():
    assert LEVELS[0] == "C2" and LEVELS[-1] == "S1" and len(LEVELS) == 6 + 12 + 5 + 1
    assert LEVELS.index("T12") + 1 == LEVELS.index("L1")
    assert LATERAL_POINTS == ("As", "Ai", "Ms", "Mi", "Ps", "Pi")
    assert AP_POINTS == ("SL", "SR", "IL", "IR")
    assert required_points("S1", "lateral") == ("As", "Ps")
    assert required_points("L1", "ap") == AP_POINTS


def test_vertebra_stores_immutable_float_points():
    v = Vertebra("L1", "lateral", {"Ai": [30, 40], "As": (10, 40), "Ps": (10, 10), "Pi": (30, 10)})
    assert list(v.points) == ["As", "Ai", "Ps", "Pi"]  # canonical order
    assert v.points["Ai"] == (30.0, 40.0) and isinstance(v.points["Ai"][0], float)
    with pytest.raises(TypeError):
        v.points["As"] = (0, 0)  # type: ignore[index]
    assert v.point("Ai").tolist() == [30.0, 40.0]
    assert v.has("Ps") and not v.has("Ms")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "l1"}, 'level "l1" is not a vertebral level (C2-C7, T1-T12, L1-L5, S1); '
                          'did you mean "L1"?'),
        ({"level": "L6"}, 'level "L6" is not a vertebral level'),
        ({"points": {**BOX, "Ass": (1, 2)}}, 'L1: point "Ass" is not a lateral landmark; '
                                              'did you mean "As"?'),
        ({"points": {**BOX, "SL": (1, 2)}}, 'L1: point "SL" is not a lateral landmark'),
        ({"points": {**BOX, "As": (float("nan"), 3.0)}},
         'L1: point "As" must be two finite numbers (row, col); got (nan, 3.0)'),
        ({"points": {**BOX, "As": (1, 2, 3)}}, 'L1: point "As" must be two finite numbers'),
        ({"points": {**BOX, "As": "ab"}}, 'L1: point "As" must be two finite numbers'),
        ({"points": {"As": (1, 2), "Ps": (1, 0)}}, "L1: missing required point(s) Ai, Pi"),
        ({"view": "lat"}, 'L1: view "lat" must be "lateral" or "ap"; did you mean "lateral"?'),
        ({"fractured": "yes"}, 'L1: flag "fractured" must be true or false'),
    ],
)
def test_vertebra_validation_names_vertebra_and_point(kwargs, message):
    args = {"level": "L1", "view": "lateral", "points": dict(BOX), **kwargs}
    with pytest.raises(LandmarkError) as err:
        Vertebra(**args)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, SpineMeasureError) and isinstance(err.value, ValueError)


def test_s1_has_only_superior_endplate_and_ap_needs_four_points():
    s1 = Vertebra("S1", "lateral", {"As": (0, 30), "Ps": (0, 0)})
    assert s1.has("As") and not s1.has("Ai")
    with pytest.raises(LandmarkError, match=r'S1: point "Ai" is not a lateral landmark \(S1 has'):
        Vertebra("S1", "lateral", {"As": (0, 30), "Ps": (0, 0), "Ai": (9, 9)})
    with pytest.raises(LandmarkError, match="L1: missing required point"):
        Vertebra("L1", "ap", {"SL": (0, 0), "SR": (0, 1), "IL": (1, 0)})
    with pytest.raises(LandmarkError,
                       match='L1: point "Sl" is not an AP landmark; did you mean "SL"'):
        Vertebra("L1", "ap", {"Sl": (0, 0), "SR": (0, 1), "IL": (1, 0), "IR": (1, 1)})


def test_point_lookup_errors():
    v = Vertebra("L1", "lateral", BOX)
    with pytest.raises(LandmarkError, match='L1: point "Ms" was not annotated'):
        v.point("Ms")
    with pytest.raises(LandmarkError, match='did you mean "Pi"'):
        v.point("pi")


def _v(level, top, **flags):
    return Vertebra(level, "lateral", {"As": (top, 30), "Ai": (top + 20, 30), "Ps": (top, 0),
                                       "Pi": (top + 20, 0)}, **flags)


def test_spine_sorted_cranial_to_caudal_and_lookup():
    spine = SpineLandmarks("lateral", (_v("L2", 60), _v("T12", 0), _v("L1", 30)))
    assert spine.levels() == ("T12", "L1", "L2")
    assert len(spine) == 3 and [v.level for v in spine] == ["T12", "L1", "L2"]
    assert "L1" in spine and "L3" not in spine
    assert spine["L1"].point("As").tolist() == [30.0, 30.0]
    with pytest.raises(LandmarkError, match=r"L3: level not annotated on this film \(annotated: "
                                            r"T12, L1, L2\)"):
        spine["L3"]
    with pytest.raises(LandmarkError, match='did you mean "L1"'):
        spine["l1"]


def test_spine_rejects_duplicates_and_mixed_views():
    with pytest.raises(LandmarkError, match="L1: level annotated twice"):
        SpineLandmarks("lateral", (_v("L1", 0), _v("L1", 30)))
    ap = Vertebra("L2", "ap", {"SL": (0, 0), "SR": (0, 1), "IL": (1, 0), "IR": (1, 1)})
    with pytest.raises(LandmarkError, match="L2: vertebra is ap but the film is lateral"):
        SpineLandmarks("lateral", (_v("L1", 0), ap))


def test_neighbours_are_adjacent_annotated_levels_only():
    spine = SpineLandmarks("lateral", (_v("T11", 0), _v("L1", 30), _v("L2", 60)))
    above, below = spine.neighbours("L1")
    assert above is None  # T12 not annotated: T11 is not "adjacent"
    assert below is not None and below.level == "L2"
    assert spine.neighbours("L2") == (spine["L1"], None)


def test_transformed_and_replace():
    spine = SpineLandmarks("lateral", (_v("L1", 0, treated=True), _v("L2", 30)))
    moved = spine.transformed(lambda p: p + np.array([5.0, -2.0]))
    assert moved["L1"].point("As").tolist() == [5.0, 28.0]
    assert moved["L1"].treated and moved.levels() == spine.levels()
    new = spine.replace("L2", _v("L2", 40, fractured=True))
    assert new["L2"].fractured and new["L2"].point("As")[0] == 40.0
    with pytest.raises(LandmarkError, match="L2: replacement vertebra has level L1"):
        spine.replace("L2", _v("L1", 0))


def test_dict_round_trip_is_exact_and_json_ready():
    spine = SpineLandmarks("lateral", (
        Vertebra("L1", "lateral", {**BOX, "Ms": (11.125, 25.5), "Mi": (29.75, 25.0)},
                 fractured=True, treated=True),
        Vertebra("S1", "lateral", {"As": (80.1, 41.3), "Ps": (75.7, 8.9)}, excluded=True),
    ))
    data = json.loads(json.dumps(spine.to_dict()))
    assert data["view"] == "lateral"
    assert data["vertebrae"][0] == {"level": "L1", "fractured": True, "treated": True,
                                    "excluded": False,
                                    "points": {"As": [10.0, 40.0], "Ai": [30.0, 40.0],
                                               "Ms": [11.125, 25.5], "Mi": [29.75, 25.0],
                                               "Ps": [10.0, 10.0], "Pi": [30.0, 10.0]}}
    assert SpineLandmarks.from_dict(data) == spine


def test_from_dict_errors():
    with pytest.raises(LandmarkError, match='landmarks have no "view"'):
        SpineLandmarks.from_dict({"vertebrae": []})
    with pytest.raises(LandmarkError, match='L1: unknown vertebra field "fractred"; did you mean '
                                            '"fractured"'):
        SpineLandmarks.from_dict({"view": "lateral", "vertebrae": [
            {"level": "L1", "fractred": True, "points": BOX}]})
    with pytest.raises(LandmarkError, match='L1: vertebra entry has no "points"'):
        SpineLandmarks.from_dict({"view": "lateral", "vertebrae": [{"level": "L1"}]})
