#!/usr/bin/env bash
# Install everything spine_measure needs into ./.venv (idempotent; re-runs are quick).
#
#   bash scripts/setup.sh          # the toolkit and its command line
#   bash scripts/setup.sh --test   # + test tools, the napari plugin, and the Debian packages
#                                  #   the test suite needs (Xvfb, Mesa OpenGL, dicom3tools, dcmtk)
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[[ "${1:-}" == "--test" ]] && with_test=1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# Debian packages -----------------------------------------------------------------------
debs=()
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then debs+=(python3-venv); fi
if [[ $with_test -eq 1 ]]; then
  # Xvfb + Mesa: a real OpenGL context for the napari viewer tests (QT_QPA_PLATFORM=offscreen
  # cannot draw an image layer). dicom3tools: dciodvfy validates every DICOM we write.
  # dcmtk: dsrdump renders structured reports.
  debs+=(xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4
         libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0
         libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1
         dicom3tools dcmtk)
fi
missing=()
for d in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# Python environment ----------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv
fi
targets=("-e" ".")
[[ $with_test -eq 1 ]] && targets=("-e" ".[test]")
# the napari plugin (napari-spine-measure): `spine-measure annotate` and the viewer tests
[[ -f plugins/napari/pyproject.toml ]] && targets+=("-e" "plugins/napari")
stamp=".venv/.setup-stamp-$with_test"
want=$(cat pyproject.toml plugins/napari/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing Python packages (first run: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q "${targets[@]}" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import spine_measure" || { log "installation failed"; exit 1; }
  echo "$want" > "$stamp"
fi
log "ready: $(.venv/bin/spine-measure --version)"
