"""docs/reliability.md shows real output: its example rows are what the code produces now."""

from __future__ import annotations

from pathlib import Path

import pytest

from spine_measure.reliability import run_reliability, simulate_readers

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
SAMPLES = ROOT / "sample_dicoms"


def test_doc_names_every_statistic_and_the_figure():
    md = DOC.read_text(encoding="utf-8")
    for needle in ("ICC(2,1)", "ICC(3,1)", "MS_E", "Bland", "SEM_consistency = SD_diff / √2",
                   "cluster bootstrap", "at least 20 patients", "clipped to [−1, 1]",
                   "MDC95 = 1.96 · √2 · SEM", "kappa", "Xiong 2021", "7–9 deg",
                   "thresholds_vs_mdc.csv", "figures/reliability_bland_altman.png"):
        assert needle in md, needle
    assert (ROOT / "docs" / "figures" / "reliability_bland_altman.png").stat().st_size > 10_000


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample_dicoms not present")
def test_doc_example_rows_match_a_fresh_run(tmp_path):
    sim = simulate_readers(SAMPLES, tmp_path / "sim", sd_px=2.0)
    run = run_reliability(sim.dir_a, sim.dir_b, tmp_path / "rel", images=SAMPLES, plots=False)
    summary = (tmp_path / "rel" / "summary.md").read_text(encoding="utf-8")
    md = DOC.read_text(encoding="utf-8")
    for prefix in ("| ha_mm |", "| wedge_angle_deg |", "| regional_kyphotic_angle_deg |",
                   "| cr_anterior_pct |", "| kyphosis_progression_deg |",
                   "| coronal_cobb_angle_deg |", "| genant_grade |", "| adjacent_fracture |",
                   "| recompression | 7 |", "| refracture | compression_rate_increase"):
        line = next(x for x in summary.splitlines() if x.startswith(prefix))
        assert line in md, line
    assert "7 complete series" in run.longitudinal_status
    for change, mdc in (("kyphosis_progression", "5.05"), ("height_loss_pct", "8.31"),
                        ("compression_rate_increase", "9.86")):
        row = run.thresholds.set_index("change_measure").loc[change]
        assert f"{row['mdc95']:.2f}" == mdc
        assert row["verdict"] == "threshold exceeds MDC"
