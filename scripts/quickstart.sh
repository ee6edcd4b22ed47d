#!/usr/bin/env bash
# Set everything up and run the main job on the bundled sample studies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/spine-measure info sample_dicoms/
