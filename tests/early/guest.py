"""Early kdump in the lab's Debian guest: set up once, then boot the result several ways.

``setup`` boots the guest once (a qcow2 overlay of the lab image, kept for the later
boots) and runs, as root in the guest: ``kdumpy install-service``, ``kdumpy early
enable``, with a test-only init-premount script that panics during boot when the
command line says ``kdumpy_test_panic=init-premount``.  The system initramfs that
``update-initramfs`` made in the guest is read back, and later boots use it as QEMU's
``-initrd``.  Nothing of kdumpy's early stage is built on the host.

``setup(..., generator="dracut")`` does the same in the lab image's dracut variant
(dracut's systemd initrd): the test-only panic is a dracut module whose pre-udev hook
(after the cmdline hooks, where early kdump loads) also logs kexec_crash_loaded.

Also used by benchmarks/early_bench.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kdumpy.lab.debian import DRACUT, INITRAMFS_TOOLS, base_image
from kdumpy.lab.debian_config import JOB_LABEL
from kdumpy.lab.debian_job import GUEST_CMDLINE, make_job_disk, overlay, read_back
from kdumpy.lab.debian_kdump import blank_ext4
from kdumpy.lab.kernels import LabKernel
from kdumpy.lab.qemu import Disk, GuestRun, parse_size, run_guest

CRASHKERNEL = "256M"
MEMORY = "1G"
PANIC_PARAM = "kdumpy_test_panic=init-premount"
TARGET_LABEL = "kdumptgt"
KDUMP_CONF = f"ext4 LABEL={TARGET_LABEL}\npath /var/crash\nfinal_action poweroff\n"

# Test only: a boot-time crash after init-top (where early kdump loads) and long before
# any service, asked for on the kernel command line.
PANIC_SCRIPT = f"""#!/bin/sh
PREREQ=""
prereqs() {{ echo "$PREREQ"; }}
case "$1" in prereqs) prereqs; exit 0 ;; esac
for p in $(cat /proc/cmdline); do
    if [ "$p" = {PANIC_PARAM} ]; then
        echo "<2>kdumpy-test: crashing the kernel during boot (init-premount)" > /dev/kmsg
        echo c > /proc/sysrq-trigger
    fi
done
exit 0
"""

# Test only, dracut: the same boot-time crash from a pre-udev hook (dracut-pre-udev.service
# runs after dracut-cmdline.service, whose cmdline hooks load early kdump).  It first logs
# what sysfs says about the crash kernel, before any service of the real root.
DRACUT_PANIC_SETUP = """#!/bin/bash
check() { return 255; }
depends() { return 0; }
install() { inst_hook pre-udev 00 "$moddir/kdumpy-test-panic.sh"; }
"""
DRACUT_PANIC_HOOK = f"""#!/bin/sh
read -r kdumpy_test_cmdline < /proc/cmdline
for p in $kdumpy_test_cmdline; do
    if [ "$p" = {PANIC_PARAM} ]; then
        read -r kdumpy_test_loaded < /sys/kernel/kexec_crash_loaded
        echo "<2>kdumpy-test: kexec_crash_loaded=$kdumpy_test_loaded in dracut pre-udev" > /dev/kmsg
        echo "<2>kdumpy-test: crashing the kernel during boot (dracut pre-udev)" > /dev/kmsg
        echo c > /proc/sysrq-trigger
    fi
done
"""
DRACUT_PANIC_MODULE = "/usr/lib/dracut/modules.d/98kdumpy-test-panic"

# Bench only: a kernel log line when kdumpy.service has loaded the capture kernel.
SERVICE_DROPIN = (
    "[Service]\nExecStartPost=/bin/sh -c 'echo \"<5>kdumpy-bench: kdumpy.service done, "
    "kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)\" > /dev/kmsg'\n"
)

# Both setup jobs end alike: install the service, enable early kdump, keep what it made.
_ENABLE_AND_KEEP = """python3 -m kdumpy install-service > out/install-service.txt 2>&1
python3 -m kdumpy early enable > out/enable.txt 2>&1
python3 -m kdumpy early status > out/status-setup.txt 2>&1 || true
cp /boot/initrd.img-$(uname -r) out/initrd.img
sha256sum /var/lib/kdumpy/initramfs-$(uname -r)kdump.img > out/capture.sha256
ls -l /var/lib/kdumpy /var/lib/kdumpy/early > out/state.txt
"""

SETUP_JOB = (
    """set -e
cp kdump.conf /etc/kdump.conf
install -m 0755 panic.sh /etc/initramfs-tools/scripts/init-premount/kdumpy-test-panic
mkdir -p /etc/systemd/system/kdumpy.service.d
cp dropin.conf /etc/systemd/system/kdumpy.service.d/bench.conf
"""
    + _ENABLE_AND_KEEP
)

DRACUT_SETUP_JOB = (
    f"""set -e
cp kdump.conf /etc/kdump.conf
mkdir -p {DRACUT_PANIC_MODULE}
install -m 0755 panic-setup.sh {DRACUT_PANIC_MODULE}/module-setup.sh
install -m 0755 panic-hook.sh {DRACUT_PANIC_MODULE}/kdumpy-test-panic.sh
echo 'add_dracutmodules+=" kdumpy-test-panic "' > /etc/dracut.conf.d/98-kdumpy-test.conf
"""
    + _ENABLE_AND_KEEP
)

# After a boot with the early stage: what status and start say in the guest itself.
CHECK_JOB = """python3 -m kdumpy early status > out/status.txt 2>&1; echo $? > out/status.rc
python3 -m kdumpy start > out/start.txt 2>&1; echo $? > out/start.rc
journalctl -b -o short-monotonic --no-pager > out/journal.txt 2>&1
journalctl -b -u kdumpy.service --no-pager > out/service.txt 2>&1
cat /sys/kernel/kexec_crash_loaded > out/kexec_crash_loaded
# Staleness: change the capture initramfs behind early kdump's back (the service's own
# rebuild, without the early hook), then let `kdumpy rebuild` refresh the early copy.
sed -i 's/^final_action poweroff/final_action reboot/' /etc/kdump.conf
python3 -c 'from kdumpy.service import control, paths
control.rebuild(paths.ServicePaths(), print)' > out/rebuild-plain.txt 2>&1
python3 -m kdumpy early status > out/status-stale.txt 2>&1
python3 -m kdumpy rebuild > out/rebuild.txt 2>&1
python3 -m kdumpy early status > out/status-rebuilt.txt 2>&1
python3 -m kdumpy early disable > out/disable.txt 2>&1; echo $? > out/disable.rc
cp /boot/initrd.img-$(uname -r) out/initrd-disabled.img
ls /etc/initramfs-tools/hooks /etc/initramfs-tools/scripts/init-top > out/hooks-after-disable.txt
python3 -m kdumpy early status > out/status-disabled.txt 2>&1
"""

# Waits for kdumpy.service (ordered after the network) and records the kernel log.
SERVICE_JOB = """systemctl start kdumpy.service
python3 -m kdumpy early status > out/status.txt 2>&1; echo $? > out/status.rc
journalctl -b -u kdumpy.service --no-pager > out/service.txt 2>&1
cat /sys/kernel/kexec_crash_loaded > out/kexec_crash_loaded
"""


@dataclass
class EarlyGuest:
    """The guest after ``kdumpy early enable``: its disk and its new system initramfs."""

    workdir: Path
    kernel: LabKernel
    root: Path  # qcow2 overlay, carried from boot to boot
    initrd: Path  # the system initramfs update-initramfs made in the guest
    original_initrd: Path  # the lab image's initramfs, without early kdump
    setup_out: Path


@dataclass
class Boot:
    run: GuestRun
    out: Path | None  # the job's out/ (None when no job ran)

    @property
    def serial(self) -> str:
        return self.run.serial_text()

    def text(self, name: str) -> str:
        assert self.out is not None
        path = self.out / name
        return path.read_text(errors="replace") if path.exists() else ""


def _job_disk(workdir: Path, script: str, files: dict[str, str], with_kdumpy: bool) -> Path:
    """The KDUMPYJOB disk; without the kdumpy tree when kdumpy.service may be running
    (the job runner would replace /opt/kdumpy under its feet)."""
    from kdumpy.lab.debian_job import Job

    if with_kdumpy:
        return make_job_disk(Job(script=script, files=dict(files)), workdir)
    tree = workdir / "jobtree"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "out").mkdir(parents=True)
    (tree / "job.sh").write_text(script)
    image = workdir / "job.img"
    image.unlink(missing_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", JOB_LABEL, "-d", str(tree), str(image), "64M"],
                   check=True, capture_output=True)  # fmt: skip
    return image


def _boot(guest_kernel: LabKernel, initrd: Path, append: str, disks: list[Disk], log: Path,
          timeout: float = 1200) -> GuestRun:  # fmt: skip
    markers = ("Run /init", "early-kdump is", "kexec: loaded early-kdump kernel",
               "Kernel panic", "kdump: saved vmcore to", "KDUMPY-JOB-END")  # fmt: skip
    return run_guest(
        kernel=guest_kernel.vmlinuz, initrd=initrd, append=append, memory=parse_size(MEMORY),
        serial_log=log, disks=disks, timeout=timeout, markers=markers,
        extra_args=["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"],
    )  # fmt: skip


def _cmdline(extra: str) -> str:
    return f"{GUEST_CMDLINE} crashkernel={CRASHKERNEL} {extra}".strip()


def setup(workdir: Path, kernel: LabKernel, generator: str = INITRAMFS_TOOLS) -> EarlyGuest:
    """Boot once: install the service and early kdump in the guest; keep disk and initrd."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = base_image([kernel], generator)
    tree = "rootfs-dracut" if generator == DRACUT else "rootfs"
    original = base.parent / tree / "boot" / f"initrd.img-{kernel.release}"
    root = overlay(base, workdir / "root.qcow2")
    target = blank_ext4(workdir / "target.img", TARGET_LABEL, "1G")
    files = {"kdump.conf": KDUMP_CONF, "panic.sh": PANIC_SCRIPT, "dropin.conf": SERVICE_DROPIN}
    script = SETUP_JOB
    if generator == DRACUT:
        files = {"kdump.conf": KDUMP_CONF, "panic-setup.sh": DRACUT_PANIC_SETUP,
                 "panic-hook.sh": DRACUT_PANIC_HOOK}  # fmt: skip
        script = DRACUT_SETUP_JOB
    job = _job_disk(workdir, script, files, with_kdumpy=True)
    run = _boot(kernel, original, _cmdline(""), [Disk(root, "qcow2"), Disk(job), target],
                workdir / "setup.serial.log", timeout=3000)  # fmt: skip
    out = _read_out(job, workdir / "setup-out")
    if not (out / "initrd.img").exists():
        raise AssertionError(
            "setup failed: " + (out / "job.log").read_text(errors="replace")[-3000:]
            + run.serial_text()[-2000:]
        )  # fmt: skip
    return EarlyGuest(workdir, kernel, root, out / "initrd.img", original, out)


def load(workdir: Path, kernel: LabKernel) -> EarlyGuest | None:
    """A guest that ``setup`` already made in ``workdir`` (None if there is none)."""
    out = workdir / "setup-out"
    if not (out / "initrd.img").exists() or not (workdir / "root.qcow2").exists():
        return None
    original = base_image([kernel]).parent / "rootfs" / "boot" / f"initrd.img-{kernel.release}"
    return EarlyGuest(workdir, kernel, workdir / "root.qcow2", out / "initrd.img", original, out)


def _snapshot(root: Path, workdir: Path) -> Path:
    """A qcow2 overlay of the set-up disk: one boot's writes stay out of the others."""
    path = workdir / "root.qcow2"
    path.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(root), "-F", "qcow2",
                    str(path)], check=True, capture_output=True)  # fmt: skip
    return path


def _read_out(job: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    got = read_back(job, "/out", dest.with_name(dest.name + ".tmp"))
    got.rename(dest)
    shutil.rmtree(dest.with_name(dest.name + ".tmp"), ignore_errors=True)
    return dest


def panic_boot(guest: EarlyGuest, name: str, early: bool) -> tuple[Boot, Path]:
    """Boot with the boot-time panic, with or without rd.earlykdump; return the run and the
    fresh target disk the capture kernel (if any) wrote to."""
    work = guest.workdir / name
    work.mkdir(parents=True, exist_ok=True)
    target = blank_ext4(work / "target.img", TARGET_LABEL, "1G")
    snapshot = _snapshot(guest.root, work)
    append = _cmdline(("rd.earlykdump " if early else "") + PANIC_PARAM)
    run = _boot(guest.kernel, guest.initrd, append, [Disk(snapshot, "qcow2"), target],
                work / "serial.log")  # fmt: skip
    return Boot(run, None), target.path


def job_boot(guest: EarlyGuest, name: str, early: bool, script: str) -> Boot:
    """A full boot to the lab job (no panic), with or without rd.earlykdump."""
    work = guest.workdir / name
    work.mkdir(parents=True, exist_ok=True)
    snapshot = _snapshot(guest.root, work)
    job = _job_disk(work, script, {}, with_kdumpy=False)
    target = blank_ext4(work / "target.img", TARGET_LABEL, "1G")
    append = _cmdline("rd.earlykdump" if early else "")
    # Generous: a job may build initramfs images under TCG on a busy host.
    run = _boot(guest.kernel, guest.initrd, append, [Disk(snapshot, "qcow2"), Disk(job), target],
                work / "serial.log", timeout=3000)  # fmt: skip
    return Boot(run, _read_out(job, work / "out"))


_STAMP = re.compile(r"\[\s*(\d+\.\d+)\]")


def stamp(serial: str, needle: str) -> float | None:
    """The kernel timestamp of the first console line containing ``needle`` (a line may
    start with other output, e.g. initramfs-tools' "Begin: ..." before the kernel's)."""
    for line in serial.splitlines():
        at = line.find(needle)
        if at < 0:
            continue
        stamps = [m for m in _STAMP.finditer(line) if m.end() <= at]
        if stamps:
            return float(stamps[-1].group(1))
    return None


def saved_dump_log(target: Path, tmp_path: Path) -> str:
    """The one dump the capture kernel saved on *target* (its three files checked), and its
    kernel log as makedumpfile --dump-dmesg reads it."""
    crash_dir = read_back(target, "/var/crash", tmp_path / "got")
    (dump_dir,) = list(crash_dir.iterdir())
    names = sorted(p.name for p in dump_dir.iterdir())
    assert names == ["kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"], names
    log = tmp_path / "dmesg.txt"
    subprocess.run(["makedumpfile", "--dump-dmesg", str(dump_dir / "vmcore"), str(log)],
                   check=True, capture_output=True)  # fmt: skip
    return log.read_text(errors="replace")
