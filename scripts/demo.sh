#!/bin/sh
# The newcomer's command: install what is needed, then crash a real kernel in QEMU and capture it.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec "${PYTHON:-python3}" -m kdumpy lab demo "$@"
