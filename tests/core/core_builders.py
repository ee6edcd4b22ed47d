"""Builders for hand-made landmark sets (imported by name; see tests/core/conftest.py)."""

from __future__ import annotations

from spine_measure.landmarks import Vertebra


def lat(level: str, ps, as_, pi=None, ai=None, ms=None, mi=None, **flags) -> Vertebra:
    """A lateral vertebra from its (row, col) corners."""
    pts = {"As": as_, "Ps": ps}
    if pi is not None:
        pts.update(Pi=pi, Ai=ai)
    if ms is not None:
        pts.update(Ms=ms, Mi=mi)
    return Vertebra(level, "lateral", pts, **flags)
