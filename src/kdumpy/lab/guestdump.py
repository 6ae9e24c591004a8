"""Large lab vmcores without a capture kernel: QEMU's ``dump-guest-memory`` of a crashed guest.

Under TCG the capture kernel copies /proc/vmcore at ~13 MB/s (a 64 GiB dump: well over an
hour); QEMU writes the guest's memory itself at the host's speed.  The guest boots the lab
workload with ``-device vmcoreinfo`` and the fw_cfg driver (``qemu_fw_cfg``), which hands
QEMU the address of the kernel's VMCOREINFO, so the ELF file carries it as a note; it
crashes with no capture kernel loaded, and at its panic QEMU is asked for an ELF dump
(``paging: false``: every RAM block as it is, with QEMU's CPU-state and PRSTATUS notes).
QEMU stops the guest while it dumps; ``panic=`` then reboots it, which ``-no-reboot`` turns
into QEMU's exit.

The dump is written into a FIFO and copied from there one MiB at a time, seeking over
all-zero MiBs, so the file stays sparse: a 64 GiB guest's dump takes the disk space of
the memory the guest wrote (its struct pages alone are 1 GiB).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import tempfile
import threading
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.cache import cache_root, locked
from kdumpy.lab.dumps import LabDump, crash_message
from kdumpy.lab.kernels import LabKernel, get_kernel, normalize_series
from kdumpy.lab.qemu import machine, parse_size, run_guest
from kdumpy.lab.userspace import MARK, BusyboxWorkload, DdCapture, build_initrd
from kdumpy.vmcore import open_dump

CHUNK = 1 << 20  # the unit of holes in the copy
F_SETPIPE_SZ = 1031  # fcntl.h: a FIFO buffer of one CHUNK, fewer reads per MiB
PANIC_MARKER = "Kernel panic - not syncing"
PANIC_WAIT = 10  # seconds the panicked guest waits before rebooting (QEMU exits then)


EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr


def phdrs_after_ehdr(path: Path) -> None:
    """Rewrite QEMU's ELF header as /proc/vmcore's: program headers right after it, no
    section headers.  makedumpfile reads the program headers at offset 64 whatever
    ``e_phoff`` says, and QEMU 7.2 puts two section headers there (and ``e_ehsize`` 8)."""
    with open(path, "r+b") as f:
        head = f.read(4096)
        fields = list(EHDR.unpack_from(head))
        phoff, phentsize, phnum = fields[5], fields[9], fields[10]
        phdrs = head[phoff : phoff + phentsize * phnum]
        first_data = min(
            struct.unpack_from("<Q", phdrs, i * phentsize + 8)[0] for i in range(phnum)
        )
        if len(phdrs) != phentsize * phnum or EHDR.size + len(phdrs) > first_data:
            raise KdumpyError(f"{path}: QEMU's program headers do not fit after the ELF header")
        fields[5], fields[6], fields[8] = EHDR.size, 0, EHDR.size  # e_phoff, e_shoff, e_ehsize
        fields[11], fields[12], fields[13] = 0, 0, 0  # e_shentsize, e_shnum, e_shstrndx
        f.seek(0)
        f.write(EHDR.pack(*fields) + phdrs)


class FwCfgWorkload(BusyboxWorkload):
    """The lab workload with ``qemu_fw_cfg`` loaded: it tells QEMU where VMCOREINFO is."""

    name = "busybox-workload-fwcfg"
    modules = [*BusyboxWorkload.modules, "qemu_fw_cfg"]


class SparseCopy(threading.Thread):
    """Copies a FIFO into a file, leaving a hole for every all-zero MiB."""

    def __init__(self, fifo: Path, out: Path) -> None:
        super().__init__(daemon=True)
        self.fifo, self.out = fifo, out
        self.size = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._copy()
        except BaseException as exc:  # reported by guest_dump
            self.error = exc

    def _copy(self) -> None:
        zero = bytes(CHUNK)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        fd = os.open(self.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with open(self.fifo, "rb", buffering=0) as src:  # waits for QEMU to open it
                fcntl.fcntl(src.fileno(), F_SETPIPE_SZ, CHUNK)
                while True:
                    filled = 0
                    while filled < CHUNK:
                        n = src.readinto(view[filled:])
                        if not n:
                            break
                        filled += n
                    if filled == 0:
                        break
                    if filled < CHUNK or buf != zero:
                        os.pwrite(fd, view[:filled], self.size)
                    self.size += filled
                    if filled < CHUNK:
                        break
            os.ftruncate(fd, self.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def unblock(self) -> None:
        """End the copy once QEMU has exited: a copy still waiting for QEMU to open the
        FIFO (it never did) sees a writer come and go, and reads an empty dump."""
        while self.is_alive():
            with contextlib.suppress(OSError):  # ENXIO: not (yet, or any more) reading
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
            self.join(0.1)


def _ram_backend(mem: int) -> list[str]:
    """Guest RAM mapped with MAP_NORESERVE (``reserve=off``): the host's overcommit
    heuristic refuses a 64 GiB mapping on a smaller machine, though the guest touches
    only what it uses (its struct pages, the workload) and the dump reads the rest as
    holes."""
    backend = f"memory-backend-ram,id=lab.ram,size={mem},reserve=off"
    return ["-object", backend, "-machine", "memory-backend=lab.ram"]


def guest_dump(
    kernel: str | LabKernel,
    output: Path | str,
    *,
    memory: str = "64G",
    timeout: float = 3600,
) -> LabDump:
    """Boot *kernel* with *memory*, crash it by sysrq, save QEMU's ELF dump to *output*."""
    lab_kernel = kernel if isinstance(kernel, LabKernel) else get_kernel(kernel)
    if lab_kernel.arch != "amd64":
        raise KdumpyError("guest_dump: the vmcoreinfo device is wired up for x86 guests only")
    mem = parse_size(memory)
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    serial_log = output.with_name(output.name + ".serial.log")
    initrd = build_initrd(lab_kernel, FwCfgWorkload(build_initrd(lab_kernel, DdCapture())))
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as tmp:
        fifo, part = Path(tmp, "dump.fifo"), Path(tmp, "vmcore.incomplete")
        os.mkfifo(fifo, 0o600)
        copy = SparseCopy(fifo, part)
        copy.start()
        dump_args = {"paging": False, "protocol": f"file:{fifo}", "detach": True}
        console = machine(lab_kernel.arch).console
        try:
            run = run_guest(
                kernel=lab_kernel.vmlinuz,
                initrd=initrd,
                append=f"console={console} panic={PANIC_WAIT} no_timer_check kdumpy.crash=sysrq",
                memory=mem,
                serial_log=serial_log,
                timeout=timeout,
                markers=(f"{MARK} first kernel up", f"{MARK} workload ready"),
                qmp_on_marker={PANIC_MARKER: ("dump-guest-memory", dump_args)},
                extra_args=["-device", "vmcoreinfo", *_ram_backend(mem)],
            )
        finally:
            copy.unblock()
            copy.join()
        if copy.error is not None:
            raise KdumpyError(f"copying QEMU's dump failed: {copy.error}")
        text = run.serial_text()
        if PANIC_MARKER not in run.markers or copy.size == 0:
            raise KdumpyError(f"the guest never panicked, no dump (serial log: {serial_log})")
        phdrs_after_ehdr(part)
        with open_dump(part) as dump:
            if not dump.has_vmcoreinfo:
                raise KdumpyError(
                    f"QEMU's dump has no VMCOREINFO (was qemu_fw_cfg loaded? serial log: "
                    f"{serial_log})"
                )
        part.rename(output)
    timings = {"total": run.elapsed}
    if PANIC_MARKER in run.markers:
        timings["boot_to_panic"] = run.markers[PANIC_MARKER]
        timings["panic_to_exit"] = run.elapsed - run.markers[PANIC_MARKER]
    return LabDump(output, serial_log, lab_kernel, mem, "", "sysrq", crash_message(text), timings)


def lab_guest_dump(kernel: str = "6.1", memory: str = "64G", timeout: float = 3600) -> LabDump:
    """A cached QEMU-made vmcore of a crashed lab guest (made on first use, kept sparse)."""
    series = normalize_series(kernel)
    lab_kernel = get_kernel(series)
    name = f"{series}-{memory}-qemu-sysrq"
    out = cache_root() / "dumps" / f"{name}.vmcore"
    log = out.with_name(out.name + ".serial.log")
    with locked(f"dump-{name}"):
        if not (out.exists() and log.exists()):
            return guest_dump(lab_kernel, out, memory=memory, timeout=timeout)
    text = log.read_text(errors="replace")
    return LabDump(out, log, lab_kernel, parse_size(memory), "", "sysrq", crash_message(text))
