"""Proposals of landmarks: carry a film's landmarks to the patient's other films, refine
clicks on the image (``docs/propagation.md``).

Not part of the pure core: :mod:`~spine_measure.propose.register` uses SimpleITK. Proposals
are never readings: the annotation file marks each point's source and each vertebra's
confirmation (``docs/annotation_format.md``).

The package exports the public names of :mod:`~spine_measure.propose.register` (its
``__all__``, the one list of them: ``propagate_landmarks``, ``global_align``,
``ProposeOptions``...), imported on first use so that importing the package, or its other
modules (``files``, ``flags``, ``refine``, ``review``), does not load SimpleITK.
"""

from __future__ import annotations

from typing import Any

_SUBMODULES = frozenset({"files", "flags", "refine", "register", "review"})


def __getattr__(name: str) -> Any:
    if name != "__all__" and (name.startswith("_") or name in _SUBMODULES):
        raise AttributeError(f"module 'spine_measure.propose' has no attribute {name!r}")
    from spine_measure.propose import register  # SimpleITK: only when registration is used

    if name == "__all__":
        return list(register.__all__)
    if name in register.__all__:
        return getattr(register, name)
    raise AttributeError(f"module 'spine_measure.propose' has no attribute {name!r}")
