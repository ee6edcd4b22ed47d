#!/usr/bin/env bash
# Set everything up (Python and Debian packages) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k calibration`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export SPINE_MEASURE_REQUIRE_TOOLS=1   # missing dciodvfy / dsrdump / Xvfb fail tests, not skip them
export QT_QPA_PLATFORM=xcb             # a real X server (Xvfb) with Mesa OpenGL for napari
exec xvfb-run -a -s "-screen 0 1920x1200x24" \
  .venv/bin/python -m pytest -n 2 -p no:cacheprovider "$@"
