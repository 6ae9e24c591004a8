"""The two bitmaps, computed cycle by cycle with bounded memory.

1st bitmap: pages that exist in the source (its RAM ranges, PT_LOAD ``p_memsz``).
2nd bitmap: pages that get a descriptor: the 1st bitmap, minus pages whose data is
not in the source (a filtered input), minus pages the dump level excludes (read from
their struct pages in batches of :data:`SCAN_BATCH`).  Zero pages stay in the 2nd
bitmap for kdump-compressed output; they are found while the data is copied.

A cycle's masks hold one byte per pfn (1: set), worked on with bytes operations and
packed into the format's bits in C (``_pagepack.packbits``; numpy without the extension).
"""

from __future__ import annotations

import array
from collections.abc import Callable, Iterator

from kdumpy.collect.classify import CLASS_NAMES, Pending, classify
from kdumpy.collect.memmap import MapPhys, MemMap, ReadInto
from kdumpy.collect.options import Progress
from kdumpy.collect.pagerules import PageRules
from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore.base import Dump, merge_ranges

try:
    from kdumpy.collect._pagepack import keep_kept, packbits, unpackbits
except ImportError:  # built without the C extension
    from kdumpy.collect.fallback import keep_kept, packbits, unpackbits

SCAN_BATCH = 1 << 15  # pfns per struct page read: 2 MiB of struct pages
MAX_CYCLE_PFNS = 1 << 22  # 16 GiB of RAM per cycle: a few 4 MiB masks at a time


def ranges_mask(ranges: list[tuple[int, int]], start: int, end: int) -> bytearray:
    """One byte per pfn ``start..end-1``: 1 where a ``[(s, e)]`` range covers it."""
    # Mostly the ranges cover nearly all of it: set every byte, then clear the gaps (one
    # pass over fresh memory; copying from a buffer of ones cost 1.1 ms on a 3 GiB dump's
    # first call, most of it faulting in that buffer).
    mask = bytearray(b"\x01") * (end - start)
    pos = 0
    for s, e in merge_ranges(ranges):
        a, b = max(s, start) - start, min(e, end) - start
        if a < b:
            mask[pos:a] = bytes(a - pos)
            pos = b
    mask[pos:] = bytes(len(mask) - pos)
    return mask


def mask_and(a: bytes | bytearray, b: bytes | bytearray) -> bytearray:
    """Byte-wise AND of two equal-length masks (as big integers: one C loop each way)."""
    # Mostly one of them is all set (every struct page read, a batch all RAM): then the
    # other is the answer, without the conversions (1.3 ms of a 3 GiB dump's -d 31).
    if 0 not in a:
        return bytearray(b)
    if 0 not in b:
        return bytearray(a)
    n = len(a)
    both = int.from_bytes(a, "little") & int.from_bytes(b, "little")
    return bytearray(both.to_bytes(n, "little"))


def pack_mask(mask: bytes | bytearray) -> bytes:
    """The kdump bitmap bytes of a mask (bit ``i % 8`` of byte ``i / 8``)."""
    out = bytearray((len(mask) + 7) // 8)
    packbits(mask, out)
    return bytes(out)


def unpack_mask(packed: bytes | bytearray, count: int) -> bytearray:
    """The first ``count`` bits of a kdump bitmap as a mask."""
    out = bytearray(count)
    unpackbits(packed, out)
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges covered by both sorted, disjoint range lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


class PageSelector:
    """Decides, pfn range by pfn range, which pages a dump level keeps."""

    def __init__(
        self,
        dump: Dump,
        max_mapnr: int,
        dump_level: int,
        read_phys: Callable[[int, int], bytes] | None = None,
        read_into: ReadInto | None = None,
        map_phys: MapPhys | None = None,
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
            self.memmap = MemMap(dump, max_mapnr, read_phys, read_into, map_phys)
        self.kept_ranges = _intersect(merge_ranges(self.ram), merge_ranges(self.present))
        self.counts = array.array("q", bytes(8 * 8))  # per class (8: _pagepack's)
        self._pending = Pending()

    def reset(self) -> None:
        """Start again from pfn 0 (a second pass recomputes the same bitmap)."""
        self.counts = array.array("q", bytes(8 * 8))
        self._pending = Pending()

    def bitmap1(self, start: int, end: int) -> bytearray:
        return ranges_mask(self.ram, start, end)

    def bitmap2(self, start: int, end: int) -> bytearray:
        """Keep-mask of pfns ``start..end-1``; must be called in increasing pfn order."""
        keep = ranges_mask(self.kept_ranges, start, end)
        if self.memmap is None or self.rules is None:
            return keep
        ram = ranges_mask(self.ram, start, end)
        for b in range(start, end, SCAN_BATCH):
            n = min(SCAN_BATCH, end - b)
            lo = b - start
            in_ram = ram[lo : lo + n]
            if 1 not in in_ram and self._pending.end_pfn <= b:
                continue
            raw, valid = self.memmap.read(b, n + 1)
            cls = classify(self.rules, raw, mask_and(valid[:n], in_ram), b, self.level,
                           self._pending)  # fmt: skip
            part = keep[lo : lo + n]
            keep_kept(part, cls, in_ram, self.counts)  # a block may span a hole: RAM only
            keep[lo : lo + n] = part
        return keep

    def excluded(self) -> dict[str, int]:
        return {name: self.counts[i] for i, name in enumerate(CLASS_NAMES) if i}


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
        self._packed: list[bytes] = []
        self.num_dumpable = 0
        self.cycle_counts: list[int] = []
        for start, end in self.cycles():
            bits = selector.bitmap2(start, end)
            self.cycle_counts.append(bits.count(1))
            if self.stored:
                self._packed.append(pack_mask(bits))
            if progress is not None:
                progress("Excluding unnecessary pages", end, max_mapnr)
        self.num_dumpable = sum(self.cycle_counts)
        self.excluded = selector.excluded()

    def cycles(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.max_mapnr, self.cycle):
            yield start, min(self.max_mapnr, start + self.cycle)

    def bits(self, index: int, start: int, end: int) -> bytearray:
        """The keep-mask of one cycle (``index`` in :meth:`cycles` order)."""
        if self.stored:
            return unpack_mask(self._packed[index], end - start)
        if index == 0:
            self.selector.reset()
        return self.selector.bitmap2(start, end)

    def packed(self, index: int, start: int, end: int) -> tuple[bytes, bytearray | None]:
        """The 2nd bitmap bytes of one cycle, and its mask when it had to be recomputed."""
        if self.stored:
            return self._packed[index], None
        bits = self.bits(index, start, end)
        return pack_mask(bits), bits

    def range_bits(self, lo: int, hi: int) -> bytearray:
        """Keep-mask of pfns ``lo..hi-1`` (a copy; needs the stored bitmap)."""
        out = bytearray(hi - lo)
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
                total += bits.count(1, max(lo, start) - start, min(hi, end) - start)
        return total
