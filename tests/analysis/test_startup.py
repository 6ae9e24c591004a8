"""What ``kdumpy crash DUMP -c CMD`` loads (issue 14, speed): start to first output is
mostly imports, so batch use loads neither the interactive shell's libraries
(prompt_toolkit, the pager's pydoc) nor the disassembler, and numpy's OpenBLAS starts
one thread, not one per CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_PROBE = """
import json, os, runpy, sys
sys.argv = ["kdumpy", *json.loads(sys.argv[1])]
try:
    runpy.run_module("kdumpy", run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"modules": sorted(sys.modules),
                  "blas": os.environ.get("OPENBLAS_NUM_THREADS")}))
"""


def _run(*argv: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.splitlines()[-1])


def test_batch_sys_loads_no_shell_pager_or_disassembler(synthetic_vmcore: Path) -> None:
    seen = _run("crash", str(synthetic_vmcore), "-c", "sys")
    loaded = set(seen["modules"])
    assert "kdumpy.analysis.commands.system" in loaded  # the command did run
    for unwanted in ("pydoc", "prompt_toolkit", "capstone"):
        assert unwanted not in loaded, unwanted
    assert seen["blas"] == "1"
