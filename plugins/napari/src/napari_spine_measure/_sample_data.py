"""Sample-data contribution: the synthetic study SM001 (pre-op, post-op, follow-up).

The films are the committed ``sample_dicoms/SM001`` of the spine_measure repository when the
package runs from a checkout (or ``$SPINE_MEASURE_SAMPLE_DIR`` points at such a folder);
otherwise they are rendered once, deterministically, by ``spine_measure.synthetic`` into the
user cache folder (same seed, same pixels and ground truth).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["sample_folder", "sample_study"]

SAMPLE_PATIENT = "SM001"


def sample_folder(patient: str = SAMPLE_PATIENT) -> Path:
    """Folder holding the sample films of ``patient`` (rendered on first use if needed)."""
    env = os.environ.get("SPINE_MEASURE_SAMPLE_DIR")
    candidates = [Path(env)] if env else []
    import spine_measure

    candidates.append(Path(spine_measure.__file__).resolve().parents[2] / "sample_dicoms")
    for root in candidates:
        if (root / patient).is_dir() and any((root / patient).glob("*.dcm")):
            return root / patient
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
        "spine_measure" / "sample_dicoms"
    if not (cache / patient).is_dir():
        from spine_measure.synthetic import generate_sample_set

        generate_sample_set(cache, patients=[patient], write_tables=False)
    return cache / patient


def sample_study() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample-data hook: the films of SM001 as image layers (first one visible)."""
    from napari_spine_measure._reader import read_paths

    return read_paths(str(sample_folder()))
