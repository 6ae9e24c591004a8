"""The network stack to a remote target: read from iproute2's JSON (built here as
``ip -d -j link`` / ``ip -j addr`` / ``ip -j route`` print them), replayed in order."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from kdumpy.capture import CaptureError
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.netstack import NetUp
from kdumpy.errors import KdumpyError
from kdumpy.service.stacks import net
from kdumpy.service.stacks.block import Stack
from kdumpy.service.stacks.install import PLAN_PATH, plan_stack


def _link(name, kind=None, **kw):
    link = {"ifname": name, "mtu": kw.pop("mtu", 1500), "link_type": "ether",
            "address": kw.pop("address", "02:00:00:00:00:99")}  # fmt: skip
    if kind:
        link["linkinfo"] = {"info_kind": kind, "info_data": kw.pop("info", {})}
    link.update(kw)
    return link


def bond_vlan_bridge() -> net.IpView:
    """eth1+eth2 -> bond0 (active-backup) -> bond0.10 (VLAN 10) -> br0, static v4 + v6;
    eth0 (the lab's user network) is not under the target's route."""
    bond_mac = "52:54:00:00:01:01"
    links = [
        {"ifname": "lo", "link_type": "loopback", "mtu": 65536},
        _link("eth0", address="52:54:00:12:34:56"),
        _link("eth1", address=bond_mac, master="bond0"),  # a slave carries the bond's MAC
        _link("eth2", address=bond_mac, permaddr="52:54:00:00:01:02", master="bond0"),
        _link("bond0", "bond", address=bond_mac, mtu=1500,
              info={"mode": "active-backup", "miimon": 100, "updelay": 0, "use_carrier": 1}),
        _link("bond0.10", "vlan", link="bond0", master="br0",
              info={"protocol": "802.1Q", "id": 10, "flags": ["REORDER_HDR"]}),
        _link("br0", "bridge", mtu=1400, info={"stp_state": 0, "forward_delay": 1500}),
    ]  # fmt: skip
    addrs = [
        {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.2.15",
                                          "prefixlen": 24, "scope": "global"}]},
        {"ifname": "br0", "addr_info": [
            {"family": "inet", "local": "192.168.77.2", "prefixlen": 24, "scope": "global"},
            {"family": "inet6", "local": "fd77::2", "prefixlen": 64, "scope": "global"},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
    ]  # fmt: skip
    routes4 = [
        {"dst": "default", "gateway": "10.0.2.2", "dev": "eth0", "protocol": "dhcp"},
        {"dst": "192.168.77.0/24", "dev": "br0", "protocol": "kernel", "scope": "link"},
        {"dst": "172.16.5.0/24", "gateway": "192.168.77.1", "dev": "br0", "protocol": "static"},
    ]  # fmt: skip
    routes6 = [
        {"dst": "fd77::/64", "dev": "br0", "protocol": "kernel"},
        {"dst": "fe80::/64", "dev": "br0", "protocol": "kernel"},
        {"dst": "fd88::/64", "gateway": "fd77::1", "dev": "br0", "protocol": "static"},
        {"dst": "ff00::/8", "dev": "br0", "type": "multicast"},
    ]  # fmt: skip
    return net.IpView(links, addrs, routes4, routes6)


def test_plan_bond_vlan_bridge_in_creation_order():
    plan = net.plan_network(bond_vlan_bridge(), "br0", "192.168.77.1")
    links = plan["links"]
    assert [x["name"] for x in links] == ["eth1", "eth2", "bond0", "bond0.10", "br0"]
    assert links[0] == {"name": "eth1", "mtu": 1500, "kind": "nic", "mac": "52:54:00:00:01:01"}
    assert links[1]["mac"] == "52:54:00:00:01:02"  # the permanent MAC, not the bond's
    assert links[2]["options"] == {"mode": "active-backup", "miimon": "100"}
    assert links[2]["ports"] == ["eth1", "eth2"]
    assert links[3] == {"name": "bond0.10", "mtu": 1500, "kind": "vlan", "parent": "bond0",
                        "id": 10, "protocol": "802.1Q"}  # fmt: skip
    assert links[4]["stp"] == 0 and links[4]["mtu"] == 1400
    assert plan["addresses"] == [
        {"dev": "br0", "family": "inet", "address": "192.168.77.2/24"},
        {"dev": "br0", "family": "inet6", "address": "fd77::2/64"},
    ]  # no fe80, no eth0
    assert plan["routes"] == [
        {"family": "inet", "dst": "172.16.5.0/24", "dev": "br0", "gateway": "192.168.77.1"},
        {"family": "inet6", "dst": "fd88::/64", "dev": "br0", "gateway": "fd77::1"},
    ]
    assert net.modules_for(plan) == ["bonding", "8021q", "bridge"]
    assert net.nic_names(plan) == ["eth1", "eth2"]


def test_when_a_plan_is_needed():
    view = bond_vlan_bridge()
    assert net.needs_plan(view, "br0", "192.168.77.1")
    assert not net.needs_plan(view, "eth0", "10.0.2.2")  # /init's busybox path
    assert net.needs_plan(view, "eth0", "fd00::2")  # IPv6
    plan = net.plan_network(view, "eth0", "fd00::2")
    assert [x["kind"] for x in plan["links"]] == ["nic"] and net.modules_for(plan) == []


def test_unsupported_link_is_named():
    view = net.IpView([_link("wg0", "wireguard", link_type="none")], [], [], [])
    with pytest.raises(KdumpyError, match="wg0 is a wireguard link: kdumpy cannot bring it up"):
        net.plan_network(view, "wg0", "10.9.0.1")
    lonely = net.IpView([_link("bond1", "bond", info={"mode": "802.3ad"})], [], [], [])
    with pytest.raises(KdumpyError, match="bond bond1 has no slaves"):
        net.plan_network(lonely, "bond1", "10.9.0.1")


def test_network_goes_into_the_plan_with_ip_only():
    plan = net.plan_network(bond_vlan_bridge(), "br0", "192.168.77.1")
    files = plan_stack(Stack("", network=plan), [], {}, lambda a: [],
                       tool=lambda name: f"/usr/sbin/{name}")  # fmt: skip
    assert files.tools == ["/usr/sbin/ip"] and files.modules == []
    assert PLAN_PATH in files.files


# The capture side, with a stand-in for ip and ping over a fake /sys/class/net (the build
# host cannot make bonds or VLANs: no modules); the lab guest runs the real ones.
def _sysfs(tmp_path, nics: dict[str, str], operstate: str = "up"):
    for name, mac in nics.items():
        d = tmp_path / "sys/class/net" / name
        d.mkdir(parents=True)
        (d / "address").write_text(mac + "\n")
        (d / "operstate").write_text(operstate + "\n")
    return str(tmp_path / "sys")


def test_replay_maps_nics_by_mac(tmp_path):
    plan = net.plan_network(bond_vlan_bridge(), "br0", "192.168.77.1")
    # The capture kernel named them differently.
    sys_root = _sysfs(tmp_path, {"eth0": "52:54:00:00:01:02", "eth5": "52:54:00:00:01:01",
                                 "eth1": "52:54:00:12:34:56"})  # fmt: skip
    calls = []

    def run(argv):
        calls.append(" ".join(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    stream = io.StringIO()
    NetUp(CaptureLog(stream), 2, run, sys_root=sys_root).bring_up(plan)
    assert calls == [
        "ip link set lo up",
        "ip link set eth5 mtu 1500", "ip link set eth0 mtu 1500",
        "ip link add bond0 type bond mode active-backup miimon 100",
        "ip link set eth5 down", "ip link set eth5 master bond0",
        "ip link set eth0 down", "ip link set eth0 master bond0",
        "ip link set bond0 mtu 1500",
        "ip link add link bond0 name bond0.10 type vlan protocol 802.1Q id 10",
        "ip link set bond0.10 mtu 1500",
        "ip link add br0 type bridge stp_state 0 forward_delay 0",
        "ip link set bond0.10 down", "ip link set bond0.10 master br0",
        "ip link set br0 mtu 1400",
        "ip link set eth5 up", "ip link set eth0 up", "ip link set bond0 up",
        "ip link set bond0.10 up", "ip link set br0 up",
        "ip addr add 192.168.77.2/24 dev br0", "ip addr add fd77::2/64 dev br0 nodad",
        "ip -4 route replace 172.16.5.0/24 via 192.168.77.1 dev br0",
        "ip -6 route replace fd88::/64 via fd77::1 dev br0",
        "ping -c 1 -W 1 192.168.77.1",
    ]  # fmt: skip
    assert "network: 192.168.77.1 answers through br0" in stream.getvalue()
    # The bonding module made bond0 itself when it loaded: it is configured, not added.
    (tmp_path / "sys/class/net/bond0").mkdir()
    calls.clear()
    NetUp(CaptureLog(io.StringIO()), 2, run, sys_root=sys_root).bring_up(plan)
    assert "ip link set bond0 type bond mode active-backup miimon 100" in calls


def test_missing_nic_and_link_down_are_reasons(tmp_path):
    plan = net.plan_network(bond_vlan_bridge(), "br0", "192.168.77.1")
    sys_root = _sysfs(tmp_path, {"eth0": "52:54:00:00:01:02"}, operstate="down")

    def run(argv):
        return subprocess.CompletedProcess(argv, 1 if argv[0] == "ping" else 0, "", "")

    up = NetUp(CaptureLog(io.StringIO()), 0, run, sys_root=sys_root)
    with pytest.raises(CaptureError, match=r"no interface with the MAC of eth1 \(52:54"):
        up.bring_up(plan)
    (tmp_path / "sys/class/net/eth1").mkdir()
    (tmp_path / "sys/class/net/eth1/address").write_text("52:54:00:00:01:01\n")
    (tmp_path / "sys/class/net/br0").mkdir()
    (tmp_path / "sys/class/net/br0/operstate").write_text("down\n")
    with pytest.raises(CaptureError) as err:
        NetUp(CaptureLog(io.StringIO()), 0, run, sys_root=sys_root).bring_up(plan)
    assert str(err.value) == "network: br0 is down: 192.168.77.1 unreachable after 0 s"


def test_lab_switch_trunk_port_tags():
    """The lab relay (kdumpy.lab.netlab): 802.1Q tag in, tag out, other VLANs dropped."""
    from kdumpy.lab.netlab import tag, untag

    frame = bytes.fromhex("ffffffffffff5254007700010806") + b"payload"
    tagged = tag(frame, 10)
    assert tagged[12:16] == bytes.fromhex("8100000a") and len(tagged) == len(frame) + 4
    assert untag(tagged, 10) == frame
    assert untag(tag(frame, 11), 10) is None  # another VLAN
    assert untag(frame, 10) is None  # untagged on a trunk port
    # VLAN 0: an access port (the LACP lab), frames as they are, tagged ones dropped.
    assert tag(frame, 0) == frame and untag(frame, 0) == frame and untag(tagged, 0) is None


# `ip -j -d link show` as the lab's Debian 12 guest (iproute2 6.1) printed it on 6.1 and on
# 6.12, with eth1 and eth2 bonded in mode 802.3ad (lacp_rate fast, miimon 100): the runs of
# tests/e2e/test_bond_lacp.py.  The bond's info_data names the LACP rate "ad_lacp_rate".
DATA = Path(__file__).parent / "data"
LACP_KERNELS = ("6.1", "6.12")


def lacp_bond(kernel: str) -> net.IpView:
    links = json.loads((DATA / f"ip-link-8023ad-{kernel}.json").read_text())
    addrs = [{"ifname": "bond0", "addr_info": [
        {"family": "inet", "local": "192.168.77.2", "prefixlen": 24, "scope": "global"},
        {"family": "inet6", "local": "fd77::2", "prefixlen": 64, "scope": "global"}]}]  # fmt: skip
    return net.IpView(links, addrs, [], [])


def iproute2_bond_grammar() -> dict[str, set[str] | None]:
    """What ``ip link add ... type bond`` takes: each keyword and, where its usage lists
    them, its values (iproute2's own help, the oracle for the names the plan writes)."""
    proc = subprocess.run(["ip", "link", "add", "type", "bond", "help"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    usage = proc.stdout + proc.stderr
    enums = {name: set(values.split("|"))
             for name, values in re.findall(r"^(\w+) := (\S+)$", usage, re.M)}  # fmt: skip
    return {keyword: enums.get(value) for keyword, value in
            re.findall(r"\[ ([a-z0-9_]+) ([A-Z_]+)", usage)}  # fmt: skip


@pytest.mark.parametrize("kernel", LACP_KERNELS)
def test_8023ad_bond_options_from_real_ip_json(kernel):
    plan = net.plan_network(lacp_bond(kernel), "bond0", "192.168.77.1")
    bond = plan["links"][2]
    assert [x["name"] for x in plan["links"]] == ["eth1", "eth2", "bond0"]
    assert [x["mac"] for x in plan["links"][:2]] == ["52:54:00:77:00:01", "52:54:00:77:00:02"]
    assert bond["options"] == {
        "mode": "802.3ad", "miimon": "100", "xmit_hash_policy": "layer2",
        "ad_select": "stable", "lacp_rate": "fast", "lacp_active": "on",
        "ad_actor_sys_prio": "65535", "ad_user_port_key": "0", "min_links": "0",
    }  # ad_actor_system 00:00:00:00:00:00 (unset: the bond's MAC) is left out  # fmt: skip
    grammar = iproute2_bond_grammar()
    if not grammar:
        pytest.skip("no iproute2 here to check the keywords against")
    for keyword, value in bond["options"].items():
        assert keyword in grammar, f"ip link ... type bond takes no {keyword}"
        values = grammar[keyword]
        assert values is None or value in values, (keyword, value, values)


def test_lacp_options_stay_out_of_other_modes():
    """The kernel reports the LACP settings whatever the mode, and refuses them outside
    802.3ad: an active-backup bond's plan leaves them out."""
    view = lacp_bond("6.1")
    bond = next(x for x in view.links if x["ifname"] == "bond0")
    bond["linkinfo"]["info_data"]["mode"] = "active-backup"
    options = net.plan_network(view, "bond0", "192.168.77.1")["links"][2]["options"]
    assert options == {"mode": "active-backup", "miimon": "100",
                       "xmit_hash_policy": "layer2", "ad_select": "stable"}  # fmt: skip


def test_8023ad_replay_sets_the_lacp_rate(tmp_path):
    plan = net.plan_network(lacp_bond("6.12"), "bond0", "192.168.77.1")
    sys_root = _sysfs(tmp_path, {"eth0": "52:54:00:77:00:01", "eth1": "52:54:00:77:00:02"})
    calls = []

    def run(argv):
        calls.append(" ".join(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    NetUp(CaptureLog(io.StringIO()), 2, run, sys_root=sys_root).bring_up(plan)
    assert ("ip link add bond0 type bond mode 802.3ad miimon 100 xmit_hash_policy layer2 "
            "ad_select stable lacp_rate fast lacp_active on ad_actor_sys_prio 65535 "
            "ad_user_port_key 0 min_links 0") in calls  # fmt: skip
