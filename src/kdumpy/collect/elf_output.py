"""Filtered ELF output (``-E``): which PT_LOADs to write, and their page data.

Every PT_LOAD of the source is cut where at least :data:`PFN_EXCLUDED` (256)
consecutive pages are excluded, as makedumpfile does; shorter excluded runs are
written with their real contents (a new program header costs more than a few
pages) unless they end the load.  Zero pages count as excluded here when dump level
bit 1 is set, so they are found by reading the kept pages once before anything is
written.
"""

from __future__ import annotations

import numpy as np

from kdumpy.collect.bitmap import Bitmap2
from kdumpy.collect.compress import zero_pages
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


def _drop_zero_pages(src: DumpSource, start: int, keep: np.ndarray) -> int:
    """Clear zero pages from ``keep`` (pfns from ``start``); returns how many."""
    dropped = 0
    for b in range(0, keep.shape[0], READ_BATCH):
        sel = np.flatnonzero(keep[b : b + READ_BATCH])
        if sel.size:
            zero = zero_pages(src.read_pages(start + b, min(READ_BATCH, keep.shape[0] - b), sel))
            keep[b + sel[zero]] = False
            dropped += int(np.count_nonzero(zero))
    return dropped


def split_load(keep: np.ndarray) -> list[tuple[int, int, int]]:
    """``(first, file_pages, mem_pages)`` pieces of a load, cut at long excluded runs."""
    n = keep.shape[0]
    edges = np.flatnonzero(np.diff(np.concatenate(([1], keep.view(np.int8), [1]))))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    long_runs = [(a, b) for a, b in runs if b - a >= PFN_EXCLUDED]
    pieces = []
    first = 0
    for a, b in long_runs:
        pieces.append((first, a - first, b - first))
        first = b
    if first < n or not pieces:
        # Excluded pages at the end of a load, however few, only extend p_memsz: makedumpfile
        # copies a short excluded run only when a kept page follows it.
        kept = np.flatnonzero(keep[first:])
        pieces.append((first, int(kept[-1]) + 1 if kept.size else 0, n - first))
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
        kept_total += int(np.count_nonzero(keep))
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
            pages = src.read_pages(first + b, n, np.arange(n))
            elf.write_data(index, b * ps, pages.reshape(-1).data)
            done += n
            summary.written_pages += n
            if options.progress is not None:
                options.progress("Copying data", done, total)
