"""The collector: read a dump, keep the pages the dump level wants, write a new dump.

Two passes over the pfns, like makedumpfile's cyclic mode: the first computes the
2nd bitmap and counts the dumpable pages (the data area starts after one descriptor
per dumpable page, so the count is needed before any data is written); the second
writes headers, bitmaps, descriptors and compressed pages in pfn order.  The 2nd
bitmap is kept packed (1 bit per page, 32 KiB per GiB of RAM) when it fits the
cyclic buffer and recomputed in the second pass otherwise, so memory does not grow
with the dump beyond that budget.  Page data is read in batches of
:data:`PAGE_BATCH` pages (:data:`THREAD_BATCH` with threads) and compressed on an
ordered thread pool.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from kdumpy.collect.bitmap import Bitmap2, PageSelector, pack_mask
from kdumpy.collect.compress import (
    COMPRESSIONS,
    FLAG_OF,
    OrderedPool,
    PageBatch,
    compress_pages,
    rebase,
)
from kdumpy.collect.options import CollectOptions
from kdumpy.collect.output import DiskFullError, FileSink
from kdumpy.collect.source import DumpSource, open_source
from kdumpy.collect.stats import Summary
from kdumpy.errors import KdumpyError
from kdumpy.vmcore.kdump_writer import KdumpHeader, KdumpLayout, KdumpWriter, Sink

if TYPE_CHECKING:
    from kdumpy.vmcore.flat_writer import FlatSink

# Pages read and compressed per batch (2 MiB).  A batch's packed pages are written as
# soon as they are packed: up to 2 MiB they are still in the CPU's cache when the kernel
# copies them into the page cache.  At 4 MiB that copy read them from memory and cost 5-7
# times more (4 GiB dump, -l -d 1: the kernel's copy 0.26 -> 0.04 s, perf; ~0.1 s of CPU
# per 4 GiB written), for no gain at -d 31.
PAGE_BATCH = 512
# With --num-threads N > 1, the pages of one job handed to a worker thread.  Each job
# costs wake-ups (handing it over, its result back) and, when its mapping is unmapped, a
# TLB shoot-down: inter-processor interrupts, in a VM exits to the host.  At 2 MiB per job
# they cost more CPU than the workers saved (16 GiB, -l -d 1, 2 threads: 5.4 s of CPU,
# 3.1 s wall against one thread's 3.4 s).  The packed pages come from another CPU's cache
# then anyway, so the 2 MiB limit above does not apply.
THREAD_BATCH = 4 * PAGE_BATCH


def _header_for(src: DumpSource, options: CollectOptions, level: int) -> KdumpHeader:
    return KdumpHeader(
        utsname=src.utsname,
        timestamp=src.crash_time,
        compression_flag=FLAG_OF[options.compression],
        nr_cpus=src.nr_cpus,
        phys_base=src.phys_base,
        dump_level=level,
        notes=src.notes,
        offset_vmcoreinfo_in_notes=src.vmcoreinfo_offset,
        size_vmcoreinfo=src.vmcoreinfo_size,
    )


def _write_kdump(
    src: DumpSource,
    writer: KdumpWriter,
    bm: Bitmap2,
    options: CollectOptions,
    summary: Summary,
    pfn_range: tuple[int, int] | None = None,
) -> None:
    """Headers, both bitmaps, then descriptors and page data of ``pfn_range`` (all if None)."""
    level = writer.header.dump_level
    writer.write_headers()
    lo, hi = pfn_range or (0, src.max_mapnr)
    for start, end in bm.cycles():
        writer.write_bitmap(1, start, pack_mask(bm.selector.bitmap1(start, end)))
    pool = OrderedPool(options.num_threads)
    step = PAGE_BATCH if options.num_threads <= 1 else THREAD_BATCH
    # Workers read their batch themselves where the source allows it (mapping the file's
    # pages is then done in parallel too); otherwise this thread reads it.
    read_here = options.num_threads <= 1 or not src.concurrent_reads
    exclude_zero = bool(level & 1)
    try:
        for index, (start, end) in enumerate(bm.cycles()):
            packed, bits = bm.packed(index, start, end)
            writer.write_bitmap(2, start, packed)
            if bits is None:
                bits = bm.bits(index, start, end)
            first, last = max(start, lo), min(end, hi)
            b = first
            while b < last:
                # Straight to the batch of the next kept pfn: at -d 31 most batches keep
                # nothing (3 GiB: 1459 of 1536), and a Python turn for each cost 3 ms.
                kept = bits.find(1, b - start, last - start)
                if kept < 0:
                    break
                b = first + (start + kept - first) // step * step
                n = min(step, last - b)
                select = bits[b - start : b - start + n]
                if read_here:
                    pages, rows = src.read_batch(b, n, select)
                    done = pool.submit(compress_pages, pages, src.page_size, rows,
                                       options.compression, exclude_zero)  # fmt: skip
                else:
                    done = pool.submit(_read_and_pack, src, b, n, select, options.compression,
                                       exclude_zero)  # fmt: skip
                for batch in done:
                    _add(writer, batch, summary)
                b += n
                if options.progress is not None:
                    options.progress("Copying data", b - lo, hi - lo)
        for batch in pool.drain():
            _add(writer, batch, summary)
        writer.flush()
        if options.progress is not None:
            options.progress("Copying data", hi - lo, hi - lo)
    finally:
        pool.close()


def _read_and_pack(
    src: DumpSource, start_pfn: int, count: int, select: bytearray, compression: str,
    exclude_zero: bool,
) -> PageBatch:  # fmt: skip
    """One batch read and compressed on a worker thread (its mapping is unmapped there too)."""
    pages, rows = src.read_batch(start_pfn, count, select)
    return compress_pages(pages, src.page_size, rows, compression, exclude_zero)


def _add(writer: KdumpWriter, batch: PageBatch, summary: Summary) -> None:
    rebase(batch.desc, writer.next_data_offset, writer.zero_offset)
    writer.add_pages(batch.desc, batch.data, batch.nbytes)
    summary.zero_pages += batch.zero_count
    summary.written_pages += batch.count


def _open_sink(
    dst: str | None, flat: bool, stream: BinaryIO | None
) -> tuple[Sink, FileSink | None, FlatSink | None]:
    """Where the dump goes: ``(sink, the file under it or None, the flattened stream or None)``."""
    if not flat:
        if dst is None:
            raise KdumpyError(
                "no destination file given (use -F to write a flattened dump to stdout)"
            )
        fsink = FileSink(dst)
        return fsink, fsink, None
    # Imported only when asked for, as the ELF writer (-E) below: every module a collect
    # does not need is start-up time before its first page, and -F and -E are the rare ones.
    from kdumpy.vmcore.flat_writer import FlatSink

    if dst is None:
        out = FlatSink(stream if stream is not None else sys.stdout.buffer)
        return out, None, out
    fsink = FileSink(dst)
    out = FlatSink(_FileStream(fsink), dst)
    return out, fsink, out


class _FileStream:
    """A sequential stream over a FileSink (a flattened dump written to a file)."""

    def __init__(self, sink: FileSink) -> None:
        self.sink = sink
        self.pos = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sink.write_at(self.pos, data)
        self.pos += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def collect(
    src_path: str, dst: str | None, options: CollectOptions, stream: BinaryIO | None = None
) -> Summary:
    """Filter and write one dump file (kdump-compressed, flattened with ``flat``, or ELF)."""
    if options.compression not in COMPRESSIONS:
        choices = ", ".join(COMPRESSIONS)
        raise KdumpyError(f"unknown compression {options.compression!r} (choose from {choices})")
    if options.elf and options.compression != "none":
        raise KdumpyError("-E (ELF output) cannot be combined with compression")
    start_time = time.monotonic()
    with open_source(src_path) as src:
        levels = list(options.dump_levels)
        while True:
            level = src.effective_level(levels.pop(0))
            summary = Summary(dump_level=level, output=dst or "<stdout>", warnings=src.warnings)
            try:
                _collect_once(src, dst, options, level, summary, stream, last_try=not levels)
            except DiskFullError:
                if not levels:
                    raise
                continue  # makedumpfile -d 11,31: try the next level
            summary.seconds = time.monotonic() - start_time
            return summary


def _collect_once(
    src: DumpSource,
    dst: str | None,
    options: CollectOptions,
    level: int,
    summary: Summary,
    stream: BinaryIO | None,
    last_try: bool,
) -> None:
    selector = PageSelector(
        src.dump, src.max_mapnr, level, src.read_phys, src.read_phys_into, src.map_phys
    )
    bm = Bitmap2(selector, src.max_mapnr, options.cyclic_buffer_kib, options.progress)
    summary.total_pages = src.total_pages
    summary.excluded = bm.excluded
    summary.dumpable_pages = bm.num_dumpable
    sink, fsink, flat = _open_sink(dst, options.flat, stream)
    mark_incomplete: Callable[[], None] | None = None
    try:
        if options.elf:
            from kdumpy.collect.elf_output import write_elf
            from kdumpy.vmcore.elf_writer import ElfWriter

            elf = ElfWriter(sink, src.page_size, src.notes, src.dump.arch.elf_machine)
            mark_incomplete = elf.mark_incomplete
            write_elf(src, elf, bm, level, summary, options)
        else:
            header = _header_for(src, options, level)
            layout = KdumpLayout(src.page_size, src.max_mapnr, len(header.notes), bm.num_dumpable)
            writer = KdumpWriter(sink, layout, header, zero_page=bool(level & 1))
            mark_incomplete = writer.mark_incomplete
            _write_kdump(src, writer, bm, options, summary)
        if flat is not None:
            flat.finish()
        if fsink is not None:
            fsink.commit()
            summary.bytes_written = fsink.size
        elif flat is not None:
            summary.bytes_written = flat.bytes_written
    except DiskFullError as exc:
        if fsink is None or not last_try or mark_incomplete is None or flat is not None:
            if fsink is not None:
                fsink.abort()
            raise
        summary.incomplete = True
        try:
            mark_incomplete()  # rewrites block 0, which is already allocated
            fsink.commit()
        except KdumpyError:
            os.replace(fsink.tmp_path, fsink.path)
        raise DiskFullError(
            f"{dst}: {str(exc).split(': ', 1)[-1]}; the dump is marked incomplete "
            f"({summary.written_pages} of {summary.dumpable_pages} pages written)"
        ) from None
    except BaseException:
        if fsink is not None:
            fsink.abort()
        raise
