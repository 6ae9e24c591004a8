"""Per-page compression for kdump-compressed output, serial or on a thread pool.

Each page is compressed on its own, exactly as makedumpfile does (format.md 1.6):
zlib level 1 as a complete zlib stream, raw LZO1X-1 without a header, raw snappy
blocks, a zstd level-1 frame.  The result is kept only when strictly smaller than
the page; otherwise the page is stored raw.  With ``exclude_zero`` (dump level bit
1) all-zero pages are not compressed at all: they share one zero page in the file.

zlib, zstd and LZO release the GIL while they work, so a thread pool gives real
parallelism; :class:`OrderedPool` keeps the batches in pfn order and bounds how
many are in flight (memory stays bounded).
"""

from __future__ import annotations

import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias

from kdumpy.errors import KdumpyError
from kdumpy.vmcore.compression import (
    COMPRESSED_LZO,
    COMPRESSED_SNAPPY,
    COMPRESSED_ZLIB,
    COMPRESSED_ZSTD,
)
from kdumpy.vmcore.diskdump_format import PAGE_DESC

# The C loop (_pagepack.c) for the kinds it was built with at install time (none, zlib,
# LZO; snappy and zstd when their headers were there); the Python path below writes the
# same bytes (snappy: cramjam's equally valid encoding, not libsnappy's).  Descriptor
# offsets are made absolute in C too, or over numpy without the extension.
try:
    from kdumpy.collect._pagepack import KINDS as _NATIVE_FLAGS
    from kdumpy.collect._pagepack import pack as _native_pack
    from kdumpy.collect._pagepack import rebase
except ImportError:  # no compiler or liblzo2-dev at install time
    _native_pack, _NATIVE_FLAGS = None, ()
    from kdumpy.collect.fallback import rebase

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["COMPRESSIONS", "FLAG_OF", "NATIVE", "OrderedPool", "PageBatch", "compress_pages",
           "rebase"]  # fmt: skip

COMPRESSIONS = ("none", "zlib", "lzo", "snappy", "zstd")
FLAG_OF = {
    "none": 0,
    "zlib": COMPRESSED_ZLIB,
    "lzo": COMPRESSED_LZO,
    "snappy": COMPRESSED_SNAPPY,
    "zstd": COMPRESSED_ZSTD,
}
Buffer: TypeAlias = Any  # bytes, memoryview or any other object with the buffer protocol
# Compresses one page (a memoryview of page_size bytes).
PageCompressor = Callable[[memoryview], Buffer]
NATIVE = tuple(kind for kind, flag in FLAG_OF.items() if flag in _NATIVE_FLAGS)


def _new_compressor(kind: str) -> PageCompressor:
    """A page compressor; each thread needs its own (zstd contexts are not shareable).
    The libraries are imported on first use: a dump needs one of them."""
    if kind == "zlib":
        return lambda page: zlib.compress(page, 1)
    if kind == "lzo":
        import lzo  # python-lzo wants bytes

        return lambda page: lzo.compress(page.tobytes(), 1, False)
    if kind == "snappy":
        import cramjam

        return cramjam.snappy.compress_raw
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=1).compress
    raise KdumpyError(f"unknown compression {kind!r} (choose from {', '.join(COMPRESSIONS)})")


_local = threading.local()


def _thread_compressor(kind: str) -> PageCompressor:
    cache: dict[str, PageCompressor] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    if kind not in cache:
        cache[kind] = _new_compressor(kind)
    return cache[kind]


class PageBatch:
    """The pages of a batch as the writer stores them, in pfn order.

    ``desc`` has one page descriptor (:data:`PAGE_DESC`, ``count`` of them) per page
    whose ``offset`` is relative to the batch's first stored byte, or -1 for a zero page
    (:func:`rebase` makes them absolute).  ``data`` holds the stored bytes back to back
    in one or more buffers (written with one ``pwritev``, never joined), ``nbytes`` long.
    """

    __slots__ = ("desc", "data", "nbytes", "zero_count", "count")

    def __init__(
        self, desc: bytearray, data: list[Buffer], nbytes: int, zero_count: int, count: int
    ) -> None:
        self.desc = desc
        self.data = data
        self.nbytes = nbytes
        self.zero_count = zero_count
        self.count = count


def compress_pages(
    pages: Buffer, page_size: int, select: bytes | bytearray | None, kind: str,
    exclude_zero: bool,
) -> PageBatch:  # fmt: skip
    """Compress the pages of ``pages`` (whole pages back to back) that ``select`` marks
    (one byte per page, nonzero: kept; None: all) as one batch; runs on a worker thread.
    ``pages`` is read in place (a mapping of the dump: no copy)."""
    if kind not in FLAG_OF:
        raise KdumpyError(f"unknown compression {kind!r} (choose from {', '.join(COMPRESSIONS)})")
    if kind in NATIVE and _native_pack is not None:
        data, desc, zeros = _native_pack(FLAG_OF[kind], pages, page_size, select, exclude_zero)
        count = len(desc) // PAGE_DESC.size
        return PageBatch(desc, [data], len(data), zeros, count)
    return _compress_python(memoryview(pages).cast("B"), page_size, select, kind, exclude_zero)


def _compress_python(
    view: memoryview, page_size: int, select: bytes | bytearray | None, kind: str,
    exclude_zero: bool,
) -> PageBatch:  # fmt: skip
    """The C loop's result, a Python call per page (kinds the extension was built without)."""
    npages = view.nbytes // page_size
    rows = range(npages) if select is None else [i for i in range(npages) if select[i]]
    desc = bytearray(PAGE_DESC.size * len(rows))
    compress = None if kind == "none" else _thread_compressor(kind)
    zero = bytes(page_size)
    data: list[Buffer] = []
    used = zeros = 0
    for j, i in enumerate(rows):
        page = view[i * page_size : (i + 1) * page_size]
        if exclude_zero and page == zero:
            PAGE_DESC.pack_into(desc, j * PAGE_DESC.size, -1, page_size, 0, 0)
            zeros += 1
            continue
        stored, flag = (compress(page), FLAG_OF[kind]) if compress else (b"", 0)
        if not compress or len(stored) >= page_size:  # no gain: the page is stored raw
            stored, flag = page.tobytes(), 0
        PAGE_DESC.pack_into(desc, j * PAGE_DESC.size, used, len(stored), flag, 0)
        data.append(stored)
        used += len(stored)
    return PageBatch(desc, data, used, zeros, len(rows))


class OrderedPool:
    """Run jobs on ``threads`` workers (inline when 0/1) and yield results in submission order."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        if threads > 1:
            # Imported here: the capture kernel's one CPU never needs a pool, and
            # concurrent.futures costs start-up time before the first page.
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(threads)
        self._queue: deque[Future[Any]] = deque()
        self._limit = threads + 1  # batches in flight: bounds memory, keeps workers busy

    def submit(self, fn: Callable[..., Any], *args: Any) -> Iterator[Any]:
        """Queue a job; yields results that are ready and must be consumed now (in order)."""
        if self._pool is None:
            yield fn(*args)
            return
        self._queue.append(self._pool.submit(fn, *args))
        while len(self._queue) > self._limit:
            yield self._queue.popleft().result()

    def drain(self) -> Iterator[Any]:
        """The remaining results, in order."""
        while self._queue:
            yield self._queue.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            for fut in self._queue:
                fut.cancel()
            self._queue.clear()
            self._pool.shutdown(wait=True)
