"""Bring up the network stack to a remote target in the capture kernel (iproute2's ``ip``).

The plan (``network`` in ``/etc/kdumpy/stacks.json``, made by
:mod:`kdumpy.service.stacks.net`) lists the links in creation order: NICs, found again
by their MAC address (the capture kernel may name them differently), then bonds, VLANs
and bridges made on them under their first-kernel names; then the addresses (IPv6 with
``nodad``: no duplicate-address wait in a capture kernel) and the routes.  It ends when
the target answers a ping, bounded: a bond with one live slave still gets there, a stack
whose links stay down ends in failure_action with the reason.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from kdumpy.capture import CaptureError
from kdumpy.capture.log import CaptureLog

Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit status {proc.returncode}"


class NetUp:
    def __init__(self, log: CaptureLog, timeout: float, run: Runner, sys_root: str = "/sys",
                 delay: float = 1.0) -> None:  # fmt: skip
        self.log, self.timeout, self.run = log, timeout, run
        self.sys_root, self.delay = sys_root, delay
        self.names: dict[str, str] = {}  # first kernel's NIC name -> this kernel's

    def ip(self, *args: str) -> None:
        proc = self.run(["ip", *args])
        if proc.returncode != 0:
            raise CaptureError(f"ip {' '.join(args)}: {_last_line(proc)}")

    def bring_up(self, plan: dict) -> None:
        self.ip("link", "set", "lo", "up")
        links = plan.get("links", [])
        self.find_nics([x for x in links if x.get("kind") == "nic"])
        for link in links:
            self.make(link)
        for link in links:
            self.ip("link", "set", self.dev(link["name"]), "up")
        for a in plan.get("addresses", []):
            extra = ["nodad"] if a["family"] == "inet6" else []
            self.ip("addr", "add", a["address"], "dev", self.dev(a["dev"]), *extra)
        for r in plan.get("routes", []):
            family = "-6" if r["family"] == "inet6" else "-4"
            via = ["via", r["gateway"]] if r.get("gateway") else []
            self.ip(family, "route", "replace", r["dst"], *via, "dev", self.dev(r["dev"]))
        summary = ", ".join(f"{x.get('kind')} {x['name']}" for x in links)
        addresses = " ".join(a["address"] for a in plan.get("addresses", []))
        self.log.info(f"network: {summary}; {addresses}")
        self.wait_target(str(plan.get("target_ip", "")), str(plan.get("device", "")))

    def dev(self, name: str) -> str:
        return self.names.get(name, name)

    def find_nics(self, nics: list[dict]) -> None:
        """Each NIC by MAC, waiting (bounded) for its driver to register it."""
        deadline = time.monotonic() + self.timeout
        while True:
            by_mac = self._macs()
            missing = [n for n in nics if str(n["mac"]).lower() not in by_mac]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(self.delay)
        if missing:
            names = ", ".join(f"{n['name']} ({n['mac']})" for n in missing)
            raise CaptureError(f"network: no interface with the MAC of {names}")
        for n in nics:
            self.names[str(n["name"])] = by_mac[str(n["mac"]).lower()]

    def _macs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        base = f"{self.sys_root}/class/net"
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            try:
                with open(f"{base}/{name}/address") as fh:
                    out.setdefault(fh.read().strip().lower(), name)
            except OSError:
                continue
        return out

    def make(self, link: dict) -> None:
        kind, name = link.get("kind"), str(link["name"])
        if kind == "bond":
            options = [w for k, v in link.get("options", {}).items() for w in (k, v)]
            # Loading bonding makes a bond0 of its own (max_bonds=1): set that one up.
            verb = "set" if os.path.exists(f"{self.sys_root}/class/net/{name}") else "add"
            self.ip("link", verb, name, "type", "bond", *options)
        elif kind == "bridge":
            stp = str(link.get("stp", 0))
            # Without STP no forwarding delay: the dump should not wait for it.
            fast = ["forward_delay", "0"] if stp == "0" else []
            self.ip("link", "add", name, "type", "bridge", "stp_state", stp, *fast)
        elif kind == "vlan":
            protocol = str(link.get("protocol", "802.1Q"))
            self.ip("link", "add", "link", self.dev(link["parent"]), "name", name, "type",
                    "vlan", "protocol", protocol, "id", str(link["id"]))  # fmt: skip
        if kind in ("bond", "bridge"):
            for port in link["ports"]:
                self.ip("link", "set", self.dev(port), "down")
                self.ip("link", "set", self.dev(port), "master", name)
        self.ip("link", "set", self.dev(name), "mtu", str(link.get("mtu", 1500)))

    def wait_target(self, target: str, dev: str) -> None:
        """The target answers a ping (bonds and bridges take a moment to forward)."""
        if not target:
            return
        deadline = time.monotonic() + self.timeout
        while True:
            proc = self.run(["ping", "-c", "1", "-W", "1", target])
            if proc.returncode == 0:
                self.log.info(f"network: {target} answers through {dev}")
                return
            if time.monotonic() >= deadline:
                state = self._operstate(dev)
                if state not in ("up", "unknown"):
                    raise CaptureError(f"network: {dev} is {state}: {target} unreachable "
                                       f"after {self.timeout:.0f} s")  # fmt: skip
                # The link is up: a server may just not answer pings.  Try anyway.
                self.log.warn(f"network: {target} does not answer ping through {dev}; "
                              "trying anyway")  # fmt: skip
                return
            time.sleep(self.delay)

    def _operstate(self, dev: str) -> str:
        try:
            with open(f"{self.sys_root}/class/net/{dev}/operstate") as fh:
                return fh.read().strip()
        except OSError:
            return "missing"
