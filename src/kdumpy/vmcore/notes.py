"""ELF notes of a crash dump: per-CPU registers, VMCOREINFO, QEMU state, device dumps.

/proc/vmcore merges every CPU's ``"CORE"``/``NT_PRSTATUS`` note, the ``"VMCOREINFO"``
note and any ``"LINUX"``/``NT_VMCOREDD`` device dumps into one PT_NOTE segment; QEMU
adds a ``"QEMU"`` CPU-state note per vCPU, and makedumpfile may append
``"ERASEINFO"``.  Note header = 3 native u32 (namesz, descsz, type); name and
descriptor are each padded to 4 bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from kdumpy.errors import DumpFormatError

NT_PRSTATUS = 1
NT_VMCOREDD = 0x700
VMCOREDD_NAME_BYTES = 44

# struct user_regs_struct (arch/x86/include/asm/user_64.h): the order of pr_reg.
X86_64_REGS = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10",
    "r9", "r8", "ax", "cx", "dx", "si", "di", "orig_ax",
    "ip", "cs", "flags", "sp", "ss", "fs_base", "gs_base",
    "ds", "es", "fs", "gs",
)  # fmt: skip
# struct elf_prstatus on x86_64: pr_pid at 32, pr_reg at 112 (after the siginfo,
# cursig, sigpend/sighold, four pids and four struct timevals).
_PRSTATUS_PID = struct.Struct("<iiii")
_PRSTATUS_PID_OFFSET = 32
_PRSTATUS_REG_OFFSET = 112
_PRSTATUS_REGS = struct.Struct("<27Q")

# QEMU's QEMUCPUState (target/i386/arch_dump.c), "QEMU" note, x86_64.
_QEMU_GPRS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)  # fmt: skip
_QEMU_SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt")
_QEMU_SEGMENT = struct.Struct("<IIIIQ")  # selector, limit, flags, pad, base


@dataclass(frozen=True)
class Note:
    """One ELF note: owner name (without the NUL), type and descriptor bytes."""

    name: str
    type: int
    desc: bytes
    offset: int = 0  # of the descriptor within the note segment


@dataclass(frozen=True)
class PrStatus:
    """A CPU's registers at the crash (``NT_PRSTATUS``), x86_64 names without ``r``/``e``
    prefixes as in ``user_regs_struct``: ``ip``, ``sp``, ``bp``, ``ax`` ... ``r15``."""

    pid: int
    regs: dict[str, int]
    ppid: int = 0
    cursig: int = 0


@dataclass(frozen=True)
class QemuCpuState:
    """QEMU's per-vCPU state note: general registers, segments, control registers."""

    version: int
    regs: dict[str, int]
    segments: dict[str, dict[str, int]] = field(default_factory=dict)
    cr: tuple[int, ...] = ()
    kernel_gs_base: int | None = None


@dataclass(frozen=True)
class DeviceDump:
    """A device dump (``VMCOREDD``) a driver attached to /proc/vmcore."""

    name: str
    data: bytes


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse_notes(data: bytes, source: str = "dump") -> list[Note]:
    """Split a PT_NOTE segment into notes.

    Zero padding at the end (the kernel rounds the merged segment) ends the scan;
    a note whose sizes run past the segment is a format error.
    """
    notes: list[Note] = []
    pos = 0
    end = len(data)
    while pos + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        name_at = pos + 12
        desc_at = name_at + _align4(namesz)
        next_pos = desc_at + _align4(descsz)
        if desc_at + descsz > end:
            raise DumpFormatError(
                f"{source}: ELF note at offset {pos} runs past the note segment "
                f"(namesz {namesz}, descsz {descsz}, segment {end} bytes)"
            )
        name = bytes(data[name_at : name_at + namesz]).split(b"\0", 1)[0]
        notes.append(
            Note(
                name.decode("ascii", "replace"),
                ntype,
                bytes(data[desc_at : desc_at + descsz]),
                desc_at,
            )
        )
        pos = next_pos
    return notes


def parse_prstatus(note: Note) -> PrStatus | None:
    """x86_64 ``struct elf_prstatus`` from a ``CORE``/``NT_PRSTATUS`` note, else None."""
    if note.name != "CORE" or note.type != NT_PRSTATUS:
        return None
    need = _PRSTATUS_REG_OFFSET + _PRSTATUS_REGS.size
    if len(note.desc) < need:
        return None
    cursig = struct.unpack_from("<h", note.desc, 12)[0]
    pid, ppid, _pgrp, _sid = _PRSTATUS_PID.unpack_from(note.desc, _PRSTATUS_PID_OFFSET)
    values = _PRSTATUS_REGS.unpack_from(note.desc, _PRSTATUS_REG_OFFSET)
    return PrStatus(pid, dict(zip(X86_64_REGS, values, strict=True)), ppid, cursig)


def parse_qemu_cpu_state(note: Note) -> QemuCpuState | None:
    """QEMU's x86_64 CPU state note (name ``QEMU``), else None."""
    if note.name != "QEMU" or len(note.desc) < 8:
        return None
    version, size = struct.unpack_from("<II", note.desc, 0)
    desc = note.desc[: max(8, min(size, len(note.desc)))]
    pos = 8
    if len(desc) < pos + 8 * len(_QEMU_GPRS):
        return QemuCpuState(version, {})
    regs = dict(zip(_QEMU_GPRS, struct.unpack_from(f"<{len(_QEMU_GPRS)}Q", desc, pos), strict=True))
    pos += 8 * len(_QEMU_GPRS)
    segments: dict[str, dict[str, int]] = {}
    for seg in _QEMU_SEGMENTS:
        if pos + _QEMU_SEGMENT.size > len(desc):
            break
        selector, limit, flags, _pad, base = _QEMU_SEGMENT.unpack_from(desc, pos)
        segments[seg] = {"selector": selector, "limit": limit, "flags": flags, "base": base}
        pos += _QEMU_SEGMENT.size
    cr: tuple[int, ...] = ()
    if pos + 40 <= len(desc):
        cr = struct.unpack_from("<5Q", desc, pos)
        pos += 40
    kgs = struct.unpack_from("<Q", desc, pos)[0] if pos + 8 <= len(desc) else None
    return QemuCpuState(version, regs, segments, cr, kgs)


def parse_device_dump(note: Note) -> DeviceDump | None:
    """A ``LINUX``/``NT_VMCOREDD`` device dump: 44-byte name, then the data."""
    if note.type != NT_VMCOREDD or note.name != "LINUX" or len(note.desc) < VMCOREDD_NAME_BYTES:
        return None
    name = note.desc[:VMCOREDD_NAME_BYTES].split(b"\0", 1)[0].decode("ascii", "replace")
    return DeviceDump(name, note.desc[VMCOREDD_NAME_BYTES:])


def find_note(notes: list[Note], name: str, ntype: int | None = None) -> Note | None:
    """The first note with this owner name (and type, if given)."""
    for note in notes:
        if note.name == name and (ntype is None or note.type == ntype):
            return note
    return None


def eraseinfo_text(notes: list[Note]) -> str | None:
    """makedumpfile's ``ERASEINFO`` note text (``erase SYM size N`` lines), if any."""
    note = find_note(notes, "ERASEINFO")
    return None if note is None else note.desc.split(b"\0", 1)[0].decode("ascii", "replace")
