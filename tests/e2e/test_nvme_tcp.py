"""Dumps saved to an NVMe-over-TCP namespace: nvmet in a second lab guest, the kdump guest
connected through the kernel's fabrics interface.

The target guest (:class:`kdumpy.lab.nvmetlab.NvmetTarget`) exports a 1 GiB image as
namespace 1 on port 4420, only the lab's host NQN allowed; the host forwards a spare
port of its loopback to it, which the kdump guest reaches at 10.0.2.2.  The kdump guest
connects by writing the connect options to ``/dev/nvme-fabrics`` itself (no nvme-cli in
the image), makes ext4 on the namespace, ``kdumpy start`` finds the tcp controller under
the target's filesystem in sysfs, and the capture kernel connects again the same way
before it mounts.  The dump is read straight from the exported image on the host once
both guests have ended (nvmet wrote it, not the kdump guest's disks).

Oracles: drgn with the Debian -dbg vmlinux, makedumpfile and kdumpy's reader on that dump,
the serial console's panic line, the capture log's connect line, and the kernel's own
sysfs view of the first kernel's controller (the address it printed).
"""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
from pathlib import Path

import kdumpy
from kdumpy.lab.debian_job import Job, read_back, run_job
from kdumpy.lab.debian_kdump import Cycle, run_cycle
from kdumpy.lab.nvmetlab import HOSTID, HOSTNQN, NQN, NvmetTarget
from kdumpy.lab.servers import GUEST_HOST_IP

from .helpers import (
    DIR_NAME,
    check_dmesg_file,
    check_dump,
    collector_for,
    first_kernel_serial,
    full_only,
)

FS_UUID = "4f6b1f0e-2d47-4c1a-9d7e-6a3b5c2e8f10"
CONF = f"ext4 UUID={FS_UUID}\npath /var/crash\nfinal_action poweroff\n"
# The first kernel's connect, as nvme-cli's `connect` would write it; then the file system.
CONNECT = """modprobe nvme-tcp
echo "transport=tcp,traddr={host},trsvcid={port},nqn={nqn},hostnqn={hostnqn},hostid={hostid}" \\
    > /dev/nvme-fabrics
i=0
until [ -b /dev/nvme0n1 ]; do i=$((i + 1)); [ "$i" -lt 60 ] || exit 1; sleep 1; done
mkfs.ext4 -q -U {uuid} /dev/nvme0n1
mkdir -p /mnt/t && mount /dev/nvme0n1 /mnt/t && mkdir -p /mnt/t/var/crash && umount /mnt/t
udevadm settle
for a in transport address subsysnqn hostnqn hostid; do
    echo "$a=$(cat /sys/class/nvme/nvme0/$a)"
done > out/controller.txt
lsblk -o NAME,TYPE,TRAN,FSTYPE,UUID,SIZE > out/lsblk.txt
"""
KEEP_MANIFEST = "cp /var/lib/kdumpy/initramfs-*kdump.json out/manifest.json\n"


def _module_bytes(kernel, name: str) -> int:
    """The unpacked size of *name* and the modules it depends on, by kmod's modinfo on
    the lab kernel's tree (the oracle for the manifest's module_bytes)."""
    info = ["/sbin/modinfo", "-b", str(kernel.root), "-k", kernel.release]
    path = Path(subprocess.run([*info, "-n", name], capture_output=True, text=True,
                               check=True).stdout.strip())  # fmt: skip
    depends = subprocess.run([*info, "-F", "depends", name], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    if path.suffix == ".xz":
        size = len(lzma.decompress(path.read_bytes()))
    elif path.suffix == ".zst":
        size = len(subprocess.run(["zstd", "-dc", str(path)], capture_output=True,
                                  check=True).stdout)  # fmt: skip
    else:
        size = path.stat().st_size
    return size + sum(_module_bytes(kernel, d) for d in depends.split(",") if d)


def _image(path: Path) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)
    return path


def _setup(port: int) -> str:
    return CONNECT.format(host=GUEST_HOST_IP, port=port, nqn=NQN, hostnqn=HOSTNQN,
                          hostid=HOSTID, uuid=FS_UUID)  # fmt: skip


# Two guests under TCG: 2.5 min at load ~4 (5.6 min at load 10); CI runs it on 6.1 (the
# stack's one CI test), the full matrix on every kernel.
def test_dump_to_nvme_tcp_namespace(tmp_path, kernel):
    image = _image(tmp_path / "namespace.img")
    with NvmetTarget(tmp_path / "target", image, kernel) as target:
        files: dict[str, bytes | str] = {"setup.sh": _setup(target.port),
                                         "after-start.sh": KEEP_MANIFEST}  # fmt: skip
        cycle = Cycle(CONF + collector_for(kernel), files=files)
        result = run_cycle(cycle, tmp_path / "run", kernel)
    print(f"markers (s after QEMU start): {result.run.markers}")
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    # What the first kernel's nvme-tcp printed in sysfs (the test's own connect).
    controller = (result.out / "controller.txt").read_text()
    assert re.search(rf"^address=traddr={GUEST_HOST_IP},trsvcid={target.port}(,|$)",
                     controller, re.MULTILINE), controller  # fmt: skip
    manifest = json.loads((result.out / "manifest.json").read_text())
    print(
        f"initramfs: {(result.out / 'initramfs_size').read_text().strip()} B; "
        f"stack: {manifest.get('stack')}"
    )
    assert manifest["stack"]["layers"] == [
        f"NVMe/TCP namespace 1 of {NQN} at {GUEST_HOST_IP}:{target.port}"]  # fmt: skip
    assert manifest["stack"]["module_bytes"] == _module_bytes(kernel, "nvme-tcp")
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    connected = (rf"kdump: NVMe/TCP subsystem {re.escape(NQN)} at {GUEST_HOST_IP}:"
                 rf"{target.port} connected: namespace 1 /dev/nvme\d+n1")  # fmt: skip
    assert re.search(connected, serial), serial[-4000:]
    crash = read_back(image, "/var/crash", tmp_path / "got")
    (dump_dir,) = list(crash.iterdir())
    assert DIR_NAME.fullmatch(dump_dir.name), dump_dir.name
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]  # fmt: skip
    log = dump_dir.joinpath("kexec-dmesg.log").read_text(errors="replace")
    assert re.search(connected.removeprefix("kdump: "), log), log[-3000:]
    assert f"saving vmcore to ext4 UUID={FS_UUID}" in log
    first = first_kernel_serial(serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    check_dump(dump_dir / "vmcore", kernel, first)


@full_only
def test_nvme_tcp_target_down_ends_in_failure_action(tmp_path, kernel):
    """The target takes its port down once the capture kernel is loaded: no connect,
    failure_action with the kernel's reason, and that reason on the next boot."""
    image = _image(tmp_path / "namespace.img")
    tree = tmp_path / "kdumpy"  # one snapshot for both boots: no rebuild in the second
    shutil.copytree(Path(kdumpy.__file__).parent, tree,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    root = tmp_path / "root.qcow2"
    conf = CONF.replace("final_action poweroff", "failure_action reboot") + collector_for(kernel)
    with NvmetTarget(tmp_path / "target", image, kernel) as target:

        def take_target_down() -> None:
            target.stop()

        cycle = Cycle(conf, files={"setup.sh": _setup(target.port)}, on_armed=take_target_down,
                      pause=20, root_overlay=root, kdumpy_tree=tree)  # fmt: skip
        result = run_cycle(cycle, tmp_path / "run", kernel)
    print(f"markers (s after QEMU start): {result.run.markers}")
    status_job = Job("python3 -m kdumpy status > out/status.txt 2>&1 || true\n",
                     root_overlay=root, kdumpy_tree=tree, timeout=900)  # fmt: skip
    status = run_job(status_job, tmp_path / "status", kernel)
    serial = result.serial
    reason = (rf"dump target stack: NVMe/TCP subsystem {re.escape(NQN)}: "
              rf"{GUEST_HOST_IP}:{target.port}: connect failed: ")  # fmt: skip
    assert re.search(r"kdump: ERROR: " + reason, serial), serial[-4000:]
    assert "kdump: ERROR: saving vmcore failed; failure_action reboot" in serial
    assert "saved vmcore to" not in serial
    text = (status.out / "status.txt").read_text()
    assert re.search(r"Notice: Last capture FAILED on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: "
                     + reason, text), text  # fmt: skip
    print(f"status: {text.strip()}")
