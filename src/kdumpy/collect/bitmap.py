"""The two bitmaps, computed cycle by cycle with bounded memory.

1st bitmap: pages that exist in the source (its RAM ranges, PT_LOAD ``p_memsz``).
2nd bitmap: pages that get a descriptor: the 1st bitmap, minus pages whose data is
not in the source (a filtered input), minus pages the dump level excludes (read from
their struct pages in batches of :data:`SCAN_BATCH`).  Zero pages stay in the 2nd
bitmap for kdump-compressed output; they are found while the data is copied.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdumpy.collect.classify import CLASS_NAMES, Pending, classify
from kdumpy.collect.memmap import MemMap, ReadInto
from kdumpy.collect.pagerules import PageRules
from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.base import Dump

SCAN_BATCH = 1 << 15  # pfns per struct page read: 2 MiB of struct pages


def ranges_mask(ranges: list[tuple[int, int]], start: int, end: int) -> np.ndarray:
    """Bool mask of pfns ``start..end-1`` covered by ``[(s, e)]`` ranges."""
    mask = np.zeros(end - start, dtype=bool)
    for s, e in ranges:
        if e > start and s < end:
            mask[max(s, start) - start : min(e, end) - start] = True
    return mask


class PageSelector:
    """Decides, pfn range by pfn range, which pages a dump level keeps."""

    def __init__(
        self,
        dump: Dump,
        max_mapnr: int,
        dump_level: int,
        read_phys: Callable[[int, int], bytes] | None = None,
        read_into: ReadInto | None = None,
    ) -> None:
        self.dump = dump
        self.level = dump_level
        # Memory past max_mapnr (declared by the dump but not supported by it) is absent.
        self.ram = [(s, min(e, max_mapnr)) for s, e in dump.ram_ranges() if s < max_mapnr]
        self.present = dump.pfn_ranges()
        self.rules: PageRules | None = None
        self.memmap: MemMap | None = None
        rules: PageRules | None
        try:
            rules = PageRules.from_vmcoreinfo(dump.vmcoreinfo)
        except DumpFormatError:
            if dump_level & 0x1E:
                raise
            rules = None  # levels 0 and 1 read no struct page
        if rules is not None and rules.needs_scan(dump_level):
            self.rules = rules
            self.memmap = MemMap(dump, max_mapnr, read_phys, read_into)
        self.counts = np.zeros(len(CLASS_NAMES), dtype=np.int64)
        self._pending = Pending()

    def reset(self) -> None:
        """Start again from pfn 0 (a second pass recomputes the same bitmap)."""
        self.counts[:] = 0
        self._pending = Pending()

    def bitmap1(self, start: int, end: int) -> np.ndarray:
        return ranges_mask(self.ram, start, end)

    def bitmap2(self, start: int, end: int) -> np.ndarray:
        """Keep-mask of pfns ``start..end-1``; must be called in increasing pfn order."""
        ram = ranges_mask(self.ram, start, end)
        keep = ram & ranges_mask(self.present, start, end)
        if self.memmap is None or self.rules is None:
            return keep
        for b in range(start, end, SCAN_BATCH):
            n = min(SCAN_BATCH, end - b)
            sl = slice(b - start, b - start + n)
            if not ram[sl].any() and self._pending.end_pfn <= b:
                continue
            raw, valid = self.memmap.read(b, n + 1)
            cls = classify(self.rules, raw, valid[:n] & ram[sl], b, self.level, self._pending)
            cls[~ram[sl]] = 0  # a block may span a hole: only existing pages count
            self.counts += np.bincount(cls, minlength=len(CLASS_NAMES))
            keep[sl] &= cls == 0
        return keep

    def excluded(self) -> dict[str, int]:
        return {name: int(self.counts[i]) for i, name in enumerate(CLASS_NAMES) if i}
