"""Run a lab guest under QEMU's software emulation and watch its serial console.

KVM does not work on the lab machines (see vm-lab-notes), so guests run with ``-accel tcg``.
The serial console goes to a file: it is the independent record of what the kernel printed,
and the runner polls it to time the stages of a crash-capture cycle.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdumpy.errors import KdumpyError

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class Machine:
    """How the lab emulates one Debian architecture: the emulator, its machine and CPU
    options, the serial console's device name, and the Debian package with the emulator."""

    qemu: str
    options: tuple[str, ...]
    console: str
    package: str


# arm64: `-M virt` (PCI virtio disks, PL011 UART); pointer authentication stays on under
# pauth-impdef=on, with a cheaper emulated algorithm (boot to /init 3-4 s instead of 12 s).
MACHINES = {
    "amd64": Machine(QEMU, ("-cpu", "max"), "ttyS0", "qemu-system-x86"),
    "arm64": Machine(
        "qemu-system-aarch64",
        ("-M", "virt", "-cpu", "max,pauth-impdef=on"),
        "ttyAMA0",
        "qemu-system-arm",
    ),
}


def machine(arch: str) -> Machine:
    """The lab's emulation of Debian architecture *arch*, or a one-line error."""
    try:
        return MACHINES[arch]
    except KeyError:
        raise KdumpyError(f"the lab emulates no '{arch}' machine") from None


def parse_size(text: str) -> int:
    """Parse a size like "1G", "512M", "768m" or bytes into bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError:
        raise KdumpyError(f"bad size '{text}': use e.g. 512M or 2G") from None


def mib(nbytes: int) -> str:
    return f"{nbytes >> 20}M"


@dataclass
class Disk:
    path: Path
    format: str = "raw"
    readonly: bool = False
    sparse: bool = False  # zero writes become holes in the image (a big vmcore stays small)


@dataclass
class GuestRun:
    """What a QEMU run produced: the exit status, timings and serial markers seen."""

    returncode: int
    elapsed: float
    serial_log: Path
    markers: dict[str, float] = field(default_factory=dict)  # marker -> seconds after start
    stopped_on: str | None = None  # the stop_on marker QEMU was stopped at, if any

    def serial_text(self) -> str:
        return self.serial_log.read_text(errors="replace")


def qemu_binary(arch: str = "amd64") -> str:
    """The QEMU system emulator (``$KDUMPY_QEMU`` overrides the amd64 one's name or path)."""
    emu = machine(arch)
    name = os.environ.get("KDUMPY_QEMU", emu.qemu) if arch == "amd64" else emu.qemu
    path = shutil.which(name)
    if path is None:
        raise KdumpyError(f"{name} not found: install {emu.package}")
    return path


def run_guest(
    *,
    kernel: Path,
    initrd: Path,
    append: str,
    memory: int,
    serial_log: Path,
    disks: list[Disk] | None = None,
    smp: int = 2,
    timeout: float = 600,
    markers: tuple[str, ...] = (),
    extra_args: list[str] | None = None,
    qmp_on_marker: dict[str, tuple[str, dict[str, Any]]] | None = None,
    arch: str = "amd64",
    netns: str | None = None,
    stop_on: tuple[str, ...] = (),
) -> GuestRun:
    """Boot *kernel* with *initrd* and wait until the guest powers off (or *timeout*).

    The guest must end by powering off or rebooting (``-no-reboot`` turns a reboot into an
    exit). *markers* are strings whose first appearance on the serial console is timed.
    *qmp_on_marker* maps a console marker to a QMP command ``(name, arguments)`` sent to
    QEMU when that marker first appears (e.g. ``send-key`` for a keyboard interrupt).
    *arch* is the guest's Debian architecture (``machine(arch)`` says how it is emulated).
    With *netns*, QEMU runs in that network namespace (its tap NICs are created there).
    *stop_on* are console strings after which the guest can never power off (a capture
    kernel's own panic): QEMU is stopped there at once instead of at *timeout*, and the
    run returns with ``stopped_on`` set.
    """
    actions = dict(qmp_on_marker or {})
    markers = tuple(dict.fromkeys((*markers, *actions, *stop_on)))
    stopped_on: str | None = None
    qmp_dir = tempfile.mkdtemp(prefix="kdumpy-qmp-") if actions else None
    qmp_sock = Path(qmp_dir, "qmp.sock") if qmp_dir else None
    cmd = [
        qemu_binary(arch), "-accel", "tcg", *machine(arch).options, "-smp", str(smp),
        "-m", mib(memory), "-nodefaults", "-display", "none", "-no-reboot",
        "-monitor", "none", "-serial", f"file:{serial_log}",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
    ]  # fmt: skip
    for disk in disks or []:
        opts = f"file={disk.path},format={disk.format},if=virtio"
        if disk.readonly:
            opts += ",readonly=on"
        if disk.sparse:
            opts += ",discard=unmap,detect-zeroes=unmap"
        cmd += ["-drive", opts]
    if qmp_sock is not None:
        cmd += ["-qmp", f"unix:{qmp_sock},server=on,wait=off"]
    cmd += extra_args or []
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    serial_log.parent.mkdir(parents=True, exist_ok=True)
    serial_log.write_bytes(b"")
    start = time.monotonic()
    seen: dict[str, float] = {}
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic() - start
            _scan_markers(serial_log, markers, seen, now)
            for marker in [m for m in actions if m in seen]:
                qmp_command(qmp_sock, *actions.pop(marker))  # type: ignore[arg-type]
            stopped_on = next((m for m in stop_on if m in seen), None)
            if stopped_on is not None:
                proc.kill()
                proc.wait()
                rc = 0  # stopped on purpose, not a QEMU failure
                break
            if now > timeout:
                proc.kill()
                proc.wait()
                raise KdumpyError(
                    f"guest did not power off within {timeout:.0f} s (serial log: {serial_log};"
                    f" last console line: {last_console_line(serial_log)!r})"
                )
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        if qmp_dir is not None:
            shutil.rmtree(qmp_dir, ignore_errors=True)
    elapsed = time.monotonic() - start
    _scan_markers(serial_log, markers, seen, elapsed)
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if rc != 0:
        last = output.strip().splitlines()[-1] if output.strip() else f"exit status {rc}"
        raise KdumpyError(f"qemu failed: {last}")
    return GuestRun(rc, elapsed, serial_log, seen, stopped_on)


def last_console_line(log: Path) -> str:
    """The last non-empty line the guest printed, to say where a hung guest stopped."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")


def _scan_markers(log: Path, markers: tuple[str, ...], seen: dict[str, float], now: float) -> None:
    pending = [m for m in markers if m not in seen]
    if not pending:
        return
    try:
        text = log.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return
    for marker in pending:
        if marker in text:
            seen[marker] = now


def qmp_command(sock: Path, command: str, arguments: dict[str, Any] | None = None) -> Any:
    """Send one command to a QEMU's QMP socket and return its ``return`` value."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(sock))
            stream = s.makefile("rwb")

            def reply() -> dict[str, Any]:
                while True:  # skip asynchronous events
                    msg: dict[str, Any] = json.loads(stream.readline() or b"{}")
                    if "event" not in msg:
                        return msg

            reply()  # the greeting
            for name, args in (("qmp_capabilities", None), (command, arguments)):
                stream.write(json.dumps({"execute": name, "arguments": args or {}}).encode())
                stream.flush()
                answer = reply()
                if "return" not in answer:
                    raise KdumpyError(f"QMP {name} failed: {answer.get('error', answer)}")
            return answer["return"]
    except (OSError, ValueError) as exc:
        raise KdumpyError(f"QMP {command} on {sock} failed: {exc}") from None
