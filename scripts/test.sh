#!/bin/sh
# The whole test suite, VM tests included: installs its dependencies first, then runs pytest,
# ruff and mypy. Extra arguments go to pytest (e.g. -m "not vm" for the fast subset).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
PYTHON=${PYTHON:-python3}
"$PYTHON" -m ruff check src tests benchmarks
"$PYTHON" -m ruff format --check src tests benchmarks
"$PYTHON" -m mypy
exec "$PYTHON" -m pytest -q --durations=25 "$@"
