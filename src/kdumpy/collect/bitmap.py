"""The two bitmaps, computed cycle by cycle with bounded memory.

1st bitmap: pages that exist in the source (its RAM ranges, PT_LOAD ``p_memsz``).
2nd bitmap: pages that get a descriptor: the 1st bitmap, minus pages whose data is
not in the source (a filtered input), minus pages the dump level excludes (read from
their struct pages in batches of :data:`SCAN_BATCH`).  Zero pages stay in the 2nd
bitmap for kdump-compressed output; they are found while the data is copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from kdumpy.collect.classify import CLASS_NAMES, Pending, classify
from kdumpy.collect.memmap import MemMap, ReadInto
from kdumpy.collect.options import Progress
from kdumpy.collect.pagerules import PageRules
from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore.base import Dump

SCAN_BATCH = 1 << 15  # pfns per struct page read: 2 MiB of struct pages
MAX_CYCLE_PFNS = 1 << 22  # 16 GiB of RAM per cycle: a few 4 MiB masks at a time


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


def _cycle_pfns(max_mapnr: int, cyclic_kib: int) -> tuple[int, bool]:
    """Pfns per cycle and whether the whole packed 2nd bitmap fits the budget.

    A cycle's masks are unpacked (one byte per pfn) while it is worked on, so a
    cycle never exceeds :data:`MAX_CYCLE_PFNS` whatever the budget; the packed
    bitmap of all cycles is kept when it fits in ``cyclic_kib``.
    """
    budget_bits = max(1, cyclic_kib) * 1024 * 8
    stored = max_mapnr <= budget_bits
    cycle = min(-(-max_mapnr // 8) * 8, MAX_CYCLE_PFNS, budget_bits // 8 * 8)
    return max(8, cycle), stored


class Bitmap2:
    """The 2nd bitmap, pass 1 computed and either stored (packed) or recomputed on demand."""

    def __init__(
        self,
        selector: PageSelector,
        max_mapnr: int,
        cyclic_kib: int,
        progress: Progress | None = None,
    ) -> None:
        self.selector = selector
        self.max_mapnr = max_mapnr
        self.cycle, self.stored = _cycle_pfns(max_mapnr, cyclic_kib)
        self._packed: list[np.ndarray] = []
        self.num_dumpable = 0
        self.cycle_counts: list[int] = []
        for start, end in self.cycles():
            bits = selector.bitmap2(start, end)
            self.cycle_counts.append(int(np.count_nonzero(bits)))
            if self.stored:
                self._packed.append(np.packbits(bits, bitorder="little"))
            if progress is not None:
                progress("Excluding unnecessary pages", end, max_mapnr)
        self.num_dumpable = sum(self.cycle_counts)
        self.excluded = selector.excluded()

    def cycles(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.max_mapnr, self.cycle):
            yield start, min(self.max_mapnr, start + self.cycle)

    def bits(self, index: int, start: int, end: int) -> np.ndarray:
        """The keep-mask of one cycle (``index`` in :meth:`cycles` order)."""
        if self.stored:
            return np.unpackbits(self._packed[index], bitorder="little", count=end - start).astype(
                bool
            )
        if index == 0:
            self.selector.reset()
        return self.selector.bitmap2(start, end)

    def range_bits(self, lo: int, hi: int) -> np.ndarray:
        """Keep-mask of pfns ``lo..hi-1`` (a copy; needs the stored bitmap)."""
        out = np.zeros(hi - lo, dtype=bool)
        if not self.stored:
            raise KdumpyError("ELF output needs the whole bitmap in memory: raise --cyclic-buffer")
        for i, (start, end) in enumerate(self.cycles()):
            if end > lo and start < hi:
                bits = self.bits(i, start, end)
                a, b = max(lo, start), min(hi, end)
                out[a - lo : b - lo] = bits[a - start : b - start]
        return out

    def count_between(self, lo: int, hi: int) -> int:
        """Dumpable pages with pfn in ``[lo, hi)``."""
        total = 0
        for i, (start, end) in enumerate(self.cycles()):
            if end <= lo or start >= hi:
                continue
            if lo <= start and end <= hi:
                total += self.cycle_counts[i]
            else:
                bits = self.bits(i, start, end)
                total += int(np.count_nonzero(bits[max(lo, start) - start : min(hi, end) - start]))
        return total
