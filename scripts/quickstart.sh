#!/usr/bin/env bash
# Set everything up and run the main job: batch-measure the bundled sample studies.
# Outputs go to spine_measure_output/ (feature CSVs, data dictionary, errors, overlays).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=spine_measure_output
.venv/bin/spine-measure batch sample_dicoms --out "$out" \
  --clinical sample_dicoms/clinical.csv --jobs 2 --restart --no-progress \
  --pseudonym-key "quickstart-demo-key"
echo
echo "Feature table (one row per patient x treated level): $out/features_wide.csv"
echo "Per film x vertebra: $out/measurements_long.csv   columns explained: $out/data_dictionary.csv"
echo "Review overlays: $out/overlays/   problems: $out/errors.csv"
echo
.venv/bin/python - "$out" <<'PY'
import sys
import pandas as pd

df = pd.read_csv(f"{sys.argv[1]}/features_wide.csv")
cols = ["patient_pseudo_id", "level", "cr_anterior_pct_preop", "cr_anterior_pct_postop",
        "avhr_recovery_pct", "height_loss_pct", "kyphosis_progression_deg", "npec_postop",
        "cement_distribution_postop", "recompression"]
with pd.option_context("display.width", 200, "display.precision", 1):
    print(df[[c for c in cols if c in df.columns]].to_string(index=False))
PY
