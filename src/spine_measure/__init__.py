"""spine_measure: research-grade measurements of spine radiographs.

The package is layered (see ``docs/architecture.md``):

* pure core (landmarks, geometry, measurements, cement features, risk models): numpy and
  scientific libraries only, no file formats, no GUI;
* I/O at the edge (:mod:`spine_measure.io`): DICOM and plain images, annotation files, CSV;
* thin shells: the ``spine-measure`` command line (:mod:`spine_measure.cli`) and the napari
  plugin (``plugins/napari``).
"""

# The one place the version is written (pyproject.toml reads it from here); a literal, not
# importlib.metadata, which costs ~0.1 s at every start of the command line.
__version__ = "0.1.0"

__all__ = ["__version__"]
