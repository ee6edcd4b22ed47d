#!/usr/bin/env bash
# Regenerate docs/figures/reliability_bland_altman.png: the Bland-Altman plots of the
# docs/reliability.md example (two readers simulated from the sample annotations, 2 px noise,
# fixed seed). Run from the repository root:
#     scripts/reliability_figure.sh
set -euo pipefail
PY_BIN="${PY_BIN:-.venv/bin}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$PY_BIN/python" -c "from spine_measure.reliability import simulate_readers; \
simulate_readers('sample_dicoms', '$OUT/sim', sd_px=2.0)"
"$PY_BIN/spine-measure" reliability "$OUT/sim/reader_a" "$OUT/sim/reader_b" \
    --images sample_dicoms --out "$OUT/rel" >/dev/null
cp "$OUT/rel/bland_altman.png" docs/figures/reliability_bland_altman.png
echo "wrote docs/figures/reliability_bland_altman.png"
