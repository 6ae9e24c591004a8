"""Dumps saved over network stacks in the Debian guest: SSH over a bridge on a VLAN on an
active-backup bond of two virtio NICs, with static IPv4 and IPv6 addresses and routes.

The host side (:mod:`kdumpy.lab.netlab`) is a network namespace the test creates: a
relay that is the VLAN switch's trunk port for the guest's two NICs, a tap holding the
server's addresses, the real OpenSSH sshd listening there, and QEMU itself.  The guest
builds the stack with iproute2 in ``setup.sh``; ``kdumpy start`` copies it into the
capture initramfs from ``ip -j``'s view; the capture kernel replays it and streams the
dump to the sshd.  802.3ad, with the relay as the LACP partner: test_bond_lacp.py, which
reuses this file's setup pieces and SSH cycle.

Oracles: makedumpfile -R and drgn on the dump that arrived at the server, the guest's
address in the dump directory's name (the capture kernel's source address on the VLAN),
the capture log's network lines, and the frames having crossed the relay, which drops
anything not tagged with VLAN 10.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from kdumpy.lab.debian_kdump import Cycle, run_cycle
from kdumpy.lab.netlab import LabNet
from kdumpy.lab.servers import Sshd

from .helpers import DIR_NAME, check_dmesg_file, check_dump, first_kernel_serial

SERVER, GUEST = "192.168.77.1", "192.168.77.2"
NO_WAIT_ONLINE = "systemd.mask=systemd-networkd-wait-online.service"

# The lab's networkd stopped and the two lab NICs found by their MACs ($A, $B); a stack's
# setup goes between this and WAIT_SERVER.
FIND_NICS = """systemctl stop systemd-networkd.socket systemd-networkd 2>/dev/null || true
A=; B=
for d in /sys/class/net/*; do
    case $(cat "$d/address") in
        {mac_a}) A=${{d##*/}} ;;
        {mac_b}) B=${{d##*/}} ;;
    esac
done
"""
# The server answers through the stack (bounded), and the stack as the guest sees it.
WAIT_SERVER = """i=0
until busybox ping -c 1 -W 1 {server} > /dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 60 ] || exit 1
done
ip -d link > out/links.txt; ip addr > out/addr.txt
"""
SETUP = (
    FIND_NICS
    + """ip link add bond0 type bond mode active-backup miimon 100
for n in $A $B; do ip link set "$n" down; ip link set "$n" master bond0; done
ip link add link bond0 name bond0.10 type vlan id 10
ip link add br0 type bridge stp_state 0 forward_delay 0
ip link set bond0.10 master br0
for n in $A $B bond0 bond0.10 br0; do ip link set "$n" up; done
ip addr add {guest}/24 dev br0
ip addr add fd77::2/64 dev br0 nodad
ip -6 route add fd88::/64 via fd77::1 dev br0
"""
    + WAIT_SERVER
)
# The capture log's line for SETUP's stack, as the capture kernel brought it up.
SETUP_STACK = re.compile(
    r"kdump: network: nic eth\d, nic eth\d, bond bond0, vlan bond0\.10, "
    rf"bridge br0; {GUEST}/24 fd77::2/64"
)


def ssh_cycle(tmp_path: Path, kernel, labnet: LabNet, setup: str, files=None, **cycle):
    """A cycle saving over SSH to the real sshd on the lab network's server address, the
    guest's stack made by *setup* (a template of FIND_NICS + ... + WAIT_SERVER); the
    result and the server's dump directory (``path``)."""
    sshd = Sshd(tmp_path / "sshd", netns=labnet.name, listen=(SERVER,)).start()
    try:
        crash = tmp_path / "server-crash"
        crash.mkdir()
        mac_a, mac_b = labnet.macs()
        all_files: dict[str, bytes | str] = {
            "setup.sh": setup.format(mac_a=mac_a, mac_b=mac_b, guest=GUEST, server=SERVER),
            "ssh/kdump_id_rsa": Path(sshd.client_key).read_bytes(),
            "ssh/known_hosts": sshd.known_hosts_line(SERVER),
            "ssh/config": sshd.client_config(SERVER),
            "after-start.sh": "cp /var/lib/kdumpy/initramfs-*kdump.json out/manifest.json\n",
            **(files or {}),
        }
        conf = (f"ssh root@{SERVER}\npath {crash}\nextra_bins /root/.ssh/config\n"
                "final_action poweroff\n")  # fmt: skip
        # The lab's networkd would wait (2 min) for DHCP on the extra NICs: not needed here.
        result = run_cycle(Cycle(conf, files=all_files, extra_args=labnet.qemu_args(),
                                 netns=labnet.name, extra_cmdline=NO_WAIT_ONLINE, **cycle),
                           tmp_path / "run", kernel)  # fmt: skip
    finally:
        sshd.stop()
    print(f"markers (s after QEMU start): {result.run.markers}")
    if (result.out / "manifest.json").exists():
        print(f"manifest: {(result.out / 'manifest.json').read_text()}")
    return result, crash


def check_ssh_dump(result, crash: Path, kernel, tmp_path: Path) -> None:
    """The dump that arrived at the sshd is this crash's (makedumpfile -R, drgn), in a
    directory named after the guest's address on the lab network."""
    serial = result.serial
    (dump_dir,) = [p for p in crash.iterdir() if p.is_dir()]
    match = DIR_NAME.fullmatch(dump_dir.name)
    assert match and match.group(1) == GUEST, dump_dir.name  # our address on the lab net
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore-dmesg.txt", "vmcore.flat"]  # fmt: skip
    first = first_kernel_serial(serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    out = tmp_path / "vmcore"
    with open(dump_dir / "vmcore.flat", "rb") as src:
        subprocess.run(["makedumpfile", "-R", str(out)], stdin=src, check=True,
                       capture_output=True)  # fmt: skip
    check_dump(out, kernel, first)


def test_ssh_over_bridge_vlan_bond(tmp_path, kernel, labnet):
    result, crash = ssh_cycle(tmp_path, kernel, labnet, SETUP)
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    assert SETUP_STACK.search(serial), serial[-4000:]
    assert f"kdump: network: {SERVER} answers through br0" in serial
    check_ssh_dump(result, crash, kernel, tmp_path)
