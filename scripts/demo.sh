#!/usr/bin/env bash
# Installs what is needed (scripts/setup.sh), then segments the bundled sample case:
# writes the label map, the report, the scores against its consensus label and a PNG overlay
# into ./braintumorseg-demo (or the folder given with -o DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/braintumorseg demo "$@"
