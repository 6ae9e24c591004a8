"""The next boot's view of a capture that failed (written by :mod:`kdumpy.capture.lastfail`
on the root filesystem: ``/var/lib/kdumpy/capture-failure``, ``<date> <time> <reason>``).

``kdumpy status`` and ``kdumpy start`` report it until the administrator removes the
file; the date says which crash it was.
"""

from __future__ import annotations

from collections.abc import Callable

from kdumpy.printable import shown
from kdumpy.service.paths import ServicePaths

RECORD_NAME = "capture-failure"
MAX_BYTES = 4096  # one line; anything longer is not ours


def read(paths: ServicePaths) -> tuple[str, str] | None:
    """(when, reason) of the last failed capture, or None."""
    try:
        with open(paths.state_dir / RECORD_NAME, "rb") as fh:
            data = fh.read(MAX_BYTES)
    except OSError:
        return None
    words = data.decode("utf-8", "replace").split("\n", 1)[0].split(" ", 2)
    if len(words) < 3:
        return None
    return f"{words[0]} {words[1]}", words[2]


def report_failure(paths: ServicePaths, report: Callable[[str], None]) -> None:
    found = read(paths)
    if found is not None:
        when, reason = found
        report(f"Notice: Last capture FAILED on {when}: {shown(reason)} "
               f"(remove {paths.state_dir / RECORD_NAME} once seen)")  # fmt: skip
