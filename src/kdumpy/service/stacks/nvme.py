"""NVMe over TCP namespaces under a dump target, read host-only from the running system's sysfs.

A namespace's disk (``/sys/class/block/nvme1n1``) has ``device`` pointing at its NVMe
controller (``/sys/class/nvme/nvme1``) or, with native multipath, at its subsystem
(``nvme-subsys1``, which links each of its controllers by name).  A fabrics controller's
attributes say how it was connected: ``transport`` (``tcp``, ``rdma``, ``fc``, ``loop``;
``pcie`` for a local drive), ``subsysnqn``, ``hostnqn``, ``hostid``, and ``address``, the
connect options the kernel prints back as a ``key=value`` list (fabrics.c's
nvmf_get_address: ``traddr=``, ``trsvcid=``, ``host_traddr=``, ``host_iface=``; nvme-tcp
adds the socket's ``src_addr=``).

The capture kernel connects again by writing the same options to ``/dev/nvme-fabrics``
(:mod:`kdumpy.capture.stacks`): no nvme-cli in the initramfs.  The kernel splits that
string at ``,`` and newlines and each option at ``=``, so every value carried is checked
here: an NQN or address holding one of them could add options of its own.
"""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError

# nvme-tcp needs nvme-fabrics and nvme-core (modules.dep brings them).
MODULES = ["nvme_tcp"]
HOSTNQN_FILE = "/etc/nvme/hostnqn"
HOSTID_FILE = "/etc/nvme/hostid"
NAMESPACE_DISK = re.compile(r"nvme\d+n\d+")  # a path device (nvme1c2n1) has no /dev node
CONTROLLER = re.compile(r"nvme\d+")
# NVMe base spec 4.5: "nqn." yyyy-mm "." reverse domain ... ; at most 223 bytes (the
# kernel's NVMF_NQN_SIZE).  No blank, control character, "," or "=": the option string's
# separators.
NQN = re.compile(r"nqn\.\d{4}-\d\d\.[^\s\x00-\x1f\x7f,=]+")
NQN_MAX = 223


@dataclass(frozen=True)
class NvmeTcpController:
    """How the capture kernel connects to one NVMe/TCP controller and finds the namespace."""

    disk: str  # the first kernel's node: /dev/nvme1n1
    controller: str  # nvme1 (for messages)
    subsysnqn: str
    traddr: str
    trsvcid: int
    hostnqn: str
    hostid: str = ""
    # Only when the first kernel was told to bind the connection to a local address;
    # src_addr (the address the socket happened to leave from) is not carried: the capture
    # kernel's route to traddr picks it again, as it did there.
    host_traddr: str = ""
    nsid: int = 1

    def describe(self) -> str:
        return f"NVMe/TCP namespace {self.nsid} of {self.subsysnqn} at {self.portal()}"

    def portal(self) -> str:
        return f"[{self.traddr}]:{self.trsvcid}" if ":" in self.traddr else \
            f"{self.traddr}:{self.trsvcid}"  # fmt: skip


def parse_address(text: str, source: str) -> dict[str, str]:
    """sysfs ``address`` (``traddr=10.0.2.100,trsvcid=4420,src_addr=10.0.2.15``) as a
    dict; a one-line KdumpyError for an entry without ``=`` or a repeated key.  Keys a
    later kernel may add are kept but never carried: only traddr, trsvcid and host_traddr
    go into the plan, each checked."""
    found: dict[str, str] = {}
    for item in text.strip().split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KdumpyError(f"{source}: address entry {item!r} is not key=value")
        if key in found:
            raise KdumpyError(f"{source}: address key {key!r} given twice")
        found[key] = value
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _ip(value: str, what: str, source: str) -> str:
    """An IP address nvme-tcp accepts (inet_pton_with_scope: numeric, IPv6 maybe with
    %scope); the canonical spelling."""
    address, _, scope = value.partition("%")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise KdumpyError(f"{source}: {what} {value!r} is not an IP address") from None
    if scope and (ip.version != 6 or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", scope)):
        raise KdumpyError(f"{source}: {what} {value!r} has a bad scope")
    return f"{ip}%{scope}" if scope else str(ip)


def check_nqn(value: str, what: str, source: str) -> str:
    if len(value.encode()) > NQN_MAX or not NQN.fullmatch(value):
        raise KdumpyError(f"{source}: {what} {value!r} is not an NVMe qualified name")
    return value


def check_hostid(value: str, source: str) -> str:
    """A host ID as the kernel's uuid_parse takes it (8-4-4-4-12 hex digits)."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value.lower():
        raise KdumpyError(f"{source}: host ID {value!r} is not a UUID")
    return value.lower()


def controllers_of(disk: str, sys_root: str = "/sys") -> tuple[str, list[Path]] | None:
    """The namespace disk under *disk* (a partition's disk) and its controllers' sysfs
    directories; None when *disk* is not an NVMe namespace."""
    name = os.path.basename(os.path.realpath(disk)) if disk.startswith("/dev/") else disk
    block = Path(sys_root) / "class" / "block" / name
    if (block / "partition").exists():
        name = block.resolve().parent.name
        block = Path(sys_root) / "class" / "block" / name
    if not NAMESPACE_DISK.fullmatch(name) or not block.exists():
        return None
    device = (block / "device").resolve()
    if (device / "transport").exists():  # the controller itself (no multipath)
        return name, [device]
    # A multipath head: its subsystem links every controller (path) by name.
    paths = sorted(p.resolve() for p in device.iterdir() if CONTROLLER.fullmatch(p.name))
    return name, [p for p in paths if (p / "transport").exists()]


def read_controllers(disk: str, sys_root: str = "/sys", hostnqn_file: str = HOSTNQN_FILE,
                     hostid_file: str = HOSTID_FILE) -> tuple[NvmeTcpController, ...]:  # fmt: skip
    """The NVMe/TCP controllers *disk*'s namespace is reached by: () for a disk that is
    not NVMe or a local (PCIe) drive; KdumpyError for another fabric or a value that
    could not be passed on safely."""
    found = controllers_of(disk, sys_root)
    if found is None:
        return ()
    name, dirs = found
    nsid_text = _read(Path(sys_root) / "class" / "block" / name / "nsid")
    out = []
    for cdir in dirs:
        transport = _read(cdir / "transport")
        if transport in ("pcie", ""):
            continue
        source = f"{cdir}: NVMe controller of {disk}"
        if transport != "tcp":
            raise KdumpyError(f"{source}: NVMe over {transport} cannot be brought up in the "
                              "capture kernel (supported: tcp)")  # fmt: skip
        if _read(cdir / "dhchap_secret") not in ("", "none"):
            raise KdumpyError(f"{source}: DH-HMAC-CHAP authentication is not supported")
        # The TLS PSK's key serial (6.7+); empty, or no such attribute, without TLS (the
        # first kernels with it showed the attribute on every tcp controller).
        if _read(cdir / "tls_key"):
            raise KdumpyError(f"{source}: NVMe/TCP over TLS is not supported")
        if not nsid_text.isdigit() or int(nsid_text) == 0:
            raise KdumpyError(f"{source}: namespace {name} has no NSID in sysfs")
        address = parse_address(_read(cdir / "address"), source)
        if "traddr" not in address or "trsvcid" not in address:
            raise KdumpyError(f"{source}: address has no traddr or trsvcid")
        port = address["trsvcid"]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise KdumpyError(f"{source}: trsvcid {port!r} is not a TCP port")
        hostnqn = _read(cdir / "hostnqn") or _first_line(hostnqn_file)
        hostid = _read(cdir / "hostid") or _first_line(hostid_file)
        out.append(NvmeTcpController(
            disk=disk, controller=cdir.name,
            subsysnqn=check_nqn(_read(cdir / "subsysnqn"), "subsystem NQN", source),
            traddr=_ip(address["traddr"], "traddr", source), trsvcid=int(port),
            hostnqn=check_nqn(hostnqn, "host NQN", source),
            hostid=check_hostid(hostid, source) if hostid else "",
            host_traddr=_ip(address["host_traddr"], "host_traddr", source)
            if "host_traddr" in address else "",
            nsid=int(nsid_text),
        ))  # fmt: skip
    return tuple(out)


def _first_line(path: str) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return lines[0].strip() if lines else ""


def controllers(disks: tuple[str, ...], sys_root: str = "/sys") -> tuple[NvmeTcpController, ...]:
    """The NVMe/TCP controllers under *disks* (disks on anything else are left out)."""
    return tuple(c for d in disks for c in read_controllers(d, sys_root))
