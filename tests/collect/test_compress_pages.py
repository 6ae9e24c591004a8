"""Per-page compression of a batch (the C loop and the Python path) against the
compression libraries called page by page, as makedumpfile calls them."""

from __future__ import annotations

import zlib

import cramjam
import lzo
import numpy as np
import pytest
import zstandard

from kdumpy.collect import compress
from kdumpy.vmcore.compression import decompress_page

PAGE = 4096
FLAGS = {"zlib": 0x1, "lzo": 0x2, "snappy": 0x4, "zstd": 0x20}
REFERENCE = {
    "zlib": lambda page: zlib.compress(page, 1),
    "lzo": lambda page: lzo.compress(page, 1, False),
    "snappy": lambda page: bytes(cramjam.snappy.compress_raw(page)),
    "zstd": lambda page: zstandard.ZstdCompressor(level=1).compress(page),
}


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


def expected(pages: np.ndarray, kind: str, exclude_zero: bool) -> tuple[list, bytes]:
    """(size, flags, zero) per page and the stored bytes, page by page."""
    rows, stored = [], b""
    for page in pages:
        raw = page.tobytes()
        if exclude_zero and not raw.strip(b"\0"):
            rows.append((0, 0, True))
            continue
        packed = REFERENCE[kind](raw)
        if len(packed) < PAGE:
            rows.append((len(packed), FLAGS[kind], False))
            stored += packed
        else:
            rows.append((PAGE, 0, False))
            stored += raw
    return rows, stored


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("exclude_zero", [True, False])
@pytest.mark.parametrize("kind", sorted(REFERENCE))
def test_batch_equals_page_by_page(kind: str, exclude_zero: bool, native: bool, monkeypatch):  # noqa: ANN001
    if native and kind in compress.NATIVE and compress._native_pack is None:
        pytest.skip("kdumpy.collect._pagepack is not built")
    if not native:
        monkeypatch.setattr(compress, "_native_pack", None)
    pages = sample_pages()
    batch = compress.compress_pages(np.arange(64), pages, kind, exclude_zero)
    got = list(zip(batch.sizes.tolist(), batch.flags.tolist(), batch.zero.tolist(), strict=True))
    rows, stored = expected(pages, kind, exclude_zero)
    assert got == rows
    assert b"".join(bytes(part) for part in batch.data) == stored
    offset = 0
    for page, (size, flag, _zero) in zip(pages, rows, strict=True):
        if flag:  # and it decompresses back to the page
            data = stored[offset : offset + size]
            assert decompress_page(flag, data, PAGE) == page.tobytes()
        offset += size


def test_native_rejects_bad_buffers() -> None:
    if compress._native_pack is None:
        pytest.skip("kdumpy.collect._pagepack is not built")
    pages = np.zeros((2, PAGE), dtype=np.uint8)
    out, zero = np.empty(2 * PAGE, np.uint8), np.empty(2, bool)
    small, fits = np.zeros(1, dtype=np.uint32), np.zeros(2, dtype=np.uint32)
    with pytest.raises(ValueError):  # sizes/flags too short for two pages
        compress._native_pack(2, pages, PAGE, True, out, small, small, zero)
    with pytest.raises(ValueError):  # not a kind the C loop knows
        compress._native_pack(7, pages, PAGE, True, out, fits, fits, zero)
