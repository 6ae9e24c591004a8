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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdumpy.errors import KdumpyError
from kdumpy.vmcore.compression import (
    COMPRESSED_LZO,
    COMPRESSED_SNAPPY,
    COMPRESSED_ZLIB,
    COMPRESSED_ZSTD,
)

Compressor = Callable[[bytes], bytes]
COMPRESSIONS = ("none", "zlib", "lzo", "snappy", "zstd")
FLAG_OF = {
    "none": 0,
    "zlib": COMPRESSED_ZLIB,
    "lzo": COMPRESSED_LZO,
    "snappy": COMPRESSED_SNAPPY,
    "zstd": COMPRESSED_ZSTD,
}


def _new_compressor(kind: str) -> Compressor | None:
    """A page compressor; each thread needs its own (zstd contexts are not shareable)."""
    if kind == "none":
        return None
    if kind == "zlib":
        return lambda page: zlib.compress(page, 1)
    if kind == "lzo":
        import lzo

        return lambda page: lzo.compress(page, 1, False)
    if kind == "snappy":
        import cramjam

        return lambda page: bytes(cramjam.snappy.compress_raw(page))
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=1).compress
    raise KdumpyError(f"unknown compression {kind!r} (choose from {', '.join(COMPRESSIONS)})")


_local = threading.local()


def _thread_compressor(kind: str) -> Compressor | None:
    cache: dict[str, Compressor | None] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    if kind not in cache:
        cache[kind] = _new_compressor(kind)
    return cache[kind]


@dataclass
class PageBatch:
    """Compressed pages of a batch in pfn order: per-page sizes/flags and their data.

    Zero pages (when excluded) have ``zero`` set, size 0 and no data.  ``data`` is a
    list of buffers in page order (written with one ``pwritev``, never joined).
    """

    pfns: np.ndarray
    sizes: np.ndarray
    flags: np.ndarray
    zero: np.ndarray
    data: list[bytes]


def zero_pages(pages: np.ndarray) -> np.ndarray:
    """Which rows of a uint8 ``[k, page_size]`` array are all zero (8-byte word compare)."""
    if pages.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    words = pages.view(np.uint64) if pages.flags.c_contiguous else pages.copy().view(np.uint64)
    return np.asarray(~words.any(axis=1), dtype=bool)


def compress_pages(pfns: np.ndarray, pages: np.ndarray, kind: str, exclude_zero: bool) -> PageBatch:
    """Compress the pages of one batch (runs on a worker thread)."""
    k, page_size = pages.shape
    zero = zero_pages(pages) if exclude_zero else np.zeros(k, dtype=bool)
    sizes = np.zeros(k, dtype=np.uint32)
    flags = np.zeros(k, dtype=np.uint32)
    comp = _thread_compressor(kind)
    if comp is None:  # no compression: the kept pages as they are, one buffer
        sizes[~zero] = page_size
        return PageBatch(pfns, sizes, flags, zero, [pages[~zero].tobytes()])
    flag = FLAG_OF[kind]
    parts: list[bytes] = []
    # python-lzo wants bytes; the others take a buffer (no copy of the page).
    as_bytes = kind == "lzo"
    for i in np.flatnonzero(~zero).tolist():
        row = pages[i]
        packed = comp(row.tobytes() if as_bytes else row.data)
        if len(packed) < page_size:
            parts.append(packed)
            sizes[i] = len(packed)
            flags[i] = flag
        else:
            parts.append(row.tobytes())
            sizes[i] = page_size
    return PageBatch(pfns, sizes, flags, zero, parts)


class OrderedPool:
    """Run jobs on ``threads`` workers (inline when 0/1) and yield results in submission order."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
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
