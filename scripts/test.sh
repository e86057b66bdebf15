#!/usr/bin/env bash
# Installs what is needed (scripts/setup.sh), then runs the whole test suite in Testing/.
# Extra arguments go to pytest (e.g. scripts/test.sh -k cli). Exit status: pytest's, except
# pytest's 5 ("no test collected", e.g. a -k that matches nothing), which is reported and gives 0.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
status=0
.venv/bin/python -m pytest Testing "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no test (exit 5); nothing was run." >&2
    status=0
fi
exit "$status"
