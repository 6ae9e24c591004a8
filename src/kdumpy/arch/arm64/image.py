"""arm64 kernel images as kexec_load takes them: a plain Image and its 64-byte header.

Distributions ship the Image plain (Debian), gzip-compressed (``Image.gz``) or wrapped in an
EFI zboot PE executable (Fedora, Ubuntu 24.04).  The kernel's kexec loads a plain Image only:
unwrapping is userspace's job (kexec-tools does it since 2.0.20 for gzip, 2.0.27 for zboot).

Header (arch/arm64/include/asm/image.h, little-endian): code0, code1 (u32; code0 begins "MZ"
when the Image carries an EFI stub), text_offset, image_size, flags (u64), three reserved u64,
magic "ARM\\x64" at 56, the PE header offset (u32) at 60.  zboot (drivers/firmware/efi/libstub/
zboot-header.S): "MZ", "zimg" at 4, payload offset and size (u32) at 8 and 12, the
compressor's name (NUL-terminated) at 24.

Only the standard library (and zstandard, when present, for zstd zboot images) is used: the
loader runs in small initramfs images.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from dataclasses import dataclass

from kdumpy.errors import KdumpyError

try:
    import zstandard
except ImportError:  # a minimal initramfs Python: zstd-compressed zboot images then fail clearly
    zstandard = None  # type: ignore[assignment]

HEADER = struct.Struct("<IIQQQQQQ4sI")
IMAGE_MAGIC = b"ARM\x64"
ZBOOT_MAGIC = b"zimg"
GZIP_MAGIC = b"\x1f\x8b"
# An unwrapped Image bigger than this is not a kernel (Debian's 6.12 Image is 35 MiB); the
# bound keeps a corrupt or hostile compressed file from filling memory.
MAX_IMAGE = 256 << 20
PAGE_SIZES = {1: 4096, 2: 16384, 3: 65536}


class ImageError(KdumpyError):
    """The file is not an arm64 kernel image kexec can load."""


@dataclass(frozen=True)
class ArmImage:
    """A plain arm64 Image and what its header asks of the loader."""

    data: bytes
    text_offset: int  # load at a 2 MiB-aligned base + text_offset
    image_size: int  # bytes of memory from the load address the kernel uses (with BSS)
    flags: int

    @property
    def big_endian(self) -> bool:
        return bool(self.flags & 1)

    @property
    def page_size(self) -> int | None:
        """The kernel's page size from flags bits 1-2, or None when the header leaves it out."""
        return PAGE_SIZES.get((self.flags >> 1) & 3)

    @property
    def phys_anywhere(self) -> bool:
        """Flags bit 3: the 2 MiB-aligned base may be anywhere in RAM (not near its start)."""
        return bool(self.flags & 8)


def parse_image(data: bytes, name: str = "kernel") -> ArmImage:
    """The header of a plain Image, checked: *name* is what an error calls the file."""
    if len(data) < HEADER.size:
        raise ImageError(f"{name}: {len(data)} bytes, too short for an arm64 Image header")
    _, _, text_offset, image_size, flags, _, _, _, magic, _ = HEADER.unpack_from(data)
    if magic != IMAGE_MAGIC:
        raise ImageError(f"{name}: not an arm64 Image (no ARM\\x64 magic at offset 56)")
    if image_size == 0:
        # Kernels before 3.17 leave image_size 0 and do not say how much memory they use.
        raise ImageError(f"{name}: the Image header has no image_size (kernel older than 3.17)")
    if image_size < len(data) // 2 or image_size > MAX_IMAGE:
        raise ImageError(f"{name}: implausible image_size {image_size:#x} for {len(data)} bytes")
    if text_offset % 4096 or text_offset >= (2 << 20):
        raise ImageError(f"{name}: bad text_offset {text_offset:#x}")
    return ArmImage(bytes(data), text_offset, image_size, flags)


def unwrap(data: bytes, name: str = "kernel") -> bytes:
    """The plain Image inside *data*: itself, or gunzipped, or a zboot payload decompressed."""
    for _ in range(3):  # zboot may hold a gzip stream; nothing nests deeper
        if data[:2] == GZIP_MAGIC:
            data = _gunzip(data, name)
        elif data[:2] == b"MZ" and data[4:8] == ZBOOT_MAGIC:
            data = _zboot_payload(data, name)
        else:
            return data
    raise ImageError(f"{name}: compressed more than twice over: not a kernel image")


def load_image(data: bytes, name: str = "kernel") -> ArmImage:
    """Unwrap and parse: what the loader calls on a vmlinuz file's bytes."""
    return parse_image(unwrap(data, name), name)


def _gunzip(data: bytes, name: str) -> bytes:
    try:
        out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_IMAGE + 1)
    except zlib.error as exc:
        raise ImageError(f"{name}: corrupt gzip data ({exc})") from None
    return _checked_size(out, name)


def _checked_size(out: bytes, name: str) -> bytes:
    if len(out) > MAX_IMAGE:
        raise ImageError(f"{name}: decompresses to more than {MAX_IMAGE >> 20} MiB")
    return out


def _zboot_payload(data: bytes, name: str) -> bytes:
    if len(data) < 64:
        raise ImageError(f"{name}: truncated EFI zboot header")
    offset, size = struct.unpack_from("<II", data, 8)
    if offset + size > len(data) or size == 0:
        raise ImageError(
            f"{name}: EFI zboot payload {offset:#x}+{size:#x} beyond the file's {len(data)} bytes"
        )
    comp = data[24:56].split(b"\0", 1)[0].decode("ascii", "replace")
    payload = data[offset : offset + size]
    if comp == "gzip":
        return _gunzip(payload, name)
    if comp in ("lzma", "xzkern"):
        fmt = lzma.FORMAT_ALONE if comp == "lzma" else lzma.FORMAT_XZ
        try:
            out = lzma.LZMADecompressor(fmt).decompress(payload, MAX_IMAGE + 1)
        except lzma.LZMAError as exc:
            raise ImageError(f"{name}: corrupt {comp} payload ({exc})") from None
        return _checked_size(out, name)
    if comp == "zstd" and zstandard is not None:
        try:
            out = _read_bounded(zstandard.ZstdDecompressor().stream_reader(payload))
        except zstandard.ZstdError as exc:
            raise ImageError(f"{name}: corrupt zstd payload ({exc})") from None
        return _checked_size(out, name)
    raise ImageError(
        f"{name}: EFI zboot payload compressed with {comp!r}, which kdumpy cannot read"
    )


def _read_bounded(reader: zstandard.ZstdDecompressionReader) -> bytes:
    """Read a decompressing stream to its end, stopping one byte past MAX_IMAGE."""
    chunks, total = [], 0
    while total <= MAX_IMAGE:
        chunk = reader.read(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
