"""The capture initramfs: listed by GNU cpio, and booted by a real kernel in QEMU.

The boot test is the only place where the /init script, the Python runtime we pack,
the kernel modules, the target mount and the kexec_file_load system call meet a real
kernel.  Oracles: GNU cpio's listing, the serial console, debugfs reading the ext4
image the guest wrote, and the kernel's own /sys/kernel/kexec_crash_{size,loaded}.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.service.crashkernel import MiB


def test_archive_lists_with_cpio(lab_initramfs, cpio_list, lab_kernel_61) -> None:
    names = set(cpio_list(lab_initramfs.path))
    assert {"init", "bin/busybox", "bin/sh", "etc/kdump.conf", "etc/kdumpy/init.env"} <= names
    assert "dev/console" in names
    python = [n for n in names if re.search(r"bin/python3\.\d+$", n)]
    assert python, "the interpreter is missing"
    assert any(n.endswith("kdumpy/service/config.pyc") for n in names)
    assert any(n.endswith("/encodings/__init__.pyc") for n in names)
    sources = [n for n in names if n.endswith(".py") and n != "usr/lib/kdumpy/selftest.py"]
    assert not sources, "Python source shipped beside the byte code"
    assert "lib/modules/kdumpy/virtio_blk.ko" in names
    assert set(lab_initramfs.modules) >= {"virtio_blk", "virtio_pci"}
    # Dependencies come first, as modules.dep orders them.
    assert lab_initramfs.modules.index("virtio_ring") < lab_initramfs.modules.index("virtio_blk")


def test_archive_is_small_enough(lab_initramfs) -> None:
    """The size budget: every byte costs crashkernel memory on every server."""
    print(
        f"initramfs {lab_initramfs.size / MiB:.1f} MiB compressed, "
        f"{lab_initramfs.unpacked / MiB:.1f} MiB unpacked"
    )
    assert lab_initramfs.size < 40 * MiB


def test_init_env_quotes_config_values(tmp_path: Path) -> None:
    """A hostile value from kdump.conf stays one word when /init sources init.env."""
    from kdumpy.service.initramfs import render_env

    env = tmp_path / "init.env"
    env.write_text(render_env({"KDUMP_TARGET_SPEC": "LABEL=x; touch /tmp/pwned $(id)"}))
    out = subprocess.run(
        ["sh", "-c", f'. {env}; printf "%s" "$KDUMP_TARGET_SPEC"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "LABEL=x; touch /tmp/pwned $(id)"


def _disk_with(tmp_path: Path, files: dict[str, Path]) -> Path:
    """A 256 MiB ext4 image labelled kdumptest, holding ``files`` (mke2fs -d)."""
    if shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None:
        pytest.skip("e2fsprogs not installed")
    root = tmp_path / "diskroot"
    for dest, src in files.items():
        (root / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / dest)
    root.mkdir(exist_ok=True)
    disk = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "256M", str(disk)], check=True)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "kdumptest", "-d", str(root), str(disk)], check=True
    )
    return disk


def _boot(kernel, initrd: Path, disk: Path, tmp_path: Path, append: str, memory: int):
    """Boot the lab kernel with our capture initramfs; these guests finish in under a minute.

    A guest that hangs under TCG (seen once in CI, on a boot that passes every time here) is
    booted once more with the hang's last console line printed, so the log shows it happened
    and a second hang still fails the test.
    """
    from kdumpy.errors import KdumpyError
    from kdumpy.lab.qemu import Disk, run_guest

    def boot():
        return run_guest(
            kernel=kernel.vmlinuz,
            initrd=initrd,
            append=f"console=ttyS0 panic=-1 {append}",
            memory=memory,
            serial_log=tmp_path / "serial.log",
            disks=[Disk(disk)],
            timeout=240,
            markers=("kdumpy-init:", "kdumpy-selftest: done"),
        )

    try:
        return boot()
    except KdumpyError as e:
        if "did not power off" not in str(e):
            raise
        print(f"first boot hung, booting again: {e}")
        shutil.copyfile(tmp_path / "serial.log", tmp_path / "serial.hung.log")
        return boot()


@pytest.mark.vm
def test_boots_runs_python_and_kexec_file_load(lab_initramfs, lab_kernel_61, tmp_path) -> None:
    disk = _disk_with(
        tmp_path, {"boot/vmlinuz": lab_kernel_61.vmlinuz, "boot/initrd.img": lab_initramfs.path}
    )
    run = _boot(lab_kernel_61, lab_initramfs.path, disk, tmp_path, "crashkernel=256M", 1 << 30)
    log = run.serial_text()
    print(f"boot to selftest done: {run.markers.get('kdumpy-selftest: done')} s")
    assert "kdumpy-init: kdumpy capture initramfs for " + lab_kernel_61.release in log
    assert re.search(r"kdumpy-selftest: python 3\.\d+", log)
    assert "kdumpy-selftest: import kdumpy.service.config ok" in log
    assert "FAILED" not in "\n".join(
        ln for ln in log.splitlines() if "import kdumpy.service" in ln or "kexec" in ln
    )
    assert "kdumpy-selftest: target mounted True" in log
    # The kernel's own account of the reservation and of the loaded image.
    assert f"kdumpy-selftest: kexec_crash_size {256 * MiB}" in log
    assert "kdumpy-selftest: loaded True" in log
    assert "kdumpy-selftest: unloaded True" in log
    assert "kdumpy-selftest: done" in log
    # debugfs (e2fsprogs) reads back what the guest wrote through /kdumproot.
    out = subprocess.run(
        ["debugfs", "-R", "cat /dumps/kdumpy-selftest", str(disk)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "written by the kdumpy capture initramfs" in out


@pytest.mark.vm
@pytest.mark.parametrize(
    "crashkernel",
    ["512M-2G:64M,2G-:128M", "1G-4G:96M@0", "0x6000000", "200M,high 48M,low"],
)
def test_kernel_reserves_what_we_predict(lab_initramfs, lab_kernel_61, tmp_path, crashkernel):
    """Our crashkernel= reading against the kernel's: /sys/kernel/kexec_crash_size."""
    from kdumpy.service.crashkernel import reservation

    disk = _disk_with(tmp_path, {})
    append = " ".join(f"crashkernel={v}" for v in crashkernel.split())
    run = _boot(lab_kernel_61, lab_initramfs.path, disk, tmp_path, append, 1 << 30)
    match = re.search(r"kdumpy-selftest: kexec_crash_size (\d+)", run.serial_text())
    assert match, run.serial_text()[-2000:]
    ram = _guest_system_ram(run.serial_text())
    predicted = reservation(append, ram)
    # kexec_crash_size covers the main region; ,low is a separate resource.
    assert int(match.group(1)) == predicted.size


def _guest_system_ram(log: str) -> int:
    """RAM the guest kernel saw, from its own e820 map on the console (usable ranges)."""
    total = 0
    for m in re.finditer(r"\[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] usable", log):
        total += int(m.group(2), 16) - int(m.group(1), 16) + 1
    assert total, "no e820 map on the console"
    return total


@pytest.mark.vm
@pytest.mark.slow
def test_full_kdump_cycle(lab_initramfs, lab_kernel_61, tmp_path) -> None:
    """First kernel loads kernel + our initramfs with kexec_file_load, panics; the capture
    kernel boots our /init, which mounts the target and runs the capture side.  The saved
    vmcore is read back out of the ext4 image and checked with makedumpfile."""
    disk = _disk_with(
        tmp_path, {"boot/vmlinuz": lab_kernel_61.vmlinuz, "boot/initrd.img": lab_initramfs.path}
    )
    append = "crashkernel=384M kdumpy.selftest=crash"
    run = _boot(lab_kernel_61, lab_initramfs.path, disk, tmp_path, append, 1 << 30)
    log = run.serial_text()
    assert "kdumpy-selftest: crashing" in log
    assert log.count("kdumpy-init: kdumpy capture initramfs for") == 2, "no capture boot"
    listing = subprocess.run(
        ["debugfs", "-R", "ls /dumps", str(disk)], capture_output=True, text=True, check=True
    ).stdout
    dirs = re.findall(r"127\.0\.0\.1-[0-9:-]+", listing)
    assert dirs, f"no dump directory: {listing}"
    vmcore = tmp_path / "vmcore"
    subprocess.run(
        ["debugfs", "-R", f"dump /dumps/{dirs[0]}/vmcore {vmcore}", str(disk)],
        capture_output=True,
        check=True,
    )
    assert vmcore.stat().st_size > 1 << 20
    dmesg = tmp_path / "dmesg.txt"
    subprocess.run(["makedumpfile", "--dump-dmesg", str(vmcore), str(dmesg)], check=True)
    panic = "Kernel panic - not syncing: sysrq triggered crash"
    assert panic in log and panic in dmesg.read_text(errors="replace")


def test_runtime_runs_in_chroot(lab_initramfs, tmp_path) -> None:
    """Unpack the archive with GNU cpio and run its own interpreter the way /init does
    (-S -m, PYTHONPATH from init.env), with nothing from the host but the kernel."""
    if shutil.which("chroot") is None or shutil.which("cpio") is None:
        pytest.skip("chroot or cpio missing")
    root = tmp_path / "root"
    root.mkdir()
    raw = subprocess.run(["zstd", "-dc", str(lab_initramfs.path)], capture_output=True).stdout
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"],
        input=raw,
        cwd=root,
        check=True,
    )
    script = (
        ". /etc/kdumpy/init.env; export PYTHONPATH=$KDUMP_PYTHONPATH; "
        '"$KDUMP_PYTHON" -S -m kdumpy.capture --help >/dev/null && '
        '"$KDUMP_PYTHON" -S -c "import kdumpy.collect, kdumpy.vmcore, kdumpy.service.kexec; '
        # getaddrinfo on a str host looks up the idna codec by name (ssh/NFS targets).
        "import socket; socket.getaddrinfo('127.0.0.1', 22); "
        "print('runtime ok')\""
    )
    proc = subprocess.run(
        ["chroot", str(root), "/bin/sh", "-c", script], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "runtime ok"


@pytest.mark.parametrize(
    ("options", "fstype", "mount"),
    [
        ("defaults", "nfs4", "rw"),
        ("rw,vers=4.2,soft", "nfs4", "rw,vers=4.2,soft"),
        ("nfsvers=3,noauto,nofail", "nfs", "rw,nfsvers=3"),
        ("ro,vers=2", "nfs", "rw,vers=2"),
    ],
)
def test_nfs_and_mount_options(options: str, fstype: str, mount: str) -> None:
    """kdump-utils' rules: the dump target is mounted rw, without fstab's boot options."""
    from kdumpy.service.initramfs import _mount_options, _nfs_fstype

    assert _nfs_fstype(options) == fstype
    assert _mount_options(options) == mount
