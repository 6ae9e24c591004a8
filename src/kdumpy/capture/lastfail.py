"""A failed capture's one-line reason, left on the first kernel's root filesystem.

When the target itself is what failed (its storage stack did not come up, the server
did not answer), nothing can be written there; the reason would live only on the console.
So before failure_action the capture side mounts the root filesystem that the initramfs
names (``/etc/kdump/rootfs``, as for dump_to_rootfs), writes
``/var/lib/kdumpy/capture-failure`` (``<date> <reason>``, 0600) and unmounts it; the next
boot's ``kdumpy status`` and ``kdumpy start`` report it (:mod:`kdumpy.service.lastfail`).
Best effort: a root that does not mount leaves the reason in the console log only.
"""

from __future__ import annotations

import os
import subprocess
import time

from kdumpy.capture import CaptureError
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.targets.local import MountedFs
from kdumpy.fileio import UnsafePath, private_dir, replace
from kdumpy.service.config import Target

RECORD_DIR = "var/lib/kdumpy"
RECORD_NAME = "capture-failure"


def record_line(reason: str, when: float | None = None) -> str:
    """``YYYY-MM-DD HH:MM:SS <reason>``: one line, whatever the reason held."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    return f"{stamp} {' '.join(reason.split())}\n"


def _device(spec: str) -> str:
    """UUID=/LABEL= through busybox findfs (the initramfs has no udev links)."""
    if spec.startswith("/"):
        if not os.path.exists(spec):  # no retries for a disk that is not there
            raise CaptureError(f"{spec}: no such device")
        return spec
    proc = subprocess.run(["findfs", spec], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise CaptureError(f"{spec}: not found")
    return proc.stdout.strip()


def record(reason: str, rootfs_file: str, mountpoint: str, log: CaptureLog) -> bool:
    """Write the reason on the root filesystem; False (and why, logged) if it cannot."""
    try:
        with open(rootfs_file) as fh:
            kind, spec = fh.read().split()[:2]
    except (OSError, ValueError):
        return False  # not named (a root the capture kernel cannot mount)
    try:
        dest = MountedFs(log, Target(kind, _device(spec)), mountpoint)
        dest.prepare()
    except CaptureError as exc:
        log.warn(f"cannot record the failure on the root filesystem: {exc}")
        return False
    try:
        directory = private_dir(os.path.join(mountpoint, RECORD_DIR))
        replace(directory / RECORD_NAME, record_line(reason).encode())
    except (OSError, UnsafePath) as exc:
        log.warn(f"cannot record the failure on the root filesystem: {exc}")
        return False
    finally:
        dest.close()
    log.info(f"failure recorded in /{RECORD_DIR}/{RECORD_NAME} on {kind} {spec}")
    return True
