"""Batch measurement of a folder of DICOM films (``spine-measure batch``; ``docs/batch.md``).

* :mod:`.plan`: header scan, annotation lookup, duplicate UIDs -> one task per film;
* :mod:`.worker`: one film in a worker process (annotation, measurements, cement, overlay);
* :mod:`.journal`: atomic per-film journal that makes a run resumable;
* :mod:`.timepoints`: docs/batch.md time points; :mod:`.clinical`: the clinical table;
* :mod:`.tables`: deterministic assembly of the CSVs; :mod:`.runner`: :func:`run_batch`.
"""

from spine_measure.batch.journal import JournalMismatchError
from spine_measure.batch.pseudonym import KEY_ENV, pseudonym
from spine_measure.batch.runner import OUTPUT_FILES, BatchOptions, BatchSummary, run_batch
from spine_measure.batch.timepoints import FilmDate, assign_time_points

__all__ = [
    "KEY_ENV",
    "OUTPUT_FILES",
    "BatchOptions",
    "BatchSummary",
    "FilmDate",
    "JournalMismatchError",
    "assign_time_points",
    "pseudonym",
    "run_batch",
]
