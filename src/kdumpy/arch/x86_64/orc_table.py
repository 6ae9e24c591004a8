"""ORC tables over numpy: the sorted instruction addresses of vmlinux or a module and
their entries, normalised to the newest flags layout (see :mod:`.orc` for the format).

Kept apart from :mod:`.orc` (constants, versions, :class:`OrcEntry`), which the stepper
and the architecture description import: only analysis reads whole tables, so only it
pays numpy's import.
"""

from __future__ import annotations

import numpy as np

from kdumpy.arch.base import Readable
from kdumpy.arch.x86_64.orc import (
    REGS_V4,
    TYPE_CALL,
    TYPE_END_OF_STACK,
    TYPE_UNDEFINED,
    OrcEntry,
)

_ENTRY = np.dtype([("sp_offset", "<i2"), ("bp_offset", "<i2"), ("flags", "<u2")])


def normalize_flags(flags: np.ndarray, version: int) -> np.ndarray:
    """Rewrite version 1/2 flags into the version 3 layout (vectorised)."""
    flags = flags.astype(np.uint16)
    if version >= 4:
        lut = np.zeros(16, dtype=np.uint16)
        for new, old in REGS_V4.items():
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
