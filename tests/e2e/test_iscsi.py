"""Dumps saved to an iSCSI LUN: tgt's target on the host's loopback, open-iscsi in the guest.

The LUN is an ext4 image on the host that tgtd serves (:class:`kdumpy.lab.servers.IscsiTarget`,
CHAP on); the guest logs in with ``iscsiadm`` at 10.0.2.2 (QEMU's user network in front of
the host's loopback; the script is :mod:`kdumpy.lab.stacklab`'s), ``kdumpy start`` finds
the session under the target's filesystem in sysfs, and the capture kernel logs in again
with ``iscsistart`` before it mounts.  The dump is read straight from the LUN's image on
the host.

Oracles: drgn with the Debian -dbg vmlinux, makedumpfile and kdumpy's reader on the dump
that arrived in the LUN's image (tgtd wrote it, not the guest's disks), the serial
console's panic line, and the capture log's login line.  The failure case takes the target
away after ``kdumpy start``: failure_action with the reason, and ``kdumpy status`` on the
next boot says it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import kdumpy
from kdumpy.lab import stacklab
from kdumpy.lab.debian_job import Job, read_back, run_job
from kdumpy.lab.debian_kdump import Cycle, run_cycle
from kdumpy.lab.servers import GUEST_HOST_IP, IscsiTarget
from kdumpy.lab.stacklab import CHAP, IQN

from .helpers import (
    DIR_NAME,
    check_dmesg_file,
    check_dump,
    collector_for,
    first_kernel_serial,
    full_only,
)

# The collector line is added per kernel (helpers.collector_for): the guest's makedumpfile
# 1.7.2 leaves slab pages in use out of 6.12's and 7's dumps (collectorcheck.py).
TARGET = f"ext4 LABEL={stacklab.LABEL}\npath /var/crash\n"
KEEP_MANIFEST = "cp /var/lib/kdumpy/initramfs-*kdump.json out/manifest.json\n"


def _target(tmp_path: Path) -> tuple[IscsiTarget, Path]:
    lun = stacklab.lun_image(tmp_path / "lun.img")
    return IscsiTarget(tmp_path / "tgt", lun, IQN, chap=CHAP), lun


def _files(target: IscsiTarget) -> dict[str, bytes | str]:
    return {"setup.sh": stacklab.iscsi_setup(target), "after-start.sh": KEEP_MANIFEST}


def _report(result) -> None:
    print(f"markers (s after QEMU start): {result.run.markers}")
    if (result.out / "manifest.json").exists():
        print(f"manifest: {(result.out / 'manifest.json').read_text()}")


def test_dump_to_iscsi_lun_with_chap(tmp_path, kernel):
    target, lun = _target(tmp_path)
    with target:
        conf = TARGET + collector_for(kernel) + "final_action poweroff\n"
        result = run_cycle(Cycle(conf, files=_files(target)), tmp_path / "run", kernel)
    _report(result)
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    login = (rf"kdump: iSCSI target {re.escape(IQN)} at {GUEST_HOST_IP}:{target.port} "
             r"logged in: LUN 1 /dev/sd[a-z]+")  # fmt: skip
    assert re.search(login, serial), serial[-4000:]
    crash = read_back(lun, "/var/crash", tmp_path / "got")
    (dump_dir,) = list(crash.iterdir())
    assert DIR_NAME.fullmatch(dump_dir.name), dump_dir.name
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]  # fmt: skip
    log = dump_dir.joinpath("kexec-dmesg.log").read_text(errors="replace")
    assert re.search(login.removeprefix("kdump: "), log), log[-3000:]
    assert f"saving vmcore to ext4 LABEL={stacklab.LABEL}" in log
    assert CHAP[1] not in log  # the secret stays out of the capture log
    first = first_kernel_serial(serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    check_dump(dump_dir / "vmcore", kernel, first)


@full_only
def test_iscsi_target_down_ends_in_failure_action(tmp_path, kernel):
    """tgtd is killed once the capture kernel is loaded: no login, failure_action, and
    the reason on the next boot."""
    target, _ = _target(tmp_path)
    tree = tmp_path / "kdumpy"  # one snapshot for both boots: no rebuild in the second
    shutil.copytree(Path(kdumpy.__file__).parent, tree,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    root = tmp_path / "root.qcow2"
    with target:
        conf = TARGET + collector_for(kernel) + "failure_action reboot\n"
        cycle = Cycle(conf, files=_files(target), on_armed=target.stop, pause=5,
                      root_overlay=root, kdumpy_tree=tree)  # fmt: skip
        result = run_cycle(cycle, tmp_path / "run", kernel)
    _report(result)
    status_job = Job("python3 -m kdumpy status > out/status.txt 2>&1 || true\n",
                     root_overlay=root, kdumpy_tree=tree, timeout=900)  # fmt: skip
    status = run_job(status_job, tmp_path / "status", kernel)
    serial = result.serial
    reason = (rf"dump target stack: iSCSI target {re.escape(IQN)} at "
              rf"{GUEST_HOST_IP}:{target.port}: login failed: ")  # fmt: skip
    assert re.search(r"kdump: ERROR: " + reason, serial), serial[-4000:]
    assert "kdump: ERROR: saving vmcore failed; failure_action reboot" in serial
    assert "saved vmcore to" not in serial
    text = (status.out / "status.txt").read_text()
    assert re.search(r"Notice: Last capture FAILED on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: "
                     + reason, text), text  # fmt: skip
