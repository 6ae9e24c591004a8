#!/bin/sh
# The whole test suite, VM tests included: installs its dependencies first, then runs pytest,
# ruff and mypy. Extra arguments go to pytest: -m "not vm" for the fast tier, --full for the whole
# matrix (--resume skips what passed in an earlier run of the same tree).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
PYTHON=${PYTHON:-python3}
"$PYTHON" -m ruff check src tests benchmarks
"$PYTHON" -m ruff format --check src tests benchmarks
"$PYTHON" -m mypy
exec "$PYTHON" -m pytest -q "$@"
