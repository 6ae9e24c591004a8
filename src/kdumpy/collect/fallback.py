"""The bitmap and descriptor helpers of ``_pagepack.c`` over numpy, for an install built
without the C extension (same arguments, same results)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdumpy.vmcore.diskdump_format import PAGE_DESC_SIZE

_DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
assert _DESC.itemsize == PAGE_DESC_SIZE


def packbits(bits: Any, out: Any) -> None:
    """One byte per pfn (nonzero: set) into the kdump bitmap's bits (pfn i: bit i % 8)."""
    flags = np.frombuffer(bits, dtype=np.uint8) != 0
    packed = np.packbits(flags, bitorder="little")
    memoryview(out)[: packed.size] = packed.tobytes()


def unpackbits(packed: Any, out: Any) -> None:
    """The first ``len(out)`` bits of ``packed``, one byte (0 or 1) per pfn."""
    n = memoryview(out).nbytes
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), bitorder="little", count=n)
    memoryview(out)[:n] = bits.tobytes()


def rebase(desc: Any, delta: int, zero_offset: int) -> None:
    """Descriptors' offsets made absolute: ``delta`` added, -1 (zero page) -> ``zero_offset``."""
    records = np.frombuffer(desc, dtype=_DESC)
    offsets = records["offset"].copy()
    shared = offsets < 0
    offsets += delta
    offsets[shared] = zero_offset
    np.frombuffer(desc, dtype=_DESC)["offset"] = offsets


def keep_kept(keep: Any, cls: Any, ram: Any, counts: Any) -> None:
    """Clear ``keep`` where a pfn in RAM has a class other than 0, counting the classes
    into ``counts`` (8 int64)."""
    mask = np.frombuffer(keep, dtype=np.uint8)
    classes = np.frombuffer(cls, dtype=np.uint8) & 7
    hit = (np.frombuffer(ram, dtype=np.uint8) != 0) & (classes != 0)
    total = np.frombuffer(counts, dtype=np.int64)
    total += np.bincount(classes[hit], minlength=8)[:8]
    mask[hit] = 0


def start_writeback(fd: int) -> None:
    """Nothing: without the extension (no sync_file_range in Python), the kernel decides
    when the file's dirty pages are written."""
