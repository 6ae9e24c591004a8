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
# LZO; snappy and zstd when their headers were there); compress_py, the Python path, writes the
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
NATIVE = tuple(kind for kind, flag in FLAG_OF.items() if flag in _NATIVE_FLAGS)


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
    # The per-page Python path, and with it the compression bindings, zlib and threading,
    # only for a kind the extension lacks (start-up: 0.6 ms of every collect).
    from kdumpy.collect import compress_py

    desc, data, used, zeros, count = compress_py.compress_pages(
        memoryview(pages).cast("B"), page_size, select, kind, FLAG_OF[kind], exclude_zero
    )
    return PageBatch(desc, data, used, zeros, count)


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
