#!/usr/bin/env bash
# Installs what BrainTumorSeg needs into .venv at the repository root (created when missing):
# PyTorch 2.13.0 first (the CPU build), then the project with its test extras (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, monai, SimpleITK; print("torch", torch.__version__, "| monai", monai.__version__, "| SimpleITK", SimpleITK.Version_VersionString())'))"
