"""Filesystem and NFS targets: a directory under the mount point /init prepared.

The capture initramfs's ``/init`` mounts the target at ``/kdumproot`` before the capture
side runs.  If it is not a mount point then (the device never appeared, the NFS server did
not answer), this module tries the mount itself a bounded number of times and otherwise
reports a target failure, so that failure_action runs.
"""

from __future__ import annotations

import os
import subprocess
import time

from kdumpy.capture import CaptureError
from kdumpy.capture.collector import collect_to_file
from kdumpy.capture.layout import VMCORE, VMCORE_INCOMPLETE
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.net import resolve, source_address
from kdumpy.capture.targets import Destination
from kdumpy.service.config import Target

MOUNT_TRIES = 4
MOUNT_DELAY = 3.0


class MountedFs(Destination):
    """A local filesystem (by device, UUID=, LABEL=) or an NFS export, mounted rw."""

    def __init__(
        self, log: CaptureLog, target: Target, mountpoint: str, require_mount: bool = True
    ) -> None:
        super().__init__(log)
        self.target = target
        self.mountpoint = mountpoint
        self.dir = mountpoint
        # False when the caller hands over a prepared directory (kdumpy save --target-dir).
        self.require_mount = require_mount

    def describe(self) -> str:
        return f"{self.target.kind} {self.target.spec} at {self.mountpoint}"

    def prepare(self) -> None:
        if not self.require_mount:
            if not os.path.isdir(self.mountpoint):
                raise CaptureError(f"{self.mountpoint}: target directory does not exist")
            return
        if os.path.ismount(self.mountpoint):
            return
        self.log.warn(f"{self.mountpoint} is not mounted; mounting {self.target.spec}")
        os.makedirs(self.mountpoint, exist_ok=True)
        last = ""
        for attempt in range(1, MOUNT_TRIES + 1):
            proc = subprocess.run(self._mount_cmd(), capture_output=True, text=True)
            if proc.returncode == 0 and os.path.ismount(self.mountpoint):
                return
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            last = lines[-1] if lines else f"status {proc.returncode}"
            self.log.warn(f"mount attempt {attempt}/{MOUNT_TRIES} failed: {last}")
            if attempt < MOUNT_TRIES:
                time.sleep(MOUNT_DELAY)
        raise CaptureError(f"cannot mount {self.target.kind} {self.target.spec}: {last}")

    def _mount_cmd(self) -> list[str]:
        options = ["rw"] + [
            o for o in self.target.mount_options.split(",") if o and o not in ("defaults", "ro")
        ]
        kind = self.target.kind
        if kind == "nfs" and any(
            o.split("=")[0] in ("vers", "nfsvers") and o.split("=")[-1].startswith("4")
            for o in options
        ):
            # NFSv4 needs no portmapper; the kernel's text options want the server address.
            kind = "nfs4"
            options = [o for o in options if o.split("=")[0] not in ("vers", "nfsvers")]
            options.append(f"addr={resolve(self.target.nfs_host)}")
        elif kind == "nfs":
            options.append("nolock")
        return ["mount", "-t", kind, "-o", ",".join(options), self.target.spec, self.mountpoint]

    def host_ip(self) -> str:
        if self.target.kind == "nfs":
            return source_address(self.target.nfs_host)
        return "127.0.0.1"

    def make_dir(self, relpath: str) -> None:
        self.dir = os.path.join(self.mountpoint, relpath.lstrip("/"))
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"cannot create {self.dir}: {exc.strerror}") from None

    def write_file(self, name: str, data: bytes) -> None:
        path = os.path.join(self.dir, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise CaptureError(f"cannot write {path}: {exc.strerror}") from None

    def rename(self, old: str, new: str) -> None:
        try:
            os.rename(os.path.join(self.dir, old), os.path.join(self.dir, new))
            _fsync_dir(self.dir)
        except OSError as exc:
            raise CaptureError(
                f"cannot rename {old} to {new} in {self.dir}: {exc.strerror}"
            ) from None

    def save_dump(self, collector: list[str], vmcore: str) -> str:
        dest = os.path.join(self.dir, VMCORE_INCOMPLETE)
        collect_to_file(collector, vmcore, dest)
        try:
            os.chmod(dest, 0o600)
            fd = os.open(dest, os.O_RDONLY)
            try:
                os.fsync(fd)  # kdump-utils: sync -f before the rename
            finally:
                os.close(fd)
        except OSError as exc:
            raise CaptureError(f"cannot sync {dest}: {exc.strerror}") from None
        self.rename(VMCORE_INCOMPLETE, VMCORE)
        return VMCORE

    def close(self) -> None:
        os.sync()
        if not self.require_mount or not os.path.ismount(self.mountpoint):
            return
        proc = subprocess.run(["umount", self.mountpoint], capture_output=True, text=True)
        if proc.returncode != 0:
            self.log.warn(f"umount {self.mountpoint}: {proc.stderr.strip()}")

    def where(self) -> str:
        rel = os.path.relpath(self.dir, self.mountpoint)
        return f"{self.target.kind} {self.target.spec}:/{rel}"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
