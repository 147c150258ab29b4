#!/usr/bin/env bash
# Install Debian's pdflatex (and poppler's pdffonts) for the table and font tests
# (tests/test_paper_output.py), once. Idempotent: does nothing when both are there.
set -euo pipefail
if command -v pdflatex >/dev/null 2>&1 && command -v pdffonts >/dev/null 2>&1; then
    echo "pdflatex and pdffonts already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_latex.sh: need root (or sudo) to apt-get install texlive" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended poppler-utils
pdflatex --version | head -1 || true
