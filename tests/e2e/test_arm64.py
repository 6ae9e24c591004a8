"""arm64 end to end through kdumpy's own service and capture initramfs.

The arm64 guest (:mod:`kdumpy.lab.arm64_guest`: Debian arm64 packages unpacked with dpkg -x,
a lab kernel, a small init) runs ``kdumpy start``: the service builds the capture initramfs
in the guest from the guest's own arm64 files, kexec_file_load fails with ENOSYS on Debian's
arm64 kernels and the service loads with kdumpy's kexec_load loader.  The guest panics; the
capture kernel runs kdumpy's /init and ``kdumpy collect -l -d 31`` onto an ext4 target.

Oracles: the serial console (the kernel's own record of the panic), the kdump file's headers
read here by hand as makedumpfile's diskdump_mod.h lays them out, drgn 0.3.0 with Debian's
arm64 -dbg vmlinux (release, the crashed task's stack, the log), and Debian's arm64
makedumpfile run by qemu-user (the host's x86_64 build reads only x86_64 dumps; none reads
arm64-6.12's 52-bit VAs with 4K pages).

arm64-6.1 runs in CI (one cycle); arm64-6.12 in the full matrix (``--full``).
``KDUMPY_ARM64_E2E_KERNELS`` picks others.
"""

from __future__ import annotations

import os
import struct
import subprocess

import pytest

from kdumpy.lab.arm64_guest import arm64_makedumpfile
from kdumpy.lab.debian_job import read_back
from kdumpy.lab.debian_kdump import Cycle, blank_ext4, run_cycle
from kdumpy.lab.kernels import get_kernel

from .helpers import DIR_NAME, check_dmesg_file, drgn_view, first_kernel_serial, panic_line

KERNELS = tuple(os.environ.get("KDUMPY_ARM64_E2E_KERNELS", "arm64-6.1,arm64-6.12").split(","))
CI = ("arm64-6.1",)
CONF = "ext4 LABEL=kdumptgt\npath /var/crash\nfinal_action poweroff\n"
MEMORY = 1 << 30
DUMP_DH_COMPRESSED_LZO = 0x2  # makedumpfile's diskdump_mod.h
# No makedumpfile reads trixie's arm64 kernel (4K pages, 52-bit VAs): Debian's 1.7.2, 1.7.6
# and 1.7.8 all stop with "PAGE SIZE 0x1000 and VA Bits 52 not supported" (checked on the
# lab's arm64-6.12 dump).  There drgn's log is the only reader beside the console.
NO_MAKEDUMPFILE = ("arm64-6.12",)


def _param(series: str):
    marks = [pytest.mark.vm, pytest.mark.slow]
    if series not in CI:
        marks.append(pytest.mark.full)
    return pytest.param(series, marks=marks)


def kdump_headers(path) -> dict:
    """The disk_dump_header and kdump_sub_header fields this test checks (64-bit layout)."""
    with open(path, "rb") as fh:
        head = fh.read(464)
        block_size = struct.unpack_from("<i", head, 428)[0]
        fh.seek(block_size)
        sub = fh.read(12)
    return {
        "signature": head[:8],
        "machine": head[12 + 4 * 65 : 12 + 5 * 65].rstrip(b"\0").decode(),
        "release": head[12 + 2 * 65 : 12 + 3 * 65].rstrip(b"\0").decode(),
        "status": struct.unpack_from("<I", head, 424)[0],
        "block_size": block_size,
        "dump_level": struct.unpack_from("<i", sub, 8)[0],
    }


def makedumpfile_dmesg(vmcore, out) -> str:
    proc = subprocess.run([*arm64_makedumpfile(), "--dump-dmesg", str(vmcore), str(out)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out.read_text(errors="replace")


@pytest.mark.parametrize("series", [_param(s) for s in KERNELS])
def test_service_loads_and_capture_saves_on_arm64(tmp_path, series):
    kernel = get_kernel(series)
    target = blank_ext4(tmp_path / "target.img", "kdumptgt")
    result = run_cycle(Cycle(CONF, disks=[target], timeout=900), tmp_path / "run", kernel)
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    # The service switched to kdumpy's kexec_load loader (no kexec_file_load on this kernel).
    assert "kexec: loaded kdump kernel (kexec_load)" in serial, result.log[-3000:]
    assert (result.out / "kexec_crash_loaded").read_text().strip() == "1"
    assert "kdumpy-init: kdumpy capture initramfs for " + kernel.release in serial
    assert "kdump: saved vmcore to" in serial, serial[-3000:]
    m = result.run.markers
    load = m["kexec: loaded kdump kernel"] - m["KDUMPY-JOB-BEGIN"]
    save = m["kdump: saved vmcore to"] - m["Kernel panic"]
    print(
        f"\n{series}: to /init {m['Run /init']:.1f} s, job start to capture kernel loaded "
        f"{load:.1f} s, panic to saved {save:.1f} s, total {result.run.elapsed:.1f} s"
    )

    crash = read_back(target.path, "/var/crash", tmp_path / "got")
    (dump_dir,) = list(crash.iterdir())
    assert DIR_NAME.fullmatch(dump_dir.name), dump_dir.name
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]  # fmt: skip
    vmcore = dump_dir / "vmcore"
    assert oct(vmcore.stat().st_mode & 0o777) == "0o600"
    first = first_kernel_serial(serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)

    # A kdump-compressed file of this arm64 kernel, lzo pages, filtered at -d 31.
    head = kdump_headers(vmcore)
    assert head["signature"] == b"KDUMP   "
    assert (head["machine"], head["release"]) == ("aarch64", kernel.release)
    assert head["status"] & DUMP_DH_COMPRESSED_LZO and head["block_size"] == 4096
    assert head["dump_level"] == 31
    assert vmcore.stat().st_size < MEMORY // 8  # free, cache and user pages left out

    # drgn with the -dbg vmlinux: this kernel's crash, on the task that wrote to sysrq-trigger.
    seen = drgn_view(vmcore, kernel)
    assert seen["release"] == kernel.release
    assert "sysrq_handle_crash" in seen["crashed_stack"], seen["crashed_stack"]
    panic = panic_line(seen["dmesg"])
    assert panic in first
    # makedumpfile reads the same panic from the file kdumpy's collector wrote.
    if series in NO_MAKEDUMPFILE:
        return
    assert panic_line(makedumpfile_dmesg(vmcore, tmp_path / "mdf-dmesg.txt")) == panic
