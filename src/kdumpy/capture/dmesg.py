"""The crashed kernel's log for vmcore-dmesg.txt, saved before the (long) dump itself.

It comes from ``kdumpy dmesg <vmcore>`` (kdumpy.vmcore's printk ring buffer reader, run as
a child so that a reader bug cannot take the capture down).  Where that is not available,
``makedumpfile --dump-dmesg`` or kexec-tools' ``vmcore-dmesg`` are used if present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from kdumpy.capture import CaptureError
from kdumpy.capture.collector import python_m

DMESG_TIMEOUT = 300.0


def kernel_log(vmcore: str) -> tuple[bytes, str]:
    """The crashed kernel's log and the tool that read it; CaptureError if none could."""
    errors = []
    for name, reader in (
        ("kdumpy dmesg", _kdumpy),
        ("makedumpfile --dump-dmesg", _makedumpfile),
        ("vmcore-dmesg", _vmcore_dmesg),
    ):
        try:
            text = reader(vmcore)
        except CaptureError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if text is not None:
            return text, name
    raise CaptureError("cannot read the kernel log: " + "; ".join(errors or ["no reader"]))


def _run(cmd: list[str]) -> bytes:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=DMESG_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaptureError(str(exc)) from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CaptureError(lines[-1] if lines else f"status {proc.returncode}")
    return proc.stdout


def _kdumpy(vmcore: str) -> bytes | None:
    return _run([*python_m("kdumpy"), "dmesg", vmcore])


def _makedumpfile(vmcore: str) -> bytes | None:
    tool = shutil.which("makedumpfile")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "dmesg")
        _run([tool, "--dump-dmesg", vmcore, out])
        with open(out, "rb") as fh:
            return fh.read()


def _vmcore_dmesg(vmcore: str) -> bytes | None:
    tool = shutil.which("vmcore-dmesg")
    return None if tool is None else _run([tool, vmcore])
