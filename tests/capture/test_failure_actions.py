"""failure_action shell and dump_to_rootfs, with the save flow run on the host.

The machine-level actions are recorded instead of performed (the one thing a host cannot
do for real); the dumps, filesystems and mounts are real.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from kdumpy.capture.actions import Actions
from kdumpy.capture.flow import CaptureOptions, run_capture
from kdumpy.capture.log import CaptureLog

COLLECTOR = "core_collector makedumpfile -l --message-level 7 -d 31\n"


def _run(tmp_path, dump, conf_text: str, **opts) -> tuple[object, Actions, CaptureLog]:
    conf = tmp_path / "kdump.conf"
    conf.write_text(conf_text)
    log = CaptureLog(open(os.devnull, "w"))  # noqa: SIM115
    actions = Actions(log, dry_run=True)
    options = CaptureOptions(config=str(conf), vmcore=str(dump.vmcore), cmdline="", **opts)
    return run_capture(options, log, actions), actions, log


def test_shell_then_final_action(tmp_path, dump_61, makedumpfile):
    """The target's device does not exist: shell, then final_action (kdump-utils order)."""
    conf = ("ext4 /dev/kdumpy-no-such-disk\n" + COLLECTOR +
            "failure_action shell\nfinal_action halt\n")  # fmt: skip
    mnt = tmp_path / "mnt"
    result, actions, log = _run(tmp_path, dump_61, conf, mountpoint=str(mnt))
    assert not result.ok
    assert "cannot mount ext4 /dev/kdumpy-no-such-disk" in result.error
    assert log.text().count("mount attempt") == 4  # bounded retries
    assert actions.performed == ["shell", "halt"]


@pytest.fixture
def loop_ext4(tmp_path):
    image = tmp_path / "rootfs.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image), "64M"], check=True)
    proc = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"no loop device: {proc.stderr.strip()}")
    device = proc.stdout.strip()
    yield image, device
    subprocess.run(["losetup", "-d", device], check=False)


def test_dump_to_rootfs(tmp_path, dump_61, makedumpfile, loop_ext4):
    """The target fails; the dump goes to the first kernel's root filesystem instead."""
    image, device = loop_ext4
    rootfs_file = tmp_path / "rootfs"
    rootfs_file.write_text(f"ext4 {device}\n")
    conf = ("ext4 /dev/kdumpy-no-such-disk\npath /var/crash\n" + COLLECTOR +
            "failure_action dump_to_rootfs\nfinal_action poweroff\n")  # fmt: skip
    result, actions, log = _run(
        tmp_path, dump_61, conf, mountpoint=str(tmp_path / "mnt"),
        rootfs_file=str(rootfs_file), rootfs_mountpoint=str(tmp_path / "sysroot"),
    )  # fmt: skip
    assert not result.ok  # the configured target failed...
    assert "dump_to_rootfs: trying ext4" in log.text()
    assert "saved vmcore to ext4 " + device in log.text(), log.text()
    assert actions.performed == ["poweroff"]
    assert not os.path.ismount(tmp_path / "sysroot")  # unmounted after the save
    out = tmp_path / "got"
    out.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump /var/crash {out}", str(image)], check=True,
                   capture_output=True)  # fmt: skip
    (dump_dir,) = list((out / "crash").iterdir())
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt",
    ]  # fmt: skip
