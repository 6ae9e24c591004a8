"""Dumps saved through storage stacks in the Debian guest: md RAID, LVM (thin), LUKS.

Each case is two boots of one guest (its root overlay and extra virtio disks carried
over): the first builds the stack in ``setup.sh``, runs ``kdumpy start`` (the capture
initramfs is built host-only from that stack) and crashes; the capture kernel brings the
stack up and saves.  The second boot opens the stack with the distribution's own tools
(udev's md/LVM activation, cryptsetup) and copies the dump directory out, since the host
has no md/LVM/LUKS tools; ``kdumpy status`` there reports what the last capture did.

Oracles: drgn with the Debian -dbg vmlinux and kdumpy's reader on the dump that arrived
(the panic line is the one the first kernel's serial console printed), and the capture
log (``kexec-dmesg.log`` and the console) for each layer's line.

CI runs the combination LUKS on an LVM thin volume on md RAID1 (every layer in one crash);
the full set adds RAID5 degraded under linear LVM, and the failures (a RAID5 missing two
members, a wrong LUKS key) that must end in failure_action with the reason.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import kdumpy
from kdumpy.lab.debian_job import Job, JobResult, run_job
from kdumpy.lab.debian_kdump import Cycle, run_cycle
from kdumpy.lab.qemu import Disk
from kdumpy.lab.stacklab import LINEAR_RAID5, LUKS_THIN_RAID1

from .helpers import (
    DIR_NAME,
    check_dmesg_file,
    check_dump,
    collector_for,
    first_kernel_serial,
    full_only,
)

# The collector line is added per kernel (helpers.collector_for).
CONF = "ext4 LABEL=kdumpstk\npath /var/crash\nfinal_action poweroff\n"

# After `kdumpy start`: members leave the array, their superblocks wiped, so the capture
# kernel finds fewer (the array itself stays usable in the first kernel).
DROP_VDE = (
    "mdadm -q /dev/md0 --fail /dev/vde --remove /dev/vde && mdadm --zero-superblock /dev/vde\n"
)

# The second boot: the distribution's own stack activation, then the dump copied out.
READ_BACK = """set +e
mdadm --assemble --scan > out/assemble.txt 2>&1
vgchange -ay > out/vgchange.txt 2>&1
if [ -e /etc/crypttab ] && [ -s /etc/crypttab ]; then
    cryptsetup open --key-file /root/crash.key /dev/vgk/crash kdumpcrypt > out/open.txt 2>&1
fi
udevadm settle
mkdir -p /mnt/t
mount LABEL=kdumpstk /mnt/t > out/mount.txt 2>&1
cp -a /mnt/t/var/crash out/crash 2>> out/mount.txt
python3 -m kdumpy status > out/status.txt 2>&1
echo $? > out/status.rc
"""


@dataclass
class StackRun:
    cycle: JobResult
    readback: JobResult

    @property
    def serial(self) -> str:
        return self.cycle.serial

    def dump_dirs(self) -> list[Path]:
        crash = self.readback.out / "crash"
        return sorted(crash.iterdir()) if crash.is_dir() else []


def _disks(tmp_path: Path, count: int) -> list[Disk]:
    disks = []
    for i in range(count):
        path = tmp_path / f"member{i}.img"
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)
        disks.append(Disk(path))
    return disks


def stack_run(tmp_path: Path, kernel, setup: str, disks: int, after_start: str = "",
              conf: str = CONF) -> StackRun:  # fmt: skip
    """Build the stack, start, (*after_start*), crash; then read back in a second boot."""
    tree = tmp_path / "kdumpy"  # one kdumpy snapshot for both boots
    shutil.copytree(Path(kdumpy.__file__).parent, tree,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    root = tmp_path / "root.qcow2"
    members = _disks(tmp_path, disks)
    # The manifest says what the stack added to the initramfs (printed for the record).
    keep = "cp /var/lib/kdumpy/initramfs-*kdump.json out/manifest.json\n"
    files: dict[str, bytes | str] = {"setup.sh": setup, "after-start.sh": keep + after_start}
    cycle = run_cycle(
        Cycle(conf + collector_for(kernel), files=files, disks=members, root_overlay=root,
              kdumpy_tree=tree, pause=0),
        tmp_path / "run", kernel,
    )  # fmt: skip
    readback = run_job(
        Job(READ_BACK, disks=members, crashkernel="256M", timeout=900, root_overlay=root,
            kdumpy_tree=tree),
        tmp_path / "readback", kernel,
    )  # fmt: skip
    print(f"markers (s after QEMU start): {cycle.run.markers}")
    manifest = cycle.out / "manifest.json"
    if manifest.exists():
        print(f"manifest: {manifest.read_text()}")
    return StackRun(cycle, readback)


def check_saved(run: StackRun, kernel, layer_lines: list[str]) -> Path:
    """One dump directory with the crash's dump and log; each layer said it came up."""
    serial = run.serial
    assert run.cycle.rc == 0, run.cycle.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    for line in layer_lines:
        assert re.search(line, serial), (line, serial[-4000:])
    (dump_dir,) = run.dump_dirs()
    assert DIR_NAME.fullmatch(dump_dir.name), dump_dir.name
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]  # fmt: skip
    first = first_kernel_serial(serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    check_dump(dump_dir / "vmcore", kernel, first)
    return dump_dir


def test_luks_on_thin_lvm_on_raid1(tmp_path, kernel):
    """Every layer in one crash: md RAID1 -> LVM thin pool and volume -> LUKS2 -> ext4."""
    run = stack_run(tmp_path, kernel, LUKS_THIN_RAID1, disks=2)
    dump_dir = check_saved(run, kernel, [
        r"kdump: md raid1 /dev/md\d+ assembled",
        r"kdump: LVM thin volume vgk/crash active",
        r"kdump: LUKS volume kdumpcrypt opened from /dev/mapper/vgk-crash",
    ])  # fmt: skip
    log = dump_dir.joinpath("kexec-dmesg.log").read_text(errors="replace")
    assert "saving vmcore to ext4 LABEL=kdumpstk" in log
    # Only the layers' tools went in (the initramfs manifest is checked by fast tests).
    assert "kdumpy-init: insmod" not in run.serial, "a module failed to load"


@full_only
def test_degraded_raid5_under_linear_lvm_still_saves(tmp_path, kernel):
    run = stack_run(tmp_path, kernel, LINEAR_RAID5, disks=3, after_start=DROP_VDE)
    check_saved(run, kernel, [
        r"kdump: WARNING: md raid5 /dev/md\d+ is degraded \(1 device\(s\) missing\); saving anyway",
        r"kdump: LVM volume vgk/crash active",
    ])  # fmt: skip


# The array's members beyond redundancy lose their superblocks after `kdumpy start`.
STOP_RAID5_TWO = """vgchange -an vgk
mdadm --stop /dev/md0
mdadm --zero-superblock /dev/vdd /dev/vde
"""
# The key the initramfs carries stops opening the volume after `kdumpy start`: the
# administrator rotates it, crypttab too (or the next boot would wait at systemd's
# passphrase prompt), and the capture initramfs still holds the old one.
ROTATE_KEY = """umask 077; head -c 64 /dev/urandom > /root/new.key
cryptsetup luksAddKey -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \\
    --key-file /root/crash.key /dev/vgk/crash /root/new.key
cryptsetup luksRemoveKey -q /dev/vgk/crash /root/crash.key
sed -i 's#/root/crash.key#/root/new.key#' /etc/crypttab
"""
FAIL_CONF = "ext4 LABEL=kdumpstk\npath /var/crash\nfailure_action reboot\n"


def check_failed(run: StackRun, reason: str) -> None:
    """failure_action ran with *reason* in the capture log, and the next boot's
    ``kdumpy status`` reports it (capture/lastfail.py on the root filesystem)."""
    serial = run.serial
    assert re.search(r"kdump: ERROR: dump target stack: " + reason, serial), serial[-4000:]
    assert "kdump: ERROR: saving vmcore failed; failure_action reboot" in serial
    assert "kdump: failure recorded in /var/lib/kdumpy/capture-failure" in serial
    assert "saved vmcore to" not in serial
    status = (run.readback.out / "status.txt").read_text()
    assert re.search(r"Notice: Last capture FAILED on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: "
                     r"dump target stack: " + reason, status), status  # fmt: skip


@full_only
def test_raid5_missing_two_members_ends_in_failure_action(tmp_path, kernel):
    run = stack_run(tmp_path, kernel, LINEAR_RAID5, disks=3, after_start=STOP_RAID5_TWO,
                    conf=FAIL_CONF)  # fmt: skip
    check_failed(run, r"md raid5 /dev/md0 \(UUID [0-9a-f-]+\) did not start: ")


@full_only
def test_wrong_luks_key_ends_in_failure_action(tmp_path, kernel):
    run = stack_run(tmp_path, kernel, LUKS_THIN_RAID1, disks=2, after_start=ROTATE_KEY,
                    conf=FAIL_CONF)  # fmt: skip
    reason = (
        r"LUKS volume kdumpcrypt \(UUID=[0-9a-f-]+\) on /dev/mapper/vgk-crash did not "
        r"open with its key file: No key available with this passphrase"
    )
    check_failed(run, reason)
