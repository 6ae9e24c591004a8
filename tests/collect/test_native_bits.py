"""The bitmap and descriptor helpers of ``_pagepack.c`` against numpy (the oracle: its
own packbits/unpackbits, and plain array arithmetic), and the numpy fallback of an install
without the extension (``fallback.py``) against the same oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdumpy.collect import fallback
from kdumpy.collect.bitmap import mask_and, ranges_mask

try:
    from kdumpy.collect import _pagepack as native
except ImportError:  # pragma: no cover - the extension is optional
    native = None

IMPLEMENTATIONS = [pytest.param(fallback, id="numpy-fallback")]
if native is not None:
    IMPLEMENTATIONS.append(pytest.param(native, id="C"))
DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 4096, 32771])
def test_packbits_round_trip(impl, n: int) -> None:  # noqa: ANN001
    rng = np.random.default_rng(n)
    bits = (rng.random(n) < 0.3).astype(np.uint8) * rng.integers(1, 256, n, dtype=np.uint8)
    packed = bytearray((n + 7) // 8)
    impl.packbits(bits.tobytes(), packed)
    assert bytes(packed) == np.packbits(bits != 0, bitorder="little").tobytes()
    out = bytearray(n)
    impl.unpackbits(bytes(packed), out)
    assert bytes(out) == (bits != 0).astype(np.uint8).tobytes()


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_rebase(impl) -> None:  # noqa: ANN001
    desc = np.zeros(5, dtype=DESC)
    desc["offset"] = [0, -1, 4096, -1, 5000]
    desc["size"] = [4096, 4096, 904, 4096, 10]
    buf = bytearray(desc.tobytes())
    impl.rebase(buf, 1 << 33, 12345)
    got = np.frombuffer(bytes(buf), dtype=DESC)
    assert got["offset"].tolist() == [1 << 33, 12345, (1 << 33) + 4096, 12345, (1 << 33) + 5000]
    assert got["size"].tolist() == desc["size"].tolist()


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", ["scattered", "runs"])
def test_keep_kept(impl, shape: str) -> None:  # noqa: ANN001
    """Scattered classes, and runs of one class (free blocks: the C loop takes eight pfns
    at a time where they are alike) with holes and odd lengths inside them."""
    rng = np.random.default_rng(3)
    n = 10003
    keep = (rng.random(n) < 0.8).astype(np.uint8)
    if shape == "scattered":
        cls = rng.integers(0, 7, n, dtype=np.uint8) * (rng.random(n) < 0.5)
        ram = (rng.random(n) < 0.9).astype(np.uint8)
    else:
        cls = np.repeat(rng.integers(0, 7, 400, dtype=np.uint8), rng.integers(1, 60, 400))[:n]
        cls = np.pad(cls, (0, n - len(cls))).astype(np.uint8)
        ram = np.ones(n, dtype=np.uint8)
        for hole in rng.integers(0, n - 20, 15):
            ram[hole : hole + rng.integers(1, 20)] = 0
    want_keep = keep & ~((ram != 0) & (cls != 0))
    want_counts = np.bincount(cls[(ram != 0) & (cls != 0)], minlength=8)
    got_keep, counts = bytearray(keep.tobytes()), bytearray(64)
    impl.keep_kept(got_keep, cls.astype(np.uint8).tobytes(), ram.tobytes(), counts)
    assert bytes(got_keep) == want_keep.astype(np.uint8).tobytes()
    assert np.frombuffer(bytes(counts), dtype=np.int64).tolist() == want_counts.tolist()


@pytest.mark.parametrize("ones", ["neither", "first", "second", "both"])
def test_mask_and(ones: str) -> None:
    """bitmap.mask_and against numpy's &, with either mask all set (its shortcut) or not."""
    rng = np.random.default_rng(len(ones))
    a, b = ((rng.random(4099) < 0.5).astype(np.uint8) for _ in range(2))
    if ones in ("first", "both"):
        a[:] = 1
    if ones in ("second", "both"):
        b[:] = 1
    got = mask_and(bytearray(a.tobytes()), bytes(b.tobytes()))
    assert isinstance(got, bytearray)
    assert got == (a & b).tobytes()


_RANGE = st.tuples(st.integers(0, 300), st.integers(0, 300))


@settings(max_examples=300, deadline=None)
@given(st.lists(_RANGE, max_size=8), st.integers(0, 300), st.integers(0, 300))
def test_ranges_mask(ranges: list[tuple[int, int]], start: int, length: int) -> None:
    """bitmap.ranges_mask against numpy slices set one range at a time: unsorted,
    overlapping, touching, empty and inverted ranges, ranges outside the window."""
    expect = np.zeros(length, dtype=np.uint8)
    for s, e in ranges:
        lo, hi = max(s, start), min(e, start + length)
        if lo < hi:
            expect[lo - start : hi - start] = 1
    got = ranges_mask(ranges, start, start + length)
    assert isinstance(got, bytearray)
    assert got == expect.tobytes()
