"""``batch --sr``: one valid, pseudonymised DICOM SR per film, holding the batch's values."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import pandas as pd
import pydicom
import pytest
from batch_helpers import copy_sample

from spine_measure.batch import BatchOptions, pseudonym, run_batch
from spine_measure.sr import read_sr


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    src = copy_sample(tmp_path_factory.mktemp("in"))
    out = tmp_path_factory.mktemp("out")
    summary = run_batch(BatchOptions(str(src), str(out), clinical=str(src / "clinical.csv"),
                                     pseudonym_key="test-key", sr=True, overlays=False,
                                     jobs=2))
    return src, out, summary


def test_one_sr_per_film_referencing_it_and_pseudonymised(sr_run):
    src, out, summary = sr_run
    assert summary.n_failed == 0
    srs = sorted((out / "sr").rglob("*.sr.dcm"))
    films = sorted(src.rglob("*.dcm"))
    assert len(srs) == len(films) == 22
    by_uid = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in films}
    for p in srs:
        ds = pydicom.dcmread(p)
        ref = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        source = pydicom.dcmread(by_uid[ref], stop_before_pixels=True)
        pseudo = pseudonym(str(source.PatientID), b"test-key")
        assert p.parent.name == pseudo
        assert str(ds.PatientID) == pseudo and str(ds.PatientName) == pseudo
        assert str(source.PatientID) not in p.read_bytes().decode("latin-1")
        assert not ds.get("PatientBirthDate")


def test_batch_srs_pass_dciodvfy(sr_run):
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("SPINE_MEASURE_REQUIRE_TOOLS") == "1":
            pytest.fail("dciodvfy is required (SPINE_MEASURE_REQUIRE_TOOLS=1) but not installed")
        pytest.skip("dciodvfy not installed (Debian dicom3tools)")
    for p in sorted((sr_run[1] / "sr").rglob("*.sr.dcm")):
        res = subprocess.run([tool, str(p)], capture_output=True, text=True, timeout=60)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert errors == [], f"{p.name}: {errors}"


def test_sr_values_equal_the_feature_table(sr_run):
    """The treated vertebra's heights and cement NPEC in each SR equal features_wide.csv."""
    _src, out, _ = sr_run
    wide = pd.read_csv(out / "features_wide.csv", dtype=str, keep_default_na=False)
    checked = 0
    for _, row in wide.iterrows():
        for tp in ("preop", "postop", "followup"):
            uid = row[f"sop_instance_uid_{tp}"]
            path = out / "sr" / row["patient_pseudo_id"] / f"{uid}.sr.dcm"
            content = read_sr(path)
            level = row["level"]
            unit = "mm" if row[f"ha_mm_{tp}"] else "px"
            got = content.vertebrae[level]["ha"]   # a float
            assert math.isclose(got, float(row[f"ha_{unit}_{tp}"]), rel_tol=1e-12)
            if tp != "preop" and row[f"npec_{tp}"]:
                assert content.cement[level]["npec"] == row[f"npec_{tp}"]
            checked += 1
    assert checked == 21
