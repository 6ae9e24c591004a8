"""Early kdump proven on a real dracut system: the lab's Debian guest with dracut (6.1).

The guest's system initramfs is made by Debian's ``dracut`` package (systemd initrd), not
initramfs-tools.  One set-up boot runs ``kdumpy early enable`` in the guest, which installs
our dracut module and lets dracut regenerate the system initramfs; the host unpacks that
image with zstd + GNU cpio.  Then the image is booted with ``rd.earlykdump`` and a crash
injected by a test-only dracut pre-udev hook (after the cmdline hooks, long before the real
root and kdumpy.service): the serial console must show our module loading the capture
kernel, the hook must read ``/sys/kernel/kexec_crash_loaded`` = 1, and the capture kernel
must save the dump (debugfs reads the target disk, makedumpfile reads the dump's log).
Without ``rd.earlykdump`` the same crash finds nothing loaded and is lost.

Three QEMU TCG boots (set-up ~3.5 min, the two crash boots ~25 s each) plus, on a cold
cache, the dracut variant of the image (~30 s beside the initramfs-tools one).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from . import guest as g

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def dracut_guest(tmp_path_factory) -> g.EarlyGuest:
    from kdumpy.lab.debian import DRACUT
    from kdumpy.lab.kernels import get_kernel

    return g.setup(tmp_path_factory.mktemp("early-dracut"), get_kernel("6.1"), DRACUT)


def _cpio_members(initrd: Path, workdir: Path) -> dict[str, Path]:
    """Unpack the system initramfs with zstd + GNU cpio (the lab's dracut.conf: zstd, no
    early microcode cpio in front)."""
    dest = workdir / "unpacked"
    dest.mkdir(exist_ok=True)
    data = subprocess.run(["zstd", "-dc", str(initrd)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=data, cwd=dest,
                   check=True, capture_output=True)  # fmt: skip
    return {str(p.relative_to(dest)): p for p in dest.rglob("*")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dracut_file(members: dict[str, Path], name: str) -> Path:
    """A file under dracut's /lib/dracut (/usr/lib/dracut on a merged-/usr system)."""
    for prefix in ("usr/lib", "lib"):
        if f"{prefix}/dracut/{name}" in members:
            return members[f"{prefix}/dracut/{name}"]
    raise AssertionError(f"no /lib/dracut/{name} in the initramfs")


def test_dracut_enable_puts_the_module_and_capture_kernel_in_the_initramfs(dracut_guest, tmp_path):
    out = dracut_guest.setup_out
    enable = (out / "enable.txt").read_text()
    assert "Early kdump enabled (dracut)" in enable, enable
    members = _cpio_members(dracut_guest.initrd, tmp_path)
    for name in ("vmlinuz", "initrd.img", "early.conf", "kdumpy-early.sh"):
        assert f"kdumpy-early/{name}" in members, name
    assert "sbin/kexec" in members or "usr/sbin/kexec" in members  # /sbin may be a link
    assert _sha(members["kdumpy-early/vmlinuz"]) == _sha(dracut_guest.kernel.vmlinuz)
    capture = (out / "capture.sha256").read_text().split()[0]
    assert _sha(members["kdumpy-early/initrd.img"]) == capture
    # Our cmdline hook, first of the cmdline stage; the test's panic hook in pre-udev.
    hook = _dracut_file(members, "hooks/cmdline/00-kdumpy-early-hook.sh")
    assert "/kdumpy-early/kdumpy-early.sh load" in hook.read_text()
    _dracut_file(members, "hooks/pre-udev/00-kdumpy-test-panic.sh")
    # dracut's own record of the modules it included (what lsinitrd prints).
    modules = _dracut_file(members, "modules.txt").read_text().split()
    assert "kdumpy-early" in modules and "systemd-initrd" in modules, modules
    growth = dracut_guest.initrd.stat().st_size - dracut_guest.original_initrd.stat().st_size
    print(f"dracut system initramfs grew by {growth / 2**20:.1f} MiB")


def test_dracut_boot_crash_is_captured_with_early_kdump(dracut_guest, tmp_path):
    boot, target = g.panic_boot(dracut_guest, "panic-early", early=True)
    serial = boot.serial
    stamps = [
        g.stamp(serial, needle)
        for needle in ("early-kdump is enabled.", "kexec: loaded early-kdump kernel",
                       "kdumpy-test: kexec_crash_loaded=", "kdumpy-test: crashing")
    ]  # fmt: skip
    assert all(s is not None for s in stamps), (stamps, serial[-4000:])
    assert stamps == sorted(stamps), stamps
    # sysfs, read in the initramfs before any service of the real root could run.
    assert "kdumpy-test: kexec_crash_loaded=1 in dracut pre-udev" in serial
    before, after = serial.split("kdumpy-test: crashing", 1)
    assert "Switching root" not in before and "kdumpy.service" not in before
    # The capture kernel booted from the reservation and saved the dump.
    assert "kdump: saved vmcore to" in after
    # The dump's own kernel log, read by makedumpfile: the early load, then the crash.
    text = g.saved_dump_log(target, tmp_path)
    assert text.index("kexec: loaded early-kdump kernel") < text.index("kdumpy-test: crashing")
    assert "sysrq: Trigger a crash" in text


def test_dracut_boot_crash_is_lost_without_early_kdump(dracut_guest):
    """The same image and crash without rd.earlykdump: our hook runs but loads nothing, sysfs
    says 0 where the crash is injected, and no capture kernel boots."""
    boot, target = g.panic_boot(dracut_guest, "panic-no-early", early=False)
    serial = boot.serial
    assert "early-kdump is disabled." in serial
    assert "kdumpy-test: kexec_crash_loaded=0 in dracut pre-udev" in serial
    assert "Kernel panic - not syncing" in serial
    assert "kexec: loaded early-kdump kernel" not in serial
    assert serial.count("Linux version ") == 1, "a capture kernel booted"
    listing = subprocess.run(["debugfs", "-R", "ls -p /", str(target)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "/var/" not in listing and "crash" not in listing, listing
