"""The page packer in Python: what ``_pagepack.c``'s ``pack`` does, a Python call per page.

:mod:`kdumpy.collect.compress` comes here only for a compression the C extension was
built without (or with no extension at all); the bytes written are the same (snappy:
cramjam's equally valid encoding, not libsnappy's).  The compression bindings are
imported on first use: a dump needs one of them.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Any, TypeAlias

from kdumpy.errors import KdumpyError
from kdumpy.vmcore.diskdump_format import PAGE_DESC

Buffer: TypeAlias = Any  # bytes, memoryview or any other object with the buffer protocol
# Compresses one page (a memoryview of page_size bytes).
PageCompressor = Callable[[memoryview], Buffer]


def _new_compressor(kind: str) -> PageCompressor:
    """A page compressor; each thread needs its own (zstd contexts are not shareable)."""
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
    raise KdumpyError(f"unknown compression {kind!r}")


_local = threading.local()


def _thread_compressor(kind: str) -> PageCompressor:
    cache: dict[str, PageCompressor] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    if kind not in cache:
        cache[kind] = _new_compressor(kind)
    return cache[kind]


def compress_pages(
    view: memoryview, page_size: int, select: bytes | bytearray | None, kind: str, flag: int,
    exclude_zero: bool,
) -> tuple[bytearray, list[Buffer], int, int, int]:  # fmt: skip
    """The pages ``select`` marks (None: all) packed as ``kind`` (descriptor flag
    ``flag``): ``(desc, data, stored bytes, zero pages, pages)``, as
    :class:`kdumpy.collect.compress.PageBatch` holds them."""
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
        stored, stored_flag = (compress(page), flag) if compress else (b"", 0)
        if not compress or len(stored) >= page_size:  # no gain: the page is stored raw
            stored, stored_flag = page.tobytes(), 0
        PAGE_DESC.pack_into(desc, j * PAGE_DESC.size, used, len(stored), stored_flag, 0)
        data.append(stored)
        used += len(stored)
    return desc, data, used, zeros, len(rows)
