#!/usr/bin/env bash
# GPU benchmark for a lent GPU machine (e.g. one H100): under 5 minutes.
# Assumes the repository's .venv (scripts/install.sh; a CUDA build of torch 2.13.0 installed first).
set -euo pipefail
cd "$(dirname "$0")"
py="${PYTHON:-../.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 280 "$py" gpu_speed.py "$@"
