"""arm64 translation tables built for tests, from the Arm ARM's descriptor formats.

Independent of kdumpy's translator: descriptors are encoded here (VMSAv8-64 stage 1):
bit 0 valid, bit 1 table/page (clear: block), AF bit 10, shareability bits 9:8 when the
descriptor format has them, UXN/PXN bits 54/53.  Output addresses: bits 47:PAGE_SHIFT;
with 64K pages (FEAT_LPA) PA[51:48] in bits 15:12; with FEAT_LPA2 (4K/16K pages, 52-bit)
bits 49:PAGE_SHIFT and PA[51:50] in bits 9:8.  Index bits per level: PAGE_SHIFT - 3;
the top level takes what is left of the VA bits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MASK64 = (1 << 64) - 1
AF = 1 << 10
SH_INNER = 0b11 << 8
PXN_UXN = 0b11 << 53


def encode_pa(pa: int, page_shift: int, lpa2: bool) -> int:
    """The output-address bits of a descriptor for physical address ``pa``."""
    if page_shift == 16:
        return (pa & 0x0000_FFFF_FFFF_0000) | ((pa >> 48) & 0xF) << 12
    if lpa2:
        return (pa & ((1 << 50) - 1)) | ((pa >> 50) & 0x3) << 8
    assert pa < 1 << 48
    return pa


@dataclass
class Arm64Tables:
    """Translation tables for TTBR1 in a physical memory the test owns."""

    page_shift: int
    va_bits: int  # the bits the top table is indexed by
    lpa2: bool = False
    next_free: int = 0x4000_0000  # physical address of the next table page
    memory: dict[int, bytearray] = field(default_factory=dict)  # pfn -> page
    root: int = 0

    def __post_init__(self) -> None:
        self.root = self.alloc()

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def levels(self) -> int:
        return -(-(self.va_bits - self.page_shift) // (self.page_shift - 3))

    def shift(self, level: int) -> int:
        """The lowest VA bit level ``level`` resolves (0 is the top)."""
        return self.page_shift + (self.page_shift - 3) * (self.levels - 1 - level)

    def index(self, va: int, level: int) -> int:
        top = self.va_bits if level == 0 else self.shift(level) + self.page_shift - 3
        return (va >> self.shift(level)) & ((1 << (top - self.shift(level))) - 1)

    def alloc(self) -> int:
        pa = self.next_free
        self.next_free += self.page_size
        self.memory[pa >> self.page_shift] = bytearray(self.page_size)
        return pa

    def write(self, pa: int, data: bytes) -> None:
        """Physical bytes (pages appear as needed)."""
        while data:
            page = self.memory.setdefault(pa >> self.page_shift, bytearray(self.page_size))
            off = pa & (self.page_size - 1)
            n = min(len(data), self.page_size - off)
            page[off : off + n] = data[:n]
            pa, data = pa + n, data[n:]

    def read(self, pa: int, size: int) -> bytes:
        page = self.memory[pa >> self.page_shift]
        off = pa & (self.page_size - 1)
        return bytes(page[off : off + size])

    def _attrs(self) -> int:
        # Shareability sits where LPA2 keeps PA[51:50]: only without LPA2.
        return AF | PXN_UXN | (0 if self.lpa2 else SH_INNER)

    def _set(self, table: int, index: int, desc: int) -> None:
        self.write(table + 8 * index, struct.pack("<Q", desc))

    def _get(self, table: int, index: int) -> int:
        return int(struct.unpack("<Q", self.read(table + 8 * index, 8))[0])

    def table_at(self, va: int, level: int) -> int:
        """The physical address of the level-``level`` table covering ``va``."""
        table = self.root
        for lvl in range(level):
            desc = self._get(table, self.index(va, lvl))
            if not desc & 1:
                new = self.alloc()
                self._set(
                    table, self.index(va, lvl), encode_pa(new, self.page_shift, self.lpa2) | 3
                )
                table = new
            else:
                table = self.decode(desc)
        return table

    def decode(self, desc: int) -> int:
        if self.page_shift == 16:
            return (desc & 0x0000_FFFF_FFFF_0000) | ((desc >> 12) & 0xF) << 48
        if self.lpa2:
            low = desc & ((1 << 50) - 1) & ~((1 << self.page_shift) - 1)
            return low | ((desc >> 8) & 3) << 50
        return desc & ((1 << 48) - 1) & ~((1 << self.page_shift) - 1)

    def map(self, va: int, pa: int, level: int | None = None) -> None:
        """Map ``va`` to ``pa``: a page (last level) or a block at ``level``."""
        last = self.levels - 1
        level = last if level is None else level
        table = self.table_at(va, level)
        kind = 3 if level == last else 1
        self._set(
            table,
            self.index(va, level),
            encode_pa(pa, self.page_shift, self.lpa2) | self._attrs() | kind,
        )

    def set_raw(self, va: int, level: int, desc: int) -> None:
        """Put any descriptor at ``level`` for ``va`` (invalid, reserved, ...)."""
        self._set(self.table_at(va, level), self.index(va, level), desc)

    def drop_table(self, va: int, level: int) -> None:
        """Forget the level-``level`` table page covering ``va`` (not in the dump)."""
        del self.memory[self.table_at(va, level) >> self.page_shift]
