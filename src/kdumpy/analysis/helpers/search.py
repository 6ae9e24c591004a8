"""Searching memory for a value (``search``): physical memory in batches of pages
through numpy (the direct map of all RAM in the dump takes a second or two), or a
virtual range page by page, skipping pages that are not mapped or not in the dump::

    for address, value in search_physical(prog, 0xffff888012345678):
        print(hex(phys_to_virt(prog, address)), hex(value))
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from kdumpy.analysis.helpers.memmap import phys_to_virt
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

_DTYPES: dict[int, np.dtype[np.unsignedinteger]] = {
    8: np.dtype("<u8"), 4: np.dtype("<u4"), 2: np.dtype("<u2"),
}  # fmt: skip
MAX_HITS = 1 << 16  # a value found everywhere (0) is not worth a million lines


def _matches(data: np.ndarray, value: int, width: int, mask: int) -> np.ndarray:
    """Offsets (bytes) of aligned ``width``-byte words equal to ``value`` once the bits
    of ``mask`` are ignored."""
    words = data.view(_DTYPES[width])
    keep = ~mask & ((1 << 8 * width) - 1)
    hits = np.nonzero((words & np.array(keep, dtype=words.dtype)) == (value & keep))[0]
    return hits * width


def search_physical(prog: Program, value: int, start: int = 0, end: int | None = None,
                    width: int = 8, mask: int = 0) -> Iterator[tuple[int, int]]:  # fmt: skip
    """``(physical address, word)`` of every match in ``[start, end)`` of the pages the
    dump holds, in address order."""
    dump = prog.dump
    ps = dump.page_size
    end = end if end is not None else 1 << 52
    found = 0
    for lo_pfn, hi_pfn in dump.pfn_ranges():
        lo, hi = max(lo_pfn, start // ps), min(hi_pfn, -(-end // ps))
        for first in range(lo, hi, 4096):
            pages, present = dump.read_pfns(first, min(4096, hi - first))
            flat = np.frombuffer(pages, dtype=np.uint8)
            for off in _matches(flat, value, width, mask):
                address = first * ps + int(off)
                if start <= address < end and present[int(off) // ps]:
                    yield address, int(flat[off : off + width].view(_DTYPES[width])[0])
                    found += 1
                    if found >= MAX_HITS:
                        return


def search_virtual(prog: Program, value: int, start: int, end: int, width: int = 8,
                   mask: int = 0) -> Iterator[tuple[int, int]]:  # fmt: skip
    """``(virtual address, word)`` of every match in a kernel virtual range."""
    ps = prog.dump.page_size
    page = start & ~(ps - 1)
    found = 0
    while page < end:
        try:
            data = np.frombuffer(prog.read(page, ps), dtype=np.uint8)
        except (FaultError, KdumpyError):
            page += ps
            continue
        for off in _matches(data, value, width, mask):
            address = page + int(off)
            if start <= address < end:
                yield address, int(data[off : off + width].view(_DTYPES[width])[0])
                found += 1
                if found >= MAX_HITS:
                    return
        page += ps


def search_string_virtual(prog: Program, text: bytes, start: int, end: int) -> Iterator[int]:
    """Virtual addresses where ``text`` starts, within one page (a string crossing a
    page boundary is not found)."""
    ps = prog.dump.page_size
    page = start & ~(ps - 1)
    while page < end:
        try:
            data = prog.read(page, ps)
        except (FaultError, KdumpyError):
            page += ps
            continue
        at = data.find(text)
        while at >= 0:
            if start <= page + at < end:
                yield page + at
            at = data.find(text, at + 1)
        page += ps


def match_context(prog: Program, address: int, width: int, count: int,
                  physical: bool = False) -> tuple[bytes, bytes]:  # fmt: skip
    """crash's ``search -x count``: the ``count`` values of ``width`` bytes before a
    match at ``address`` and the ``count`` after it, as bytes; fewer on a side where
    memory cannot be read that far (none at all if not even one value can be)."""

    def read(at: int, size: int) -> bytes:
        return prog.read(phys_to_virt(prog, at) if physical else at, size)

    before = after = b""
    for n in range(count, 0, -1):
        try:
            before = read(address - n * width, n * width)
            break
        except KdumpyError:
            continue
    for n in range(count, 0, -1):
        try:
            after = read(address + width, n * width)
            break
        except KdumpyError:
            continue
    return before, after
