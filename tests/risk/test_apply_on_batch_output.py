"""`risk apply --model li2021` on the real batch output of the bundled sample studies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from spine_measure.batch import BatchOptions
from spine_measure.batch.runner import run_batch
from spine_measure.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "sample_dicoms"


def test_li2021_probability_of_every_synthetic_patient(tmp_path):
    run_batch(BatchOptions(input_dir=SAMPLES, out_dir=tmp_path / "out",
                           clinical=SAMPLES / "clinical.csv", pseudonym_key="k",
                           include_identifiers=True, overlays=False))
    assert main(["risk", "apply", str(tmp_path / "out" / "features_wide.csv"),
                 "--model", "li2021", "-o", str(tmp_path / "li.csv")]) == 0
    got = pd.read_csv(tmp_path / "li.csv")
    wide = pd.read_csv(tmp_path / "out" / "features_wide.csv")
    assert len(got) == len(wide) == 7
    for i, pid in enumerate(wide["patient_id"]):
        pre = json.loads((SAMPLES / pid / f"{pid}_preop.truth.json").read_text())
        post = json.loads((SAMPLES / pid / f"{pid}_postop.truth.json").read_text())
        f = pre["findings"]
        g = f["goutallier_grade"]
        # Li 2021 Table 4 (B of blocky taken as +0.800, SPEC §5), written out:
        lp = (-3.361 + 1.332 * f["ivc"] + 1.337 * f["posterior_fascia_oedema"]
              + 1.758 * (g == 2) + 2.622 * (g >= 3)
              + 0.800 * (post["cement"]["distribution"] == "blocky"))
        assert math.isclose(got["li2021_lp"][i], lp, abs_tol=1e-9), pid
        assert math.isclose(got["li2021_probability"][i], 1 / (1 + math.exp(-lp)),
                            rel_tol=1e-9), pid
