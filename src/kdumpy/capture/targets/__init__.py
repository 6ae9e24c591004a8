"""Dump targets as the capture kernel sees them.

A :class:`Destination` is where one crash's files go: a directory on a mounted filesystem
(local disk or NFS, :mod:`.local`), a directory on an ssh server (:mod:`.ssh`), or a raw
block device that takes the flattened dump alone (:mod:`.raw`).  :func:`open_target` picks
the class for ``cfg.target``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from kdumpy.capture.log import CaptureLog
from kdumpy.service.config import KdumpConfig
from kdumpy.service.sshopts import KNOWN_HOSTS


class Destination(ABC):
    """One dump target during a capture."""

    #: False for raw devices: they hold the dump only (no dmesg, no log, no directory).
    has_files = True

    def __init__(self, log: CaptureLog) -> None:
        self.log = log

    @abstractmethod
    def describe(self) -> str:
        """How messages name the target, e.g. ``ext4 UUID=... at /kdumproot``."""

    @abstractmethod
    def prepare(self) -> None:
        """Make the target usable (mounted, reachable); CaptureError if it is not."""

    def host_ip(self) -> str:
        """The address naming the dump directory (127.0.0.1 for local targets)."""
        return "127.0.0.1"

    def make_dump_dir(self, path: str, name: str) -> str:
        """Create ``path`` if needed and in it a new 0700 directory *name* (``<ip>-<date>``),
        or the first free of :func:`layout.fresh_names` if *name* exists: a directory is
        never reused.  It becomes the dump directory; returns the name used."""
        raise NotImplementedError

    def write_file(self, name: str, data: bytes) -> None:
        """Write *name* (0600, replacing our own earlier one) in the dump directory and
        flush it to the target."""
        raise NotImplementedError

    def rename(self, old: str, new: str) -> None:
        raise NotImplementedError

    @abstractmethod
    def save_dump(self, collector: list[str], vmcore: str) -> str:
        """Run the collector into ``vmcore-incomplete``, sync, rename; return the final name."""

    def close(self) -> None:  # noqa: B027 - most targets have nothing to release
        """Release the target (unmount) after the save; errors are only logged."""

    def where(self) -> str:
        """The dump directory as the user will find it (for the final message)."""
        return self.describe()


def open_target(
    cfg: KdumpConfig,
    log: CaptureLog,
    mountpoint: str,
    require_mount: bool = True,
    ssh_config: str | None = None,
    known_hosts: str | None = None,
) -> Destination:
    """The Destination for ``cfg.target`` (fs and NFS targets are found at *mountpoint*;
    with *require_mount* False, *mountpoint* is a prepared directory used as it is)."""
    from kdumpy.capture import CaptureError

    target = cfg.target
    if target is None:
        raise CaptureError(f"{cfg.source}: no dump target (the capture initramfs names one)")
    if target.kind == "raw":
        from kdumpy.capture.targets.raw import RawDevice

        return RawDevice(log, target.spec)
    if target.kind == "ssh":
        from kdumpy.capture.targets.ssh import SshServer

        return SshServer(
            log,
            target.ssh_user,
            target.ssh_host,
            cfg.sshkey,
            known_hosts=known_hosts or KNOWN_HOSTS,
            ssh_config=ssh_config,
        )
    from kdumpy.capture.targets.local import MountedFs

    return MountedFs(log, target, mountpoint, require_mount)
