"""One full kdump cycle in the Debian guest: configure, start, crash, capture, read back.

The job writes ``/etc/kdump.conf``, runs ``kdumpy start`` (the service: capture initramfs
built in the guest, capture kernel loaded with kexec_file_load), records what it set up,
and asks for a crash (``echo c > /proc/sysrq-trigger``).  The capture kernel then runs
kdumpy's capture initramfs, which saves the dump and runs final_action; the reboot ends
the QEMU run.  Serial markers time the stages.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdumpy.lab import arm64_guest
from kdumpy.lab.debian_job import Job, JobResult, _quiet, run_job
from kdumpy.lab.kernels import LabKernel, get_kernel
from kdumpy.lab.qemu import Disk

# Serial console lines that mark the stages of a cycle (first appearance is timed).
MARKERS = (
    "KDUMPY-JOB-BEGIN",
    "KDUMPY-JOB-END",
    "kexec: loaded kdump kernel",
    "KDUMPY-CRASHING",
    "Kernel panic",
    "kdumpy-init:",
    "kdump: saving vmcore",
    "kdump: saved vmcore-dmesg.txt",
    "kdump: saved vmcore to",
    "saving vmcore failed",
)

# The service's own command (no probe first: a Python start costs seconds under TCG).
START = "python3 -m kdumpy start"

JOB = """set -e
cp kdump.conf /etc/kdump.conf
if [ -f sysconfig ]; then mkdir -p /etc/sysconfig; cp sysconfig /etc/sysconfig/kdump; fi
if [ -d ssh ]; then mkdir -p /root/.ssh; cp ssh/* /root/.ssh/; chmod 600 /root/.ssh/*; fi
if [ -f setup.sh ]; then sh -e setup.sh; fi
cat /sys/kernel/kexec_crash_size > out/kexec_crash_size
{start}
if [ -f after-start.sh ]; then sh -e after-start.sh; fi
cat /sys/kernel/kexec_crash_loaded > out/kexec_crash_loaded
ls -l /var/lib/kdumpy/ > out/state.txt
stat -c %s /var/lib/kdumpy/initramfs-*kdump.img > out/initramfs_size
sync
echo KDUMPY-ARMED
sleep {pause}
{crash}
"""


@dataclass
class Cycle:
    """A kdump cycle's inputs: kdump.conf, extra files (sysconfig, ssh/, setup.sh run before
    ``kdumpy start``, after-start.sh after it), VM shape."""

    kdump_conf: str
    files: dict[str, bytes | str] = field(default_factory=dict)
    disks: list[Disk] = field(default_factory=list)
    memory: str = "1G"
    # KDUMPY_LAB_CRASHKERNEL runs every cycle at another reservation (to measure a test's
    # smallest working one, docs/stacks.md).
    crashkernel: str = field(default_factory=lambda: os.environ.get("KDUMPY_LAB_CRASHKERNEL",
                                                                    "256M"))  # fmt: skip
    crash: bool = True
    guestfwd: list[str] = field(default_factory=list)
    timeout: float = 1500
    root_overlay: Path | None = None  # reuse the guest's root across cycles (see Job)
    # Called on the host once the capture kernel is loaded (serial "KDUMPY-ARMED"); the
    # guest waits *pause* seconds before crashing, e.g. to take a server away meanwhile.
    on_armed: Callable[[], None] | None = None
    pause: int = 0
    # Called on the host when a serial console marker first appears (polled, within a
    # second), e.g. to note the host's clock at "Kernel panic".
    on_marker: dict[str, Callable[[], None]] = field(default_factory=dict)
    kdumpy_tree: Path | None = None  # see Job.kdumpy_tree
    extra_args: list[str] = field(default_factory=list)  # see Job.extra_args
    netns: str | None = None  # see Job.netns
    extra_cmdline: str = ""
    qmp_on_marker: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


def run_cycle(cycle: Cycle, workdir: Path, kernel: LabKernel | str = "6.1") -> JobResult:
    """Run the cycle; the caller reads the target disk (or server) and the serial log.
    An arm64 kernel runs in the arm64 guest (:mod:`kdumpy.lab.arm64_guest`)."""
    lab_kernel = get_kernel(kernel) if isinstance(kernel, str) else kernel
    crash = "touch /run/kdumpy-crash" if cycle.crash else ""
    script = JOB.format(start=START, crash=crash, pause=cycle.pause)
    job = Job(
        script=script,
        files={"kdump.conf": cycle.kdump_conf, **cycle.files},
        disks=cycle.disks,
        memory=cycle.memory,
        crashkernel=cycle.crashkernel,
        guestfwd=cycle.guestfwd,
        timeout=cycle.timeout,
        markers=MARKERS,
        root_overlay=cycle.root_overlay,
        kdumpy_tree=cycle.kdumpy_tree,
        extra_args=cycle.extra_args,
        netns=cycle.netns,
        extra_cmdline=cycle.extra_cmdline,
        qmp_on_marker=cycle.qmp_on_marker,
    )
    runner = arm64_guest.run_job if lab_kernel.arch == "arm64" else run_job
    actions = dict(cycle.on_marker)
    if cycle.on_armed is not None:
        actions["\nKDUMPY-ARMED"] = cycle.on_armed
    watchers = [_Watcher(workdir / "serial.log", m, a) for m, a in actions.items()]
    for watcher in watchers:
        watcher.start()
    try:
        return runner(job, workdir, lab_kernel)
    finally:
        for watcher in watchers:
            watcher.stop()


class _Watcher(threading.Thread):
    """Calls *action* once *marker* appears in the serial log (polled)."""

    def __init__(self, log: Path, marker: str, action: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.log, self.marker, self.action = log, marker, action
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                text = self.log.read_bytes().decode(errors="replace")
            except FileNotFoundError:
                continue
            if self.marker in text:
                self.action()
                return

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)


def blank_ext4(path: Path, label: str, size: str = "2G") -> Disk:
    """An empty ext4 target disk for the guest."""
    path.unlink(missing_ok=True)
    _quiet(["mkfs.ext4", "-q", "-F", "-L", label, str(path), size], f"mkfs.ext4 of {path}")
    return Disk(path)
