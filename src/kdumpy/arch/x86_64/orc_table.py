"""ORC tables: the sorted instruction addresses of vmlinux or a module and their entries,
normalised to the newest flags layout (see :mod:`.orc` for the format).

Kept apart from :mod:`.orc` (constants, versions, :class:`OrcEntry`), which the stepper
and the architecture description import: only analysis reads whole tables.  A table is
kept as the dump's bytes; addresses are computed and checked in order by
kdumpy.tables (C when built), and an entry is decoded only when a pc falls in it.
"""

from __future__ import annotations

import array
import struct
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from kdumpy.arch.base import Readable
from kdumpy.arch.x86_64.orc import (
    REGS_V4,
    TYPE_CALL,
    TYPE_END_OF_STACK,
    TYPE_UNDEFINED,
    OrcEntry,
)
from kdumpy.errors import DumpFormatError
from kdumpy.tables import ENCODINGS, kallsyms_addresses, le_array, never_decreasing

_ENTRY = struct.Struct("<hhH")  # sp_offset, bp_offset, flags
_V4_TO_V3 = [REGS_V4.get(new, 0) for new in range(16)]


def normalize_flag(flags: int, version: int) -> int:
    """One entry's flags of a version 1/2/4 table in the version 3 layout."""
    if version >= 4:
        sp, bp = _V4_TO_V3[flags & 0xF], _V4_TO_V3[(flags >> 4) & 0xF]
        return (flags & 0xFF00) | sp | (bp << 4)
    if version == 3:
        return flags
    end_bit = 0x800 if version == 2 else 0x400
    old_type = (flags >> 8) & 0x3
    if flags & 0xF == 0:  # undefined sp
        new_type = TYPE_END_OF_STACK if flags & end_bit else TYPE_UNDEFINED
    else:
        new_type = old_type + TYPE_CALL
    signal = bool(flags & 0x400) if version == 2 else old_type > 0
    return (flags & 0xFF) | (new_type << 8) | (int(signal) << 11)


def normalize_flags(flags: Iterable[int], version: int) -> list[int]:
    """:func:`normalize_flag` of each."""
    return [normalize_flag(int(f), version) for f in flags]


class OrcTable:
    """Sorted instruction addresses and their normalised entries for one text range."""

    def __init__(self, ips: Sequence[int], entries: bytes, version: int, name: str) -> None:
        if len(entries) < _ENTRY.size * len(ips):
            raise DumpFormatError(f"ORC table of {name}: fewer entries than addresses")
        # The kernel sorts its tables at build time; module tables may not be, so sort only
        # when needed (a linear check is far cheaper than sorting ~300k vmlinux entries).
        self._slot: Sequence[int] = range(len(ips))
        if not never_decreasing(array.array("Q", ips)):
            order = sorted(range(len(ips)), key=ips.__getitem__)
            ips, self._slot = [ips[i] for i in order], order
        self.ips = ips
        self.entries = entries
        self.version = version
        self.name = name
        self.start = ips[0] if len(ips) else 0
        self.end = ips[-1] if len(ips) else 0

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
        # Each address is relative to its own place: kallsyms' place-relative encoding.
        rel = memory.read(ip_start, 4 * count)
        ips = le_array("Q", kallsyms_addresses(rel, ENCODINGS.index("place-relative"), 0, ip_start))
        return cls(ips, memory.read(entries_start, 6 * count), version, name)

    def find(self, pc: int) -> OrcEntry | None:
        """The entry covering ``pc`` (the last one at or below it, as the kernel's
        ``__orc_find``), or None outside the table."""
        if not len(self.ips) or pc < self.start:
            return None
        i = bisect_right(self.ips, pc) - 1
        sp_offset, bp_offset, raw = _ENTRY.unpack_from(self.entries, 6 * self._slot[i])
        flags = normalize_flag(raw, self.version)
        return OrcEntry(
            sp_offset,
            bp_offset,
            flags & 0xF,
            (flags >> 4) & 0xF,
            (flags >> 8) & 0x7,
            bool(flags & 0x800),
        )
