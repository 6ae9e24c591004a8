"""Filesystem and NFS targets: a directory under the mount point /init prepared."""

# The capture initramfs's ``/init`` mounts the target at ``/kdumproot`` before the capture
# side runs.  If it is not a mount point then (the device never appeared, the NFS server did
# not answer), this module tries the mount itself a bounded number of times and otherwise
# reports a target failure, so that failure_action runs.
#
# ``path`` may lie in a directory other users can write (Ubuntu's /var/crash is 1777): it is
# walked from the mount point one directory at a time without following symbolic links or
# ``..``, the dump directory is created fresh (never one that exists), and every file in it
# is reached through the directory's descriptor and created with O_EXCL|O_NOFOLLOW, 0600.

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import subprocess
import time

from kdumpy.capture import CaptureError
from kdumpy.capture.collector import collect_to_file
from kdumpy.capture.layout import VMCORE, VMCORE_INCOMPLETE, fresh_names
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.net import resolve, source_address
from kdumpy.capture.targets.base import Destination
from kdumpy.errors import KdumpyError
from kdumpy.fileio import DIR_FLAGS, PRIVATE_DIR, PRIVATE_FILE, fresh_dir, replace
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
        self.fd: int | None = None  # the dump directory, once created

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

    def make_dump_dir(self, path: str, name: str) -> str:
        """Walk ``path`` below the mount point one directory at a time, never following a
        symbolic link or ``..`` out of it, then create the dump directory fresh."""
        rel = posixpath.normpath(path.lstrip("/") or ".")
        if rel == ".." or rel.startswith("../"):
            raise CaptureError(f"path {path} leaves the target mounted at {self.mountpoint}")
        fd = self._open_below(rel)
        try:
            for candidate in fresh_names(name):
                try:
                    self.fd = fresh_dir(candidate, dir_fd=fd, check_owner=self._owned())
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise CaptureError(
                        f"cannot create {candidate} in {self._show(rel)}: {exc.strerror}"
                    ) from None
                except KdumpyError as exc:
                    raise CaptureError(f"{self._show(rel)}/{exc}") from None
                if candidate != name:
                    self.log.warn(f"{self._show(rel)}/{name} exists: saving to {candidate}")
                self.dir = os.path.join(self.mountpoint, rel, candidate)
                return candidate
        finally:
            os.close(fd)
        raise CaptureError(f"no free dump directory name {name}[-N] in {self._show(rel)}")

    def _open_below(self, rel: str) -> int:
        """A descriptor of mountpoint/rel, each missing directory created 0700."""
        try:
            fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise CaptureError(f"cannot open {self.mountpoint}: {exc.strerror}") from None
        walked = self.mountpoint
        for part in [] if rel == "." else rel.split("/"):
            walked = os.path.join(walked, part)
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, PRIVATE_DIR, dir_fd=fd)
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise CaptureError(
                        f"{walked} is a symbolic link or not a directory: not following "
                        "it (it could lead out of the target)"
                    ) from None
                raise CaptureError(f"cannot create {walked}: {exc.strerror}") from None
            os.close(fd)
            fd = child
        return fd

    def _owned(self) -> bool:
        # An NFS server may map root to nobody (root_squash): our own mkdir is then not ours.
        return self.target.kind != "nfs"

    def _show(self, rel: str) -> str:
        return os.path.normpath(os.path.join(self.mountpoint, rel))

    def _dir_fd(self) -> int:
        if self.fd is None:
            raise CaptureError("internal error: no dump directory was created")
        return self.fd

    def write_file(self, name: str, data: bytes) -> None:
        try:
            replace(name, data, dir_fd=self._dir_fd())
        except OSError as exc:
            raise CaptureError(f"cannot write {self.dir}/{name}: {exc.strerror}") from None

    def rename(self, old: str, new: str) -> None:
        fd = self._dir_fd()
        try:
            os.rename(old, new, src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)
        except OSError as exc:
            raise CaptureError(
                f"cannot rename {old} to {new} in {self.dir}: {exc.strerror}"
            ) from None

    def save_dump(self, collector: list[str], vmcore: str) -> str:
        fd = self._dir_fd()
        # The collector reaches the directory through our descriptor, not by its name:
        # renaming a directory on the way cannot redirect the dump.
        collect_to_file(collector, vmcore, f"/proc/self/fd/{fd}/{VMCORE_INCOMPLETE}", (fd,))
        try:
            out = os.open(VMCORE_INCOMPLETE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                os.fchmod(out, PRIVATE_FILE)  # whatever mode the collector chose
                os.fsync(out)  # kdump-utils: sync -f before the rename
            finally:
                os.close(out)
        except OSError as exc:
            raise CaptureError(
                f"cannot sync {self.dir}/{VMCORE_INCOMPLETE}: {exc.strerror}"
            ) from None
        self.rename(VMCORE_INCOMPLETE, VMCORE)
        return VMCORE

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        os.sync()
        if not self.require_mount or not os.path.ismount(self.mountpoint):
            return
        proc = subprocess.run(["umount", self.mountpoint], capture_output=True, text=True)
        if proc.returncode != 0:
            self.log.warn(f"umount {self.mountpoint}: {proc.stderr.strip()}")

    def where(self) -> str:
        rel = os.path.relpath(self.dir, self.mountpoint)
        return f"{self.target.kind} {self.target.spec}:/{rel}"
