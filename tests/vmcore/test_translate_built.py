"""Address translation on hand-built page tables: a KASLR layout where vmalloc lies a
few TiB above the direct map, inside the 2**46 bytes the direct map could span but far
above the dump's RAM (as in the 5.10 lab dump: vmalloc_base = page_offset_base + 12 TiB)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kdumpy.arch.select import TranslationError
from kdumpy.arch.x86_64.translate import START_KERNEL_MAP
from kdumpy.vmcore.base import Dump

PAGE = 4096
PRESENT, RW, PSE = 0x1, 0x2, 0x80
PAGE_OFFSET = 0xFFFF888000000000  # direct map base (PUD aligned)
VMALLOC = PAGE_OFFSET + (12 << 40)  # randomized vmalloc base, 12 TiB higher
PGD, PUD_DIRECT, PUD_VMALLOC, PMD, PTE = 0x100000, 0x101000, 0x102000, 0x103000, 0x104000
DATA = 0x200000  # the page that vmalloc's first page maps to
RAM_PAGES = 4096  # 16 MiB of RAM


class BuiltDump(Dump):
    """16 MiB of RAM with 4-level page tables: the direct map as one 1 GiB page, and one
    4 KiB vmalloc page mapped to physical DATA."""

    def __init__(self) -> None:
        self.path = "built"
        self.max_pfn = RAM_PAGES
        self.notes = []
        self.ram = np.zeros((RAM_PAGES, PAGE), dtype=np.uint8)
        self._entry(PGD, (PAGE_OFFSET >> 39) & 511, PUD_DIRECT | PRESENT | RW)
        self._entry(PUD_DIRECT, 0, 0 | PSE | PRESENT | RW)
        self._entry(PGD, (VMALLOC >> 39) & 511, PUD_VMALLOC | PRESENT | RW)
        self._entry(PUD_VMALLOC, (VMALLOC >> 30) & 511, PMD | PRESENT | RW)
        self._entry(PMD, (VMALLOC >> 21) & 511, PTE | PRESENT | RW)
        self._entry(PTE, (VMALLOC >> 12) & 511, DATA | PRESENT | RW)
        self.ram[DATA // PAGE, :16] = np.frombuffer(b"vmalloc'd page!\0", dtype=np.uint8)

    def _entry(self, table: int, index: int, value: int) -> None:
        off = table + 8 * index
        self.ram.reshape(-1)[off : off + 8] = np.frombuffer(struct.pack("<Q", value), np.uint8)

    def _vmcoreinfo_text(self) -> bytes:
        return (
            f"SYMBOL(init_top_pgt)={START_KERNEL_MAP + PGD:x}\n"
            "NUMBER(phys_base)=0\nNUMBER(pgtable_l5_enabled)=0\n"
        ).encode()

    def pfn_ranges(self) -> list[tuple[int, int]]:
        return [(0, RAM_PAGES)]

    def ram_ranges(self) -> list[tuple[int, int]]:
        return [(0, RAM_PAGES)]

    def read_pfns(self, start_pfn: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        pages = np.zeros((count, PAGE), dtype=np.uint8)
        present = np.zeros(count, dtype=bool)
        lo, hi = max(start_pfn, 0), min(start_pfn + count, RAM_PAGES)
        if lo < hi:
            pages[lo - start_pfn : hi - start_pfn] = self.ram[lo:hi]
            present[lo - start_pfn : hi - start_pfn] = True
        return pages, present


def test_vmalloc_above_the_direct_map_is_walked() -> None:
    dump = BuiltDump()
    t = dump.translator
    assert t.page_offset == PAGE_OFFSET  # found from the page tables alone
    assert dump.read_virt(VMALLOC, 16) == b"vmalloc'd page!\0"
    assert t.vtop(VMALLOC + 8) == DATA + 8
    assert dump.read_virt(PAGE_OFFSET + DATA, 16) == b"vmalloc'd page!\0"  # direct map
    with pytest.raises(TranslationError):
        t.vtop(VMALLOC + PAGE)  # not mapped: an error, not a read at a made-up address
