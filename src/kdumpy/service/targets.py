"""Resolve the dump target on the first kernel: devices, filesystems, routes.

The capture initramfs must find the same disk or server without udev or the first
kernel's names, so devices are recorded by UUID where possible, network settings
by MAC address, and the default target (``path`` on whatever holds it) becomes an
explicit ``<fstype> UUID=...`` with ``path`` made relative to that filesystem.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.service.config import KdumpConfig, Target


@dataclass(frozen=True)
class Mount:
    source: str
    mountpoint: str
    fstype: str
    options: str


@dataclass(frozen=True)
class Network:
    """The interface and addresses that reach a remote target, recorded by MAC."""

    mac: str
    iface: str
    address: str  # "10.0.2.15/24"
    gateway: str | None
    target_ip: str


def mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Mount]:
    """Mounted filesystems, in mount order."""
    out = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        mountpoint = fields[4].replace("\\040", " ")
        out.append(Mount(fields[sep + 2], mountpoint, fields[sep + 1], fields[5]))
    return out


def mount_of(path: str) -> Mount:
    """The filesystem holding ``path`` (the longest mount point prefix, last one wins)."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for m in mounts():
        prefix = m.mountpoint.rstrip("/") + "/"
        if (real + "/").startswith(prefix) and (
            best is None or len(m.mountpoint) >= len(best.mountpoint)
        ):
            best = m
    if best is None:
        raise KdumpyError(f"{path}: no mounted filesystem holds it")
    return best


def uuid_of(devnode: str) -> str | None:
    """The filesystem UUID of a block device, from /dev/disk/by-uuid."""
    by_uuid = Path("/dev/disk/by-uuid")
    if not by_uuid.is_dir():
        return None
    real = os.path.realpath(devnode)
    for link in by_uuid.iterdir():
        if os.path.realpath(link) == real:
            return link.name
    return None


def device_node(spec: str) -> str:
    """A /dev node for ``/dev/...``, ``UUID=`` or ``LABEL=`` on this machine."""
    key, _, value = spec.partition("=")
    if key in ("UUID", "LABEL", "PARTUUID") and value:
        link = Path("/dev/disk") / f"by-{key.lower()}" / value
        if link.exists():
            return os.path.realpath(link)
        # udev may not have made the link (yet, or not for a device-mapper volume): ask
        # the superblocks themselves, as kdump-utils does with blkid.
        found = _findfs(spec)
        if found is None:
            raise KdumpyError(f"{spec}: no such device on this machine")
        return found
    if not os.path.exists(spec):
        raise KdumpyError(f"{spec}: no such device on this machine")
    return os.path.realpath(spec)


def _findfs(spec: str) -> str | None:
    try:
        proc = subprocess.run(["findfs", spec], capture_output=True, text=True, check=False)
    except OSError:
        return None
    node = proc.stdout.strip()
    return os.path.realpath(node) if proc.returncode == 0 and node.startswith("/dev/") else None


def resolve_default_target(config: KdumpConfig) -> KdumpConfig:
    """With no target directive, make the filesystem holding ``path`` the explicit target."""
    if config.target is not None:
        return config
    if not os.path.isdir(config.path):
        raise KdumpyError(f"{config.source}: dump path {config.path} does not exist")
    m = mount_of(config.path)
    if not m.source.startswith("/dev/"):
        raise KdumpyError(
            f"{config.source}: {config.path} is on {m.fstype} {m.source}, not a block device; "
            "set a dump target in kdump.conf"
        )
    uuid = uuid_of(m.source)
    spec = f"UUID={uuid}" if uuid else m.source
    rel = os.path.relpath(os.path.realpath(config.path), m.mountpoint)
    rel_path = "/" if rel == "." else "/" + rel
    return replace(config, target=Target(m.fstype, spec), path=rel_path)


def resolve_ip(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError as exc:
        raise KdumpyError(f"cannot resolve dump target host {host}: {exc}") from None


def route_dev(ip: str) -> str:
    """The device this machine's routing sends packets for *ip* out of."""
    return str(_ip_json(["route", "get", ip])[0]["dev"])


def route_to(host: str) -> Network:
    """Interface, address and gateway this machine uses to reach ``host``."""
    ip = resolve_ip(host)
    route = _ip_json(["route", "get", ip])[0]
    iface = route["dev"]
    addrs = _ip_json(["addr", "show", "dev", iface])[0]
    inet = next((a for a in addrs.get("addr_info", []) if a.get("local") == route.get("prefsrc")),
                None)  # fmt: skip
    if inet is None:
        inet = next((a for a in addrs.get("addr_info", []) if a["family"] == "inet"), None)
    if inet is None:
        raise KdumpyError(f"{iface}: no IPv4 address to reach {host}")
    return Network(
        mac=addrs.get("address", ""),
        iface=iface,
        address=f"{inet['local']}/{inet['prefixlen']}",
        gateway=route.get("gateway"),
        target_ip=ip,
    )


def _ip_json(args: list[str]) -> list[dict]:
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KdumpyError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)
