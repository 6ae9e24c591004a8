"""Fixtures for the capture side run on the host against real lab dumps.

The capture side is run as the capture kernel's /init runs it (``python3 -m
kdumpy.capture``), with ``--no-action`` instead of rebooting the host and ``--target-dir``
standing in for the mount /init would have made.  Everything else is real: the dump
(a lab guest's /proc/vmcore), the collector, the filesystem, sshd.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    returncode: int
    stderr: str


def run_capture(conf: Path, vmcore: Path, *args: str, env: dict | None = None) -> Run:
    """``python3 -m kdumpy.capture`` with *conf*, on the real dump *vmcore*."""
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy.capture", "--config", str(conf), "--vmcore", str(vmcore),
         "--no-action", *args],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return Run(proc.returncode, proc.stderr)
