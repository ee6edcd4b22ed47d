"""The registry documents itself; the committed docs are regenerated from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from spine_measure.measurements import REGISTRY
from spine_measure.measurements.docs_gen import data_dictionary_csv, measurements_markdown
from spine_measure.measurements.registry import FAMILIES, MeasurementDef, PaperTerm, register

DOCS = Path(__file__).resolve().parents[2] / "docs"

SPEC_NAMES = {  # the single-film and longitudinal measurements: every one must be registered
    "ha", "hm", "hp", "wedge_angle", "regional_kyphotic_angle", "cobb_angle", "cr_anterior",
    "cr_middle", "cr_posterior", "compression_pct", "wedge_ratio", "biconcavity_ratio",
    "crush_ratio", "genant_grade", "genant_shape", "coronal_cobb_angle",
    "coronal_cobb_angle_midline", "degenerative_scoliosis", "avh_change", "avhr_recovery",
    "reduction_rate", "compression_rate_increase", "height_loss_pct", "reduction_angle",
    "wedge_angle_change", "kyphosis_progression", "recompression", "refracture",
    "adjacent_fracture", "remote_fracture",
}


def test_every_spec_measurement_is_registered_with_every_field():
    assert SPEC_NAMES <= set(REGISTRY)
    for name, d in REGISTRY.items():
        assert d.name == name
        assert d.missing_fields() == [], name


def test_an_entry_lacking_a_field_is_refused():
    with pytest.raises(ValueError, match='measurement "x" lacks definition, paper_terms'):
        register(name="x", family="heights", scope="vertebra", view="lateral", kind="length",
                 required_landmarks="As", definition=" ", formula="f", paper_terms=())(len)
    with pytest.raises(ValueError, match='paper "Smith 2020" is not one of'):
        PaperTerm("t", "Smith 2020")
    d = MeasurementDef("y", "nope", "vertebra", "lateral", "grade", "As", "d", "f",
                       (PaperTerm("t", "Li 2021"),), "unsigned", len)
    assert d.missing_fields() == ["family (unknown)", "values"]
    assert "x" not in REGISTRY and "y" not in REGISTRY


def test_data_dictionary_has_a_row_per_column():
    rows = list(csv.DictReader(io.StringIO(data_dictionary_csv())))
    cols = {r["column"]: r for r in rows}
    assert {"ha_mm", "ha_px", "wedge_angle_deg", "cr_anterior_pct", "height_loss_pct",
            "genant_grade", "genant_shape", "recompression"} <= set(cols)
    assert cols["ha_px"]["unit"] == "px (uncalibrated film)"
    assert cols["cr_anterior_pct"]["paper_term"].startswith("CR, compression rate")
    assert "Xiong 2021" in cols["cr_anterior_pct"]["source"]
    for r in rows:
        assert all(r[k].strip() for k in ("name", "column", "unit", "family", "required_landmarks",
                                          "definition", "paper_term", "source")), r["column"]
    # one spelling per unit; differences of percentages are percentage points
    units = {r["unit"] for r in rows}
    assert "percent" not in units and "%" in units
    assert cols["avhr_recovery_pct"]["unit"] == "percentage points"
    assert cols["height_loss_pct"]["unit"] == "%"
    # columns equal by formula say so, both ways
    assert cols["crush_ratio_pct"]["same_as"].startswith("cr_posterior_pct")
    assert cols["cr_posterior_pct"]["same_as"].startswith("crush_ratio_pct")
    assert cols["avhr_recovery_pct"]["same_as"].startswith("reduction_rate_pct")
    assert cols["reduction_rate_pct"]["same_as"].startswith("avhr_recovery_pct")


def test_committed_docs_are_up_to_date():
    stale = "stale: run `python -m spine_measure.measurements.docs_gen`"
    from spine_measure.batch.tables import docs_dictionary_csv

    assert (DOCS / "data_dictionary.csv").read_text(encoding="utf-8") == docs_dictionary_csv(), \
        stale
    md = (DOCS / "measurements.md").read_text(encoding="utf-8")
    assert md == measurements_markdown(), stale
    for fam in FAMILIES:
        assert f"figures/measurements_{fam}.png" in md
        assert (DOCS / "figures" / f"measurements_{fam}.png").stat().st_size > 10_000, fam
