"""Bulk struct page reads (``MemMap.read``) reuse one buffer: what the next batch cannot
read must be zero again, never the previous batch's struct pages.

The dump is a hand-built ELF vmcore (:mod:`fakecore`) whose struct pages are known byte
for byte; part of the struct page array lies in a hole of the dump, so it cannot be read.
"""

from __future__ import annotations

from pathlib import Path

from fakecore import MEMMAP_PADDR, PAGE, STRUCT_PAGE, FakeMachine

from kdumpy.collect.memmap import MemMap
from kdumpy.collect.source import open_source

PAGES = 4096
BATCH = 1024  # pfns per read: 64 KiB of struct pages, 16 pages of the array
# The struct pages of pfns 1024..2047 lie in pfns MEMMAP_PADDR/PAGE + 16 .. + 32: the
# hole covers the first half of them (pfns 1024..1535).
HOLE = (MEMMAP_PADDR // PAGE + 16, MEMMAP_PADDR // PAGE + 24)


def struct_pages(tmp_path: Path) -> tuple[MemMap, FakeMachine]:
    machine = FakeMachine(pages=PAGES, holes=(HOLE,))
    for pfn in range(PAGES):  # every struct page nonzero, and each one different
        flags, private = 0x5A00000000000000 | pfn, ~pfn & 0xFFFF
        machine.struct_page(pfn, flags=(0, "Q", flags), private=(40, "Q", private))
    src = open_source(str(machine.write(tmp_path / "vmcore")))
    return MemMap(src.dump, src.max_mapnr, src.read_phys, src.read_phys_into), machine


def machine_row(machine: FakeMachine, pfn: int) -> bytes:
    paddr = MEMMAP_PADDR + pfn * STRUCT_PAGE
    return bytes(machine.mem[paddr : paddr + STRUCT_PAGE])


def test_unreadable_struct_pages_read_as_zero_after_a_full_batch(tmp_path: Path) -> None:
    """Every row is the struct page the test wrote (valid) or zero (not valid), and the
    rows in the hole are not valid; the read before it filled the whole buffer."""
    memmap, machine = struct_pages(tmp_path)
    raw, valid = memmap.read(0, BATCH)  # every struct page readable: the buffer is all set
    assert valid == b"\x01" * BATCH
    assert bytes(raw) == b"".join(machine_row(machine, pfn) for pfn in range(BATCH))
    raw, valid = memmap.read(BATCH, BATCH)  # same size: the same buffer, partly unreadable
    hole_rows = (HOLE[1] * PAGE - MEMMAP_PADDR) // STRUCT_PAGE - BATCH
    assert hole_rows == 512 and valid[:hole_rows] == bytes(hole_rows)
    for i in range(BATCH):
        row = bytes(raw[i * STRUCT_PAGE : (i + 1) * STRUCT_PAGE])
        assert row == (machine_row(machine, BATCH + i) if valid[i] else bytes(STRUCT_PAGE)), i


def test_struct_pages_past_the_last_section_read_as_zero(tmp_path: Path) -> None:
    """pfns of a section without a memory map (past the one section of the fake) get
    zeros, after a batch that filled the buffer."""
    memmap, machine = struct_pages(tmp_path)
    memmap.read(0, BATCH)
    last = (1 << memmap.section_bits) - BATCH // 2  # half in section 0, half in section 1
    memmap.section_map.pop(1, None)
    raw, valid = memmap.read(last, BATCH)
    half = BATCH // 2 * STRUCT_PAGE
    assert bytes(raw[half:]) == bytes(half)
    assert valid[BATCH // 2 :] == bytes(BATCH // 2)
