"""Filtered ELF output (``-E``): which PT_LOADs to write, and their page data.

Every PT_LOAD of the source is cut where at least :data:`PFN_EXCLUDED` (256)
consecutive pages are excluded, as makedumpfile does; shorter excluded runs are
written with their real contents (a new program header costs more than a few
pages) unless they end the load.  Zero pages count as excluded here when dump level
bit 1 is set, so they are found by reading the kept pages once before anything is
written.
"""

from __future__ import annotations

from kdumpy.collect.bitmap import Bitmap2
from kdumpy.collect.options import CollectOptions
from kdumpy.collect.source import DumpSource
from kdumpy.collect.stats import Summary
from kdumpy.vmcore.elf_writer import ElfWriter, Load

PFN_EXCLUDED = 256
READ_BATCH = 1024


def _source_loads(src: DumpSource) -> list[tuple[int, int, int]]:
    """``(start_pfn, end_pfn, vaddr_of_start)`` of each source PT_LOAD (or RAM range)."""
    shift = src.page_size.bit_length() - 1
    loads = src.dump.stated_mappings()
    if loads:
        return [(s.paddr >> shift, (s.paddr + s.size) >> shift,
                 s.vaddr + ((((s.paddr >> shift) << shift)) - s.paddr)) for s in loads]  # fmt: skip
    return [(s, e, s << shift) for s, e in src.ram_ranges]


def _drop_zero_pages(src: DumpSource, start: int, keep: bytearray) -> int:
    """Clear zero pages from ``keep`` (pfns from ``start``); returns how many."""
    dropped, ps = 0, src.page_size
    zero = bytes(ps)
    for b in range(0, len(keep), READ_BATCH):
        n = min(READ_BATCH, len(keep) - b)
        select = keep[b : b + n]
        rows = [i for i in range(n) if select[i]]
        if not rows:
            continue
        data = memoryview(src.read_pages(start + b, n, select)).cast("B")
        for j, i in enumerate(rows):
            if data[j * ps : (j + 1) * ps] == zero:
                keep[b + i] = 0
                dropped += 1
    return dropped


def _zero_runs(keep: bytes | bytearray) -> list[tuple[int, int]]:
    """``[a, b)`` runs of excluded (0) pfns."""
    runs, a = [], keep.find(0)
    while a >= 0:
        b = keep.find(1, a)
        b = len(keep) if b < 0 else b
        runs.append((a, b))
        a = keep.find(0, b)
    return runs


def split_load(keep: bytes | bytearray) -> list[tuple[int, int, int]]:
    """``(first, file_pages, mem_pages)`` pieces of a load (one byte per pfn, 1: kept),
    cut at long excluded runs."""
    n = len(keep)
    long_runs = [(a, b) for a, b in _zero_runs(keep) if b - a >= PFN_EXCLUDED]
    pieces = []
    first = 0
    for a, b in long_runs:
        pieces.append((first, a - first, b - first))
        first = b
    if first < n or not pieces:
        # Excluded pages at the end of a load, however few, only extend p_memsz: makedumpfile
        # copies a short excluded run only when a kept page follows it.
        last = keep.rfind(1, first)
        pieces.append((first, last + 1 - first if last >= 0 else 0, n - first))
    return [p for p in pieces if p[2] > 0]


def write_elf(
    src: DumpSource,
    elf: ElfWriter,
    bm: Bitmap2,
    level: int,
    summary: Summary,
    options: CollectOptions,
) -> None:
    """Compute the loads, then write headers, notes and page data."""
    ps = src.page_size
    plan: list[tuple[int, int, int]] = []  # (first pfn, file pages, load index)
    loads: list[Load] = []
    kept_total = 0
    for start, end, vaddr in _source_loads(src):
        if end <= start:
            continue
        keep = bm.range_bits(start, end)
        if level & 1:
            summary.zero_pages += _drop_zero_pages(src, start, keep)
        kept_total += keep.count(1)
        pieces = split_load(keep)
        for i, (first, file_pages, mem_pages) in enumerate(pieces, 1):
            plan.append((start + first, file_pages, len(loads)))
            paddr, size = (start + first) * ps, mem_pages * ps
            loads.append(Load(paddr, vaddr + first * ps, file_pages * ps, size, i == len(pieces)))
    summary.dumpable_pages = kept_total + (summary.zero_pages if level & 1 else 0)
    elf.write_headers(loads)
    total = sum(p[1] for p in plan)
    done = 0
    for first, file_pages, index in plan:
        for b in range(0, file_pages, READ_BATCH):
            n = min(READ_BATCH, file_pages - b)
            pages = src.read_pages(first + b, n, bytearray(b"\x01" * n))
            elf.write_data(index, b * ps, memoryview(pages).cast("B"))
            done += n
            summary.written_pages += n
            if options.progress is not None:
                options.progress("Copying data", done, total)
