"""Checks shared by the end-to-end tests: a saved dump read by kdumpy and by drgn."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.lab.kernels import LabKernel

HERE = Path(__file__).parent
DIR_NAME = re.compile(r"(\d+\.\d+\.\d+\.\d+)-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")


def drgn_view(vmcore: Path, kernel: LabKernel) -> dict:
    """drgn's reading of *vmcore* (see drgn_check.py), in a child process."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "drgn_check.py"), str(vmcore), str(kernel.dbg_vmlinux())],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def check_dump(vmcore: Path, kernel: LabKernel, serial: str) -> None:
    """The saved dump is this kernel's crash: kdumpy and drgn agree, the console confirms."""
    from kdumpy.vmcore import open_dump

    with open_dump(vmcore) as dump:
        assert dump.vmcoreinfo.osrelease == kernel.release
    seen = drgn_view(vmcore, kernel)
    assert seen["release"] == kernel.release
    assert "sysrq_handle_crash" in seen["crashed_stack"]
    # The panic line drgn reads from the dump's log is the one the serial console printed.
    panic = next(ln for ln in seen["dmesg"].splitlines() if "Kernel panic - not syncing" in ln)
    assert panic.split("] ", 1)[1] in serial


def check_dmesg_file(text: str, serial: str) -> None:
    """vmcore-dmesg.txt holds the crash's log: its panic line is on the serial console."""
    assert "sysrq: Trigger a crash" in text
    panic = next(ln for ln in text.splitlines() if "Kernel panic - not syncing" in ln)
    assert panic.split("] ", 1)[1] in serial


def first_kernel_serial(serial: str) -> str:
    """The first kernel's part of a cycle's console (up to the capture kernel's banner)."""
    banners = [m.start() for m in re.finditer(r"Linux version ", serial)]
    return serial[: banners[1]] if len(banners) > 1 else serial


# The kernels every lab suite covers; the e2e core set runs on KDUMPY_E2E_KERNELS (6.1).
ALL_KERNELS = ("6.1", "6.12", "7")

# Every end-to-end test is a full QEMU cycle (1-2.5 minutes under TCG).  CI's set is the core
# (ext4 on every kernel, raw, ssh, NFS, a full target, and test_commands: the service commands
# in two boots of one guest); the rest (xfs, btrfs, ssh server gone or replaced at crash time)
# belongs to the full matrix (--full).
full_only = pytest.mark.full
