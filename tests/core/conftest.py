"""Hand-built landmark sets for the core tests (all coordinates written out)."""

from __future__ import annotations

import pytest
from core_builders import lat

from spine_measure.landmarks import SpineLandmarks


@pytest.fixture
def wedge_spine() -> SpineLandmarks:
    """T12 - L1 - L2, facing +col (anterior at col 30), cranial = smaller row, 1 px = 1 mm.

    T12: a 30 x 25 box: ha = hp = hm = 25.
    L1 (fractured): As dropped 10 rows: ha = |(40,30)-(55,30)| = 15, hp = 25,
    hm = |(35,15)-(55,15)| = 20.
    L2: inferior endplate rising 3 rows anteriorly: ha = |(60,30)-(84,30)| = 24, hp = 27, hm = 25.5.
    """
    return SpineLandmarks("lateral", (
        lat("T12", (0, 0), (0, 30), (25, 0), (25, 30), (0, 15), (25, 15)),
        lat("L1", (30, 0), (40, 30), (55, 0), (55, 30), (35, 15), (55, 15), fractured=True),
        lat("L2", (60, 0), (60, 30), (87, 0), (84, 30), (60, 15), (85.5, 15)),
    ))
