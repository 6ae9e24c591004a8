"""The kernel's ORC unwind tables, read from the dump (x86_64).

vmlinux keeps them between ``__start_orc_unwind_ip``/``__stop_orc_unwind_ip`` (32-bit
place-relative instruction addresses, sorted) and ``__start_orc_unwind`` (6-byte
``struct orc_entry``: s16 sp_offset, s16 bp_offset, u16 flags); each module has its
own pair in ``struct module.arch``.  The flags' layout changed twice
(``arch/x86/include/asm/orc_types.h``), so entries are normalised to the newest
layout: sp_reg bits 0-3, bp_reg 4-7, type 8-10, signal bit 11, where type is
0 undefined, 1 end of stack, 2 call, 3 regs, 4 partial regs (iret frame).

Layout versions: 3 since Linux 6.4 (identified by the ``.orc_header`` hash, or by the
release), 2 in 6.3 (signal bit added), 1 before (2-bit type: call 0, regs 1,
partial 2; bit 10 "end"; regs types imply signal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from kdumpy.arch.base import Readable

ORC_REG_UNDEFINED, ORC_REG_PREV_SP, ORC_REG_DX, ORC_REG_DI = 0, 1, 2, 3
ORC_REG_BP, ORC_REG_SP, ORC_REG_R10, ORC_REG_R13 = 4, 5, 6, 7
ORC_REG_BP_INDIRECT, ORC_REG_SP_INDIRECT = 8, 9

TYPE_UNDEFINED, TYPE_END_OF_STACK, TYPE_CALL, TYPE_REGS, TYPE_REGS_PARTIAL = range(5)

# sha1 of orc_types.h that Linux >= 6.4 stores in .orc_header (see scripts/orc_hash.sh).
_ORC_HASH_6_4 = bytes.fromhex("fe5d32bf581bd63b2ca9a5c65ba5a625eab3fe24")
_ORC_HASH_6_3 = bytes.fromhex("db84aed4103b31dd51e017f8f79783ca985c2c51")
# Linux 7.x renumbered some base registers (seen in Debian's 7.2 kernel, whose
# .orc_header hash is below).  The map was worked out by comparing where each number
# is used in the 6.12 and 7.2 tables: C code moved from SP=5/PREV_SP=1 to SP=3/
# PREV_SP=8; asm_exc_nmi still uses DX=2, the FRED stack switch SP_INDIRECT=9,
# realigned-stack functions R10=6 and R13=7; BP_INDIRECT moved from 8 to 10.
# Numbers not seen (old DI) map to UNDEFINED, and the unwinder then scans the stack.
_ORC_HASH_7 = bytes.fromhex("137c36ad7627c4dd55932176bb0ecdbd5041fc82")
_REGS_V4 = {0: 0, 2: 2, 3: 5, 4: 4, 6: 6, 7: 7, 8: 1, 9: 9, 10: 8}
_ENTRY = np.dtype([("sp_offset", "<i2"), ("bp_offset", "<i2"), ("flags", "<u2")])


@dataclass(frozen=True)
class OrcEntry:
    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    type: int
    signal: bool


def orc_version(osrelease: str | None, header: bytes | None) -> int:
    """Which flags layout a kernel uses (3, 2 or 1)."""
    if header == _ORC_HASH_7:
        return 4
    if header == _ORC_HASH_6_4:
        return 3
    if header == _ORC_HASH_6_3:
        return 2
    rhel9 = re.match(r"5\.14\.0-(\d+)\..*el9", osrelease or "")
    if rhel9:  # RHEL 9 took the 6.4 layout in 5.14.0-517
        return 3 if int(rhel9.group(1)) >= 517 else 1
    try:
        major, minor = (int(x) for x in (osrelease or "0.0").split("-")[0].split(".")[:2])
    except ValueError:
        return 3
    if (major, minor) >= (6, 4):
        return 3
    return 2 if (major, minor) == (6, 3) else 1


def normalize_flags(flags: np.ndarray, version: int) -> np.ndarray:
    """Rewrite version 1/2 flags into the version 3 layout (vectorised)."""
    flags = flags.astype(np.uint16)
    if version >= 4:
        lut = np.zeros(16, dtype=np.uint16)
        for new, old in _REGS_V4.items():
            lut[new] = old
        sp = lut[flags & 0xF]
        bp = lut[(flags >> 4) & 0xF]
        return ((flags & 0xFF00) | sp | (bp << 4)).astype(np.uint16)
    if version == 3:
        return flags
    end_bit = 0x800 if version == 2 else 0x400
    regs = flags & 0xFF
    old_type = (flags >> 8) & 0x3
    undefined_sp = (flags & 0xF) == 0
    new_type = np.where(
        undefined_sp,
        np.where(flags & end_bit, TYPE_END_OF_STACK, TYPE_UNDEFINED),
        old_type + TYPE_CALL,
    ).astype(np.uint16)
    signal = (flags & 0x400) != 0 if version == 2 else old_type > 0
    return (regs | (new_type << 8) | (signal.astype(np.uint16) << 11)).astype(np.uint16)


class OrcTable:
    """Sorted instruction addresses and their normalised entries for one text range."""

    def __init__(self, ips: np.ndarray, entries: np.ndarray, version: int, name: str) -> None:
        # The kernel sorts its tables at build time; module tables may not be, so sort only
        # when needed (a linear check is far cheaper than sorting ~300k vmlinux entries).
        if len(ips) > 1 and not bool(np.all(ips[1:] >= ips[:-1])):
            order = np.argsort(ips, kind="stable")
            ips, entries = ips[order], entries[order]
        self.ips = ips
        self.entries = entries
        self.flags = normalize_flags(self.entries["flags"], version)
        self.name = name
        self.start = int(self.ips[0]) if len(self.ips) else 0
        self.end = int(self.ips[-1]) if len(self.ips) else 0

    @classmethod
    def read(
        cls,
        memory: Readable,
        ip_start: int,
        count: int,
        entries_start: int,
        version: int,
        name: str,
    ) -> OrcTable:
        """Read ``count`` entries from the dump (instruction addresses are relative)."""
        rel = np.frombuffer(memory.read(ip_start, 4 * count), dtype="<i4").astype(np.int64)
        places = np.arange(count, dtype=np.uint64) * np.uint64(4) + np.uint64(ip_start)
        ips = (places + rel.astype(np.uint64)).astype(np.uint64)
        entries = np.frombuffer(memory.read(entries_start, 6 * count), dtype=_ENTRY)
        return cls(ips, entries, version, name)

    def find(self, pc: int) -> OrcEntry | None:
        """The entry covering ``pc`` (the last one at or below it, as the kernel's
        ``__orc_find``), or None outside the table."""
        if not len(self.ips) or pc < self.start:
            return None
        i = int(np.searchsorted(self.ips, np.uint64(pc), side="right")) - 1
        e = self.entries[i]
        flags = int(self.flags[i])
        return OrcEntry(
            int(e["sp_offset"]),
            int(e["bp_offset"]),
            flags & 0xF,
            (flags >> 4) & 0xF,
            (flags >> 8) & 0x7,
            bool(flags & 0x800),
        )
