"""Dump targets as the capture kernel sees them.

A :class:`Destination` is where one crash's files go: a directory on a mounted filesystem
(local disk or NFS, :mod:`.local`), a directory on an ssh server (:mod:`.ssh`), or a raw
block device that takes the flattened dump alone (:mod:`.raw`).  :func:`open_target` picks
the class for ``cfg.target``.
"""

from __future__ import annotations

from kdumpy.capture import CaptureError
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.targets.base import Destination
from kdumpy.capture.targets.local import MountedFs
from kdumpy.capture.targets.raw import RawDevice
from kdumpy.capture.targets.ssh import SshServer
from kdumpy.service.config import KdumpConfig
from kdumpy.service.sshopts import KNOWN_HOSTS

__all__ = ["Destination", "MountedFs", "RawDevice", "SshServer", "open_target"]


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
    target = cfg.target
    if target is None:
        raise CaptureError(f"{cfg.source}: no dump target (the capture initramfs names one)")
    if target.kind == "raw":
        return RawDevice(log, target.spec)
    if target.kind == "ssh":
        return SshServer(
            log,
            target.ssh_user,
            target.ssh_host,
            cfg.sshkey,
            known_hosts=known_hosts or KNOWN_HOSTS,
            ssh_config=ssh_config,
        )
    return MountedFs(log, target, mountpoint, require_mount)
