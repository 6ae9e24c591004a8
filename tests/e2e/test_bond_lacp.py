"""SSH and NFSv4 over an 802.3ad (LACP) bond: the guest's two NICs bonded in mode 802.3ad
(``lacp_rate fast``, ``miimon 100``) with static IPv4 and IPv6 addresses on the bond.

The lab relay (:mod:`kdumpy.lab.netlab`) is the switch, here with LACP on both guest
ports (:mod:`kdumpy.lab.lacp`, untagged access ports): it answers the bond's LACPDUs as
one aggregator, sends each frame toward the guest by one port per flow, and logs each
port's LACP state.  ``kdumpy start`` copies the bond from ``ip -j -d link``; the capture
kernel makes it again and streams the dump to the sshd (or writes it to nfs-ganesha's
export) through it.

Oracles: the dump that arrived (makedumpfile -R, drgn: ``check_ssh_dump``; drgn and
makedumpfile on the NFS export's file: ``check_nfs_dump``), the capture
log's network lines, and the switch's own record: after the panic (the host's clock when
the serial console showed it), each of its ports negotiated again (the capture kernel's
bond starts out of sync) and reached collecting and distributing on both ends, with the
guest asking for the fast rate (``lacp_rate fast`` carried into the capture kernel:
Linux's default is slow), both links to one partner system and key.  The first kernel's
LACP may flap under a loaded host; the panic time keeps its events out.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from kdumpy.lab.netlab import LabNet

from .test_netstacks import FIND_NICS, GUEST, SERVER, WAIT_SERVER, check_ssh_dump, ssh_cycle
from .test_netstacks_nfs import check_nfs_dump, nfs_cycle

SETUP = (
    FIND_NICS
    + """ip link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100
for n in $A $B; do ip link set "$n" down; ip link set "$n" master bond0; done
for n in $A $B bond0; do ip link set "$n" up; done
ip addr add {guest}/24 dev bond0
ip addr add fd77::2/64 dev bond0 nodad
"""
    + WAIT_SERVER
    + """ip -j -d link show > out/ip-link.json
cat /proc/net/bonding/bond0 > out/bonding.txt
"""
)


@pytest.fixture
def lacp_net(tmp_path):
    with LabNet(vlan=0, lacp_log=tmp_path / "lacp.jsonl") as net:
        yield net


@pytest.mark.full
def test_ssh_over_lacp_bond(tmp_path, kernel, lacp_net):
    panicked: list[float] = []
    on_panic = {"Kernel panic": lambda: panicked.append(time.monotonic())}
    result, crash = ssh_cycle(tmp_path, kernel, lacp_net, SETUP, on_marker=on_panic)
    check_capture_over_lacp(result, lacp_net, panicked)
    check_ssh_dump(result, crash, kernel, tmp_path)


@pytest.mark.full
def test_nfs_over_lacp_bond(tmp_path, kernel, lacp_net):
    """NFSv4 (nfs-ganesha on the server's address) through the same 802.3ad bond: the
    kernel's NFS client, not a process, writes the dump through the aggregate."""
    panicked: list[float] = []
    on_panic = {"Kernel panic": lambda: panicked.append(time.monotonic())}
    result, crash = nfs_cycle(tmp_path, kernel, lacp_net, SETUP, on_marker=on_panic)
    check_capture_over_lacp(result, lacp_net, panicked)
    check_nfs_dump(result, crash, kernel)


def check_capture_over_lacp(result, lacp_net: LabNet, panicked: list[float]) -> None:
    """The capture saved through the bond it made again, which the switch aggregated."""
    serial = result.serial
    lacp_net.stop()  # the relay writes its per-port counters as it stops
    events = lacp_net.lacp_events()
    for e in events:
        print(json.dumps(e))
    for name in ("bonding.txt", "initramfs_size", "ip-link.json"):
        if (result.out / name).exists():
            print(f"{name}: {(result.out / name).read_text()}")
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    assert re.search(
        rf"kdump: network: nic eth\d, nic eth\d, bond bond0; {GUEST}/24 fd77::2/64", serial
    ), serial[-4000:]
    assert f"kdump: network: {SERVER} answers through bond0" in serial
    # Not asserted: the bonding driver's "No 802.3ad response from the link partner" (7's
    # capture kernel printed it once, having enslaved its NICs before their links came up,
    # then aggregated); the switch's record below is what says whether LACP worked.
    assert panicked, "no Kernel panic seen"
    check_capture_aggregated(events, panicked[0])


def check_capture_aggregated(events: list[dict], panic: float) -> None:
    """The switch's view of the capture kernel's ports: each left the first kernel's
    aggregate (a fresh bond starts out of sync) and came back to collecting+distributing
    on both ends, asking for the fast rate; both links to one partner (system and key),
    its ports 1 and 2: one aggregate."""
    after = [e for e in events if "port" in e and e["t"] > panic]
    firsts = []
    for port in (0, 1):
        mine = [e for e in after if e["port"] == port]
        restart = next((i for i, e in enumerate(mine) if not e["aggregated"]), None)
        assert restart is not None, f"port {port}: no new negotiation after the panic: {mine}"
        up = [e for e in mine[restart:] if e["aggregated"]]
        assert up, f"port {port}: the capture kernel's bond never aggregated: {mine}"
        assert "timeout" in up[0]["guest"], up[0]  # lacp_rate fast, as in the first kernel
        firsts.append(up[0])
    assert len({(e["guest_system"], e["guest_key"]) for e in firsts}) == 1, firsts
    assert sorted(e["guest_port"] for e in firsts) == [1, 2], firsts
