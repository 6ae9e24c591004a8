"""Names in the dump target, as kdump-utils lays them out.

``<path>/<ip>-<YYYY-MM-DD-HH:MM:SS>/`` holds ``vmcore-dmesg.txt``, ``vmcore`` (``vmcore.flat``
over ssh), ``kexec-dmesg.log``; ``-incomplete`` names mark files still being written, and
stay behind when a save fails.  After ``kdumpy test`` the directory is
``<path>/kdump-test-<id>/`` with a ``vmcore-creation.status`` file.

The directory is always created by this capture: when the name exists already (two crashes
in one second, or a directory another user prepared in a world-writable ``path``), the
next free ``<name>-1``, ``<name>-2``... is used instead.
"""

from __future__ import annotations

import posixpath
import time

VMCORE = "vmcore"
VMCORE_FLAT = "vmcore.flat"
VMCORE_INCOMPLETE = "vmcore-incomplete"
DMESG = "vmcore-dmesg.txt"
DMESG_INCOMPLETE = "vmcore-dmesg-incomplete.txt"
KEXEC_LOG = "kexec-dmesg.log"
TEST_STATUS = "vmcore-creation.status"
LOCAL_IP = "127.0.0.1"
# Bounded: a user who fills a world-writable path with names only delays us this long.
FRESH_TRIES = 100


def date_stamp(when: float | None = None) -> str:
    """``YYYY-MM-DD-HH:MM:SS`` (``date +%Y-%m-%d-%T``) in the capture kernel's clock."""
    return time.strftime("%Y-%m-%d-%H:%M:%S", time.localtime(when))


def dump_dir_name(ip: str, when: float | None = None, test_id: str | None = None) -> str:
    """The per-crash directory name: ``<ip>-<date>``, or ``kdump-test-<id>`` for a test."""
    if test_id:
        return f"kdump-test-{test_id}"
    return f"{ip}-{date_stamp(when)}"


def fresh_names(name: str) -> list[str]:
    """The names to try, in order, for a dump directory that must not exist yet."""
    return [name] + [f"{name}-{i}" for i in range(1, FRESH_TRIES)]


def dump_dir(base: str, path: str, name: str) -> str:
    """``<base>/<path>/<name>``: *path* is relative to the target even when it starts with /."""
    return posixpath.normpath(posixpath.join(base, path.lstrip("/"), name))


def test_id_from_cmdline(cmdline: str) -> str | None:
    """The ``kdump_test_id=`` that ``kdumpy test`` put on the capture command line."""
    for param in cmdline.split():
        key, _, value = param.partition("=")
        if key == "kdump_test_id" and value:
            return value
    return None
