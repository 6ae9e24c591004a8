"""A raw block device target: the flattened dump written from its first byte.

The device holds nothing else (kdump-utils does the same: no dmesg, no log); on the next
boot ``makedumpfile -R`` or kdumpy rearranges the flattened stream into a dump file.
"""

from __future__ import annotations

import os
import stat
import time

from kdumpy.capture import CaptureError
from kdumpy.capture.collector import collect_to_stream
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.targets.base import Destination

DEVICE_WAIT = 60.0  # seconds, like /init's wait for filesystem target devices


class RawDevice(Destination):
    has_files = False

    def __init__(self, log: CaptureLog, device: str) -> None:
        super().__init__(log)
        self.device = device

    def describe(self) -> str:
        return f"raw device {self.device}"

    def prepare(self) -> None:
        # /init does not wait for raw devices: the driver may still be probing the disk.
        deadline = time.monotonic() + DEVICE_WAIT
        while True:
            try:
                mode = os.stat(self.device).st_mode
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise CaptureError(f"raw target {self.device}: {exc.strerror}") from None
                time.sleep(0.5)
        if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
            raise CaptureError(f"raw target {self.device}: not a block device")

    def save_dump(self, collector: list[str], vmcore: str) -> str:
        try:
            fd = os.open(self.device, os.O_WRONLY)
        except OSError as exc:
            raise CaptureError(f"cannot open {self.device}: {exc.strerror}") from None
        try:
            collect_to_stream(collector, vmcore, fd)
            os.fsync(fd)
        except OSError as exc:
            raise CaptureError(f"cannot write {self.device}: {exc.strerror}") from None
        finally:
            os.close(fd)
        return self.device
