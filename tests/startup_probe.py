"""What a ``kdumpy`` command line loads, run in a fresh interpreter (start-up tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# `python -m kdumpy collect` ends in os._exit (no interpreter teardown): the probe makes
# that a SystemExit, to look at what was loaded.
_PROBE = """
import json, os, runpy, sys
sys.argv = ["kdumpy", *json.loads(sys.argv[1])]
os._exit = sys.exit
try:
    runpy.run_module("kdumpy", run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"modules": sorted(sys.modules),
                  "blas": os.environ.get("OPENBLAS_NUM_THREADS")}))
"""


def run_probe(*argv: str) -> dict:
    """``{"modules": [...], "blas": OPENBLAS_NUM_THREADS as kdumpy left it}`` after running
    ``kdumpy ARGV`` (OPENBLAS_NUM_THREADS unset beforehand)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.splitlines()[-1])


def modules_loaded(*argv: str) -> set[str]:
    """The modules ``kdumpy ARGV`` has loaded when it ends."""
    return set(run_probe(*argv)["modules"])
