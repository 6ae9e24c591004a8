"""Run a job in the lab's Debian guest and collect what it left behind.

A job is a shell script (``job.sh``) plus files, put on a small ext4 disk labelled
``KDUMPYJOB`` together with the current kdumpy tree.  The guest's ``kdumpy-lab-job`` unit
runs it at boot (output on the serial console and in ``out/job.log``), unmounts the disk,
then crashes the kernel if the job touched ``/run/kdumpy-crash`` or powers off.  QEMU runs
with ``-no-reboot``, so the capture kernel's final reboot ends the run.  The host reads
``out/`` back with ``debugfs`` (no loop mount needed).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kdumpy
from kdumpy.errors import KdumpyError
from kdumpy.lab.cache import cache_root
from kdumpy.lab.debian import base_image
from kdumpy.lab.debian_config import JOB_LABEL
from kdumpy.lab.kernels import LabKernel, get_kernel
from kdumpy.lab.qemu import Disk, GuestRun, parse_size, run_guest
from kdumpy.printable import escape_text

# no_timer_check: under a loaded host, TCG can fail the IO-APIC timer check and panic at boot.
GUEST_CMDLINE = "console=ttyS0 root=/dev/vda rw panic=1 net.ifnames=0 no_timer_check"


@dataclass
class Job:
    """What to run: the script, files to put beside it, extra disks, VM shape."""

    script: str
    files: dict[str, bytes | str] = field(default_factory=dict)
    disks: list[Disk] = field(default_factory=list)
    memory: str = "1G"
    crashkernel: str = "192M"
    extra_cmdline: str = ""
    network: bool = True
    guestfwd: list[str] = field(default_factory=list)  # e.g. "tcp:10.0.2.100:22-cmd:..."
    # More QEMU arguments (e.g. tap NICs) and the network namespace QEMU runs in
    # (kdumpy.lab.netlab: several NICs joined behind bonds, VLANs, bridges).
    extra_args: list[str] = field(default_factory=list)
    netns: str | None = None
    timeout: float = 1200
    # Keep the guest's root overlay here across runs (e.g. /var/lib/kdumpy's initramfs,
    # so a series of runs builds it once); default: a fresh overlay per run.
    root_overlay: Path | None = None
    # The kdumpy package to install in the guest (default: the one running this code).
    # A series of runs pins a snapshot, so `kdumpy start` does not rebuild for code changes.
    kdumpy_tree: Path | None = None
    markers: tuple[str, ...] = ("KDUMPY-JOB-BEGIN", "KDUMPY-JOB-END", "KDUMPY-CRASHING")
    # QMP commands sent to QEMU when a console marker first appears (qemu.run_guest), e.g.
    # a NIC's carrier taken away once the capture kernel is loaded.
    qmp_on_marker: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class JobResult:
    run: GuestRun
    out: Path  # the job's out/ directory, copied back to the host

    @property
    def serial(self) -> str:
        return self.run.serial_text()

    @property
    def rc(self) -> int | None:
        rc = self.out / "rc"
        return int(rc.read_text().strip()) if rc.exists() else None

    @property
    def log(self) -> str:
        """The job's own log; when the job never ran (the guest died on the way to it),
        the serial console's end instead, so a failed assertion shows why."""
        log = self.out / "job.log"
        if log.exists():
            return log.read_text(errors="replace")
        tail = self.serial[-2500:]
        return f"no job.log: the job never ran; the serial console ended with:\n{tail}"


def _kdumpy_tree() -> Path:
    return Path(kdumpy.__file__).parent


def make_job_disk(job: Job, workdir: Path, prepare: Callable[[Path], None] | None = None) -> Path:
    """An ext4 image with job.sh, the job's files and a copy of the kdumpy package;
    *prepare* may add to the tree first (e.g. byte code for the copy of kdumpy)."""
    tree = workdir / "jobtree"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(
        job.kdumpy_tree or _kdumpy_tree(),
        tree / "src" / "kdumpy",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (tree / "job.sh").write_text(job.script)
    for name, content in job.files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    (tree / "out").mkdir()
    if prepare is not None:
        prepare(tree)
    image = workdir / "job.img"
    image.unlink(missing_ok=True)
    _quiet(
        ["mkfs.ext4", "-q", "-F", "-L", JOB_LABEL, "-d", str(tree), str(image), "256M"],
        "mkfs.ext4 of the job disk",
    )
    return image


def read_back(image: Path, src: str, dest: Path) -> Path:
    """Copy directory *src* out of ext4 *image* into *dest* (journal replayed first)."""
    subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True)
    dest.mkdir(parents=True, exist_ok=True)
    _quiet(["debugfs", "-R", f"rdump {src} {dest}", str(image)], f"debugfs rdump of {src}")
    return dest / Path(src).name


def overlay(base: Path, path: Path, reuse: bool = False) -> Path:
    """A qcow2 overlay of the cached image: the run may write, the cache stays clean.

    With *reuse*, an existing overlay of the same base image is kept as it is.
    """
    stamp = path.with_suffix(".base")
    if reuse and path.exists() and stamp.exists() and stamp.read_text() == str(base):
        return path
    path.unlink(missing_ok=True)
    stamp.write_text(str(base))
    _quiet(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(path)],
        "qemu-img create of the overlay",
    )
    return path


def run_job(job: Job, workdir: Path, kernel: LabKernel | str = "6.1") -> JobResult:
    """Boot the Debian guest on *kernel*, run *job*, wait for the VM to end, read out/."""
    lab_kernel = get_kernel(kernel) if isinstance(kernel, str) else kernel
    workdir.mkdir(parents=True, exist_ok=True)
    base = base_image([lab_kernel])
    initrd = base.parent / "rootfs" / "boot" / f"initrd.img-{lab_kernel.release}"
    root = overlay(base, job.root_overlay or workdir / "root.qcow2", job.root_overlay is not None)
    disks = [Disk(root, "qcow2"), Disk(make_job_disk(job, workdir)), *job.disks]
    append = f"{GUEST_CMDLINE} crashkernel={job.crashkernel} {job.extra_cmdline}".strip()
    extra: list[str] = []
    if job.network:
        netdev = "user,id=n0" + "".join(f",guestfwd={g}" for g in job.guestfwd)
        extra += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]
    extra += job.extra_args

    def boot() -> GuestRun:
        return run_guest(
            kernel=lab_kernel.vmlinuz,
            initrd=initrd,
            append=append,
            memory=_size(job.memory),
            serial_log=workdir / "serial.log",
            disks=disks,
            timeout=job.timeout,
            markers=job.markers,
            extra_args=extra,
            qmp_on_marker=job.qmp_on_marker,
            netns=job.netns,
        )

    def fresh_root() -> None:
        overlay(base, root)

    stock = job.root_overlay is None  # a fresh overlay of the lab's image, its initrd
    run = boot_once_more_if_stock_boot_died(boot, fresh_root, stock, workdir)
    return JobResult(run, job_output(disks[1].path, workdir))


JOB_BEGIN = "KDUMPY-JOB-BEGIN"


def boot_retries_log() -> Path:
    """Where the lab records each guest boot it had to repeat (tests/conftest.py's summary
    lists those of the run, so a retry is never silent)."""
    return cache_root() / "boot-retries.log"


def boot_once_more_if_stock_boot_died(
    boot: Callable[[], GuestRun], fresh_root: Callable[[], None], stock: bool, workdir: Path
) -> GuestRun:
    """Boot; if a *stock* guest (a fresh overlay of the lab's image, the lab's initramfs)
    ended before its job began, boot once more.

    Such a boot ran only the distribution's kernel and initramfs (kdumpy is installed by the
    job itself), so its death says nothing about kdumpy: under a loaded host, TCG sometimes
    kills a first kernel in early boot (as the IO-APIC timer check did before
    ``no_timer_check``).  A run that kept its overlay (early kdump's system initramfs) or
    reached the job is never repeated: there kdumpy's code was on the path.
    """
    run = boot()
    if not stock or run.stopped_on is not None:
        return run
    serial = run.serial_text()
    if JOB_BEGIN in serial:
        return run
    lines = [ln.strip() for ln in serial.splitlines() if ln.strip()]
    panic = [ln for ln in lines if "Kernel panic" in ln]
    last = (panic or lines or ["(no console output)"])[-1]
    first = workdir / "serial-first-boot.log"
    run.serial_log.replace(first)
    with boot_retries_log().open("a") as log:
        log.write(f"{time.time():.0f} {workdir} after {run.elapsed:.1f} s: {escape_text(last)}\n")
    fresh_root()
    return boot()


def job_output(job_disk: Path, workdir: Path) -> Path:
    """The job's ``out`` directory, copied from its disk into *workdir*/out."""
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        got = read_back(job_disk, "/out", Path(tmp))
        shutil.move(str(got), out)
    return out


def _size(text: str) -> int:
    return parse_size(text)


def _quiet(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise KdumpyError(f"{what} failed: {last[-1] if last else proc.returncode}")
