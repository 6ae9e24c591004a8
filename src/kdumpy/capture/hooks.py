"""kdump_pre, kdump_post, kdump_emergency and their ``/etc/kdump/*.d`` directories.

Order and meaning follow kdump-utils: ``kdump_pre`` runs first and a failure skips the
dump; ``pre.d/*`` run after it and their failures are only logged.  ``post.d/*`` run
before ``kdump_post``, all with the dump's exit status as ``$1``.  ``emergency.d/*`` run
before ``kdump_emergency``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kdumpy.capture.log import CaptureLog

HOOK_DIRS = Path("/etc/kdump")
HOOK_TIMEOUT = 600.0


def hook_dir_programs(kind: str, base: Path = HOOK_DIRS) -> list[Path]:
    """Executable files in ``<base>/<kind>.d``, in lexical order."""
    directory = base / f"{kind}.d"
    if not directory.is_dir():
        return []
    return [p for p in sorted(directory.iterdir()) if p.is_file() and os.access(p, os.X_OK)]


def run_hook(program: str | Path, args: list[str], log: CaptureLog) -> int:
    """Run one hook program with the console as its output; its exit status (127: missing)."""
    log.info(f"running {program} {' '.join(args)}".rstrip())
    try:
        proc = subprocess.run([str(program), *args], timeout=HOOK_TIMEOUT, check=False)
    except FileNotFoundError:
        log.error(f"{program}: not found")
        return 127
    except PermissionError:
        log.error(f"{program}: not executable")
        return 126
    except subprocess.TimeoutExpired:
        log.error(f"{program}: still running after {HOOK_TIMEOUT:.0f} s, killed")
        return 124
    if proc.returncode != 0:
        log.warn(f"{program} exited with status {proc.returncode}")
    return proc.returncode


def run_pre(kdump_pre: str | None, log: CaptureLog, base: Path = HOOK_DIRS) -> bool:
    """kdump_pre then pre.d/*; False (skip the dump) only if kdump_pre itself failed."""
    if kdump_pre and run_hook(kdump_pre, [], log) != 0:
        log.error(f"kdump_pre {kdump_pre} failed: not saving the dump")
        return False
    for program in hook_dir_programs("pre", base):
        run_hook(program, [], log)
    return True


def run_post(kdump_post: str | None, status: int, log: CaptureLog, base: Path = HOOK_DIRS) -> None:
    """post.d/* then kdump_post, each given the dump's exit status."""
    for program in hook_dir_programs("post", base):
        run_hook(program, [str(status)], log)
    if kdump_post:
        run_hook(kdump_post, [str(status)], log)


def run_emergency(kdump_emergency: str | None, log: CaptureLog, base: Path = HOOK_DIRS) -> None:
    """emergency.d/* then kdump_emergency, when the save failed."""
    for program in hook_dir_programs("emergency", base):
        run_hook(program, [], log)
    if kdump_emergency:
        run_hook(kdump_emergency, [], log)
