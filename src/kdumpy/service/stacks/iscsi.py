"""iSCSI LUNs under a dump target, read host-only from the running system's sysfs.

A disk the software initiator (``iscsi_tcp``) logged in to sits in sysfs under its
session: ``/sys/devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sdb``, the
last number of ``2:0:0:1`` its LUN.  The session's settings are its ``iscsi_session``
attributes beside it (target name, portal group tag, initiator name, and the CHAP
names and secrets, readable by root only), the portal is its connection's
``persistent_address``/``persistent_port``: what dracut's iscsi module and kdump-utils
read too.  The capture initramfs logs in again with ``iscsistart`` (one process, no
iscsid) from these (:mod:`kdumpy.capture.stacks`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError

# Kernel modules of the software initiator; the disk's own (sd_mod) come from sysfs.
MODULES = ["iscsi_tcp"]
INITIATOR_FILE = "/etc/iscsi/initiatorname.iscsi"
SESSION_DIR = re.compile(r"session\d+")
SCSI_ADDRESS = re.compile(r"\d+:\d+:\d+:(\d+)")
# iSCSI names (RFC 3720 3.2.6): iqn., eui. or naa. and no blanks or control characters.
ISCSI_NAME = re.compile(r"(iqn\.|eui\.|naa\.)[^\s\x00-\x1f]+", re.IGNORECASE)
UNSET = ("", "(null)")  # libiscsi prints an unset string parameter as "(null)"


@dataclass(frozen=True)
class Chap:
    """CHAP names and secrets: *username*/*password* the initiator's, *_in* the target's
    (mutual CHAP).  Secrets: written to the initramfs at 0400, never into the plan."""

    username: str = ""
    password: str = ""
    username_in: str = ""
    password_in: str = ""

    def __bool__(self) -> bool:
        return bool(self.username or self.username_in)


@dataclass(frozen=True)
class IscsiSession:
    """How the capture kernel logs in to one iSCSI target and finds the LUN again."""

    disk: str  # the first kernel's node: /dev/sdb
    session: str  # session1 (for messages)
    initiator: str
    target: str
    tpgt: int
    address: str
    port: int
    lun: int
    chap: Chap = Chap()

    def portal(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"  # fmt: skip

    def describe(self) -> str:
        auth = " with CHAP" if self.chap else ""
        return f"iSCSI LUN {self.lun} of {self.target} at {self.portal()}{auth}"


def _read(path: Path) -> str:
    try:
        value = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return "" if value in UNSET else value


def session_dir(disk: str, sys_root: str = "/sys") -> tuple[Path, int] | None:
    """The sysfs session device above *disk* and the disk's LUN; None when the disk is
    not on an iSCSI session."""
    name = os.path.basename(os.path.realpath(disk)) if disk.startswith("/dev/") else disk
    link = Path(sys_root) / "class" / "block" / name
    try:
        real = link.resolve(strict=True)
    except OSError:
        return None
    parts = real.parts
    sessions = [i for i, p in enumerate(parts) if SESSION_DIR.fullmatch(p)]
    luns = [SCSI_ADDRESS.fullmatch(p) for p in parts]
    found = [m for m in luns if m]
    if not sessions or not found:
        return None
    return Path(*parts[: sessions[-1] + 1]), int(found[-1].group(1))


def read_session(disk: str, sys_root: str = "/sys",
                 initiator_file: str = INITIATOR_FILE) -> IscsiSession | None:  # fmt: skip
    """The iSCSI session *disk* came from, or None for a disk of another transport."""
    found = session_dir(disk, sys_root)
    if found is None:
        return None
    sdir, lun = found
    attrs = sdir / "iscsi_session" / sdir.name
    source = f"{sdir}: iSCSI session of {disk}"
    target = _read(attrs / "targetname")
    if not ISCSI_NAME.fullmatch(target):
        raise KdumpyError(f"{source}: target name {target!r} is not an iSCSI name")
    initiator = _read(attrs / "initiatorname") or _initiator_from_file(initiator_file)
    if not ISCSI_NAME.fullmatch(initiator):
        raise KdumpyError(f"{source}: no initiator name (sysfs initiatorname, "
                          f"{initiator_file})")  # fmt: skip
    address, port = _portal(sdir, source)
    tpgt = _read(attrs / "tpgt")
    chap = Chap(_read(attrs / "username"), _read(attrs / "password"),
                _read(attrs / "username_in"), _read(attrs / "password_in"))  # fmt: skip
    if (chap.username and not chap.password) or (chap.username_in and not chap.password_in):
        raise KdumpyError(f"{source}: CHAP secret unreadable (kdumpy must run as root)")
    return IscsiSession(
        disk=disk, session=sdir.name, initiator=initiator, target=target,
        tpgt=int(tpgt) if tpgt.lstrip("-").isdigit() else -1,
        address=address, port=port, lun=lun, chap=chap,
    )  # fmt: skip


def _portal(sdir: Path, source: str) -> tuple[str, int]:
    """The first connection's portal (persistent: what the initiator was told to use)."""
    for conn in sorted(sdir.glob("connection*/iscsi_connection/connection*")):
        address = _read(conn / "persistent_address") or _read(conn / "address")
        port = _read(conn / "persistent_port") or _read(conn / "port")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise KdumpyError(f"{source}: portal address {address!r} is not an IP "
                              "address") from None  # fmt: skip
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise KdumpyError(f"{source}: portal port {port!r} is not a TCP port")
        return address, int(port)
    raise KdumpyError(f"{source}: no connection (the session is not logged in)")


def _initiator_from_file(path: str) -> str:
    """``InitiatorName=`` of open-iscsi's initiatorname.iscsi."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "InitiatorName":
            return value.strip()
    return ""


def sessions(disks: tuple[str, ...], sys_root: str = "/sys") -> tuple[IscsiSession, ...]:
    """The iSCSI sessions of *disks* (those on another transport are left out)."""
    found = [read_session(d, sys_root) for d in disks]
    return tuple(s for s in found if s is not None)
