"""Crash a lab guest and keep the /proc/vmcore its capture kernel saw.

The capture kernel copies /proc/vmcore onto a raw virtio disk; that disk image, cut to the
ELF file's length, *is* the vmcore, so nothing is copied twice.  Output appears under its final
name only when complete, mode 0600 (a dump holds every secret the guest had).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.lab.arm64 import CRASH_METHODS as ARM64_CRASH_METHODS
from kdumpy.lab.arm64 import Arm64Capture, Arm64Workload
from kdumpy.lab.cache import cache_root, locked
from kdumpy.lab.kernels import LabKernel, get_kernel, normalize_series
from kdumpy.lab.qemu import Disk, GuestRun, machine, parse_size, run_guest
from kdumpy.lab.testmodule import crash_module
from kdumpy.lab.userspace import (
    CRASH_METHODS,
    CRASH_QMP,
    MARK,
    MODULE_CRASHES,
    BusyboxWorkload,
    DdCapture,
    build_initrd,
)
from kdumpy.vmcore.elf import parse_elf_header
from kdumpy.vmcore.source import FileSource

PANIC_RE = re.compile(r"Kernel panic - not syncing: (.*)")
# An oops with panic_on_oops goes straight to the capture kernel without a "Kernel panic"
# line; the console's first report line says what happened.
OOPS_RE = re.compile(r"\] ((?:BUG: |kernel BUG at |Oops: ).*)")
CRASH_MARKERS = ("Kernel panic - not syncing", "] BUG: ", "] kernel BUG at ", "] Oops: ")


def crash_message(console: str) -> str:
    """What the crashed kernel said when it died: its panic message, or its oops line."""
    first = console.split("kdumpy.role=capture")[0]
    panic = PANIC_RE.search(first)
    if panic:
        return panic.group(1).strip()
    oops = OOPS_RE.search(first)
    return oops.group(1).strip() if oops else ""


FAIL_RE = re.compile(re.escape(MARK) + r" (capture failed: .*|kexec load failed: .*)")


@dataclass
class LabDump:
    """A real vmcore from a lab guest, with the evidence of how it was made."""

    vmcore: Path
    serial_log: Path
    kernel: LabKernel
    memory: int
    crashkernel: str
    crash: str
    panic_message: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.vmcore.stat().st_size


def elf_file_size(path: Path) -> int:
    """Length of the ELF core at the start of *path*: the end of its last segment."""
    src = FileSource(path)
    try:
        segments, _, _ = parse_elf_header(src)
    except DumpFormatError as exc:
        raise KdumpyError(f"{path}: the capture kernel wrote no ELF64 vmcore ({exc})") from None
    finally:
        src.close()
    return max((seg.offset + seg.filesz for seg in segments), default=0)


def _workload_disk(dest: Path) -> None:
    """An ext4 image with files to read and copy (page cache with and without buffers)."""
    template = cache_root() / "workload-ext4.img"
    with locked("workload-disk"):
        if not template.exists():
            if shutil.which("mkfs.ext4") is None:
                raise KdumpyError("mkfs.ext4 not found: install e2fsprogs")
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(tmp, "data")
                data.mkdir()
                for i in range(8):
                    Path(data, f"file{i}").write_bytes(os.urandom(4 << 20))
                part = template.with_suffix(".tmp")
                subprocess.run(
                    ["mkfs.ext4", "-q", "-F", "-L", "kdumpy-work", "-d", tmp, str(part), "128M"],
                    check=True,
                    capture_output=True,
                )
                part.rename(template)
    shutil.copyfile(template, dest)


def capture_vmcore(
    kernel: str | LabKernel = "6.1",
    output: Path | str = "vmcore",
    *,
    memory: str | int = "1G",
    crashkernel: str = "256M",
    crash: str = "sysrq",
    timeout: float = 900,
    head_only: bool = False,
) -> LabDump:
    """Boot *kernel*, run the workload, crash it by *crash*, and save the vmcore to *output*.

    *crashkernel* may hold several values separated by spaces ("256M,high 64M,low").
    *head_only* (arm64 lab) saves only /proc/vmcore's first MiB, its ELF header and notes,
    for reservations tested in guests whose whole dump would be too big to keep.
    """
    if crash not in CRASH_METHODS:
        raise KdumpyError(
            f"unknown crash method '{crash}': choose one of {', '.join(CRASH_METHODS)}"
        )
    mem = parse_size(memory) if isinstance(memory, str) else memory
    if not (256 << 20) <= mem <= (64 << 30):
        raise KdumpyError(f"guest memory {memory} out of range (256M to 64G)")
    if not re.fullmatch(r"[0-9A-Za-z@:,.\-]+( [0-9A-Za-z@:,.\-]+)*", crashkernel):
        raise KdumpyError(f"bad crashkernel value '{crashkernel}'")
    if re.fullmatch(r"\d+[KMG]?", crashkernel) and parse_size(crashkernel) >= mem // 2:
        raise KdumpyError(f"crashkernel={crashkernel} leaves too little of {memory} for the guest")
    lab_kernel = kernel if isinstance(kernel, LabKernel) else get_kernel(kernel)
    if head_only and lab_kernel.arch != "arm64":
        raise KdumpyError("head_only captures are an arm64 lab feature")
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    serial_log = output.with_name(output.name + ".serial.log")

    first_initrd = _initrds(lab_kernel, crash)

    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as tmp:
        disk = Path(tmp, "vmcore.incomplete")
        with open(disk, "wb") as fh:
            fh.truncate(mem + (512 << 20))  # sparse; room for notes and the kernel-text segment
        work = Path(tmp, "work.img")
        _workload_disk(work)
        disks = [Disk(disk, sparse=True), Disk(work)]
        tmp_log = Path(tmp, "serial.log")
        # no_timer_check: under a loaded TCG host the IO-APIC timer check can fail spuriously
        # ("IO-APIC + timer doesn't work!") and panic the guest at boot.
        console = machine(lab_kernel.arch).console
        quirks = " no_timer_check" if lab_kernel.arch == "amd64" else ""
        reserve = " ".join(f"crashkernel={value}" for value in crashkernel.split())
        append = f"console={console} {reserve} panic=5{quirks} kdumpy.crash={crash}"
        if head_only:
            append += " kdumpy.save=head"
        markers = (
            f"{MARK} first kernel up",
            f"{MARK} workload ready",
            f"{MARK} capture kernel loaded",
            *CRASH_MARKERS,
            f"{MARK} capture kernel up",
            f"{MARK} vmcore saved",
        )
        try:
            run = run_guest(
                kernel=lab_kernel.vmlinuz,
                initrd=first_initrd,
                append=append,
                memory=mem,
                serial_log=tmp_log,
                disks=disks,
                timeout=timeout,
                markers=markers,
                qmp_on_marker=dict([CRASH_QMP[crash]]) if crash in CRASH_QMP else None,
                arch=lab_kernel.arch,
            )
        finally:
            # Keep the console whatever happened: it is the post-mortem of a failed run.
            if tmp_log.exists():
                shutil.copyfile(tmp_log, serial_log)
        text = run.serial_text()
        if f"{MARK} vmcore saved" not in text:
            raise KdumpyError(_failure_reason(run, text, serial_log))
        size = (1 << 20) if head_only else elf_file_size(disk)
        os.truncate(disk, size)
        os.chmod(disk, 0o600)
        disk.rename(output)
    return LabDump(
        output,
        serial_log,
        lab_kernel,
        mem,
        crashkernel,
        crash,
        crash_message(text),
        _timings(run),
    )


def _initrds(kernel: LabKernel, crash: str) -> Path:
    """Build (or reuse) the capture initramfs and the first kernel's, which carries it."""
    if kernel.arch == "arm64":
        if crash not in ARM64_CRASH_METHODS:
            choices = ", ".join(ARM64_CRASH_METHODS)
            raise KdumpyError(f"the arm64 lab cannot crash by '{crash}': choose one of {choices}")
        return build_initrd(kernel, Arm64Workload(build_initrd(kernel, Arm64Capture())))
    capture_initrd = build_initrd(kernel, DdCapture())
    module = crash_module(kernel) if crash in MODULE_CRASHES else None
    return build_initrd(kernel, BusyboxWorkload(capture_initrd, crash_module=module))


def _failure_reason(run: GuestRun, text: str, serial_log: Path) -> str:
    fail = FAIL_RE.search(text)
    if fail:
        return f"{fail.group(1)} (serial log: {serial_log})"
    if f"{MARK} first kernel up" not in text:
        panic = PANIC_RE.search(text)
        why = f": {panic.group(1).strip()}" if panic else ""
        return f"the first kernel failed to boot{why} (serial log: {serial_log})"
    if not crash_message(text):
        nocrash = re.search(re.escape(MARK) + r" (no crash .*)", text)
        if nocrash:
            return f"the guest did not crash: {nocrash.group(1)} (serial log: {serial_log})"
        return f"the guest never crashed (serial log: {serial_log})"
    if f"{MARK} capture kernel up" not in text:
        return f"the capture kernel never started (serial log: {serial_log})"
    return f"the capture kernel saved no vmcore (serial log: {serial_log})"


def _timings(run: GuestRun) -> dict[str, float]:
    m = run.markers
    out = {"total": run.elapsed}
    seen = [m[k] for k in CRASH_MARKERS if k in m]
    panic = min(seen) if seen else None
    if panic is not None:
        out["boot_to_panic"] = panic
        saved = m.get(f"{MARK} vmcore saved")
        if saved is not None:
            out["panic_to_saved"] = saved - panic
            out["saved_to_poweroff"] = run.elapsed - saved
    return out


def lab_dump(
    kernel: str = "6.1",
    memory: str = "1G",
    crashkernel: str = "256M",
    crash: str = "sysrq",
    timeout: float = 900,
) -> LabDump:
    """A cached lab vmcore (made on first use) for tests and benchmarks.

    The vmcore is kept sparse (the guest's untouched memory is holes), so a 64 GiB guest's
    dump takes the disk space of what it used; ``timeout`` bounds making it."""
    series = normalize_series(kernel)
    lab_kernel = get_kernel(series)
    name = f"{series}-{memory}-{crashkernel}-{crash}"
    out = cache_root() / "dumps" / f"{name}.vmcore"
    log = out.with_name(out.name + ".serial.log")
    with locked(f"dump-{name}"):
        if not (out.exists() and log.exists()):
            return capture_vmcore(
                lab_kernel,
                out,
                memory=memory,
                crashkernel=crashkernel,
                crash=crash,
                timeout=timeout,
            )
    text = log.read_text(errors="replace")
    return LabDump(
        out, log, lab_kernel, parse_size(memory), crashkernel, crash, crash_message(text)
    )
