"""Dump targets on storage stacks in the lab's Debian guest: the guests' setup scripts,
and the per-stack calibration behind ``kdumpy lab calibrate --stack``.

Each stack ends in an ext4 filesystem labelled ``kdumpstk`` (``$TOP`` in the scripts)
on 1 GiB virtio member disks, or on an iSCSI LUN that tgt serves from the host
(:class:`~kdumpy.lab.servers.IscsiTarget`, CHAP on).  :func:`prepare` runs one Debian
guest: the stack's setup, ``kdumpy start`` (its capture initramfs, built host-only from
that stack), and the kernel and that initramfs copied to the target's ``/boot``.  Each
calibration trial then boots the capture initramfs alone on copies of those disks
(:mod:`kdumpy.lab.calibrate`'s self-test: it brings the stack up, loads the capture
kernel from the target, crashes), and the capture kernel brings the stack up again and
saves: a real crash through the stack at each reservation.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.calibrate import Calibration, Rig, calibrate
from kdumpy.lab.debian_job import Job, read_back, run_job
from kdumpy.lab.kernels import LabKernel
from kdumpy.lab.qemu import Disk
from kdumpy.lab.servers import GUEST_HOST_IP, IscsiTarget

LABEL = "kdumpstk"
CONF = (
    f"ext4 LABEL={LABEL}\npath /var/crash\ncore_collector makedumpfile -l --message-level 7 -d 31\n"
)
MEMBER_SIZE = 1 << 30
IQN = "iqn.2026-12.org.kdumpy:lab"
CHAP = ("kdumplab", "lab-chap-secret-16")  # tgt wants CHAP secrets of 12 to 16+ characters

# LUKS2 with PBKDF2 at the minimum iterations: Argon2's default memory cost (up to 1 GiB)
# is what makes LUKS targets need huge reservations (kdump-utils PR #10); the lab
# measures the layers, not the KDF.
LUKS_FORMAT = ("cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 "
               "--pbkdf-force-iterations 1000 --key-file /root/crash.key")  # fmt: skip
MAKE_KEY = "umask 077; head -c 64 /dev/urandom > /root/crash.key; umask 022\n"
LUKS_OPEN = (
    "cryptsetup open --key-file /root/crash.key {dev} kdumpcrypt\n"
    'echo "kdumpcrypt UUID=$(cryptsetup luksUUID {dev}) /root/crash.key luks" > /etc/crypttab\n'
    "TOP=/dev/mapper/kdumpcrypt\n"
)
MKFS = f"""mkfs.ext4 -q -L {LABEL} "$TOP"
udevadm settle
mkdir -p /mnt/t && mount "$TOP" /mnt/t && mkdir -p /mnt/t/var/crash && umount /mnt/t
udevadm settle
lsblk -o NAME,TYPE,FSTYPE,SIZE > out/lsblk.txt
"""
RAID1 = ("mdadm --create /dev/md0 --run -q --level=1 --raid-devices=2 --metadata=1.2 "
         "--assume-clean /dev/vdc /dev/vdd\n")  # fmt: skip
THIN = ("lvcreate -q -y -L 900M -T vgk/pool\n"
        "lvcreate -q -y -V 800M -T vgk/pool -n crash\n")  # fmt: skip

LUKS_THIN_RAID1 = (
    RAID1 + "pvcreate -q /dev/md0 && vgcreate -q vgk /dev/md0\n" + THIN + MAKE_KEY
    + LUKS_FORMAT + " /dev/vgk/crash\n" + LUKS_OPEN.format(dev="/dev/vgk/crash") + MKFS
)  # fmt: skip
LINEAR_RAID5 = (
    "mdadm --create /dev/md0 --run -q --level=5 --raid-devices=3 --metadata=1.2 "
    "--assume-clean /dev/vdc /dev/vdd /dev/vde\n"
    "pvcreate -q /dev/md0 && vgcreate -q vgk /dev/md0\n"
    "lvcreate -q -y -L 800M -n crash vgk\n"
    "TOP=/dev/vgk/crash\n" + MKFS
)  # fmt: skip
PLAIN = "TOP=/dev/vdc\n" + MKFS
LVM_THIN = (
    "pvcreate -q /dev/vdc && vgcreate -q vgk /dev/vdc\n" + THIN + "TOP=/dev/vgk/crash\n" + MKFS
)
ONLY_RAID1 = RAID1 + "TOP=/dev/md0\n" + MKFS
ONLY_LUKS = MAKE_KEY + LUKS_FORMAT + " /dev/vdc\n" + LUKS_OPEN.format(dev="/dev/vdc") + MKFS
# The node record by hand (SendTargets would name the portal 127.0.0.1: the guest's own
# loopback), CHAP, login; the LUN's ext4 is made on the host.
ISCSI_LOGIN = """P={host}:{port}
iscsiadm -m node -o new -T {iqn} -p $P > /dev/null
for kv in node.session.auth.authmethod=CHAP node.session.auth.username={user} \\
          node.session.auth.password={secret}; do
    iscsiadm -m node -T {iqn} -p $P -o update -n "${{kv%%=*}}" -v "${{kv#*=}}"
done
iscsiadm -m node -T {iqn} -p $P --login
i=0
until findfs LABEL={label} > /dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 60 ] || exit 1; sleep 1; udevadm settle
done
lsblk -o NAME,TYPE,TRAN,FSTYPE,LABEL,SIZE > out/lsblk.txt
"""


@dataclass(frozen=True)
class StackLab:
    """One stack the lab can build: its setup script and how many member disks it takes
    (none for iSCSI: the LUN is served from the host)."""

    name: str
    setup: str
    disks: int
    iscsi: bool = False


STACKS = {
    s.name: s
    for s in (
        StackLab("plain", PLAIN, 1),
        StackLab("lvm-thin", LVM_THIN, 1),
        StackLab("raid1", ONLY_RAID1, 2),
        StackLab("luks", ONLY_LUKS, 1),
        StackLab("luks-thin-raid1", LUKS_THIN_RAID1, 2),
        StackLab("lvm-raid5", LINEAR_RAID5, 3),
        StackLab("iscsi", "", 0, iscsi=True),
    )
}

# After `kdumpy start`: the kernel and the capture initramfs onto the target's /boot
# (where the calibration self-test loads them from), and the initramfs out for its size.
TO_BOOT = f"""mkdir -p /mnt/t && mount LABEL={LABEL} /mnt/t && mkdir -p /mnt/t/boot
cp /boot/vmlinuz-$(uname -r) /mnt/t/boot/vmlinuz
cp /var/lib/kdumpy/initramfs-*kdump.img /mnt/t/boot/initrd.img
cp /var/lib/kdumpy/initramfs-*kdump.img out/initrd.img
cp /var/lib/kdumpy/initramfs-*kdump.json out/manifest.json
umount /mnt/t
sync
"""
PREPARE = """set -e
cp kdump.conf /etc/kdump.conf
sh -e setup.sh
python3 -m kdumpy start
sh -e to-boot.sh
"""


@dataclass
class Prepared:
    """A stack built in the guest: its member disks (or LUN) and capture initramfs."""

    stack: StackLab
    members: list[Path]
    initrd: Path
    manifest: dict = field(default_factory=dict)
    port: int | None = None  # the iSCSI portal's port the initramfs logs in at


def member_disks(workdir: Path, count: int) -> list[Path]:
    """*count* sparse 1 GiB disks."""
    paths = []
    for i in range(count):
        path = workdir / f"member{i}.img"
        with open(path, "wb") as fh:
            fh.truncate(MEMBER_SIZE)
        paths.append(path)
    return paths


def lun_image(path: Path) -> Path:
    """The iSCSI LUN: an empty ext4 labelled like every stack's top, /var/crash made."""
    tree = path.with_name(path.name + ".tree")
    (tree / "var" / "crash").mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(tree), str(path), "1G"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    shutil.rmtree(tree)
    if proc.returncode != 0:
        raise KdumpyError(f"mkfs.ext4 of {path}: {proc.stderr.strip()}")
    return path


def iscsi_setup(target: IscsiTarget) -> str:
    return ISCSI_LOGIN.format(host=GUEST_HOST_IP, port=target.port, iqn=IQN, user=CHAP[0],
                              secret=CHAP[1], label=LABEL)  # fmt: skip


def prepare(stack: StackLab, workdir: Path, kernel: LabKernel | str) -> Prepared:
    """One Debian guest: build *stack*, ``kdumpy start``, kernel and initramfs to /boot."""
    workdir.mkdir(parents=True, exist_ok=True)
    if stack.iscsi:
        members = [lun_image(workdir / "lun.img")]
        server: contextlib.AbstractContextManager[object] = IscsiTarget(
            workdir / "tgt", members[0], IQN, chap=CHAP)  # fmt: skip
        disks: list[Disk] = []
    else:
        members = member_disks(workdir, stack.disks)
        server, disks = contextlib.nullcontext(), [Disk(p) for p in members]
    port = None
    with server as target:
        if isinstance(target, IscsiTarget):
            setup, port = iscsi_setup(target), target.port
        else:
            setup = stack.setup
        files: dict[str, bytes | str] = {"kdump.conf": CONF + "final_action poweroff\n",
                                         "setup.sh": setup, "to-boot.sh": TO_BOOT}  # fmt: skip
        result = run_job(Job(PREPARE, files=files, disks=disks, crashkernel="256M",
                             timeout=1500), workdir / "prepare", kernel)  # fmt: skip
    initrd = result.out / "initrd.img"
    if not initrd.exists():
        raise KdumpyError(f"stack {stack.name}: the guest built no capture initramfs "
                          f"(serial log: {result.run.serial_log})")  # fmt: skip
    manifest = json.loads((result.out / "manifest.json").read_text())
    return Prepared(stack, members, initrd, manifest, port)


def stack_rig(prepared: Prepared) -> Rig:
    """Trials on sparse copies of the prepared disks (each starts from the built stack);
    for iSCSI a tgtd serving the copy of the LUN, on the port the initramfs logs in at,
    and the guest's NIC on QEMU's user network."""

    def copies(run_dir: Path) -> list[Path]:
        out = []
        for member in prepared.members:
            copy = run_dir / member.name
            subprocess.run(["cp", "--sparse=always", str(member), str(copy)], check=True)
            out.append(copy)
        return out

    def saved(run_dir: Path) -> bool:
        """A complete dump on the target: read with debugfs where the target's ext4 is the
        image itself (plain, iSCSI); under md/LVM/LUKS the host cannot open it, and the
        capture's own "saved vmcore to" (after sync and rename) is the evidence."""
        if prepared.stack.name not in ("plain", "iscsi"):
            return True
        got = read_back(run_dir / prepared.members[0].name, "/var/crash", run_dir / "got")
        return any((d / "vmcore").exists() for d in got.iterdir())

    if not prepared.stack.iscsi:
        return Rig(disks=lambda run_dir: [Disk(p) for p in copies(run_dir)], saved=saved)

    def serve(run_dir: Path) -> IscsiTarget:
        lun = run_dir / prepared.members[0].name
        return IscsiTarget(run_dir / "tgt", lun, IQN, chap=CHAP, port=prepared.port)

    def served_only(run_dir: Path) -> list[Disk]:
        copies(run_dir)  # the LUN's copy is served by tgtd, not attached
        return []

    nic = ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]
    return Rig(disks=served_only, saved=saved, extra_args=nic, around=serve)


def calibrate_stack(
    stack: str, workdir: Path, kernel: LabKernel, memory: int, sizes: list[int],
    timeout: float = 900, report: Callable[[str], None] = print,
) -> tuple[Prepared, Calibration]:  # fmt: skip
    """Build *stack* once, then bisect *sizes* with real crashes saved through it."""
    if stack not in STACKS:
        raise KdumpyError(f"unknown stack {stack!r} (known: {', '.join(STACKS)})")
    prepared = prepare(STACKS[stack], workdir / "guest", kernel)
    result = calibrate(kernel.vmlinuz, prepared.initrd, memory, sizes, workdir, timeout,
                       report, stack_rig(prepared))  # fmt: skip
    return prepared, result
