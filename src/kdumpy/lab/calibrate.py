"""`kdumpy lab calibrate`: find the smallest crashkernel= that really captures, by trying.

Formulas (RHEL's kernel + modules + 3 x initramfs + margin, kdumpy estimate) guess; this
boots the kernel and a kdumpy capture initramfs in the lab at shrinking reservations and
watches which capture succeeds.  Each trial is one full cycle under QEMU: the first kernel
boots the capture initramfs in its self-test mode (no /proc/vmcore), which loads the
capture kernel with kexec_file_load into the reservation and panics; the capture kernel
then runs the configured collector and saves to an ext4 disk.  Success is the capture's
own "saved vmcore to" line on the serial console *and* a vmcore on the disk (read back
with debugfs, outside the guest).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.qemu import Disk, last_console_line, mib, run_guest
from kdumpy.service.config import parse_config
from kdumpy.service.initramfs import BuildOptions, build_initramfs

MiB = 1 << 20
LABEL = "kdumpycal"
SAVED = "saved vmcore to"
CRASHING = "kdumpy-selftest: crashing"
# What a capture kernel prints when it has died for good (it never powers off after these,
# so the trial ends there instead of waiting out its timeout).  The first kernel's own
# crash is a sysrq panic, none of these.
CAPTURE_DEAD = (
    "System is deadlocked on memory",
    "Out of memory and no killable processes",
    "No working init found",
    "Unable to mount root fs",
)

# Why a capture failed, from the capture kernel's console: the first pattern that matches.
FAILURES = (
    (re.compile(r"Initramfs unpacking failed|write error"), "initramfs does not fit when unpacked"),
    (
        re.compile(r"Out of memory|oom-kill|invoked oom-killer|deadlocked on memory"),
        "out of memory in the capture kernel",
    ),
)


@dataclass
class Rig:
    """What a trial boots with beside the kernel and initramfs, and how it tells that a
    complete dump arrived (beyond the capture's own "saved vmcore to" line).  Each is
    given the trial's own directory."""

    disks: Callable[[Path], list[Disk]]  # the disks to attach, made in the directory
    saved: Callable[[Path], bool]
    extra_args: list[str] = field(default_factory=list)  # e.g. a NIC for a network target
    # Around each trial's guest: a server for the target, for instance.
    around: Callable[[Path], contextlib.AbstractContextManager[object]] = lambda run_dir: (
        contextlib.nullcontext()
    )


def disk_rig(vmlinuz: Path, initrd: Path, memory: int) -> Rig:
    """The plain calibration: a fresh ext4 disk per trial with the kernel and initramfs
    on it, read back with debugfs."""
    return Rig(
        disks=lambda run_dir: [Disk(target_disk(run_dir / "target.img", vmlinuz, initrd, memory))],
        saved=lambda run_dir: bool(saved_vmcores(run_dir / "target.img")),
    )


@dataclass
class Trial:
    """One capture attempt at one reservation."""

    size: int
    ok: bool
    why: str  # empty when ok
    seconds: float
    serial_log: Path
    crash_to_saved: float | None = None  # the self-test's crash to "saved vmcore to"


@dataclass
class Calibration:
    trials: list[Trial]
    smallest: int | None  # smallest size that captured, if any
    recommended: int | None

    def crashkernel(self) -> str | None:
        return f"crashkernel={mib(self.recommended)}" if self.recommended else None


def margin(size: int) -> int:
    """Headroom on top of the measured minimum: 20 % or 32 MiB, whichever is more, rounded
    up to 16 MiB.  The lab guest is not the real machine: its devices, its module set and
    the collector's working set on a fuller memory all differ a little."""
    with_margin = size + max(size // 5, 32 * MiB)
    return -(-with_margin // (16 * MiB)) * (16 * MiB)


def calibrate(
    vmlinuz: Path,
    initrd: Path,
    memory: int,
    sizes: list[int],
    workdir: Path,
    timeout: float = 900,
    report: Callable[[str], None] = print,
    rig: Rig | None = None,
) -> Calibration:
    """Bisect *sizes* for the smallest reservation at which a capture succeeds.

    The largest size is tried first: if it fails, nothing smaller will do and the search
    stops there.  *initrd* must be a kdumpy capture initramfs whose target is
    ``ext4 LABEL=kdumpycal`` (see :func:`build_calibration_initramfs`), unless *rig* brings
    the disks (and the kernel and initramfs on the target's ``/boot``) itself.
    """
    rig = rig or disk_rig(vmlinuz, initrd, memory)
    sizes = sorted(set(sizes))
    if not sizes:
        raise KdumpyError("calibrate: no reservation sizes to try")
    workdir.mkdir(parents=True, exist_ok=True)
    done: dict[int, Trial] = {}

    def attempt(size: int) -> bool:
        t = trial(vmlinuz, initrd, memory, size, workdir, timeout, rig)
        done[size] = t
        state = "captured" if t.ok else f"failed: {t.why}"
        report(f"crashkernel={mib(size)}: {state} ({t.seconds:.0f} s)")
        return t.ok

    if not attempt(sizes[-1]):
        return Calibration(list(done.values()), None, None)
    lo, hi = 0, len(sizes) - 1  # sizes[hi] captured
    while lo < hi:
        mid = (lo + hi) // 2
        if attempt(sizes[mid]):
            hi = mid
        else:
            lo = mid + 1
    smallest = sizes[hi]
    trials = [done[s] for s in sorted(done)]
    return Calibration(trials, smallest, margin(smallest))


def trial(
    vmlinuz: Path, initrd: Path, memory: int, size: int, workdir: Path, timeout: float,
    rig: Rig,
) -> Trial:  # fmt: skip
    run_dir = workdir / f"crashkernel-{mib(size)}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    disks = rig.disks(run_dir)
    serial = run_dir / "serial.log"
    append = f"console=ttyS0 panic=-1 no_timer_check crashkernel={mib(size)} kdumpy.selftest=crash"
    try:
        with rig.around(run_dir):
            run = run_guest(
                kernel=vmlinuz, initrd=initrd, append=append, memory=memory, serial_log=serial,
                disks=disks, timeout=timeout, markers=(CRASHING, SAVED), extra_args=rig.extra_args,
                stop_on=CAPTURE_DEAD,
            )  # fmt: skip
        seconds = run.elapsed
    except KdumpyError as exc:
        return Trial(size, False, str(exc), timeout, serial)
    log = serial.read_text(errors="replace")
    to_saved = _between(run.markers, CRASHING, SAVED)
    if SAVED in log and rig.saved(run_dir):
        return Trial(size, True, "", seconds, serial, to_saved)
    return Trial(size, False, failure_reason(log, serial), seconds, serial)


def _between(markers: dict[str, float], first: str, last: str) -> float | None:
    if first in markers and last in markers:
        return markers[last] - markers[first]
    return None


def failure_reason(log: str, serial: Path) -> str:
    """Name why a capture failed, from what the two kernels printed."""
    if "kdumpy-selftest: kexec FAILED" in log:
        return "capture kernel does not fit (kexec load failed)"
    if "kdumpy-selftest: crashing" not in log:
        return f"the first kernel never loaded the capture kernel: {last_console_line(serial)!r}"
    capture = log.split("kdumpy-selftest: crashing", 1)[1]
    for pattern, why in FAILURES:
        if pattern.search(capture):
            return why
    return f"capture did not finish: {last_console_line(serial)!r}"


def target_disk(path: Path, vmlinuz: Path, initrd: Path, memory: int) -> Path:
    """A sparse ext4 disk with the kernel and initramfs the self-test loads from /boot."""
    for tool in ("mkfs.ext4", "debugfs"):
        if shutil.which(tool) is None:
            raise KdumpyError(f"{tool} not found: install e2fsprogs")
    root = path.parent / "diskroot"
    (root / "boot").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vmlinuz, root / "boot" / "vmlinuz")
    shutil.copyfile(initrd, root / "boot" / "initrd.img")
    size = 512 * MiB + memory // 2  # room for a dump at a low dump level, sparse anyway
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(root), str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(root)
    return path


def saved_vmcores(disk: Path) -> list[str]:
    """Dump directories on the target that hold a complete ``vmcore`` (debugfs reads)."""

    def ls(where: str) -> list[str]:
        out = subprocess.run(
            ["debugfs", "-R", f"ls -p {where}", str(disk)], capture_output=True, text=True
        ).stdout
        # ls -p: /inode/mode/uid/gid/name/size/
        return [f.split("/")[5] for f in out.splitlines() if f.count("/") >= 6]

    return [d for d in ls("/dumps") if d not in (".", "..") and "vmcore" in ls(f"/dumps/{d}")]


def build_calibration_initramfs(
    release: str,
    output: Path,
    collector: str | None,
    modules_dir: Path | None = None,
    kernel_config: Path | None = None,
) -> Path:
    """A capture initramfs like ``kdumpy rebuild`` makes, aimed at the calibration disk.

    The collector is the one the real configuration uses (its memory use is what the
    reservation must hold); the target is the lab's virtio ext4 disk.
    """

    text = f"ext4 LABEL={LABEL}\npath /dumps\nfinal_action poweroff\nfailure_action poweroff\n"
    if collector:
        text += f"core_collector {collector}\n"
    config = parse_config(text, "calibration kdump.conf")
    opts = BuildOptions(
        release=release,
        output=output,
        modules_dir=modules_dir,
        kernel_config=kernel_config,
        hostonly=False,  # the lab's disk is virtio, whatever this machine uses
        extra_modules=["virtio_pci", "virtio_blk", "ext4"],
    )
    return build_initramfs(config, opts, report=lambda line: None).path
