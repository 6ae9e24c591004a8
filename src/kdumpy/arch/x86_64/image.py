"""x86_64 kernel images: the bzImage and the compressed vmlinux inside it.

The boot protocol (Documentation/arch/x86/boot.rst): "HdrS" at 0x202, setup_sects at 0x1f1
(0 means 4), payload_offset and payload_length (u32) at 0x248 from the end of the setup
code, init_size (u32) at 0x260: the memory the kernel needs from its load address while it
decompresses and runs.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct

import zstandard

from kdumpy.errors import KdumpyError

COMPRESSIONS = (
    (b"\x1f\x8b\x08", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x02\x21\x4c\x18", "lz4"),
)


def is_bzimage(image: bytes) -> bool:
    return image[0x202:0x206] == b"HdrS"


def bzimage_payload(image: bytes) -> tuple[bytes, str]:
    """The compressed vmlinux inside a bzImage and its compression name."""
    if not is_bzimage(image):
        raise KdumpyError("not an x86 bzImage (no HdrS boot header)")
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = image[start : start + length]
    for magic, name in COMPRESSIONS:
        if payload.startswith(magic):
            return payload, name
    return payload, "unknown"


def decompress(payload: bytes, method: str) -> bytes | None:
    """The vmlinux, or None for a compression Python cannot undo (lz4) or a damaged one."""
    try:
        if method == "gzip":
            return gzip.decompress(payload)
        if method in ("xz", "lzma"):
            return lzma.LZMADecompressor().decompress(payload)
        if method == "zstd":
            return zstandard.ZstdDecompressor().decompressobj().decompress(payload)
        if method == "bzip2":
            return bz2.BZ2Decompressor().decompress(payload)
    except (OSError, lzma.LZMAError, zstandard.ZstdError, ValueError):
        return None
    return None


def init_size(image: bytes) -> int:
    (size,) = struct.unpack_from("<I", image, 0x260)
    return int(size)
