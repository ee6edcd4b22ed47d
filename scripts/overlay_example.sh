#!/usr/bin/env bash
# Regenerate docs/figures/overlay_example.png: the batch's own review overlay of the SM002
# post-operative sample film (T12 treated, a spike leak), with the Cobb angle of the treated
# segment drawn (--cobb treated+1). Run from the repository root:
#     scripts/overlay_example.sh
set -euo pipefail
PY_BIN="${PY_BIN:-.venv/bin}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$PY_BIN/spine-measure" batch sample_dicoms/SM002 --out "$OUT/run" --cobb treated+1 \
    --pseudonym-key overlay-example --no-progress
UID_POSTOP="1.2.826.0.1.3680043.8.498.12721689879168987819806477664599641479"
cp "$(find "$OUT/run/overlays" -name "$UID_POSTOP.png")" docs/figures/overlay_example.png
echo "wrote docs/figures/overlay_example.png"
