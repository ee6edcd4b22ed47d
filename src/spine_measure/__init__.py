"""spine_measure: research-grade measurements of spine radiographs.

The package is layered (see ``docs/architecture.md``):

* pure core (landmarks, geometry, measurements, cement features, risk models): numpy and
  scientific libraries only, no file formats, no GUI;
* I/O at the edge (:mod:`spine_measure.io`): DICOM and plain images, annotation files, CSV;
* thin shells: the ``spine-measure`` command line (:mod:`spine_measure.cli`) and the napari
  plugin (``plugins/napari``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spine-measure")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
