"""Proposals of landmarks: carry a film's landmarks to the patient's other films, refine
clicks on the image (``docs/propagation.md``).

Not part of the pure core: :mod:`~spine_measure.propose.register` uses SimpleITK. Proposals
are never readings: the annotation file marks each point's source and each vertebra's
confirmation (``docs/annotation_format.md``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GlobalFit",
    "ProposeOptions",
    "Propagation",
    "VertebraProposal",
    "global_align",
    "normalise_film",
    "propagate_landmarks",
]


def __getattr__(name: str) -> Any:  # SimpleITK is imported only when registration is used
    if name in __all__:
        from spine_measure.propose import register

        return getattr(register, name)
    raise AttributeError(f"module 'spine_measure.propose' has no attribute {name!r}")
