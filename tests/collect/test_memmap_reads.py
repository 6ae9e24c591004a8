"""Bulk struct page reads (``MemMap.read``) reuse one buffer: what the next batch cannot
read must be zero again, never the previous batch's struct pages.

The dump is a hand-built ELF vmcore (:mod:`fakecore`) whose struct pages are known byte
for byte; part of the struct page array lies in a hole of the dump, so it cannot be read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakecore import MEMMAP_PADDR, PAGE, STRUCT_PAGE, FakeMachine

from kdumpy.collect.memmap import MemMap
from kdumpy.collect.source import open_source

PAGES = 4096
BATCH = 1024  # pfns per read: 64 KiB of struct pages, 16 pages of the array
# The struct pages of pfns 1024..2047 lie in pfns MEMMAP_PADDR/PAGE + 16 .. + 32: the
# hole covers the first half of them (pfns 1024..1535).
HOLE = (MEMMAP_PADDR // PAGE + 16, MEMMAP_PADDR // PAGE + 24)


def struct_pages(tmp_path: Path, mapped: bool = False) -> tuple[MemMap, FakeMachine]:
    """The fake's struct pages, read with preadv (or, ``mapped``, from a mapping first)."""
    machine = FakeMachine(pages=PAGES, holes=(HOLE,))
    for pfn in range(PAGES):  # every struct page nonzero, and each one different
        flags, private = 0x5A00000000000000 | pfn, ~pfn & 0xFFFF
        machine.struct_page(pfn, flags=(0, "Q", flags), private=(40, "Q", private))
    src = open_source(str(machine.write(tmp_path / "vmcore")))
    map_phys = src.map_phys if mapped else None
    return MemMap(src.dump, src.max_mapnr, src.read_phys, src.read_phys_into, map_phys), machine


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


@pytest.mark.parametrize("mapped", [False, True], ids=["copied", "mapped"])
def test_struct_pages_past_the_last_section_read_as_zero(tmp_path: Path, mapped: bool) -> None:
    """pfns of a section without a memory map (past the one section of the fake) get
    zeros, after a batch that filled the buffer."""
    memmap, machine = struct_pages(tmp_path, mapped)
    memmap.read(0, BATCH)
    last = (1 << memmap.section_bits) - BATCH // 2  # half in section 0, half in section 1
    memmap.section_map.pop(1, None)
    raw, valid = memmap.read(last, BATCH)
    half = BATCH // 2 * STRUCT_PAGE
    assert bytes(raw[half:]) == bytes(half)
    assert valid[BATCH // 2 :] == bytes(BATCH // 2)


def rows(machine: FakeMachine, pfn0: int, count: int) -> bytes:
    return b"".join(machine_row(machine, pfn) for pfn in range(pfn0, pfn0 + count))


def test_struct_pages_in_one_piece_of_the_file_are_mapped_not_copied(tmp_path: Path) -> None:
    """A batch whose struct pages are one run of the file comes as a read-only view of it
    (the same bytes); one that reaches into the hole is read and zero-filled as before."""
    memmap, machine = struct_pages(tmp_path, mapped=True)
    raw, valid = memmap.read(0, BATCH)
    assert isinstance(raw, memoryview) and raw.readonly
    assert bytes(raw) == rows(machine, 0, BATCH) and valid == b"\x01" * BATCH
    raw, valid = memmap.read(BATCH, BATCH)  # half in the hole: not one piece of the file
    assert not (isinstance(raw, memoryview) and raw.readonly)
    assert valid[:512] == bytes(512)
    for i in range(BATCH):
        row = bytes(raw[i * STRUCT_PAGE : (i + 1) * STRUCT_PAGE])
        assert row == (machine_row(machine, BATCH + i) if valid[i] else bytes(STRUCT_PAGE)), i
    raw, valid = memmap.read(3 * BATCH, BATCH + 1)  # past the hole: mapped again
    assert isinstance(raw, memoryview) and bytes(raw) == rows(machine, 3 * BATCH, BATCH + 1)


def test_struct_pages_split_over_memory_are_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vmemmap pages that are not one after the other in physical memory (here: the
    translator reports the 2 MiB page as 64 KiB pieces with the second one elsewhere)
    are not one run of the file: the batch is copied, piece by piece, still right."""
    memmap, machine = struct_pages(tmp_path, mapped=True)
    real = memmap.translator.mapping
    piece = 64 << 10

    def split(vaddr: int, read: object = None) -> tuple[int, int] | None:
        got = real(vaddr, read)  # type: ignore[arg-type]
        if got is None:
            return None
        offset = vaddr % piece
        return got[0], min(got[1], piece - offset)

    monkeypatch.setattr(memmap.translator, "mapping", split)
    raw, valid = memmap.read(0, BATCH)  # 64 KiB: exactly one piece, mapped
    assert isinstance(raw, memoryview) and raw.readonly
    assert bytes(raw) == rows(machine, 0, BATCH)
    across = 2 * BATCH + BATCH // 2  # rows 160..224 KiB into the array: past the hole
    raw, valid = memmap.read(across, BATCH)  # across two pieces: contiguous, still mapped
    assert isinstance(raw, memoryview) and bytes(raw) == rows(machine, across, BATCH)
    moved = {MEMMAP_PADDR + 3 * piece: 0x10000000}  # the second piece "elsewhere" (unmapped)

    def scattered(vaddr: int, read: object = None) -> tuple[int, int] | None:
        got = split(vaddr, read)
        if got is None or got[0] not in moved:
            return got
        return moved[got[0]], got[1]

    monkeypatch.setattr(memmap.translator, "mapping", scattered)
    raw, valid = memmap.read(across, BATCH)  # the second half is not after the first
    assert not (isinstance(raw, memoryview) and raw.readonly)
    assert valid == b"\x01" * (BATCH // 2) + bytes(BATCH // 2)  # 0x10000000 is not in the dump
    assert bytes(raw) == rows(machine, across, BATCH // 2) + bytes(BATCH // 2 * STRUCT_PAGE)
