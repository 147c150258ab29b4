#!/usr/bin/env bash
# One install path for pip users, conda users (environment.yml calls this) and CI.
#
#   scripts/install.sh [VENV_DIR] [EXTRAS]   # default: .venv in the repository root, the runtime
#   scripts/install.sh --current [EXTRAS]    # into the active environment (conda: see environment.yml)
#
# EXTRAS (comma-separated, default none: the runtime, what run, segment, inspect and prepare
# need; make demo installs that): notebooks (JupyterLab, widgets, papermill), sweeps (fsm2kit
# batch: papermill + Dask), dicom (highdicom: DICOM SEG output), browser (playwright, the browser
# test), dev (all of them + pytest: what make test and CI install).
#
# Why not a plain `pip install sam2`: sam2 declares torchvision, and pip then replaces the
# CPU torch with a multi-GB CUDA build (and PyPI's torchvision cannot be imported next to the
# CPU torch anyway). fsm2kit only uses sam2's video-predictor side, which does not need
# torchvision, so sam2 is installed last, without dependencies (no conflict check, so no red
# "sam2 requires torchvision" line), and its real runtime dependencies are listed in
# pyproject.toml. `pip check` reports that torchvision is missing: expected, harmless.
# pip's own output goes to <venv>/fsm2kit-install.log (shown when a step fails).
#
# GPU users: install the CUDA build of torch 2.13.0 into the environment first
# (see https://pytorch.org/get-started/locally/); this script keeps an existing torch.
# Set FSM2KIT_PYTHON to choose the interpreter used to create the venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${FSM2KIT_PYTHON:-python3}"
if [ "${1:-}" = "--current" ]; then
  python="$(command -v python)"
  extras="${2:-}"
  stamp=""
  log="$(mktemp -t fsm2kit-install.XXXXXX.log)"
else
  venv="${1:-$here/.venv}"
  extras="${2:-}"
  stamp="$venv/.fsm2kit-installed${extras:+-${extras//,/-}}"
  for done_ in "$stamp" "$venv/.fsm2kit-installed-dev"; do  # dev holds every extra
    if [ -f "$done_" ] && [ "$done_" -nt "$here/pyproject.toml" ] && [ "$done_" -nt "$0" ]; then
      exit 0
    fi
  done
  if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
  fi
  python="$venv/bin/python"
  log="$venv/fsm2kit-install.log"
fi
: > "$log"
pip=("$python" -m pip install --disable-pip-version-check --progress-bar off)
step() {  # step "what" pip-arguments...: one line per step; pip's output in the log, shown on failure
  local what="$1"; shift
  echo "fsm2kit install: $what" >&2
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fsm2kit install: failed while installing $what (whole log: $log)" >&2
    exit 1
  fi
}
step "pip, setuptools, wheel" "${pip[@]}" --upgrade "pip>=24" "setuptools>=70" wheel
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  step "torch 2.13.0" "${pip[@]}" "torch==2.13.0"
fi
step "fsm2kit${extras:+[$extras]} (editable) and its dependencies" \
  "${pip[@]}" --no-warn-conflicts -e "$here${extras:+[$extras]}"
if ! "$python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('sam2') == '1.1.0' else 1)" 2>/dev/null; then
  export SAM2_BUILD_CUDA=0
  step "sam2 1.1.0 (without torchvision: not needed)" \
    "${pip[@]}" --no-build-isolation --no-deps "sam2==1.1.0"
fi
echo "fsm2kit install: done ($("$python" -c 'import sys; print(sys.prefix)'))" >&2
if [ -n "$stamp" ]; then touch "$stamp"; fi
