"""The running kernel's log, read from /dev/kmsg (both the capture side and the service use it).

Read directly rather than with ``dmesg`` so no tool is needed in an initramfs.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_kmsg(device: str | Path = "/dev/kmsg") -> list[str]:
    """The records still in the kernel's ring, ``prio,seq,usec,flags;text`` each.

    Non-blocking: it returns at the end of the ring instead of waiting for new records.
    An unreadable device gives [] (the log is a diagnostic, never worth failing for).
    """
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    records = []
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError:  # EPIPE: a record was overwritten while reading; go on
                continue
            if not record:
                break
            records.append(record.decode(errors="replace"))
    finally:
        os.close(fd)
    return records
