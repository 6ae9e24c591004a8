"""arm64 kernel images: the header kexec needs, and the wrappers around it (gzip, EFI zboot).

Oracles: headers built here with known fields (the layout of arch/arm64/include/asm/image.h),
wrappers made with the standard compressors, and `file`'s reading of a real Debian Image.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess

import pytest
import zstandard

from kdumpy.arch.arm64 import image as image_mod
from kdumpy.arch.arm64.image import ImageError, load_image, parse_image, unwrap
from kdumpy.lab.cache import cache_root


def build_image(text_offset=0, image_size=0x200000, flags=0b1010, body=b"\x00" * 0x1000) -> bytes:
    """A plain Image: "MZ" code0, the header fields, the magic at 56, then *body*."""
    header = struct.pack(
        "<IIQQQQQQ4sI", 0x5A4D, 0x14000000, text_offset, image_size, flags, 0, 0, 0,
        b"ARM\x64", 0x40,
    )  # fmt: skip
    return header + body


def zboot(payload: bytes, comp: bytes) -> bytes:
    """An EFI zboot wrapper: "MZ", "zimg", payload offset/size, compressor name at 24."""
    head = bytearray(0x200)
    head[0:2] = b"MZ"
    head[4:8] = b"zimg"
    struct.pack_into("<II", head, 8, len(head), len(payload))
    head[24 : 24 + len(comp)] = comp
    return bytes(head) + payload + b"\x00" * 64  # the PE stub's tail


def test_header_fields():
    img = parse_image(build_image(text_offset=0x80000, image_size=0x1AB0000, flags=0b1010))
    assert (img.text_offset, img.image_size) == (0x80000, 0x1AB0000)
    assert img.page_size == 4096 and img.phys_anywhere and not img.big_endian
    assert parse_image(build_image(flags=0b0110)).page_size == 65536
    assert parse_image(build_image(flags=0b0001)).big_endian
    assert parse_image(build_image(flags=0)).page_size is None


@pytest.mark.parametrize(
    "wrap",
    [
        lambda d: gzip.compress(d),
        lambda d: zboot(gzip.compress(d), b"gzip"),
        lambda d: zboot(lzma.compress(d, format=lzma.FORMAT_ALONE), b"lzma"),
        lambda d: zboot(lzma.compress(d, format=lzma.FORMAT_XZ), b"xzkern"),
        lambda d: zboot(zstandard.ZstdCompressor().compress(d), b"zstd"),
    ],
    ids=["gzip", "zboot-gzip", "zboot-lzma", "zboot-xz", "zboot-zstd"],
)
def test_unwrap_gives_the_plain_image(wrap):
    plain = build_image(body=bytes(range(256)) * 64)
    assert unwrap(wrap(plain)) == plain
    assert load_image(wrap(plain)).data == plain


@pytest.mark.parametrize(
    "data, message",
    [
        (b"MZ" + b"\x00" * 30, "too short"),
        (b"\x00" * 64 + b"\x00" * 4096, "not an arm64 Image"),
        (build_image(image_size=0), "no image_size"),
        (build_image(text_offset=0x123), "bad text_offset"),
        (build_image(image_size=1 << 40), "implausible image_size"),
        (zboot(b"x" * 100, b"lz4"), "compressed with 'lz4'"),
        (zboot(b"not gzip at all", b"gzip"), "corrupt gzip"),
        (b"MZ\x00\x00zimg" + struct.pack("<II", 0x100, 0x10000) + b"\x00" * 100, "beyond"),
        (b"\x1f\x8b" + b"\x00" * 40, "corrupt gzip"),
    ],
    ids=["short", "magic", "size0", "offset", "huge", "lz4", "zgzip", "beyond", "gzip"],
)
def test_bad_images_get_one_line(data, message):
    with pytest.raises(ImageError) as err:
        load_image(data, "vmlinuz-x")
    text = str(err.value)
    assert message in text and text.startswith("vmlinuz-x: ") and "\n" not in text


def test_decompression_is_bounded(monkeypatch):
    monkeypatch.setattr(image_mod, "MAX_IMAGE", 1 << 20)
    bomb = gzip.compress(b"\x00" * (4 << 20))
    with pytest.raises(ImageError, match="decompresses to more than 1 MiB"):
        unwrap(bomb, "bomb")
    with pytest.raises(ImageError, match="more than 1 MiB"):
        unwrap(zboot(zstandard.ZstdCompressor().compress(b"\x00" * (4 << 20)), b"zstd"), "z")


@pytest.mark.skipif(shutil.which("file") is None, reason="needs file(1)")
@pytest.mark.parametrize("series", ["arm64-6.1", "arm64-6.12"])
def test_real_debian_image_agrees_with_file(series):
    images = sorted((cache_root() / "kernels" / series / "root" / "boot").glob("vmlinuz-*"))
    if not images:
        pytest.skip(f"lab kernel {series} not downloaded")
    out = subprocess.run(["file", "-b", str(images[0])], capture_output=True, text=True).stdout
    img = load_image(images[0].read_bytes(), str(images[0]))
    assert "ARM64 boot executable Image" in out
    assert ("little-endian" in out) == (not img.big_endian)
    assert f"{img.page_size // 1024}K pages" in out
    assert img.image_size >= len(img.data)
