"""ELF note parsing against the kernel's structure definitions.

The note segment here is assembled by the test (there is no device-dump driver in the
lab guests, so no real VMCOREDD note exists): ``struct vmcoredd_header`` and
``struct elf_prstatus`` as declared in include/uapi/linux/vmcore.h and
include/linux/elfcore.h.  PRSTATUS is also checked on real dumps in test_elf.py and
against drgn in test_drgn_oracle.py.
"""

from __future__ import annotations

import struct

import pytest

from kdumpy.arch.x86_64.machine import X86_64
from kdumpy.arch.x86_64.registers import X86_64_REGS
from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.notes import (
    NT_PRSTATUS,
    NT_VMCOREDD,
    eraseinfo_text,
    parse_device_dump,
    parse_notes,
    parse_prstatus,
)


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def prstatus(pid: int, regs: list[int]) -> bytes:
    # elf_siginfo (12) + cursig (2) + pad (2) + sigpend, sighold (16) + 4 pids (16) +
    # 4 timevals (64) = 112, then 27 registers, then pr_fpvalid + pad = 336 bytes.
    head = struct.pack("<iiihxxQQiiii", 0, 0, 0, 11, 0, 0, pid, pid - 1, 0, 0) + bytes(64)
    return head + struct.pack("<27Q", *regs) + struct.pack("<ixxxx", 0)


def test_segment_with_every_kind() -> None:
    regs = list(range(100, 127))
    seg = (
        note(b"CORE\0", NT_PRSTATUS, prstatus(42, regs))
        + note(b"LINUX\0", NT_VMCOREDD, b"nic0".ljust(44, b"\0") + b"firmware state")
        + note(b"ERASEINFO\0", 0, b"erase jiffies_64 size 8\n")
        + bytes(24)  # the kernel pads the merged segment with zeros
    )
    notes = parse_notes(seg, "seg")
    assert [n.name for n in notes] == ["CORE", "LINUX", "ERASEINFO"]
    assert len(notes[0].desc) == 336
    pr = parse_prstatus(notes[0], X86_64.registers)
    assert pr is not None and pr.pid == 42 and pr.ppid == 41 and pr.cursig == 11
    assert [pr.regs[n] for n in X86_64_REGS] == regs
    assert pr.regs["ip"] == regs[16] and pr.regs["sp"] == regs[19]
    dd = parse_device_dump(notes[1])
    assert dd is not None and dd.name == "nic0" and dd.data == b"firmware state"
    assert eraseinfo_text(notes) == "erase jiffies_64 size 8\n"


def test_overlong_note_is_an_error() -> None:
    seg = struct.pack("<III", 5, 1000, 1) + b"CORE\0\0\0\0" + bytes(16)
    with pytest.raises(DumpFormatError, match="^seg: ELF note at offset 0 runs past"):
        parse_notes(seg, "seg")
