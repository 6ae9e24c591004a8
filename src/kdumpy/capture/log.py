"""The capture side's log: ``kdump: `` lines on the console, kept for kexec-dmesg.log."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TextIO

from kdumpy.kmsg import read_kmsg


class CaptureLog:
    """Messages of this capture run.

    Each line goes to *stream* at once (the serial console in the capture kernel: the
    only record if the save fails) and is kept, so that ``kexec-dmesg.log`` in the dump
    directory says what the capture side did.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.lines: list[str] = []
        self.start = time.monotonic()

    def info(self, message: str) -> None:
        self._emit(message)

    def warn(self, message: str) -> None:
        self._emit(f"WARNING: {message}")

    def error(self, message: str) -> None:
        self._emit(f"ERROR: {message}")

    def _emit(self, message: str) -> None:
        line = f"kdump: {message}"
        self.lines.append(f"[{time.monotonic() - self.start:9.3f}] {line}")
        with contextlib.suppress(OSError):  # a broken console must not stop the dump
            print(line, file=self.stream, flush=True)

    def include(self, lines: list[str]) -> None:
        """Lines an earlier step of this capture logged (``/init``'s stack bring-up, another
        process), ahead of ours in kexec-dmesg.log; they were on the console already."""
        self.lines[:0] = lines

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def kernel_messages(kmsg: str = "/dev/kmsg") -> str:
    """The running (capture) kernel's log, read from /dev/kmsg without blocking.

    Read directly rather than with ``dmesg`` so no tool is needed in the initramfs.
    Each record is ``prio,seq,usec,flags;text``; continuation lines are dropped.
    """
    lines = []
    for record in read_kmsg(kmsg):
        head, _, text = record.partition(";")
        fields = head.split(",")
        usec = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
        lines.append(f"[{usec / 1e6:12.6f}] {text.splitlines()[0] if text else ''}")
    return "\n".join(lines) + ("\n" if lines else "")
