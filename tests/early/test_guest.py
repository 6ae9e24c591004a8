"""Early kdump proven in the lab's Debian guest (initramfs-tools, systemd, real kernels).

One set-up boot runs ``kdumpy early enable`` in the guest; then the guest's own new
system initramfs is booted with a crash injected during boot (init-premount, long before
kdumpy.service): with ``rd.earlykdump`` the dump is saved, without it nothing is.
Oracles: the serial console (the kernel's own record, with timestamps), GNU cpio's
listing of the initramfs the guest made, debugfs reading the target disk, makedumpfile
reading the saved dump's kernel log, and the guest's journal.

Kernels: ``KDUMPY_EARLY_KERNELS`` (default "6.1").  Each boot is a QEMU TCG run.
``KDUMPY_EARLY_REUSE=DIR`` reuses the set-up guest in ``DIR/<kernel>`` (from an earlier run
or benchmarks/early_bench.py --workdir DIR) instead of the set-up boot.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from . import guest as g

KERNELS = tuple(os.environ.get("KDUMPY_EARLY_KERNELS", "6.1").split(","))
pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module", params=KERNELS)
def early_guest(request, tmp_path_factory) -> g.EarlyGuest:
    from kdumpy.lab.kernels import get_kernel

    kernel = get_kernel(request.param)
    reuse = os.environ.get("KDUMPY_EARLY_REUSE")  # a directory a previous run set up
    if reuse:
        found = g.load(Path(reuse) / request.param, kernel)
        if found is not None:
            return found
    workdir = tmp_path_factory.mktemp(f"early-{request.param}")
    return g.setup(workdir, kernel)


def _cpio_members(initrd: Path, workdir: Path) -> dict[str, Path]:
    """Unpack the system initramfs with zstd + GNU cpio (the guest compresses with zstd)."""
    dest = workdir / "unpacked"
    dest.mkdir(exist_ok=True)
    data = subprocess.run(["zstd", "-dc", str(initrd)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=data, cwd=dest,
                   check=True, capture_output=True)  # fmt: skip
    return {str(p.relative_to(dest)): p for p in dest.rglob("*")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _order(serial: str, *needles: str) -> list[float]:
    stamps = [g.stamp(serial, n) for n in needles]
    assert all(s is not None for s in stamps), dict(zip(needles, stamps, strict=True))
    return [s for s in stamps if s is not None]


def test_enable_puts_the_capture_kernel_in_the_system_initramfs(early_guest, tmp_path):
    out = early_guest.setup_out
    enable = (out / "enable.txt").read_text()
    assert "Early kdump enabled (initramfs-tools)" in enable, enable
    members = _cpio_members(early_guest.initrd, tmp_path)
    names = ("vmlinuz", "initrd.img", "early.conf", "kdumpy-early.sh")
    for name in [f"kdumpy-early/{n}" for n in names] + ["scripts/init-top/00-kdumpy-early"]:
        assert name in members, name
    assert "sbin/kexec" in members or "usr/sbin/kexec" in members  # /sbin may be a link
    assert _sha(members["kdumpy-early/vmlinuz"]) == _sha(early_guest.kernel.vmlinuz)
    capture = (out / "capture.sha256").read_text().split()[0]
    assert _sha(members["kdumpy-early/initrd.img"]) == capture
    # init-top's ORDER runs our loader first.
    order = members["scripts/init-top/ORDER"].read_text().splitlines()
    assert "kdumpy-early" in order[0], order
    growth = early_guest.initrd.stat().st_size - early_guest.original_initrd.stat().st_size
    print(f"system initramfs grew by {growth / 2**20:.1f} MiB")


def test_boot_crash_is_captured_with_early_kdump(early_guest, tmp_path):
    boot, target = g.panic_boot(early_guest, "panic-early", early=True)
    serial = boot.serial
    loaded, crash = _order(serial, "kexec: loaded early-kdump kernel", "kdumpy-test: crashing")
    assert loaded < crash, "the crash came before early kdump loaded the capture kernel"
    assert "early-kdump is enabled." in serial
    # The capture kernel booted from the reservation and saved the dump.
    assert "kdump: saved vmcore to" in serial.split("kdumpy-test: crashing", 1)[1]
    # The dump's own kernel log, read by makedumpfile: the early load, then the crash.
    text = g.saved_dump_log(target, tmp_path)
    assert text.index("kexec: loaded early-kdump kernel") < text.index("kdumpy-test: crashing")
    assert "sysrq: Trigger a crash" in text
    panic = next(ln for ln in text.splitlines() if "Kernel panic - not syncing" in ln)
    assert panic.split("] ", 1)[1] in serial
    # No service ever ran: the crash happened in the initramfs.
    assert "Reached target" not in serial.split("kdumpy-test: crashing")[0]


def test_boot_crash_is_lost_without_early_kdump(early_guest, tmp_path):
    boot, target = g.panic_boot(early_guest, "panic-no-early", early=False)
    serial = boot.serial
    assert "early-kdump is disabled." in serial
    assert "Kernel panic - not syncing" in serial
    assert "kexec: loaded early-kdump kernel" not in serial
    assert len(re.findall(r"Linux version ", serial)) == 1, "a capture kernel booted"
    listing = subprocess.run(["debugfs", "-R", "ls -p /", str(target)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "/var/" not in listing and "crash" not in listing, listing


def test_status_start_and_rebuild_after_an_early_boot(early_guest):
    boot = g.job_boot(early_guest, "check-early", early=True, script=g.CHECK_JOB)
    serial = boot.serial
    init, loaded, systemd = _order(serial, "Run /init", "kexec: loaded early-kdump kernel",
                                   "systemd[1]: ")  # fmt: skip
    print(f"early load {loaded - init:.2f} s after Run /init ({loaded:.2f} s after kernel start)")
    # Loaded inside the initramfs, before the real root's systemd started (how fast is
    # measured in benchmarks/early_bench.py, not asserted here).
    assert init < loaded < systemd
    status = boot.text("status.txt")
    assert boot.text("status.rc").strip() == "0", status
    assert "Boot-time crashes are covered: early kdump loaded the capture kernel" in status
    assert "Kdump already running" in boot.text("start.txt")
    assert boot.text("start.rc").strip() == "0"
    # Item 2: the journal has the lines too (imported from the kernel log).
    journal = boot.text("journal.txt")
    assert re.search(r"kdumpy-early\[\d+\]: early-kdump is enabled\.", journal), journal[-2000:]
    assert re.search(r"kdumpy-early\[\d+\]: kexec: loaded early-kdump kernel", journal)
    # Staleness: a changed capture initramfs is detected, and `kdumpy rebuild` refreshes it.
    stale = boot.text("status-stale.txt")
    assert "the early copy is stale: capture initramfs" in stale, stale
    fresh = boot.text("status-rebuilt.txt")
    assert "stale" not in fresh, fresh + boot.text("rebuild.txt")
    assert "Early kdump: system initramfs updated" in boot.text("rebuild.txt")


def test_service_only_boot_is_not_covered(early_guest):
    boot = g.job_boot(early_guest, "service-only", early=False, script=g.SERVICE_JOB)
    status = boot.text("status.txt")
    assert boot.text("status.rc").strip() == "3", status
    assert (
        "Boot-time crashes are NOT covered: rd.earlykdump is not on this boot's command line"
        in status
    )
    assert boot.text("kexec_crash_loaded").strip() == "1", boot.text("service.txt")
    assert "early-kdump is disabled." in boot.serial


def test_disable_takes_it_out_again(early_guest, tmp_path):
    """The check boot ends with `kdumpy early disable` (see guest.CHECK_JOB)."""
    out = early_guest.workdir / "check-early" / "out"
    if not (out / "disable.rc").exists():
        pytest.skip("the check boot did not run")
    assert (out / "disable.rc").read_text().strip() == "0", (out / "disable.txt").read_text()
    assert "kdumpy-early" not in (out / "hooks-after-disable.txt").read_text()
    members = _cpio_members(out / "initrd-disabled.img", tmp_path)
    assert not [m for m in members if "kdumpy-early" in m]
    status = (out / "status-disabled.txt").read_text()
    assert "Early kdump: not enabled" in status
