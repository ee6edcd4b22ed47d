"""Exceptions and warnings of spine_measure.

Every error about a file is one line that names the file and the problem::

    RadiographError: /data/x.dcm: no Pixel Data (7FE0,0010) element
"""

from __future__ import annotations

import os


class SpineMeasureError(Exception):
    """Base class of every error spine_measure raises on purpose."""


class FileError(SpineMeasureError):
    """A problem with one file; ``str(err)`` is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        # One line, always: real-world exceptions sometimes carry newlines.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")


class RadiographError(FileError):
    """A file could not be opened as a radiograph (not an image, undecodable, unsupported)."""


class SpineMeasureWarning(UserWarning):
    """Base class of spine_measure's warnings."""


class CalibrationWarning(SpineMeasureWarning):
    """A spacing attribute was present but unusable (0, negative, NaN, absurd)."""


class ImageConversionWarning(SpineMeasureWarning):
    """An image was converted to be measurable (colour to grey, one frame of several)."""
