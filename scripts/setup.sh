#!/usr/bin/env bash
# Installs what BrainTumorSeg needs into .venv at the repository root (created when missing):
# PyTorch 2.13.0 first (the CPU build), then the project with its test extras (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# The oldest Python is the one pyproject.toml's requires-python names (see docs/slicer-compatibility.md).
MINIMUM="$(sed -n 's/^requires-python = ">=\([0-9]*\.[0-9]*\)"$/\1/p' pyproject.toml)"
[ -n "$MINIMUM" ] || { echo "setup: pyproject.toml names no requires-python \">=X.Y\"; restore that line." >&2; exit 1; }
check_python() {  # $1: the interpreter; $2: what to do when it is missing or too old
    local version
    if ! version="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
        echo "setup: cannot run $1; $2" >&2
        exit 1
    fi
    if ! "$1" -c "import sys; sys.exit(sys.version_info[:2] < (${MINIMUM%%.*}, ${MINIMUM#*.}))"; then
        echo "setup: BrainTumorSeg needs Python $MINIMUM or later, but $1 is Python $version; $2" >&2
        exit 1
    fi
}
if [ -x .venv/bin/python ]; then
    check_python .venv/bin/python "delete .venv and run setup again with PYTHON=python$MINIMUM (or newer)."
else
    check_python "$PYTHON" "run setup again with PYTHON=python$MINIMUM (or newer)."
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, monai, SimpleITK; print("torch", torch.__version__, "| monai", monai.__version__, "| SimpleITK", SimpleITK.Version_VersionString())'))"
