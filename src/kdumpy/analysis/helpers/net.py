"""Network devices and sockets (``net``): the initial namespace's devices with their
IPv4 addresses, and the sockets a task has open."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from kdumpy.analysis.helpers.files import task_files
from kdumpy.analysis.helpers.lists import list_for_each_entry, walk
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

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
