"""Running the core collector (``kdumpy collect``, makedumpfile, cp, cat...).

``core_collector`` is a command line from kdump.conf; ``KdumpConfig.collector_argv()``
already added ``-F`` for stream targets (ssh, raw) or removed it for files.  Filesystem
targets get ``<collector> <vmcore> <dest>``; stream targets get ``<collector> <vmcore>``
with the dump on its standard output.  ``kdumpy`` runs as ``python3 -m kdumpy`` with this
interpreter, so no wrapper script needs to be on PATH.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import IO

from kdumpy.capture import CaptureError


def python_m(module: str) -> list[str]:
    """``python3 [-S] -m module``: this interpreter, without site if we run without it
    (the capture initramfs's /init uses -S and need not ship site's modules)."""
    return [sys.executable, *(["-S"] if sys.flags.no_site else []), "-m", module]


def command(argv: list[str]) -> list[str]:
    """The collector's argv ready to run (``kdumpy`` -> this Python's ``-m kdumpy``)."""
    if not argv:
        raise CaptureError("core_collector is empty")
    if Path(argv[0]).name == "kdumpy":
        return [*python_m("kdumpy"), *argv[1:]]
    return list(argv)


def collect_to_file(
    argv: list[str], vmcore: str, dest: str, pass_fds: tuple[int, ...] = ()
) -> None:
    """Run the collector writing *dest* (*pass_fds*: descriptors *dest* names through
    /proc/self/fd); a non-zero exit is a CaptureError."""
    cmd = [*command(argv), vmcore, dest]
    try:
        proc = subprocess.run(cmd, check=False, pass_fds=pass_fds)
    except OSError as exc:
        raise CaptureError(f"core_collector {argv[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise CaptureError(f"core_collector {' '.join(argv)} failed with status {proc.returncode}")


def start_stream(argv: list[str], vmcore: str, stdout: IO[bytes] | int) -> subprocess.Popen[bytes]:
    """Start the collector writing the (flattened) dump to *stdout*; the caller waits."""
    try:
        return subprocess.Popen([*command(argv), vmcore], stdout=stdout)
    except OSError as exc:
        raise CaptureError(f"core_collector {argv[0]}: {exc.strerror}") from None


def wait_stream(proc: subprocess.Popen[bytes], argv: list[str]) -> None:
    if proc.wait() != 0:
        raise CaptureError(f"core_collector {' '.join(argv)} failed with status {proc.returncode}")
