#!/usr/bin/env bash
# GPU benchmark for a lent GPU machine (e.g. one H100): under 5 minutes.
# Assumes the repository's .venv (scripts/install.sh; a CUDA build of torch 2.13.0 installed first).
set -euo pipefail
cd "$(dirname "$0")"
py="${PYTHON:-../.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the SAM 2.0 sizes at 1024 px and medsam2 at its own 512 px (MedSAM2 = SAM 2.1 tiny at 512)
timeout 280 "$py" gpu_speed.py "$@"
