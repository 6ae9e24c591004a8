"""What early kdump recorded at enable time, and what this boot's kernel log says.

``<state dir>/early/state-<release>.json`` holds the generator and the hashes of what the
system initramfs was built with (capture kernel, capture initramfs, early.conf).  When
any of them changes, the copy riding in the system initramfs is stale.  The kernel log
(/dev/kmsg, else the journal) tells whether the loader ran this boot and what it said.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy import fileio
from kdumpy.errors import KdumpyError
from kdumpy.fileio import private_dir
from kdumpy.kmsg import read_kmsg
from kdumpy.service import kexec
from kdumpy.service.manifest import file_hash
from kdumpy.service.paths import ServicePaths

Report = Callable[[str], None]

ENABLED = "early-kdump is enabled."
DISABLED = "early-kdump is disabled."
LOADED = "kexec: loaded early-kdump kernel"
FAILED = "kexec: failed to load early-kdump kernel"
MARKERS = (ENABLED, DISABLED, LOADED, FAILED, "early-kdump:")


@dataclass
class EarlyState:
    """The record written by ``kdumpy early enable`` for one kernel release."""

    release: str
    generator: str
    inputs: dict[str, str] = field(default_factory=dict)  # name -> sha256 of the file
    files: dict[str, str] = field(default_factory=dict)  # name -> path
    system_initramfs: str = ""
    size_before: int = 0
    size_after: int = 0
    enabled_at: float = 0.0
    loader: str = "kexec-tools"  # what loads the capture kernel at boot (or "kdumpy")
    python_bytes: int = 0  # what kdumpy's loader's Python adds to the system initramfs


def early_dir(state_dir: Path) -> Path:
    return state_dir / "early"


def state_path(state_dir: Path, release: str) -> Path:
    return early_dir(state_dir) / f"state-{release}.json"


def inputs(files: dict[str, Path]) -> dict[str, str]:
    return {name: file_hash(path) for name, path in files.items()}


def write(state_dir: Path, state: EarlyState) -> Path:
    path = state_path(state_dir, state.release)
    private_dir(state_dir)
    private_dir(path.parent)
    text = json.dumps(state.__dict__, indent=1, sort_keys=True) + "\n"
    fileio.replace(path, text.encode())
    return path


def read(state_dir: Path, release: str) -> EarlyState | None:
    """The record for ``release``, or None when early kdump was not enabled for it."""
    try:
        data = json.loads(state_path(state_dir, release).read_text())
        return EarlyState(**data)
    except (OSError, ValueError, TypeError):
        return None


def stale_reasons(state: EarlyState) -> list[str]:
    """What changed since the system initramfs was built with the early copy."""
    reasons = []
    for name, recorded in state.inputs.items():
        path = Path(state.files.get(name, name))
        current = file_hash(path)
        if current != recorded:
            what = "is missing" if current == "missing" else "changed"
            reasons.append(f"{name} ({path}) {what} since the system initramfs was built")
    return reasons


@dataclass(frozen=True)
class LogLine:
    seconds: float  # kernel timestamp (since boot)
    text: str


_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")


def parse_kmsg_record(record: str) -> LogLine | None:
    """One /dev/kmsg record: ``prio,seq,usec,flags[,...];text`` (non-printable bytes in the
    text come escaped as ``\\xNN``)."""
    head, sep, text = record.partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3:
        return None
    try:
        seconds = int(fields[2]) / 1e6
    except ValueError:
        return None
    message = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text.split("\n", 1)[0])
    return LogLine(seconds, message)


def kmsg_lines(device: Path = Path("/dev/kmsg")) -> list[LogLine]:
    """The kernel log of this boot still in the ring buffer ([] when unreadable)."""
    lines = []
    for record in read_kmsg(device):
        line = parse_kmsg_record(record)
        if line:
            lines.append(line)
    return lines


def journal_lines() -> list[LogLine]:
    """Early-kdump lines of this boot from the journal (when the ring buffer wrapped)."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return []
    cmd = [journalctl, "-b", "-o", "short-monotonic", "--no-pager", "-q", "--grep", "early-kdump"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = []
    for raw in proc.stdout.splitlines():
        stamp, _, rest = raw.partition("]")
        try:
            lines.append(LogLine(float(stamp.lstrip("[ ")), rest.strip()))
        except ValueError:
            continue
    return lines


def early_log(lines: list[LogLine] | None = None) -> list[LogLine]:
    """This boot's early-kdump log lines (kernel log first, journal as fallback)."""
    found = [ln for ln in (lines if lines is not None else kmsg_lines()) if _is_early(ln.text)]
    if not found and lines is None:
        found = [ln for ln in journal_lines() if _is_early(ln.text)]
    return found


def _is_early(text: str) -> bool:
    return any(marker in text for marker in MARKERS)


def missed_load_warning(cmdline: str, log: list[LogLine]) -> str | None:
    """For ``kdumpy start`` finding no capture kernel loaded: a warning when this boot asked
    for early kdump (``rd.earlykdump``) yet the early load did not happen, with the reason
    the kernel log gives (None when early kdump was not asked for)."""
    from kdumpy.service.early_cmdline import ARG, requested  # early_cmdline imports bootloader

    if not requested(cmdline):
        return None
    failed = next((ln for ln in reversed(log) if FAILED in ln.text), None)
    loaded = next((ln for ln in reversed(log) if LOADED in ln.text), None)
    if failed is not None:
        detail = failed.text.split(FAILED, 1)[1].lstrip(": ") or "no reason given"
        why = f"kexec failed at {failed.seconds:.2f} s: {detail}"
    elif loaded is not None:
        why = (
            f"it loaded the capture kernel at {loaded.seconds:.2f} s, but that kernel is no "
            "longer loaded (unloaded since, e.g. kdumpy stop)"
        )
    elif any(ENABLED in ln.text for ln in log):
        why = "the early loader started but did not finish (no loaded/failed line in the log)"
    elif any(DISABLED in ln.text for ln in log):
        why = f"the early loader did not see {ARG} on the command line"
    else:
        why = (
            "the early stage did not run: no early-kdump lines in the kernel log (is it in the "
            "system initramfs? see kdumpy early status)"
        )
    return (
        f"Warning: {ARG} is on the kernel command line but early kdump did not load the "
        f"capture kernel at boot: {why}; boot-time crashes were not covered"
    )


def start_warning(cmdline_file: Path = Path("/proc/cmdline")) -> str | None:
    """:func:`missed_load_warning` for this boot (None when it cannot tell)."""
    try:
        cmdline = cmdline_file.read_text()
    except OSError:
        return None
    return missed_load_warning(cmdline, early_log())


def loaded_early(lines: list[LogLine] | None = None) -> LogLine | None:
    """The kernel log line saying early kdump loaded the capture kernel this boot, if it did
    and the capture kernel is still loaded."""
    if not kexec.crash_loaded():
        return None
    found = [ln for ln in early_log(lines) if LOADED in ln.text]
    return found[-1] if found else None


def start_note(paths: ServicePaths, report: Report) -> None:
    """For ``kdumpy start`` finding a capture kernel loaded: say if early kdump loaded it,
    and warn when the early copy is stale.  Never raises."""
    with contextlib.suppress(KdumpyError, OSError):
        line = loaded_early()
        if line is not None:
            report(
                f"Capture kernel loaded by early kdump at boot ({line.seconds:.2f} s after the "
                "kernel started); leaving it in place"
            )
        state = read(paths.state_dir, paths.kernel_release)
        if state is not None:
            for reason in stale_reasons(state):
                report(f"Warning: the early kdump copy is stale: {reason}; run kdumpy rebuild")
