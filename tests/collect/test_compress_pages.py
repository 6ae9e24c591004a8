"""Per-page compression of a batch (the C loop and the Python path) against the
compression libraries called page by page, as makedumpfile calls them."""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib

import cramjam
import lzo
import numpy as np
import pytest
import zstandard

from kdumpy.collect import compress
from kdumpy.vmcore.compression import decompress_page

DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
PAGE = 4096
FLAGS = {"zlib": 0x1, "lzo": 0x2, "snappy": 0x4, "zstd": 0x20}
REFERENCE = {
    "zlib": lambda page: zlib.compress(page, 1),
    "lzo": lambda page: lzo.compress(page, 1, False),
    "snappy": lambda page: bytes(cramjam.snappy.compress_raw(page)),
    "zstd": lambda page: zstandard.ZstdCompressor(level=1).compress(page),
}


def libsnappy_compress(page: bytes) -> bytes:
    """libsnappy's snappy_compress, as makedumpfile calls it (the C loop links the same)."""
    name = ctypes.util.find_library("snappy")
    if name is None:
        pytest.skip("libsnappy is not installed")
    lib = ctypes.CDLL(name)
    out = ctypes.create_string_buffer(32 + len(page) + len(page) // 6)
    size = ctypes.c_size_t(len(out))
    assert lib.snappy_compress(page, ctypes.c_size_t(len(page)), out, ctypes.byref(size)) == 0
    return out.raw[: size.value]


def sample_pages() -> np.ndarray:
    """Zero pages, text-like pages, sparse pages and incompressible ones, interleaved."""
    rng = np.random.default_rng(15)
    pages = np.zeros((64, PAGE), dtype=np.uint8)
    for i in range(64):
        kind = i % 4
        if kind == 1:
            pages[i] = np.frombuffer((b"kdumpy %d " % i) * 512, dtype=np.uint8)[:PAGE]
        elif kind == 2:
            pages[i, rng.integers(0, PAGE, 40)] = rng.integers(1, 256, 40, dtype=np.uint8)
        elif kind == 3:
            pages[i] = rng.integers(0, 256, PAGE, dtype=np.uint8)
    pages[1] = 0  # a zero page where a text page would be
    return pages


def expected(
    pages: np.ndarray, kind: str, exclude_zero: bool, native: bool = False
) -> tuple[list, bytes]:
    """(size, flags, zero) per page and the stored bytes, page by page.  The C loop's
    snappy is libsnappy (makedumpfile's); the Python path's is cramjam's encoding."""
    reference = dict(REFERENCE, snappy=libsnappy_compress) if native else REFERENCE
    rows, stored = [], b""
    for page in pages:
        raw = page.tobytes()
        if exclude_zero and not raw.strip(b"\0"):
            rows.append((0, 0, True))
            continue
        packed = reference[kind](raw) if kind in reference else raw
        if len(packed) < PAGE:
            rows.append((len(packed), FLAGS[kind], False))
            stored += packed
        else:
            rows.append((PAGE, 0, False))
            stored += raw
    return rows, stored


KINDS = ["none", *sorted(REFERENCE)]


def stored_bytes(batch: compress.PageBatch) -> bytes:
    data = b"".join(bytes(part) for part in batch.data)
    assert len(data) == batch.nbytes
    return data


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("exclude_zero", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_page_by_page(kind: str, exclude_zero: bool, native: bool, monkeypatch):  # noqa: ANN001
    if native and (compress._native_pack is None or kind not in compress.NATIVE):
        pytest.skip(f"kdumpy.collect._pagepack is not built (with {kind})")
    if not native:
        monkeypatch.setattr(compress, "_native_pack", None)
    pages = sample_pages()
    batch = compress.compress_pages(pages, PAGE, None, kind, exclude_zero)
    rows, stored = expected(pages, kind, exclude_zero, native)
    assert stored_bytes(batch) == stored
    assert batch.zero_count == sum(zero for _s, _f, zero in rows)
    offset = 0
    descs = np.frombuffer(batch.desc, dtype=DESC)
    for desc, page, (size, flag, zero) in zip(descs, pages, rows, strict=True):
        assert (int(desc["size"]), int(desc["flags"]), int(desc["page_flags"])) == (
            PAGE if zero else size,
            flag,
            0,
        )
        assert int(desc["offset"]) == (-1 if zero else offset)  # -1: the shared zero page
        if flag:  # and it decompresses back to the page
            data = stored[offset : offset + size]
            assert decompress_page(flag, data, PAGE) == page.tobytes()
        offset += 0 if zero else size


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("kind", ["none", "lzo", "zstd"])
def test_selected_rows_are_read_in_place(kind: str, native: bool, monkeypatch):  # noqa: ANN001
    """rows picks pages out of a read-only batch (a mapping of the dump): the same bytes
    as those pages compressed on their own."""
    if native and (compress._native_pack is None or kind not in compress.NATIVE):
        pytest.skip(f"kdumpy.collect._pagepack is not built (with {kind})")
    if not native:
        monkeypatch.setattr(compress, "_native_pack", None)
    pages = sample_pages()
    pages.setflags(write=False)
    rows = [1, 2, 3, 9, 10, 40, 63]
    select = bytearray(len(pages))
    for i in rows:
        select[i] = 1
    batch = compress.compress_pages(pages, PAGE, select, kind, True)
    want, stored = expected(pages[rows], kind, True)
    assert stored_bytes(batch) == stored
    sizes = np.frombuffer(batch.desc, dtype=DESC)["size"].tolist()
    assert sizes == [PAGE if z else s for s, _f, z in want]


def test_native_rejects_bad_buffers() -> None:
    if compress._native_pack is None:
        pytest.skip("kdumpy.collect._pagepack is not built")
    pages = np.zeros((2, PAGE), dtype=np.uint8)
    pack = compress._native_pack
    with pytest.raises(ValueError):  # not whole pages
        pack(2, pages.reshape(-1)[:-8], PAGE, None, True)
    with pytest.raises(ValueError):  # not a kind the C loop knows
        pack(7, pages, PAGE, None, True)
    with pytest.raises(ValueError):  # a selection that is not one byte per page
        pack(2, pages, PAGE, b"\x01\x01\x01", True)


@pytest.mark.parametrize("page_size", [4096, 16384, 65536, 4104, 24])
def test_native_zlib_checksum_every_page_size(page_size: int) -> None:
    """The C loop writes the zlib wrapper and its adler32 itself (16 bytes at a time):
    the same stream as zlib's compress2 at level 1 for pages of 4 to 64 KiB (several
    of zlib's 5552-byte checksum rounds), of sizes not a multiple of 16, and for bytes
    of 0xff everywhere (the sums' largest values)."""
    if compress._native_pack is None:
        pytest.skip("kdumpy.collect._pagepack is not built")
    rng = np.random.default_rng(page_size)
    pages = [
        b"\xff" * page_size,
        b"\xfe\xff" * (page_size // 2),
        rng.integers(0, 256, page_size, dtype=np.uint8).tobytes(),  # stored raw
        rng.choice(np.array([0, 1, 0xFF], dtype=np.uint8), page_size).tobytes(),
        (b"kdumpy %d " % page_size * page_size)[:page_size],
    ]
    data, desc, _zeros = compress._native_pack(0x1, b"".join(pages), page_size, None, False)
    rows = np.frombuffer(desc, dtype=DESC)
    for page, row in zip(pages, rows, strict=True):
        stored = data[int(row["offset"]) : int(row["offset"]) + int(row["size"])]
        want = zlib.compress(page, 1)
        assert stored == (want if len(want) < page_size else page)
        assert int(row["flags"]) == (0x1 if len(want) < page_size else 0)


@pytest.mark.parametrize("kind", sorted(REFERENCE))
def test_native_uniform_pages_as_compressed_alone(kind: str) -> None:
    """Pages of one repeated byte (0xcc, 0xff: kernel text fill, slab poison) are
    compressed once per byte value and reused: each must still be exactly what the
    compressor makes of it alone, across batches, and after the page size changes
    (a result for 4 KiB pages is no answer for 8 KiB ones)."""
    if compress._native_pack is None or kind not in compress.NATIVE:
        pytest.skip(f"kdumpy.collect._pagepack is not built (with {kind})")
    reference = libsnappy_compress if kind == "snappy" else REFERENCE[kind]
    for page_size in (4096, 8192, 4096):
        fills = [0xCC, 0xFF, 0xCC, 0x01, 0xCC, 0xFF]
        pages = [bytes([b]) * page_size for b in fills]
        pages.insert(2, (b"kdumpy %d " % page_size * page_size)[:page_size])  # not uniform
        for _batch in range(2):
            data, desc, _zeros = compress._native_pack(
                FLAGS[kind], b"".join(pages), page_size, None, True
            )
            rows = np.frombuffer(desc, dtype=DESC)
            for page, row in zip(pages, rows, strict=True):
                stored = data[int(row["offset"]) : int(row["offset"]) + int(row["size"])]
                assert stored == reference(page), (page_size, page[:1])
                assert int(row["flags"]) == FLAGS[kind]
