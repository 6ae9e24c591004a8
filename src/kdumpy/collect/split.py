"""``--split``: one dump written as several kdump-compressed files (format.md 1.10).

Every file carries the same main header, the full 1st and 2nd bitmaps and the
notes, and the descriptors and data of its own pfn range only; its data area still
starts after room for the descriptors of *all* dumpable pages, as makedumpfile lays
it out, so each file is readable alone and ``--reassemble`` (or crash/drgn given all
files) sees the whole dump.  The range boundaries are whole split blocks (1 GiB of
pfns by default): file i takes blocks until it holds its share of the dumpable
pages; the last file ends at ``max_mapnr``.
"""

from __future__ import annotations

import time

from kdumpy.collect.bitmap import Bitmap2, PageSelector
from kdumpy.collect.collector import _header_for, _write_kdump
from kdumpy.collect.options import CollectOptions
from kdumpy.collect.output import FileSink
from kdumpy.collect.source import open_source
from kdumpy.collect.stats import Summary
from kdumpy.errors import KdumpyError
from kdumpy.vmcore.kdump_writer import KdumpLayout, KdumpWriter

DEFAULT_SPLITBLOCK_KIB = 1024 * 1024


def split_ranges(bm: Bitmap2, files: int, block_pfns: int) -> list[tuple[int, int]]:
    """``[start, end)`` pfn range of each file, on split-block boundaries."""
    share = -(-bm.num_dumpable // files)
    ranges = []
    start = 0
    for i in range(files):
        if i == files - 1:
            ranges.append((start, bm.max_mapnr))
            break
        end, have = start, 0
        while end < bm.max_mapnr and have < share:
            nxt = min(bm.max_mapnr, end + block_pfns)
            have += bm.count_between(end, nxt)
            end = nxt
        ranges.append((start, end))
        start = end
    return ranges


def collect_split(
    src_path: str,
    dsts: list[str],
    options: CollectOptions,
    splitblock_kib: int = DEFAULT_SPLITBLOCK_KIB,
) -> Summary:
    """Write ``src_path`` filtered into ``len(dsts)`` split files."""
    if options.flat or options.elf:
        raise KdumpyError("--split writes kdump-compressed files only (no -F or -E)")
    start_time = time.monotonic()
    with open_source(src_path) as src:
        level = src.effective_level(options.dump_level)
        selector = PageSelector(
            src.dump, src.max_mapnr, level, src.read_phys, src.read_phys_into, src.map_phys
        )
        bm = Bitmap2(selector, src.max_mapnr, options.cyclic_buffer_kib)
        if not bm.stored:
            raise KdumpyError("--split needs the page bitmap in memory: raise --cyclic-buffer")
        block = max(1, splitblock_kib * 1024 // src.page_size)
        summary = Summary(dump_level=level, total_pages=src.total_pages, outputs=list(dsts))
        summary.excluded = bm.excluded
        summary.dumpable_pages = bm.num_dumpable
        for dst, (lo, hi) in zip(dsts, split_ranges(bm, len(dsts), block), strict=True):
            header = _header_for(src, options, level)
            header.split, header.start_pfn, header.end_pfn = True, lo, hi
            layout = KdumpLayout(src.page_size, src.max_mapnr, len(header.notes), bm.num_dumpable)
            sink = FileSink(dst)
            try:
                writer = KdumpWriter(sink, layout, header, zero_page=bool(level & 1))
                _write_kdump(src, writer, bm, options, summary, (lo, hi))
                sink.commit()
            except BaseException:
                sink.abort()
                raise
            summary.bytes_written += sink.size
    summary.seconds = time.monotonic() - start_time
    return summary
