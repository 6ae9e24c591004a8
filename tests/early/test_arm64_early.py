"""Early kdump on arm64, in the arm64 guest of kdumpy.lab.arm64_guest (full matrix).

A set-up boot (the lab's busybox initramfs) runs, as Debian's kernel postinst would,
``update-initramfs -c`` in the guest (initramfs-tools unpacked with the rest), installs a
test-only init-premount script that panics when the command line asks, and runs ``kdumpy
early enable``.  The system initramfs initramfs-tools then made in the guest is booted with
``rd.earlykdump`` and the panic: the early stage loads the capture kernel long before the
root is mounted, and kdumpy's capture initramfs saves the dump.  Debian's arm64 kernels have
no kexec_file_load, so the early stage runs kdumpy's own kexec_load loader with the guest's
python3 (copied into the system initramfs by the hook), not kexec-tools, whose kexec_load
writes a 16 EiB core header on arm64-6.1 (no KALLSYMS_ALL).

Kernels: arm64-6.12 and arm64-6.1 (~12 min each under TCG).
Oracles: the serial console, drgn with the -dbg vmlinux (release, the crashed stack, the
log's panic line on the console).
"""

from __future__ import annotations

import pytest
from e2e.helpers import drgn_view, first_kernel_serial, panic_line

from kdumpy.lab import arm64_guest
from kdumpy.lab.arm64_guest import GUEST_CMDLINE, base_image
from kdumpy.lab.debian_job import Job, overlay, read_back
from kdumpy.lab.debian_kdump import blank_ext4
from kdumpy.lab.kernels import get_kernel
from kdumpy.lab.qemu import Disk, parse_size, run_guest

from .guest import PANIC_PARAM, PANIC_SCRIPT

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.full]
TARGET_LABEL = "kdumptgt"
KDUMP_CONF = f"ext4 LABEL={TARGET_LABEL}\npath /var/crash\nfinal_action poweroff\n"

# What Debian's kernel postinst would have made: the system initramfs early kdump updates.
MAKE_INITRD = 'update-initramfs -c -k "$(uname -r)" > out/update-initramfs.txt 2>&1'
SETUP_JOB = """set -e
cp kdump.conf /etc/kdump.conf
install -m 0755 panic.sh /etc/initramfs-tools/scripts/init-premount/kdumpy-test-panic
{make_initrd}
rc=0; python3 -m kdumpy early enable > out/enable.txt 2>&1 || rc=$?
echo "$rc" > out/enable.rc
python3 -m kdumpy early status > out/status-setup.txt 2>&1 || true
lsinitramfs "/boot/initrd.img-$(uname -r)" > out/lsinitramfs.txt 2>&1 || true
if [ -e "/boot/initrd.img-$(uname -r)" ]; then cp "/boot/initrd.img-$(uname -r)" out/initrd.img; fi
"""


def _setup(series: str, tmp_path, make_initrd: bool = True):
    kernel = get_kernel(series)
    job = Job(
        script=SETUP_JOB.format(make_initrd=MAKE_INITRD if make_initrd else ""),
        files={"kdump.conf": KDUMP_CONF, "panic.sh": PANIC_SCRIPT},
        # The target, there as at crash time: the capture initramfs is built for its disk.
        disks=[blank_ext4(tmp_path / "setup-target.img", TARGET_LABEL, "1G")],
        crashkernel="256M",
        timeout=3000,  # two update-initramfs and a capture initramfs under TCG
        root_overlay=tmp_path / "root.qcow2",
    )
    result = arm64_guest.run_job(job, tmp_path / "setup", kernel)
    assert result.rc == 0, result.log[-3000:]
    return kernel, result


@pytest.mark.parametrize("series", ["arm64-6.12", "arm64-6.1"])
def test_early_kdump_saves_a_boot_time_crash_on_arm64(tmp_path, series):
    kernel, setup = _setup(series, tmp_path)
    enable = (setup.out / "enable.txt").read_text()
    assert (setup.out / "enable.rc").read_text().strip() == "0", enable
    assert "Early kdump enabled (initramfs-tools)" in enable, enable
    # Neither kernel has kexec_file_load: the early stage runs kdumpy's loader.
    assert "Early stage loader: kdumpy's kexec_load loader" in enable, enable
    status = (setup.out / "status-setup.txt").read_text()
    assert "Early stage loader: kdumpy's kexec_load loader" in status, status
    target = blank_ext4(tmp_path / "target.img", TARGET_LABEL, "2G")
    root = overlay(base_image(kernel), tmp_path / "root.qcow2", reuse=True)
    append = f"{GUEST_CMDLINE} crashkernel=256M rd.earlykdump {PANIC_PARAM}"
    run = run_guest(
        kernel=kernel.vmlinuz, initrd=setup.out / "initrd.img", append=append,
        memory=parse_size("1G"), serial_log=tmp_path / "early" / "serial.log",
        disks=[Disk(root, "qcow2"), target], timeout=1200, arch="arm64",
        markers=("Run /init", "early-kdump is enabled", "kexec: loaded early-kdump kernel",
                 "Kernel panic", "kdumpy-init:", "kdump: saved vmcore to"),
    )  # fmt: skip
    serial = run.serial_text()
    assert "kexec: loaded early-kdump kernel" in serial, serial[-3000:]
    assert "(kdumpy kexec_load)" in serial, serial[-3000:]
    assert "kdumpy-test: crashing the kernel during boot" in serial
    assert "kdump: saved vmcore to" in serial, serial[-3000:]
    m = run.markers
    print(f"\nearly arm64: to /init {m['Run /init']:.1f} s, loaded "
          f"{m['kexec: loaded early-kdump kernel']:.1f} s, panic to saved "
          f"{m['kdump: saved vmcore to'] - m['Kernel panic']:.1f} s")  # fmt: skip
    crash = read_back(target.path, "/var/crash", tmp_path / "got")
    (dump_dir,) = list(crash.iterdir())
    vmcore = dump_dir / "vmcore"
    seen = drgn_view(vmcore, kernel)
    assert seen["release"] == kernel.release
    assert "sysrq_handle_crash" in seen["crashed_stack"], seen["crashed_stack"]
    assert panic_line(seen["dmesg"]) in first_kernel_serial(serial)
