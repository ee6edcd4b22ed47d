"""napari-spine-measure: the napari shell of spine_measure.

* reader: DICOM file / DICOM folder / plain image -> image layers in mm (``_reader``);
* the annotation dock widget (``_widget``) over a Qt-free controller (``controller``);
* writer of ``*.sm.json`` annotation files from a landmarks points layer (``_writer``);
* sample data: the synthetic study SM001 (``_sample_data``).
"""

from napari_spine_measure.controller import AnnotationController, SessionError

__version__ = "0.1.0"
__all__ = ["AnnotationController", "SessionError", "__version__"]
