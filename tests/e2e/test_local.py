"""Local filesystem and raw targets, end to end in the Debian guest."""

from __future__ import annotations

import subprocess

import pytest

from kdumpy.lab.debian_job import read_back
from kdumpy.lab.debian_kdump import Cycle, blank_ext4, run_cycle
from kdumpy.lab.qemu import Disk

from .helpers import (
    ALL_KERNELS,
    DIR_NAME,
    check_dmesg_file,
    check_dump,
    collector_for,
    first_kernel_serial,
    full_only,
)


@pytest.mark.parametrize(
    "kernel",
    [pytest.param(k, marks=[pytest.mark.vm, pytest.mark.slow]) for k in ALL_KERNELS],
    indirect=True,
)
def test_local_ext4_by_label(tmp_path, kernel):
    """On every lab kernel, with kdumpy's own default collector (no core_collector line)."""
    target = blank_ext4(tmp_path / "target.img", "kdumptgt")
    conf = "ext4 LABEL=kdumptgt\npath /var/crash\nfinal_action poweroff\n"
    result = run_cycle(Cycle(conf, disks=[target]), tmp_path / "run", kernel)
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-3000:]
    crash = read_back(target.path, "/var/crash", tmp_path / "got")
    (dump_dir,) = list(crash.iterdir())
    match = DIR_NAME.fullmatch(dump_dir.name)
    assert match and match.group(1) == "127.0.0.1", dump_dir.name
    names = sorted(p.name for p in dump_dir.iterdir())
    assert names == ["kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]
    assert oct(dump_dir.joinpath("vmcore").stat().st_mode & 0o777) == "0o600"
    first = first_kernel_serial(serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    check_dump(dump_dir / "vmcore", kernel, first)


def test_raw_device(tmp_path, kernel):
    raw = tmp_path / "raw.img"
    with open(raw, "wb") as fh:
        fh.truncate(2 << 30)
    conf = "raw /dev/vdc\n" + collector_for(kernel) + "final_action poweroff\n"
    result = run_cycle(Cycle(conf, disks=[Disk(raw)]), tmp_path / "run", kernel)
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to raw device /dev/vdc" in result.serial
    # makedumpfile -R (the reference tool) rearranges the flattened stream into a dump file.
    out = tmp_path / "vmcore"
    with open(raw, "rb") as src:
        subprocess.run(["makedumpfile", "-R", str(out)], stdin=src, check=True,
                       capture_output=True)  # fmt: skip
    check_dump(out, kernel, first_kernel_serial(result.serial))


# Made in the guest by setup.sh (the host has no xfs/btrfs tools); read back by a loop mount.
FS_CASES = {
    "xfs-uuid": ("mkfs.xfs -q -f -m uuid=5d3a6c1e-1f0b-4c41-9d7e-2b9d6a1c0001 /dev/vdc",
                 "xfs UUID=5d3a6c1e-1f0b-4c41-9d7e-2b9d6a1c0001"),
    "btrfs-device": ("mkfs.btrfs -q -f /dev/vdc", "btrfs /dev/vdc"),
}  # fmt: skip


@full_only
@pytest.mark.parametrize("case", list(FS_CASES))
def test_local_xfs_btrfs(tmp_path, kernel, case):
    mkfs, target_line = FS_CASES[case]
    disk = tmp_path / "target.img"
    with open(disk, "wb") as fh:
        fh.truncate(2 << 30)
    conf = f"{target_line}\npath /var/crash\n" + collector_for(kernel) + "final_action poweroff\n"
    setup = f"{mkfs}\nmkdir -p /mnt/t && mount /dev/vdc /mnt/t && mkdir -p /mnt/t/var/crash\n"
    setup += "umount /mnt/t\nudevadm settle\n"
    cycle = Cycle(conf, files={"setup.sh": setup}, disks=[Disk(disk)])
    result = run_cycle(cycle, tmp_path / "run", kernel)
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in result.serial, result.serial[-3000:]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # nouuid: every xfs case's filesystem has the same UUID, and another run's (or another
    # kernel's) may be mounted at the same time.
    options = "loop,ro,nouuid" if case.startswith("xfs") else "loop,ro"
    mounted = subprocess.run(["mount", "-o", options, str(disk), str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount the target here: {mounted.stderr.decode().strip()}")
    try:
        (dump_dir,) = list((mnt / "var" / "crash").iterdir())
        assert DIR_NAME.fullmatch(dump_dir.name), dump_dir.name
        assert (dump_dir / "vmcore-dmesg.txt").exists()
        first = first_kernel_serial(result.serial)
        check_dump(dump_dir / "vmcore", kernel, first)
    finally:
        # A failed check must not leave the mount behind: lazily, if it is still busy.
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)
