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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from kdumpy.errors import KdumpyError
from kdumpy.vmcore.compression import (
    COMPRESSED_LZO,
    COMPRESSED_SNAPPY,
    COMPRESSED_ZLIB,
    COMPRESSED_ZSTD,
)
from kdumpy.vmcore.diskdump_format import PAGE_DESC

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

COMPRESSIONS = ("none", "zlib", "lzo", "snappy", "zstd")
FLAG_OF = {
    "none": 0,
    "zlib": COMPRESSED_ZLIB,
    "lzo": COMPRESSED_LZO,
    "snappy": COMPRESSED_SNAPPY,
    "zstd": COMPRESSED_ZSTD,
}
Buffer: TypeAlias = Any  # bytes, memoryview or any other object with the buffer protocol
# Compresses the rows ``keep`` of a uint8 [k, page_size] array, one result per row.
BatchCompressor = Callable[[np.ndarray, np.ndarray], Sequence[Buffer]]

# The C loop (_pagepack.c) for the kinds it was built with at install time (none, zlib,
# LZO; snappy and zstd when their headers were there); the Python path below writes the
# same bytes (snappy: cramjam's equally valid encoding, not libsnappy's).
try:
    from kdumpy.collect._pagepack import KINDS as _NATIVE_FLAGS
    from kdumpy.collect._pagepack import pack as _native_pack
except ImportError:  # no compiler or liblzo2-dev at install time
    _native_pack, _NATIVE_FLAGS = None, ()
NATIVE = tuple(kind for kind, flag in FLAG_OF.items() if flag in _NATIVE_FLAGS)


def pack_room(pages: int, page_size: int) -> int:
    """Bytes of output the C loop needs for ``pages`` pages (``PACK_SLACK`` in _pagepack.c:
    a page adds at most ``page_size``, a compressor is given its worst case)."""
    return pages * page_size + page_size // 6 + 64


def _new_compressor(kind: str) -> BatchCompressor:
    """A batch compressor; each thread needs its own (zstd contexts are not shareable).
    The libraries are imported on first use: a dump needs one of them."""
    if kind == "zlib":
        return lambda pages, keep: [zlib.compress(pages[i].data, 1) for i in keep.tolist()]
    if kind == "lzo":
        import lzo  # python-lzo wants bytes

        return lambda pages, keep: [lzo.compress(pages[i].tobytes(), 1, False)
                                    for i in keep.tolist()]  # fmt: skip
    if kind == "snappy":
        import cramjam

        raw = cramjam.snappy.compress_raw
        return lambda pages, keep: [raw(pages[i].data) for i in keep.tolist()]
    if kind == "zstd":
        import zstandard

        return _zstd_batch(zstandard, zstandard.ZstdCompressor(level=1))
    raise KdumpyError(f"unknown compression {kind!r} (choose from {', '.join(COMPRESSIONS)})")


def _zstd_batch(zstandard: Any, cctx: Any) -> BatchCompressor:
    """Every kept page in one call: a frame per page, the same bytes as ``cctx.compress``."""

    def compress(pages: np.ndarray, keep: np.ndarray) -> Sequence[Buffer]:
        if keep.size == 0:
            return []
        segments = np.empty((keep.size, 2), dtype="<u8")
        segments[:, 0] = keep * pages.shape[1]
        segments[:, 1] = pages.shape[1]
        batch = zstandard.BufferWithSegments(pages.data, segments.tobytes())
        frames = cctx.multi_compress_to_buffer(batch, threads=0)
        return [frames[i] for i in range(keep.size)]

    return compress


_local = threading.local()


def _thread_compressor(kind: str) -> BatchCompressor:
    cache: dict[str, BatchCompressor] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    if kind not in cache:
        cache[kind] = _new_compressor(kind)
    return cache[kind]


@dataclass
class PageBatch:
    """The pages of a batch as the writer stores them, in pfn order.

    ``desc`` has one page descriptor (:data:`PAGE_DESC`) per page whose ``offset`` is
    relative to the batch's first stored byte, or -1 for a zero page (the writer points
    it at the dump's shared zero page).  ``data`` holds the stored bytes back to back in
    one or more buffers (written with one ``pwritev``, never joined), ``nbytes`` long.
    """

    desc: np.ndarray
    data: list[Buffer]
    nbytes: int
    zero_count: int


def zero_pages(pages: np.ndarray) -> np.ndarray:
    """Which rows of a uint8 ``[k, page_size]`` array are all zero (8-byte word compare)."""
    if pages.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    words = pages.view(np.uint64) if pages.flags.c_contiguous else pages.copy().view(np.uint64)
    return np.asarray(~words.any(axis=1), dtype=bool)


def compress_pages(
    pages: np.ndarray, rows: np.ndarray | None, kind: str, exclude_zero: bool
) -> PageBatch:
    """Compress the pages ``rows`` of ``pages`` (all when None) as one batch; runs on a
    worker thread.  ``pages`` is read in place (a mapping of the dump: no copy)."""
    if kind not in FLAG_OF:
        raise KdumpyError(f"unknown compression {kind!r} (choose from {', '.join(COMPRESSIONS)})")
    pages = np.ascontiguousarray(pages)
    if kind in NATIVE and _native_pack is not None:
        return _compress_native(pages, rows, kind, exclude_zero)
    return _compress_python(pages if rows is None else pages[rows], kind, exclude_zero)


def _compress_native(
    pages: np.ndarray, rows: np.ndarray | None, kind: str, exclude_zero: bool
) -> PageBatch:
    k, page_size = (pages.shape[0] if rows is None else rows.shape[0]), pages.shape[1]
    if rows is not None:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
    desc = np.empty(k, dtype=PAGE_DESC)
    # A fresh buffer per batch (not zero-filled): the writer may hold it until it flushes.
    out = np.empty(pack_room(k, page_size), dtype=np.uint8)
    assert _native_pack is not None
    used, zeros = _native_pack(
        FLAG_OF[kind], pages, page_size, rows, exclude_zero, out, desc.view(np.uint8)
    )
    return PageBatch(desc, [out[:used].data], used, zeros)


def _compress_python(pages: np.ndarray, kind: str, exclude_zero: bool) -> PageBatch:
    k, page_size = pages.shape
    zero = zero_pages(pages) if exclude_zero else np.zeros(k, dtype=bool)
    sizes = np.full(k, page_size, dtype=np.uint32)
    flags = np.zeros(k, dtype=np.uint32)
    keep = np.flatnonzero(~zero)
    if kind == "none":  # the kept pages as they are, one buffer
        packed: list[Buffer] = [pages[keep].tobytes()]
    else:
        packed = list(_thread_compressor(kind)(pages, keep))
        lengths = np.fromiter(map(len, packed), dtype=np.uint32, count=len(packed))
        smaller = lengths < page_size
        sizes[keep] = np.where(smaller, lengths, page_size)
        flags[keep] = np.where(smaller, FLAG_OF[kind], 0)
        for j in np.flatnonzero(~smaller).tolist():  # no gain: the page is stored raw
            packed[j] = pages[keep[j]].tobytes()
    desc = np.zeros(k, dtype=PAGE_DESC)
    stored = sizes[keep].astype(np.int64)
    desc["offset"] = -1
    desc["offset"][keep] = np.cumsum(stored) - stored
    desc["size"] = sizes
    desc["flags"] = flags
    return PageBatch(desc, packed, int(stored.sum()), int(k - keep.size))


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
