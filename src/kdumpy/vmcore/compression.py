"""Per-page decompression for kdump-compressed dumps (page descriptor ``flags``).

makedumpfile and QEMU compress each page on its own: zlib (a complete zlib stream),
raw LZO1X without a header, raw snappy blocks (not the framing format), or a zstd
frame.  Every page must come back exactly ``page_size`` bytes long.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import Any

COMPRESSED_ZLIB = 0x1
COMPRESSED_LZO = 0x2
COMPRESSED_SNAPPY = 0x4
COMPRESSED_INCOMPLETE = 0x8  # header status only: the dump was cut short
EXCLUDED_VMEMMAP = 0x10  # header status only: makedumpfile -e
COMPRESSED_ZSTD = 0x20

COMPRESSION_NAMES = {
    COMPRESSED_ZLIB: "zlib",
    COMPRESSED_LZO: "lzo",
    COMPRESSED_SNAPPY: "snappy",
    COMPRESSED_ZSTD: "zstd",
}


def _zlib(data: bytes, page_size: int) -> bytes:
    return zlib.decompress(data, bufsize=page_size)


# The compression libraries are imported on first use: an ELF-only reader (the capture
# kernel's initramfs) does not need them.


def _lzo(data: bytes, page_size: int) -> bytes:
    import lzo

    return bytes(lzo.decompress(data, False, page_size))


def _snappy(data: bytes, page_size: int) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.decompress_raw(data))


@functools.cache
def _zstd_decompressor() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor()


def _zstd_page(data: bytes, page_size: int) -> bytes:
    return _zstd_decompressor().decompress(data, max_output_size=page_size)


DECOMPRESSORS: dict[int, Callable[[bytes, int], bytes]] = {
    COMPRESSED_ZLIB: _zlib,
    COMPRESSED_LZO: _lzo,
    COMPRESSED_SNAPPY: _snappy,
    COMPRESSED_ZSTD: _zstd_page,
}


class DecompressionError(ValueError):
    """A page's data does not decompress to exactly one page."""


def decompress_page(flags: int, data: bytes, page_size: int) -> bytes:
    """Decompress one page; :class:`DecompressionError` (with the reason) if it fails."""
    func = DECOMPRESSORS.get(flags)
    if func is None:
        raise DecompressionError(f"unknown compression flags {flags:#x}")
    try:
        out = func(data, page_size)
    except Exception as exc:  # each library has its own error types
        raise DecompressionError(f"{COMPRESSION_NAMES[flags]} data is corrupt ({exc})") from None
    if len(out) != page_size:
        raise DecompressionError(
            f"{COMPRESSION_NAMES[flags]} data decompresses to {len(out)} bytes, not {page_size}"
        )
    return out
