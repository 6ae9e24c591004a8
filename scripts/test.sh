#!/bin/sh
# The whole test suite, VM tests included: installs its dependencies first, then runs pytest,
# ruff and mypy. Extra arguments go to pytest: -m "not vm" for the fast tier, --full for the whole
# matrix (--resume skips what passed in an earlier run of the same tree). KDUMPY_TEST_WORKERS
# sets how many pytest-xdist workers share the run (default: the cores, at most 4).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
PYTHON=${PYTHON:-python3}
"$PYTHON" -m ruff check src tests benchmarks
"$PYTHON" -m ruff format --check src tests benchmarks
"$PYTHON" -m mypy
# One worker per core (at most 4: each VM test runs a guest of up to 4 GiB), a test file's tests
# on one worker (its guest boots once), the longest files first (tests/schedule.py).
workers=${KDUMPY_TEST_WORKERS:-$(nproc)}
[ "$workers" -le 4 ] || workers=4
exec "$PYTHON" -m pytest -q -n "$workers" --dist loadfile "$@"
