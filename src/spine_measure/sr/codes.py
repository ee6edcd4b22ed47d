"""Coded concepts of the spine_measure SR (``docs/sr_export.md`` lists them all).

Standard codes come from pydicom's code dictionary (``pydicom.sr.codedict.codes``), which
mirrors DICOM PS3.16; the only standard code that is not in it, the first sacral vertebra
(SCTID 65985001, "Structure of first sacral vertebra"), is cited in ``docs/sr_export.md``.
Every concept without a standard code uses the private coding scheme :data:`SCHEME`
(declared in the SR's Coding Scheme Identification Sequence). Code values are at most 16
characters (DICOM ``CodeValue`` is SH).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from spine_measure.landmarks import LEVELS

__all__ = [
    "CALIBRATION_METHOD",
    "CEMENT_CATEGORIES",
    "CEMENT_CONCEPTS",
    "FLAG_CONCEPTS",
    "LANDMARK_SET",
    "LANDMARK_SOURCE",
    "LANDMARK_SOURCES",
    "MEASUREMENT_CONCEPTS",
    "NO",
    "SCHEME",
    "SCHEME_NAME",
    "UNITS",
    "VALUE_CODES",
    "YES",
    "calibration_code",
    "landmark_order",
    "landmark_set_code",
    "private",
    "vertebra_code",
]

SCHEME = "99SPMEAS"
"""Coding Scheme Designator of the private spine_measure codes (``99`` = private, PS3.16 8.2)."""

SCHEME_NAME = "spine_measure measurement codes"


def private(value: str, meaning: str) -> CodedConcept:
    """A concept of the private scheme :data:`SCHEME` (value <= 16 characters)."""
    if not value or len(value) > 16:
        raise ValueError(f'private code value "{value}" must have 1 to 16 characters')
    return CodedConcept(value, SCHEME, meaning)


def _std(code: object) -> CodedConcept:
    return CodedConcept.from_code(code)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- anatomy

_S1 = CodedConcept("65985001", "SCT", "Structure of first sacral vertebra")

_VERTEBRAE: dict[str, CodedConcept] = {
    level: _S1 if level == "S1" else _std(getattr(codes.SCT, f"{level}Vertebra"))
    for level in LEVELS
}

SPINE = _std(codes.SCT.Spine)  # 421060004 "Spine"
SUPERIOR = _std(codes.SCT.Superior)  # 264217000
INFERIOR = _std(codes.SCT.Inferior)  # 261089000
YES = _std(codes.SCT.Yes)  # 373066001
NO = _std(codes.SCT.No)  # 373067005
PROCEDURE = _std(codes.SCT.PlainRadiography)  # 168537006 "Plain radiography"
VERTICAL_PIXEL_SPACING = _std(codes.DCM.VerticalPixelSpacing)  # 111066, row spacing
HORIZONTAL_PIXEL_SPACING = _std(codes.DCM.HorizontalPixelSpacing)  # 111026, column spacing
CALIBRATION_METHOD = _std(codes.DCM.CalibrationMethod)  # 122422


def vertebra_code(level: str) -> CodedConcept:
    """SNOMED CT code of a vertebra (finding site), e.g. ``L1`` -> (66794005, SCT)."""
    try:
        return _VERTEBRAE[level]
    except KeyError:
        raise ValueError(f'"{level}" is not a vertebral level (C2-C7, T1-T12, L1-L5, S1)') \
            from None


def level_of_code(value: str, scheme: str) -> str | None:
    """Inverse of :func:`vertebra_code` (None for any other code)."""
    for level, c in _VERTEBRAE.items():
        if c.value == value and c.scheme_designator == scheme:
            return level
    return None


# ------------------------------------------------------------------------- units (UCUM)

UNITS: Mapping[str, CodedConcept] = MappingProxyType({
    "mm": _std(codes.UCUM.Millimeter),
    "px": CodedConcept("{pixel}", "UCUM", "pixel"),
    "mm2": _std(codes.UCUM.SquareMillimeter),
    "px2": CodedConcept("{pixel^2}", "UCUM", "square pixel"),
    "deg": _std(codes.UCUM.Degree),
    "pct": _std(codes.UCUM.Percent),
    "count": CodedConcept("{count}", "UCUM", "count"),
    "1": _std(codes.UCUM.NoUnits),
})
"""spine_measure unit -> UCUM code. Pixels use the UCUM annotation ``{pixel}`` (a
dimensionless unit carrying its meaning), counts ``{count}``, pure ratios ``1``."""


# ------------------------------------------------------------------------- measurements

MEASUREMENT_CONCEPTS: Mapping[str, CodedConcept] = MappingProxyType({
    name: private(value, meaning) for name, value, meaning in (
        ("ha", "HA", "Anterior vertebral body height"),
        ("hm", "HM", "Middle vertebral body height"),
        ("hp", "HP", "Posterior vertebral body height"),
        ("wedge_angle", "WEDGE-ANGLE", "Vertebral wedge angle"),
        ("regional_kyphotic_angle", "RKA", "Regional kyphotic angle"),
        ("cobb_angle", "COBB-SAG", "Sagittal Cobb angle"),
        ("cr_anterior", "CR-ANT", "Anterior compression rate"),
        ("cr_middle", "CR-MID", "Middle compression rate"),
        ("cr_posterior", "CR-POST", "Posterior compression rate"),
        ("compression_pct", "COMPRESSION-PCT", "Vertebral compression percentage"),
        ("wedge_ratio", "WEDGE-RATIO", "Wedge ratio Ha/Hp"),
        ("biconcavity_ratio", "BICONCAVITY", "Biconcavity ratio Hm/Hp"),
        ("crush_ratio", "CRUSH-RATIO", "Crush ratio Hp/reference Hp"),
        ("genant_grade", "GENANT-GRADE", "Genant semiquantitative grade"),
        ("genant_shape", "GENANT-SHAPE", "Genant fracture shape"),
        ("coronal_cobb_angle", "COBB-COR", "Coronal Cobb angle"),
        ("coronal_cobb_angle_midline", "COBB-COR-MID", "Coronal Cobb angle (midline)"),
        ("degenerative_scoliosis", "DEG-SCOLIOSIS", "Degenerative scoliosis"),
    )
})
"""Registry name -> concept name of every single-film measurement (vertebra and film
scope; longitudinal measurements span several films and are not exported per film)."""

#: Values of categorical measurements (registry name -> value -> code).
VALUE_CODES: Mapping[str, Mapping[object, CodedConcept]] = MappingProxyType({
    "genant_grade": {g: private(f"GENANT-{g}", f"Genant grade {g}") for g in (0, 1, 2, 3)},
    "genant_shape": {s: private(f"SHAPE-{s.upper()}", f"Genant shape {s}")
                     for s in ("none", "wedge", "biconcave", "crush")},
})

FLAG_CONCEPTS: Mapping[str, CodedConcept] = MappingProxyType({
    "fractured": private("FRACTURED", "Vertebra flagged fractured"),
    "treated": private("TREATED", "Vertebra treated by augmentation"),
    "excluded": private("EXCLUDED", "Vertebra excluded as reference"),
})
"""Vertebra flags of the annotation, each a CODE item valued Yes/No (SCT)."""

LANDMARK_SOURCE = private("LANDMARK-SOURCE", "Source of the landmark points")
"""CODE item of a vertebra group whose points a reader did not place and confirm: its value
is one of :data:`LANDMARK_SOURCES` (absent = placed and confirmed by a reader)."""

LANDMARK_SOURCES: Mapping[str, CodedConcept] = MappingProxyType({
    "propagated": private("LM-SRC-PROP", "Propagated from another film, unconfirmed"),
    "refined": private("LM-SRC-REFINED", "Refined to the image edges, unconfirmed"),
    "mixed": private("LM-SRC-MIXED", "Mixed point sources, unconfirmed"),
    "reader": private("LM-SRC-READER", "Placed by a reader, unconfirmed"),
})
"""Landmark source of an unconfirmed vertebra (a proposal measured with
``--accept-proposed``; ``docs/propagation.md``)."""

REGION_NAMES: Mapping[str, CodedConcept] = MappingProxyType({
    "vertebra": private("VERTEBRA-LM", "Vertebral body landmarks"),
    "calibration": private("CALIB-LINE", "Reader calibration line"),
    "film": private("FILM", "Film-level measurements"),
    "cement": private("CEMENT", "Cement features"),
})
"""Finding (type) of each kind of measurement group."""

CALIBRATION_LINE_LENGTH = private("CALIB-LENGTH", "Calibration line length")
IMAGE_ROWS = private("IMAGE-ROWS", "Rows of the source image")
IMAGE_COLUMNS = private("IMAGE-COLUMNS", "Columns of the source image")

_CALIBRATION_SOURCES = ("reader", "pixel_spacing_calibrated", "imager_pixel_spacing_ermf",
                        "imager_pixel_spacing", "pixel_spacing", "uncalibrated")
_CAL_MEANINGS = {
    "reader": "Reader-drawn calibration line",
    "pixel_spacing_calibrated": "PixelSpacing with calibration type",
    "imager_pixel_spacing_ermf": "ImagerPixelSpacing / ERMF",
    "imager_pixel_spacing": "ImagerPixelSpacing at the detector",
    "pixel_spacing": "PixelSpacing",
    "uncalibrated": "Uncalibrated (pixels)",
}


def calibration_code(source: str) -> CodedConcept:
    """Private code of a calibration source (``docs/calibration.md``)."""
    if source not in _CAL_MEANINGS:
        raise ValueError(f'unknown calibration source "{source}"; expected one of '
                         f"{', '.join(_CALIBRATION_SOURCES)}")
    return private(f"CAL-{_CALIBRATION_SOURCES.index(source)}", _CAL_MEANINGS[source])


def calibration_source_of(value: str) -> str | None:
    """Inverse of :func:`calibration_code`."""
    for s in _CALIBRATION_SOURCES:
        if calibration_code(s).value == value:
            return s
    return None


# ------------------------------------------------------------------------- landmarks

LANDMARK_SET = private("LANDMARK-SET", "Landmark points of the region")
_ORDER = {"lateral": ("As", "Ms", "Ps", "Pi", "Mi", "Ai"), "ap": ("SL", "SR", "IR", "IL")}


def landmark_order(view: str, names: set[str] | frozenset[str]) -> tuple[str, ...]:
    """Order of the region's vertices: lateral ``As Ms Ps Pi Mi Ai``, AP ``SL SR IR IL``
    (the body outline, going round it), keeping only the points present."""
    return tuple(n for n in _ORDER[view] if n in names)


def landmark_set_code(view: str, names: set[str] | frozenset[str]) -> CodedConcept:
    """Code naming which points a region holds, e.g. ``LM-L-63`` (all six lateral points).

    The value is ``LM-L-`` (lateral) or ``LM-A-`` (AP) plus a bit mask over the canonical
    order (bit i set when point i of :func:`landmark_order` is present); the meaning lists
    the points.
    """
    order = _ORDER[view]
    mask = sum(1 << i for i, n in enumerate(order) if n in names)
    return private(f"LM-{view[0].upper()}-{mask}", "Points " + " ".join(landmark_order(view,
                                                                                       names)))


def landmark_names_of(value: str) -> tuple[str, str, tuple[str, ...]] | None:
    """Inverse of :func:`landmark_set_code`: ``(view, value, ordered names)`` or None."""
    parts = value.split("-")
    if len(parts) != 3 or parts[0] != "LM" or parts[1] not in ("L", "A") \
            or not parts[2].isdigit():
        return None
    view = "lateral" if parts[1] == "L" else "ap"
    mask = int(parts[2])
    order = _ORDER[view]
    if mask >= 1 << len(order):
        return None
    return view, value, tuple(n for i, n in enumerate(order) if mask & (1 << i))


# ------------------------------------------------------------------------- cement

#: Cement column (unit suffix removed) -> (concept, kind); kind: NUM units "len", "area",
#: "pct", "count", "1"; "flag" (Yes/No); "category"; "locations" (repeated CODE).
CEMENT_CONCEPTS: Mapping[str, tuple[CodedConcept, str]] = MappingProxyType({
    name: (private(value, meaning), kind) for name, value, meaning, kind in (
        ("cement_found", "CEM-FOUND", "Cement found", "flag"),
        ("cement_mask_source", "CEM-MASK-SOURCE", "Cement mask source", "category"),
        ("cement_contact_tolerance", "CEM-TOLERANCE", "Cement contact tolerance", "len"),
        ("cement_contacts_superior", "CEM-CONTACT-SUP", "Cement contacts superior endplate",
         "flag"),
        ("cement_contacts_inferior", "CEM-CONTACT-INF", "Cement contacts inferior endplate",
         "flag"),
        ("cement_contacts_both", "CEM-CONTACT-BOTH", "Cement contacts both endplates", "flag"),
        ("npec", "NPEC", "Non-endplate-contact pattern", "category"),
        ("cement_gap_superior", "CEM-GAP-SUP", "Cement gap to superior endplate", "len"),
        ("cement_gap_inferior", "CEM-GAP-INF", "Cement gap to inferior endplate", "len"),
        ("cement_gap_superior_pct", "CEM-GAP-SUP-PCT", "Superior cement gap / body height",
         "pct"),
        ("cement_gap_inferior_pct", "CEM-GAP-INF-PCT", "Inferior cement gap / body height",
         "pct"),
        ("cement_fill_pct", "CEM-FILL-PCT", "Cement fill of the vertebral body", "pct"),
        ("cement_area", "CEM-AREA", "Cement area", "area"),
        ("cement_distribution", "CEM-DISTRIB", "Cement distribution", "category"),
        ("cement_leak", "CEM-LEAK", "Cement leakage", "flag"),
        ("cement_leak_count", "CEM-LEAK-COUNT", "Number of cement leaks", "count"),
        ("cement_solidity", "CEM-SOLIDITY", "Cement solidity", "1"),
        ("cement_roughness", "CEM-ROUGHNESS", "Cement border roughness", "1"),
        ("cement_components", "CEM-COMPONENTS", "Cement connected components", "count"),
        ("cement_hole_fraction", "CEM-HOLES", "Cement hole fraction", "1"),
        ("cement_texture_cv", "CEM-TEXTURE-CV", "Cement texture coefficient of variation",
         "1"),
        ("cement_left_fraction", "CEM-LEFT-FRAC", "Cement share left of midline", "1"),
        ("cement_midline_ratio", "CEM-MIDLINE", "Cement midline ratio", "1"),
        ("cement_major_components", "CEM-MAJOR-COMP", "Major cement components", "count"),
        ("leak_locations", "LEAK-LOCATION", "Cement leak location", "locations"),
        ("leak_intradiscal_spike", "LEAK-SPIKE", "Intradiscal leak of spike type", "flag"),
        ("leak_intradiscal_round", "LEAK-ROUND", "Intradiscal leak of round type", "flag"),
        ("leak_touches_adjacent_endplate", "LEAK-ADJ-EP",
         "Leak touches adjacent endplate", "flag"),
    )
})

#: Values of the categorical cement columns.
CEMENT_CATEGORIES: Mapping[str, Mapping[str, CodedConcept]] = MappingProxyType({
    "cement_mask_source": {"auto": private("MASK-AUTO", "Automatic segmentation"),
                           "edited": private("MASK-EDITED", "Reader-edited mask")},
    "npec": {v: private(f"NPEC-{v.upper()}", f"NPEC {v}")
             for v in ("none", "superior", "inferior", "both")},
    "cement_distribution": {v: private(f"DIST-{v.upper()}", f"Cement distribution {v}")
                            for v in ("spongy", "blocky", "H", "O")},
    "leak_locations": {v: private(f"LEAK-{c}", f"Leak {v.replace('_', ' ')}") for v, c in (
        ("superior_disc", "SUP-DISC"), ("inferior_disc", "INF-DISC"),
        ("anterior", "ANTERIOR"), ("posterior", "POSTERIOR"), ("lateral", "LATERAL"))},
})


def all_private_codes() -> list[CodedConcept]:
    """Every private concept (for the docs table and the uniqueness test)."""
    out: list[CodedConcept] = [*MEASUREMENT_CONCEPTS.values(), *FLAG_CONCEPTS.values(),
                               *REGION_NAMES.values(), CALIBRATION_LINE_LENGTH, IMAGE_ROWS,
                               IMAGE_COLUMNS, LANDMARK_SET, LANDMARK_SOURCE,
                               *LANDMARK_SOURCES.values()]
    for values in VALUE_CODES.values():
        out.extend(values.values())
    out.extend(calibration_code(s) for s in _CALIBRATION_SOURCES)
    out.extend(c for c, _ in CEMENT_CONCEPTS.values())
    for cats in CEMENT_CATEGORIES.values():
        out.extend(cats.values())
    return out
