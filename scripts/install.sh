#!/usr/bin/env bash
# One install path for pip users, conda users (environment.yml calls this) and CI.
#
#   scripts/install.sh [VENV_DIR]      # default: .venv in the repository root
#   scripts/install.sh --current       # into the active environment (conda: see environment.yml)
#
# Why not a plain `pip install sam2`: sam2 declares torchvision, and pip then replaces the
# CPU torch with a multi-GB CUDA build (and PyPI's torchvision cannot be imported next to the
# CPU torch anyway). fsm2kit only uses sam2's video-predictor side, which does not need
# torchvision, so sam2 is installed without dependencies and its real runtime dependencies
# are listed in pyproject.toml.
#
# GPU users: install the CUDA build of torch 2.13.0 into the environment first
# (see https://pytorch.org/get-started/locally/); this script keeps an existing torch.
# Set FSM2KIT_PYTHON to choose the interpreter used to create the venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${FSM2KIT_PYTHON:-python3}"
if [ "${1:-}" = "--current" ]; then
  python="$(command -v python)"
  stamp=""
else
  venv="${1:-$here/.venv}"
  stamp="$venv/.fsm2kit-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$here/pyproject.toml" ] && [ "$stamp" -nt "$0" ]; then
    exit 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
  fi
  python="$venv/bin/python"
fi
pip=("$python" -m pip install --disable-pip-version-check --progress-bar off)
"${pip[@]}" --upgrade "pip>=24" "setuptools>=70" wheel
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  "${pip[@]}" "torch==2.13.0"
fi
if ! "$python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('sam2') == '1.1.0' else 1)" 2>/dev/null; then
  SAM2_BUILD_CUDA=0 "${pip[@]}" --no-build-isolation --no-deps "sam2==1.1.0"
fi
"${pip[@]}" -e "$here[dev]"
if [ -n "$stamp" ]; then touch "$stamp"; fi
