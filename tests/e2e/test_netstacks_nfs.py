"""NFSv4 through the network stack of test_netstacks: a bridge on a VLAN on an
active-backup bond of two virtio NICs, static IPv4 and IPv6, in the Debian guest.

nfs-ganesha runs in the lab's network namespace on the server's address, on NFSv4's
well-known port (kdump.conf's plain ``nfs host:/path``); the capture kernel replays the
stack from the host-only initramfs, mounts the export over the VLAN and saves there.

Oracles: the dump that arrived in the export (drgn and makedumpfile through
``check_dump``), its directory named after the guest's address on the VLAN (the capture
kernel's source address as the server saw it), and the capture log's network lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpy.lab.debian_kdump import Cycle, run_cycle
from kdumpy.lab.netlab import LabNet
from kdumpy.lab.servers import GaneshaNfs

from .helpers import DIR_NAME, check_dmesg_file, check_dump, first_kernel_serial
from .test_netstacks import GUEST, NO_WAIT_ONLINE, SERVER, SETUP, SETUP_STACK


def nfs_cycle(tmp_path: Path, kernel, labnet: LabNet, setup: str, **cycle):
    """A cycle saving to nfs-ganesha on the lab network's server address (NFSv4, port
    2049), the guest's stack made by *setup* (a template of FIND_NICS + ... + WAIT_SERVER);
    the result and the export's ``crash`` directory (kdump.conf's ``path``)."""
    nfs = GaneshaNfs(tmp_path / "nfs", port=2049, netns=labnet.name, bind=SERVER).start()
    try:
        crash = nfs.export / "crash"
        crash.mkdir()
        mac_a, mac_b = labnet.macs()
        files: dict[str, bytes | str] = {
            "setup.sh": setup.format(mac_a=mac_a, mac_b=mac_b, guest=GUEST, server=SERVER),
            # The capture initramfs's size and stack, for docs/stacks.md's table.
            "after-start.sh": "cp /var/lib/kdumpy/initramfs-*kdump.json out/manifest.json\n",
        }
        conf = f"nfs {SERVER}:/export\npath /crash\nfinal_action poweroff\n"
        result = run_cycle(Cycle(conf, files=files, extra_args=labnet.qemu_args(),
                                 netns=labnet.name, extra_cmdline=NO_WAIT_ONLINE, **cycle),
                           tmp_path / "run", kernel)  # fmt: skip
    finally:
        nfs.stop()
    print(f"markers (s after QEMU start): {result.run.markers}")
    if (result.out / "manifest.json").exists():
        print(f"manifest: {(result.out / 'manifest.json').read_text()}")
    return result, crash


def check_nfs_dump(result, crash: Path, kernel) -> None:
    """The dump in the export is this crash's (drgn and makedumpfile through check_dump),
    in a directory named after the guest's address on the lab network (the capture
    kernel's source address as the server saw it)."""
    serial = result.serial
    (dump_dir,) = list(crash.iterdir())
    match = DIR_NAME.fullmatch(dump_dir.name)
    assert match and match.group(1) == GUEST, dump_dir.name
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]  # fmt: skip
    first = first_kernel_serial(serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    check_dump(dump_dir / "vmcore", kernel, first)


@pytest.mark.full
def test_nfs_over_bridge_vlan_bond(tmp_path, kernel, labnet):
    result, crash = nfs_cycle(tmp_path, kernel, labnet, SETUP)
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    assert SETUP_STACK.search(serial), serial[-4000:]
    check_nfs_dump(result, crash, kernel)
