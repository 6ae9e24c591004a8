"""ELF notes of a crash dump: per-CPU registers, VMCOREINFO, QEMU state, device dumps.

The register layouts are the architecture's (:mod:`kdumpy.arch`); the note framing and
``elf_prstatus`` header are the same on every 64-bit machine.

/proc/vmcore merges every CPU's ``"CORE"``/``NT_PRSTATUS`` note, the ``"VMCOREINFO"``
note and any ``"LINUX"``/``NT_VMCOREDD`` device dumps into one PT_NOTE segment; QEMU
adds a ``"QEMU"`` CPU-state note per vCPU, and makedumpfile may append
``"ERASEINFO"``.  Note header = 3 native u32 (namesz, descsz, type); name and
descriptor are each padded to 4 bytes.
"""

import struct
from typing import NamedTuple

from kdumpy.arch.select import Architecture, QemuCpuState, RegisterLayout
from kdumpy.errors import DumpFormatError

NT_PRSTATUS = 1
NT_VMCOREDD = 0x700
VMCOREDD_NAME_BYTES = 44

# struct elf_prstatus (64-bit, every architecture): pr_cursig at 12, pr_pid at 32,
# pr_reg at 112 (after the siginfo, cursig, sigpend/sighold, four pids and four timevals).
_PRSTATUS_PID = struct.Struct("<iiii")
_PRSTATUS_PID_OFFSET = 32
_PRSTATUS_REG_OFFSET = 112


class Note(NamedTuple):
    """One ELF note: owner name (without the NUL), type and descriptor bytes."""

    name: str
    type: int
    desc: bytes
    offset: int = 0  # of the descriptor within the note segment


class PrStatus(NamedTuple):
    """A CPU's registers at the crash (``NT_PRSTATUS``), named as the architecture's
    :class:`~kdumpy.arch.RegisterLayout` names them (its ``pc``, ``sp`` and ``fp``)."""

    pid: int
    regs: dict[str, int]
    ppid: int = 0
    cursig: int = 0


class DeviceDump(NamedTuple):
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


def parse_prstatus(note: Note, registers: RegisterLayout) -> PrStatus | None:
    """``struct elf_prstatus`` from a ``CORE``/``NT_PRSTATUS`` note, else None."""
    if note.name != "CORE" or note.type != NT_PRSTATUS:
        return None
    regs = registers.parse(note.desc, _PRSTATUS_REG_OFFSET)
    if regs is None:
        return None
    cursig = struct.unpack_from("<h", note.desc, 12)[0]
    pid, ppid, _pgrp, _sid = _PRSTATUS_PID.unpack_from(note.desc, _PRSTATUS_PID_OFFSET)
    return PrStatus(pid, regs, ppid, cursig)


def parse_qemu_cpu_state(note: Note, arch: Architecture) -> QemuCpuState | None:
    """QEMU's CPU state note (name ``QEMU``) of this architecture, else None."""
    if note.name != "QEMU":
        return None
    return arch.qemu_cpu_state(note.desc)


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
