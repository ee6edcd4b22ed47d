"""Films holding unconfirmed proposals for the review tests: SM001's pre-op landmarks
propagated to its post-op film by :func:`spine_measure.propose.files.propose_annotation`
(the same call as ``spine-measure propagate``), computed once per test session and written
as the post-op film's annotation in each test's own folder (imported by name)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from napari_samples import SAMPLES, copy_film

from spine_measure.io.annotation import Annotation, load_annotation, save_annotation
from spine_measure.io.radiograph import load_radiograph


@functools.cache
def proposed_postop() -> tuple[Annotation, tuple[dict, ...]]:
    """(the post-op film's annotation with the proposals, the per-vertebra rows)."""
    from spine_measure.propose.files import propose_annotation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = load_radiograph(SAMPLES / "SM001" / "SM001_preop.dcm")
        target = load_radiograph(SAMPLES / "SM001" / "SM001_postop.dcm")
    src_ann = load_annotation(SAMPLES / "SM001" / "SM001_preop.sm.json")
    result = propose_annotation(source, src_ann, target)
    return result.annotation, result.rows


def film_with_proposals(tmp_path: Path) -> Path:
    """SM001_postop.dcm in ``tmp_path/SM001`` with the proposals as its sidecar annotation."""
    film = copy_film(tmp_path, "SM001", "SM001_postop")
    ann, _ = proposed_postop()
    save_annotation(ann, film.with_suffix(".sm.json"))
    return film
