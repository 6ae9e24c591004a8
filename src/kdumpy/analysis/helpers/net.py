"""Network devices, sockets and neighbours (``net``): the initial namespace's devices
with their IPv4 addresses, the sockets a task has open, and the ARP cache."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import NamedTuple

from kdumpy.analysis.helpers.files import task_files
from kdumpy.analysis.helpers.lists import hlist_for_each_entry, list_for_each_entry, walk
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

AF_NAMES = {1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET"}
SOCK_TYPES = {1: "STREAM", 2: "DGRAM", 3: "RAW", 4: "RDM", 5: "SEQPACKET", 10: "PACKET"}


def for_each_netdev(prog: Program) -> Iterator[Object]:
    """Every ``struct net_device *`` of ``init_net``."""
    head = prog.object("init_net").dev_base_head
    yield from list_for_each_entry("struct net_device", head, "dev_list")


def netdev_name(dev: Object) -> str:
    """A ``struct net_device``'s name (``eth0``), undecodable bytes as ``\\xNN``."""
    return dev.name.string_().decode("utf-8", "backslashreplace")


def netdev_ipv4(prog: Program, dev: Object) -> list[str]:
    """The device's IPv4 addresses (``in_device->ifa_list``)."""
    in_dev = dev.ip_ptr
    if not int(in_dev):
        return []
    off = prog.offsetof("struct in_ifaddr", "ifa_next")
    out = []
    for ifa in walk(int(in_dev.ifa_list), lambda a: prog.read_u64(a + off), 0, "ifa_list"):
        raw = int(prog.object_at("struct in_ifaddr", ifa).ifa_address)
        out.append(str(ipaddress.IPv4Address(raw.to_bytes(4, "little"))))
    return out


def task_sockets(prog: Program, task: Object) -> list[tuple[int, Object, Object]]:
    """``(fd, struct socket *, struct sock *)`` for each socket the task has open
    (a socket file's ``private_data`` is its ``struct socket``)."""
    out = []
    for fd, file, _dentry, _inode, kind, _path in task_files(prog, task):
        if kind == "SOCK":
            sock = prog.object_at("struct file", file).private_data.cast_("struct socket *")
            out.append((fd, sock, sock.sk))
    return out


def sock_family_type(sk: Object) -> str:
    """``INET:STREAM`` style."""
    family = int(sk.member_("__sk_common").skc_family)
    kind = int(sk.sk_type)
    return f"{AF_NAMES.get(family, str(family))}:{SOCK_TYPES.get(kind, str(kind))}"


def sock_endpoints(sk: Object) -> tuple[str, str]:
    """IPv4 ``address-port`` of both ends (empty for other families)."""
    common = sk.member_("__sk_common")
    if int(common.skc_family) != 2:
        return "", ""
    src = ipaddress.IPv4Address(int(common.skc_rcv_saddr).to_bytes(4, "little"))
    dst = ipaddress.IPv4Address(int(common.skc_daddr).to_bytes(4, "little"))
    dport = int.from_bytes(int(common.skc_dport).to_bytes(2, "little"), "big")
    return f"{src}-{int(common.skc_num)}", f"{dst}-{dport}"


# ARP hardware types (include/uapi/linux/if_arp.h) by the names crash shows.
ARP_HW_TYPES = {0: "NETROM", 1: "ETHER", 2: "EETHER", 3: "AX25", 4: "PRONET", 5: "CHAOS",
                6: "IEEE802", 7: "ARCNET", 8: "APPLETLK", 15: "DLCI", 19: "ATM",
                23: "METRICOM", 24: "IEEE1394", 27: "EUI64", 32: "INFINIBAND"}  # fmt: skip
# Neighbour states (NUD_*, include/uapi/linux/neighbour.h), bit by bit.
NUD_STATES = ("INCOMPLETE", "REACHABLE", "STALE", "DELAY", "PROBE", "FAILED", "NOARP",
              "PERMANENT")  # fmt: skip
_MAX_HASH_SHIFT = 24  # a neighbour hash table of 16M buckets: beyond any real one


class Neighbour(NamedTuple):
    """An ARP cache entry as ``net -a`` shows it."""

    address: int  # struct neighbour
    ip: str
    hw_type: int  # the device's ARPHRD_* type
    hw_address: bytes
    device: str
    state: int  # NUD_* bits


def arp_neighbours(prog: Program) -> list[Neighbour]:
    """Every entry of the IPv4 neighbour table (``arp_tbl``), bucket by bucket: a
    ``next`` chain per bucket before 6.13, an hlist (``hash_heads``) since."""
    nht = prog.object("arp_tbl").nht
    shift = int(nht.hash_shift)
    if not 0 <= shift <= _MAX_HASH_SHIFT:
        raise KdumpyError(f"arp_tbl: implausible hash_shift {shift}")
    heads = nht.hash_heads if nht.has_member_("hash_heads") else None
    buckets = int(heads if heads is not None else nht.hash_buckets)
    off = prog.offsetof("struct neighbour", "next") if heads is None else 0

    def next_of(neigh: int) -> int:
        return prog.read_u64(neigh + off)

    out = []
    for i in range(1 << shift):
        if heads is not None:
            head = prog.object_at("struct hlist_head", buckets + i * 8)
            neighs = [int(n) for n in hlist_for_each_entry("struct neighbour", head, "hash")]
        else:
            first = prog.read_u64(buckets + 8 * i)
            neighs = list(walk(first, next_of, 0, f"arp_tbl bucket {i}"))
        out += [_neighbour(prog, n) for n in neighs]
    return out


def _neighbour(prog: Program, address: int) -> Neighbour:
    neigh = prog.object_at("struct neighbour", address)
    dev = neigh.dev
    ip = ipaddress.IPv4Address(prog.read(int(neigh.primary_key.address_ or 0), 4))
    addr_len = min(int(dev.addr_len), 32)  # MAX_ADDR_LEN
    hw = prog.read(int(neigh.ha.address_ or 0), addr_len)
    return Neighbour(address, str(ip), int(dev.type), hw, netdev_name(dev), int(neigh.nud_state))


def nud_state_names(state: int) -> str:
    """``STALE``, ``REACHABLE|NOARP`` ...; ``NONE`` for no bit."""
    names = [name for bit, name in enumerate(NUD_STATES) if state >> bit & 1]
    return "|".join(names) or "NONE"
