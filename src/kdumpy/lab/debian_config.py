"""Configure the debootstrapped Debian tree for headless lab runs.

Serial console only, DHCP on QEMU's user network (systemd-networkd), the root filesystem on
``/dev/vda``, no gettys, no timers, python3 finding kdumpy under ``/opt/kdumpy/src``, and the
``kdumpy-lab-job`` unit that runs a job from the disk labelled ``KDUMPYJOB`` at every boot.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kdumpy.errors import KdumpyError

JOB_LABEL = "KDUMPYJOB"
GUEST_KDUMPY = "/opt/kdumpy/src"

# Runs at every boot.  A job that wants a crash touches /run/kdumpy-crash: the job disk is
# unmounted first so the host can read the job's output back from it.
# What both lab guests (x86_64's systemd unit, arm64's init) do once the job disk is mounted
# at /run/kdumpy-job: take its kdumpy tree, run job.sh, record its log and exit status, and
# crash the machine when the job asked for it.
JOB_BODY = f"""if [ -d /run/kdumpy-job/src/kdumpy ]; then
    rm -rf {GUEST_KDUMPY}/kdumpy && mkdir -p {GUEST_KDUMPY}
    cp -a /run/kdumpy-job/src/kdumpy {GUEST_KDUMPY}/kdumpy
fi
mkdir -p /run/kdumpy-job/out
echo "KDUMPY-JOB-BEGIN"
cd /run/kdumpy-job
{{ sh -x ./job.sh; echo $? > out/rc; }} 2>&1 | tee out/job.log
echo "KDUMPY-JOB-END rc=$(cat out/rc)"
cd /
sync
umount /run/kdumpy-job
if [ -e /run/kdumpy-crash ]; then
    echo "KDUMPY-CRASHING"
    echo c > /proc/sysrq-trigger
fi
"""

JOB_RUNNER = f"""#!/bin/sh
# kdumpy lab: run job.sh from the disk labelled {JOB_LABEL}, with the kdumpy tree it carries.
dev=$(blkid -L {JOB_LABEL}) || {{ echo "kdumpy-lab-job: no job disk"; exit 0; }}
mkdir -p /run/kdumpy-job
mount "$dev" /run/kdumpy-job || exit 1
{JOB_BODY}systemctl poweroff --no-block
"""

JOB_UNIT = """[Unit]
Description=kdumpy lab job (runs job.sh from the KDUMPYJOB disk)
After=network-online.target local-fs.target systemd-udev-settle.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kdumpy-lab-job
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""

NETWORK = """[Match]
Name=en* eth*

[Network]
DHCP=ipv4
"""

# Units a headless one-shot guest does not need; masking them saves boot time under TCG.
MASKED = (
    "serial-getty@ttyS0.service", "getty@tty1.service", "apt-daily.timer",
    "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
    "dpkg-db-backup.timer", "systemd-timesyncd.service", "man-db.timer",
    "systemd-logind.service",
)  # fmt: skip

FILES = {
    "etc/hostname": "kdumpy-guest\n",
    "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 kdumpy-guest\n",
    "etc/fstab": "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    "etc/resolv.conf": "nameserver 10.0.2.3\n",
    "etc/systemd/network/80-lab.network": NETWORK,
    "etc/systemd/system/kdumpy-lab-job.service": JOB_UNIT,
    "usr/local/sbin/kdumpy-lab-job": JOB_RUNNER,
    "usr/local/bin/kdumpy": '#!/bin/sh\nexec python3 -m kdumpy "$@"\n',
    "usr/lib/python3/dist-packages/kdumpy-lab.pth": GUEST_KDUMPY + "\n",
    # Only what the lab's virtual machine needs, so the initrd stays small and quick.
    "etc/initramfs-tools/conf.d/kdumpy-lab.conf": "MODULES=list\nCOMPRESS=zstd\n",
    "etc/initramfs-tools/modules": "virtio_pci\nvirtio_blk\nvirtio_net\next4\n",
    "etc/systemd/journald.conf.d/kdumpy-lab.conf": "[Journal]\nStorage=volatile\n",
}
EXECUTABLES = ("usr/local/sbin/kdumpy-lab-job", "usr/local/bin/kdumpy")


def chroot(root: Path, *cmd: str) -> str:
    """Run *cmd* inside the tree (no /proc needed for the steps used here)."""
    proc = subprocess.run(
        ["chroot", str(root), *cmd],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise KdumpyError(
            f"in the Debian guest tree: {' '.join(cmd)} failed: "
            f"{last[-1] if last else proc.returncode}"
        )
    return proc.stdout


def configure_rootfs(root: Path) -> None:
    """Write the lab configuration into the tree and enable/mask the units."""
    for rel, text in FILES.items():
        path = root / rel
        if path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel in EXECUTABLES:
        (root / rel).chmod(0o755)
    (root / "opt/kdumpy/src").mkdir(parents=True, exist_ok=True)
    (root / "var/crash").mkdir(parents=True, exist_ok=True)
    chroot(root, "passwd", "-d", "root")
    chroot(root, "systemctl", "enable", "systemd-networkd.service", "kdumpy-lab-job.service")
    for unit in MASKED:
        chroot(root, "systemctl", "mask", unit)
    (root / "etc/machine-id").write_text("")
    chroot(root, "apt-get", "clean")
