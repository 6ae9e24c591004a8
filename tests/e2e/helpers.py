"""Checks shared by the end-to-end tests: a saved dump read by kdumpy and by drgn."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line
from kdumpy.lab.kernels import LabKernel
from kdumpy.service.collectorcheck import collector_warning

HERE = Path(__file__).parent
DIR_NAME = re.compile(r"(\d+\.\d+\.\d+\.\d+)-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d")
MAKEDUMPFILE = "core_collector makedumpfile -l --message-level 7 -d 31\n"
KDUMPY_COLLECT = "core_collector kdumpy collect -l --message-level 7 -d 31\n"
GUEST_MAKEDUMPFILE = (1, 7, 2)  # the Debian 12 guest's package


def collector_for(kernel: LabKernel) -> str:
    """The kdump.conf collector line of a target test on *kernel*: makedumpfile where the
    guest's makedumpfile can filter that kernel (interop proven on every such cycle), else
    kdumpy's collector: 1.7.2 keeps 6.12's free pages, which do not fit the test disks
    (``kdumpy start`` warns about exactly that: :mod:`kdumpy.service.collectorcheck`)."""
    argv = MAKEDUMPFILE.split()[1:]
    mdf_can = collector_warning(argv, kernel.release, lambda _: GUEST_MAKEDUMPFILE) is None
    return MAKEDUMPFILE if mdf_can else KDUMPY_COLLECT


def drgn_view(vmcore: Path, kernel: LabKernel) -> dict:
    """drgn's reading of *vmcore* (see drgn_check.py), in a child process."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "drgn_check.py"), str(vmcore), str(kernel.dbg_vmlinux())],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def kdumpy_crash(vmcore: Path, *commands: str) -> list[str]:
    """What ``kdumpy crash VMCORE -c COMMAND ...`` prints for each command, from the dump
    alone (kallsyms and BTF in it), in one session: the dump is opened once."""
    with Program.open(vmcore) as prog:
        session = Session(prog)
        outputs = [run_line(session, command) for command in commands]
        assert not session.failed, outputs
    return outputs


def makedumpfile_dmesg(vmcore: Path) -> str:
    """makedumpfile's reading of the saved file's kernel log: the collector's interop oracle.
    Its output goes to a directory of its own: the dump may sit on a read-only mount of
    the target (the xfs/btrfs tests read it back through a loop mount)."""
    with tempfile.TemporaryDirectory(prefix="mdf-dmesg-") as tmp:
        out = Path(tmp) / "dmesg.txt"  # new: makedumpfile refuses to overwrite
        proc = subprocess.run(
            ["makedumpfile", "--dump-dmesg", str(vmcore), str(out)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return out.read_text(errors="replace")


def panic_line(log: str) -> str:
    """The text of a kernel log's panic line, without its timestamp."""
    line = next(ln for ln in log.splitlines() if "Kernel panic - not syncing" in ln)
    return line.split("] ", 1)[1]


def check_dump(vmcore: Path, kernel: LabKernel, serial: str) -> None:
    """The dump kdumpy's own service and capture saved is this kernel's crash, read by
    three independent readers: drgn with the Debian dbg vmlinux (release, log, the crashed
    stack, every task), makedumpfile (the log in the file kdumpy's collector wrote), and the
    serial console; kdumpy's analysis, from the dump alone, must agree with them."""
    from kdumpy.vmcore import open_dump

    with open_dump(vmcore) as dump:
        assert dump.vmcoreinfo.osrelease == kernel.release
    seen = drgn_view(vmcore, kernel)
    assert seen["release"] == kernel.release
    assert "sysrq_handle_crash" in seen["crashed_stack"]
    # The panic line drgn reads from the dump's log is the one the serial console printed,
    # and the one makedumpfile reads from the file kdumpy's collector wrote.
    panic = panic_line(seen["dmesg"])
    assert panic in serial
    assert panic_line(makedumpfile_dmesg(vmcore)) == panic
    # kdumpy's analysis: the same release, the same tasks, the crash on the panic task's stack.
    sys_out, ps_out, bt_out = kdumpy_crash(vmcore, "sys", "ps", "bt")
    assert f"RELEASE: {kernel.release}" in sys_out
    rows = [ln.lstrip(">").split() for ln in ps_out.splitlines()[1:]]
    # ps lists each CPU's idle task (pid 0) as crash does; drgn's for_each_task does not.
    ours = sorted([int(r[0]), " ".join(r[8:]).strip("[]")] for r in rows if r and r[0] != "0")
    assert ours == [list(t) for t in seen["tasks"] if t[0] != 0]
    assert "sysrq_handle_crash" in bt_out


def check_dmesg_file(text: str, serial: str) -> None:
    """vmcore-dmesg.txt holds the crash's log: its panic line is on the serial console."""
    assert "sysrq: Trigger a crash" in text
    assert panic_line(text) in serial


def first_kernel_serial(serial: str) -> str:
    """The first kernel's part of a cycle's console (up to the capture kernel's banner)."""
    banners = [m.start() for m in re.finditer(r"Linux version ", serial)]
    return serial[: banners[1]] if len(banners) > 1 else serial


# The kernels every lab suite covers; the e2e core set runs on KDUMPY_E2E_KERNELS (6.1).
ALL_KERNELS = ("5.10", "6.1", "6.12", "7")

# Every end-to-end test is a full QEMU cycle (1-2.5 minutes under TCG).  CI's set is the core
# (ext4 on every kernel, raw, ssh, NFS, a full target, and test_commands: the service commands
# in two boots of one guest); the rest (xfs, btrfs, ssh server gone or replaced at crash time)
# belongs to the full matrix (--full).
full_only = pytest.mark.full
