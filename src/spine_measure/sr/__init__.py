"""DICOM SR export of a film's measurements and landmarks (TID 1500 Measurement Report).

I/O at the edge: :func:`write_film_sr` measures a DICOM film with its annotation (as
``spine-measure measure`` does) and writes a Comprehensive 3D SR with highdicom;
:func:`read_sr` reads it back into landmarks, calibration and values. Layout, codes,
units and round-trip precision: ``docs/sr_export.md``.
"""

from spine_measure.sr.export import SrExportError, SrWritten, build_sr, write_film_sr
from spine_measure.sr.read import FilmValue, SrContent, read_sr

__all__ = ["FilmValue", "SrContent", "SrExportError", "SrWritten", "build_sr", "read_sr",
           "write_film_sr"]
