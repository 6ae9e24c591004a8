"""Per-page decompression for kdump-compressed dumps (page descriptor ``flags``).

makedumpfile and QEMU compress each page on its own: zlib (a complete zlib stream),
raw LZO1X without a header, raw snappy blocks (not the framing format), or a zstd
frame.  Every page must come back exactly ``page_size`` bytes long.

The data is untrusted: no decompressor may produce (or allocate) more than one page,
whatever the data claims.  zlib stops at ``max_length``; zstd's frame header and
snappy's leading varint declare the output size, which is checked before any
allocation; LZO decompresses into a page-sized buffer with the safe decoder.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

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


class DecompressionError(ValueError):
    """A page's data does not decompress to exactly one page."""


# The compression libraries are imported on first use: an ELF-only reader (the capture
# kernel's initramfs) does not need them.


def _make_lzo() -> Callable[[bytes, int], bytes]:
    import lzo

    return lambda data, page_size: lzo.decompress(data, False, page_size)


def _make_snappy() -> Callable[[bytes, int], bytes]:
    import cramjam

    snappy = cramjam.snappy

    def decompress(data: bytes, page_size: int) -> bytes:
        declared = snappy.decompress_raw_len(data)
        if declared != page_size:
            raise DecompressionError(f"snappy data declares {declared} bytes, not {page_size}")
        out = bytearray(page_size)
        size = snappy.decompress_raw_into(data, out)
        return bytes(out) if size == page_size else bytes(out[:size])

    return decompress


def _make_zstd() -> Callable[[bytes, int], bytes]:
    import zstandard

    frame_size = zstandard.frame_content_size
    unknown = zstandard.CONTENTSIZE_UNKNOWN
    # With a content size in the frame header, zstandard allocates that much whatever
    # max_output_size says: check the header first.
    decompress_frame = zstandard.ZstdDecompressor().decompress

    def decompress(data: bytes, page_size: int) -> bytes:
        declared = frame_size(data)
        if declared not in (unknown, page_size):
            raise DecompressionError(f"zstd frame declares {declared} bytes, not {page_size}")
        return decompress_frame(data, max_output_size=page_size)

    return decompress


def _make_zlib() -> Callable[[bytes, int], bytes]:
    def decompress(data: bytes, page_size: int) -> bytes:
        stream = zlib.decompressobj()
        out = stream.decompress(data, page_size)  # never more than a page
        if not stream.eof:
            raise DecompressionError("zlib stream does not end within one page")
        return out

    return decompress


_FACTORIES: dict[int, Callable[[], Callable[[bytes, int], bytes]]] = {
    COMPRESSED_ZLIB: _make_zlib,
    COMPRESSED_LZO: _make_lzo,
    COMPRESSED_SNAPPY: _make_snappy,
    COMPRESSED_ZSTD: _make_zstd,
}
_DECOMPRESSORS: dict[int, Callable[[bytes, int], bytes]] = {}


def decompressor(flags: int) -> Callable[[bytes, int], bytes]:
    """``f(data, page_size) -> bytes`` for a descriptor's flags (KeyError if unknown)."""
    func = _DECOMPRESSORS.get(flags)
    if func is None:
        func = _DECOMPRESSORS[flags] = _FACTORIES[flags]()
    return func


def decompress_page(flags: int, data: bytes, page_size: int) -> bytes:
    """Decompress one page; :class:`DecompressionError` (with the reason) if it fails."""
    try:
        func = decompressor(flags)
    except KeyError:
        raise DecompressionError(f"unknown compression flags {flags:#x}") from None
    try:
        out = func(data, page_size)
    except Exception as exc:  # each library has its own error types, and ours
        raise DecompressionError(f"{COMPRESSION_NAMES[flags]} data is corrupt ({exc})") from None
    if len(out) != page_size:
        raise DecompressionError(
            f"{COMPRESSION_NAMES[flags]} data decompresses to {len(out)} bytes, not {page_size}"
        )
    return out
