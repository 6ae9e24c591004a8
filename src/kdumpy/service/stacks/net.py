"""The network stack that reaches a remote target, copied from iproute2's view of the
running system (``ip -d -j link``, ``ip -j addr``, ``ip -j route`` for IPv4 and IPv6).

From the device the route to the target leaves by, down to the NICs: VLANs (their
parent), bridges and bonds (the links whose ``master`` they are).  The plan lists the
links in creation order (NICs by permanent MAC, then what sits on them), the global
addresses of those links (static copies, DHCP leases included, as kdumpy does for a
plain NIC) and their routes; :mod:`kdumpy.capture.stacks` replays it with iproute2's
``ip`` before NFS or SSH.  A plain NIC reaching an IPv4 target keeps the smaller
busybox path of ``/init`` (no plan).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from kdumpy.errors import KdumpyError

LOGICAL = ("bond", "vlan", "bridge")
# What each kind needs in the capture kernel.
KIND_MODULES = {"bond": ["bonding"], "vlan": ["8021q"], "bridge": ["bridge"]}
# Bond settings carried over: iproute2's JSON name (``ip -j -d link``'s info_data) and the
# keyword of ``ip link add ... type bond`` that sets it.  They differ for LACP's rate and
# activity (iproute2 prints "ad_lacp_rate", takes "lacp_rate").
BOND_OPTIONS = (
    ("mode", "mode"), ("miimon", "miimon"), ("xmit_hash_policy", "xmit_hash_policy"),
    ("ad_select", "ad_select"),
)  # fmt: skip
# The kernel reports the LACP settings of a bond in any mode but takes most of them only in
# mode 802.3ad (bond_options.c: unsupported modes, EACCES): carried for an 802.3ad bond only
# (min_links too, which only 802.3ad's aggregator counts).
LACP_OPTIONS = (
    ("ad_lacp_rate", "lacp_rate"), ("ad_lacp_active", "lacp_active"),
    ("ad_actor_sys_prio", "ad_actor_sys_prio"), ("ad_user_port_key", "ad_user_port_key"),
    ("ad_actor_system", "ad_actor_system"), ("min_links", "min_links"),
)  # fmt: skip
NO_MAC = "00:00:00:00:00:00"  # ad_actor_system unset: the bond's own MAC is the system


@dataclass(frozen=True)
class IpView:
    """iproute2's JSON answers, as ``ip -d -j link``, ``ip -j addr``, ``ip -j route`` and
    ``ip -j -6 route`` print them."""

    links: list[dict]
    addrs: list[dict]
    routes4: list[dict]
    routes6: list[dict]


def read_ip_view() -> IpView:
    return IpView(_ip(["-d", "link", "show"]), _ip(["addr", "show"]),
                  _ip(["-4", "route", "show", "table", "main"]),
                  _ip(["-6", "route", "show", "table", "main"]))  # fmt: skip


def _ip(args: list[str]) -> list[dict]:
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KdumpyError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    try:
        data = json.loads(proc.stdout or "[]")
    except ValueError:
        raise KdumpyError(f"ip {' '.join(args)}: unreadable JSON") from None
    return data if isinstance(data, list) else []


def _kind(link: dict) -> str:
    return str((link.get("linkinfo") or {}).get("info_kind") or "")


def _info(link: dict) -> dict:
    return (link.get("linkinfo") or {}).get("info_data") or {}


def needs_plan(view: IpView, dev: str, target_ip: str) -> bool:
    """A stack (bond, VLAN, bridge) or an IPv6 target: the plan; else /init's plain path."""
    by_name = {str(link.get("ifname")): link for link in view.links}
    return ":" in target_ip or _kind(by_name.get(dev, {})) in LOGICAL


def plan_network(view: IpView, dev: str, target_ip: str) -> dict:
    """The links under *dev* in creation order, their addresses and routes."""
    by_name = {str(link.get("ifname")): link for link in view.links}
    order: list[dict] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        link = by_name.get(name)
        if link is None:
            raise KdumpyError(f"ip link: {name} is not a link on this machine")
        kind = _kind(link)
        entry: dict[str, object] = {"name": name, "mtu": int(link.get("mtu") or 1500)}
        if kind == "vlan":
            parent = str(link.get("link") or "")
            visit(parent)
            entry.update(kind="vlan", parent=parent, id=int(_info(link)["id"]),
                         protocol=str(_info(link).get("protocol") or "802.1Q"))  # fmt: skip
        elif kind in ("bond", "bridge"):
            ports = [n for n, x in by_name.items() if x.get("master") == name]
            if not ports:
                what = "slaves" if kind == "bond" else "ports"
                raise KdumpyError(f"{kind} {name} has no {what}")
            for port in ports:
                visit(port)
            entry.update(kind=kind, ports=ports)
            if kind == "bond":
                entry["options"] = bond_options(_info(link))
            else:
                entry["stp"] = int(_info(link).get("stp_state") or 0)
        elif kind in ("", "tun") and link.get("link_type") == "ether":
            # A NIC: found again by its permanent MAC (a bond slave's address is the bond's).
            entry.update(kind="nic", mac=str(link.get("permaddr") or link.get("address")))
        else:
            raise KdumpyError(
                f"{name} is a {kind or link.get('link_type') or 'unknown'} link: kdumpy cannot "
                "bring it up in the capture kernel (supported: NICs, bonds, VLANs, bridges)"
            )
        order.append(entry)

    visit(dev)
    names = [str(e["name"]) for e in order]
    return {
        "links": order,
        "addresses": _addresses(view.addrs, names),
        "routes": _routes(view.routes4, names, "inet") + _routes(view.routes6, names, "inet6"),
        "target_ip": target_ip,
        "device": dev,
    }


def bond_options(info: dict) -> dict[str, str]:
    """``ip link add ... type bond`` keywords and values for the bond *info* describes."""
    names = BOND_OPTIONS + (LACP_OPTIONS if info.get("mode") == "802.3ad" else ())
    options = {keyword: str(info[key]) for key, keyword in names if key in info}
    if options.get("ad_actor_system") == NO_MAC:
        del options["ad_actor_system"]
    return options


def _addresses(addrs: list[dict], names: list[str]) -> list[dict]:
    out = []
    for link in addrs:
        if link.get("ifname") not in names:
            continue
        for a in link.get("addr_info") or []:
            if a.get("scope") != "global" or a.get("family") not in ("inet", "inet6"):
                continue
            out.append({"dev": link["ifname"], "family": a["family"],
                        "address": f"{a['local']}/{a['prefixlen']}"})  # fmt: skip
    return out


def _routes(routes: list[dict], names: list[str], family: str) -> list[dict]:
    """Routes through the stack's links that adding the addresses does not make itself."""
    out = []
    for r in routes:
        dst = str(r.get("dst") or "")
        if r.get("dev") not in names or r.get("protocol") == "kernel":
            continue
        if dst.startswith(("fe80:", "ff00:")) or r.get("type") not in (None, "unicast"):
            continue
        route = {"family": family, "dst": dst or "default", "dev": str(r["dev"])}
        if r.get("gateway"):
            route["gateway"] = str(r["gateway"])
        out.append(route)
    return out


def modules_for(plan: dict) -> list[str]:
    """The logical links' modules (the NICs' drivers come from sysfs, by the caller)."""
    out: list[str] = []
    for link in plan.get("links", []):
        for m in KIND_MODULES.get(str(link.get("kind")), []):
            if m not in out:
                out.append(m)
    return out


def nic_names(plan: dict) -> list[str]:
    return [str(x["name"]) for x in plan.get("links", []) if x.get("kind") == "nic"]
