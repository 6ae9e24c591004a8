"""Per-page decompression for kdump-compressed dumps (page descriptor ``flags``).

makedumpfile and QEMU compress each page on its own: zlib (a complete zlib stream),
raw LZO1X without a header, raw snappy blocks (not the framing format), or a zstd
frame.  Every page must come back exactly ``page_size`` bytes long.
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


def _zlib(data: bytes, page_size: int) -> bytes:
    return zlib.decompress(data, bufsize=page_size)


# The compression libraries are imported on first use: an ELF-only reader (the capture
# kernel's initramfs) does not need them.


def _make_lzo() -> Callable[[bytes, int], bytes]:
    import lzo

    return lambda data, page_size: lzo.decompress(data, False, page_size)


def _make_snappy() -> Callable[[bytes, int], bytes]:
    import cramjam

    return lambda data, page_size: bytes(cramjam.snappy.decompress_raw(data))


def _make_zstd() -> Callable[[bytes, int], bytes]:
    import zstandard

    decompress = zstandard.ZstdDecompressor().decompress
    return lambda data, page_size: decompress(data, max_output_size=page_size)


def _make_zlib() -> Callable[[bytes, int], bytes]:
    return lambda data, page_size: zlib.decompress(data, bufsize=page_size)


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


class DecompressionError(ValueError):
    """A page's data does not decompress to exactly one page."""


def decompress_page(flags: int, data: bytes, page_size: int) -> bytes:
    """Decompress one page; :class:`DecompressionError` (with the reason) if it fails."""
    try:
        func = decompressor(flags)
    except KeyError:
        raise DecompressionError(f"unknown compression flags {flags:#x}") from None
    try:
        out = func(data, page_size)
    except Exception as exc:  # each library has its own error types
        raise DecompressionError(f"{COMPRESSION_NAMES[flags]} data is corrupt ({exc})") from None
    if len(out) != page_size:
        raise DecompressionError(
            f"{COMPRESSION_NAMES[flags]} data decompresses to {len(out)} bytes, not {page_size}"
        )
    return out
