"""Running the core collector (``kdumpy collect``, makedumpfile, cp, cat...).

``core_collector`` is a command line from kdump.conf; ``KdumpConfig.collector_argv()``
already added ``-F`` for stream targets (ssh, raw) or removed it for files.  Filesystem
targets get ``<collector> <vmcore> <dest>``; stream targets get ``<collector> <vmcore>``
with the dump on its standard output.

``kdumpy collect ...`` (the default) runs in this process (:mod:`kdumpy.collect.command`):
a second Python interpreter costs the capture kernel ~10 MiB more of its crashkernel
reservation, and at 144M that was the difference between an SSH dump over a bonded,
bridged VLAN and the OOM killer ending the collector.  What the second process gave for
free is kept by hand: its errors end as the same statuses and messages, an exception out
of it (a bug, MemoryError) becomes a CaptureError so that failure_action still runs, and
"stdout" is the stream we are given.  Other collectors run as programs; ``kdumpy`` in any
other command runs as ``python3 -m kdumpy`` with this interpreter, so no wrapper script
needs to be on PATH.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from kdumpy.capture import CaptureError
from kdumpy.collect.command import run_argv


def python_m(module: str) -> list[str]:
    """``python3 [-S] -m module``: this interpreter, without site if we run without it
    (the capture initramfs's /init uses -S and need not ship site's modules)."""
    return [sys.executable, *(["-S"] if sys.flags.no_site else []), "-m", module]


def runs_here(argv: list[str]) -> bool:
    """Whether *argv* is ``kdumpy collect ...``, which this process runs itself."""
    return len(argv) > 1 and Path(argv[0]).name == "kdumpy" and argv[1] == "collect"


def command(argv: list[str]) -> list[str]:
    """The collector's argv ready to run (``kdumpy`` -> this Python's ``-m kdumpy``)."""
    if not argv:
        raise CaptureError("core_collector is empty")
    if Path(argv[0]).name == "kdumpy":
        return [*python_m("kdumpy"), *argv[1:]]
    return list(argv)


def _failed(argv: list[str], status: int) -> CaptureError:
    return CaptureError(f"core_collector {' '.join(argv)} failed with status {status}")


def _collect_here(argv: list[str], operands: list[str], stream_fd: int | None = None) -> None:
    """``kdumpy collect`` with *operands* in this process (*stream_fd*: its stdout)."""
    # numpy's OpenBLAS (when numpy is shipped at all) would start a thread per CPU.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    reason = ""
    # Buffered like the program's sys.stdout.buffer; the collector flushes at the end.
    stream = None if stream_fd is None else open(stream_fd, "wb", closefd=False)  # noqa: SIM115
    try:
        status = run_argv([*argv[2:], *operands], stream)
    except MemoryError:
        status, reason = -1, "ran out of memory"
    except Exception as exc:  # noqa: BLE001 - a collector bug must not end the capture
        status, reason = -1, f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if stream is not None:
            # After a failure, what is left in the buffer goes nowhere (as when the
            # program exits); a flush error then is not the collector's status.
            with contextlib.suppress(OSError, ValueError):
                stream.close()
    # Raised here, outside the handler: the exception's frames (and the collector's
    # buffers they hold) are gone before failure_action, which may collect again.
    if reason:
        raise CaptureError(f"core_collector {' '.join(argv)} {reason}")
    if status != 0:
        raise _failed(argv, status)


def collect_to_file(
    argv: list[str], vmcore: str, dest: str, pass_fds: tuple[int, ...] = ()
) -> None:
    """Run the collector writing *dest* (*pass_fds*: descriptors *dest* names through
    /proc/self/fd); a non-zero exit is a CaptureError."""
    if runs_here(argv):
        _collect_here(argv, [vmcore, dest])  # /proc/self/fd/N is ours: the same directory
        return
    cmd = [*command(argv), vmcore, dest]
    try:
        proc = subprocess.run(cmd, check=False, pass_fds=pass_fds)
    except OSError as exc:
        raise CaptureError(f"core_collector {argv[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise _failed(argv, proc.returncode)


def collect_to_stream(argv: list[str], vmcore: str, fd: int) -> None:
    """Run the collector with the (flattened) dump going to descriptor *fd* (a pipe to
    ssh, a raw device) until it ends; a non-zero exit is a CaptureError.  *fd* stays
    open: the caller closes it (a pipe's reader sees the end of the dump then)."""
    if runs_here(argv):
        _collect_here(argv, [vmcore], fd)
        return
    try:
        proc = subprocess.Popen([*command(argv), vmcore], stdout=fd)
    except OSError as exc:
        raise CaptureError(f"core_collector {argv[0]}: {exc.strerror}") from None
    if proc.wait() != 0:
        raise _failed(argv, proc.returncode)
