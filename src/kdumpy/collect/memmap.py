"""Finding and reading the crashed kernel's ``struct page`` array (SPARSEMEM).

``SYMBOL(mem_section)`` is the array of section roots (SPARSEMEM_EXTREME: pointers to
pages of ``struct mem_section``); each section's ``section_mem_map`` encodes
``mem_map - first_pfn_of_section`` plus flag bits in the low bits, so the struct
page of ``pfn`` is at ``decoded + pfn * SIZE(page)`` (format.md section 2.2).  The
struct pages live in the vmemmap, a virtual area mapped by the kernel's page tables
(usually with 2 MiB pages); it is read here in bulk, one page-table walk per
mapping, not per struct page.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore.base import Buffer, Dump

# The kernel's SECTION_MAP_MASK clears at most 6 flag bits (5 in makedumpfile);
# the decoded address is aligned far beyond that, so clearing 6 is always safe.
SECTION_FLAG_BITS = 0x3F
SECTION_HAS_MEM_MAP = 0x2
# No machine kdumpy reads has more physical address bits (x86_64 5-level, arm64 LPA/LPA2):
# a VMCOREINFO claiming more is capped, so the section table stays bounded.
MAX_PHYSMEM_BITS = 52
# Fills the buffer with physical memory at an address; False if it cannot (then read_phys).
ReadInto = Callable[[int, memoryview], bool]
# Physical memory at an address, of a size, as a read-only view of the dump file; None if
# the file does not hold it in one piece.
MapPhys = Callable[[int, int], memoryview | None]


class MemMap:
    """The struct page array of a dump: which sections have one, and bulk reads of it."""

    def __init__(
        self,
        dump: Dump,
        max_mapnr: int,
        read_phys: Callable[[int, int], bytes] | None = None,
        read_into: ReadInto | None = None,
        map_phys: MapPhys | None = None,
    ) -> None:
        self.dump = dump
        self.read_phys = read_phys or dump.read_phys
        self.read_into = read_into
        self.map_phys = map_phys
        info = dump.vmcoreinfo
        self.page_size = dump.page_size
        self.page_shift = self.page_size.bit_length() - 1
        size = info.size("page")
        if size is None:
            raise DumpFormatError(f"{dump.path}: VMCOREINFO has no SIZE(page)")
        self.struct_size = size
        root_array = info.symbol("mem_section")
        if root_array is None:
            raise DumpFormatError(
                f"{dump.path}: VMCOREINFO has no SYMBOL(mem_section) (only SPARSEMEM "
                "kernels are supported for page filtering)"
            )
        self.section_bits = (info.number("SECTION_SIZE_BITS") or 27) - self.page_shift
        self.translator = dump.translator
        nsec = (max_mapnr + (1 << self.section_bits) - 1) >> self.section_bits
        self.section_map = self._decode_sections(root_array, nsec)
        self._raw = bytearray()

    def _decode_sections(self, root_array: int, nsec: int) -> dict[int, int]:
        """Decoded ``mem_map`` address of each section that has one (absent: none).

        Only sections whose root is in the dump are looked at, so the work follows
        the dump's bytes (a 4 KiB root per 256 sections), not the memory it declares.
        """
        info = self.dump.vmcoreinfo
        ms_size = info.require("SIZE(mem_section)")
        ms_off = info.require("OFFSET(mem_section.section_mem_map)")
        declared = info.number("MAX_PHYSMEM_BITS") or self.dump.arch.max_physmem_bits
        max_bits = min(declared, MAX_PHYSMEM_BITS)
        nr_mem_sections = 1 << max(0, max_bits - self.section_bits - self.page_shift)
        nsec = min(nsec, nr_mem_sections)
        if not 0 < ms_size <= self.page_size:
            raise DumpFormatError(f"{self.dump.path}: bad VMCOREINFO SIZE(mem_section) {ms_size}")
        per_root = self.page_size // ms_size
        nroots = info.length("mem_section")
        extreme = nroots is None or nroots != nr_mem_sections
        wanted = (nsec + per_root - 1) // per_root
        tr = self.dump.translator
        if extreme:
            count = wanted if nroots is None else min(wanted, nroots)
            roots = struct.unpack(f"<{count}Q", tr.read_virt(root_array, 8 * count))
        else:
            roots = tuple(root_array + i * per_root * ms_size for i in range(wanted))
        out: dict[int, int] = {}
        for r, root in enumerate(roots):
            if not root:
                continue
            count = min(per_root, nsec - r * per_root)
            data = tr.read_virt(root, count * ms_size)
            first = r * per_root
            for i in range(count):
                (raw,) = struct.unpack_from("<Q", data, i * ms_size + ms_off)
                if raw & SECTION_HAS_MEM_MAP:
                    nr = first + i
                    decoded = (raw & ~SECTION_FLAG_BITS) + (
                        nr << self.section_bits
                    ) * self.struct_size
                    out[nr] = decoded & (1 << 64) - 1
        return out

    def described_end(self) -> int:
        """One past the last pfn of the last section that has a memory map (0: none)."""
        return (max(self.section_map) + 1) << self.section_bits if self.section_map else 0

    def read(self, pfn0: int, count: int) -> tuple[Buffer, bytes | bytearray]:
        """Struct pages of ``pfn0 .. pfn0+count-1`` back to back (``count * SIZE(page)``
        bytes, zero where unreadable) and one byte per pfn, 1 where its struct page was read.

        Mostly a read-only view of the dump file (:meth:`_map`).  Otherwise the struct
        page buffer is this object's, reused by the next call:
        a fresh one per batch would cost a page fault per 4 KiB of it, every batch.  Only
        what cannot be read is zeroed (clearing all of it first cost a copy of the buffer
        per batch, ~10 ms per 4 GiB of RAM)."""
        mapped = self._map(pfn0, count)
        if mapped is not None:
            return mapped, b"\x01" * count
        size = self.struct_size
        if len(self._raw) != count * size:
            self._raw = bytearray(count * size)
        raw = self._raw
        valid = bytearray(count)
        flat = memoryview(raw)
        pfn = pfn0
        end = pfn0 + count
        while pfn < end:
            sec = pfn >> self.section_bits
            sec_end = min(end, (sec + 1) << self.section_bits)
            base = self.section_map.get(sec, 0)
            pos, length = (pfn - pfn0) * size, (sec_end - pfn) * size
            if base:
                vaddr = base + (pfn - (sec << self.section_bits)) * size
                self._read_virt_into(vaddr, flat, pos, length, valid)
            else:
                flat[pos : pos + length] = bytes(length)
            pfn = sec_end
        return raw, valid

    def _map(self, pfn0: int, count: int) -> memoryview | None:
        """The struct pages of ``pfn0 .. pfn0+count-1`` without a copy, when they are one
        run of physical memory in one piece of the dump file: the vmemmap is mapped with
        2 MiB pages, mostly one after the other in memory, and a batch is 2 MiB of struct
        pages (copying them was 6 ms of a 3 GiB dump's 10 ms scan).  None otherwise."""
        if self.map_phys is None:
            return None
        size, bits = self.struct_size, self.section_bits
        sec0 = pfn0 >> bits
        base = self.section_map.get(sec0, 0)
        if not base:
            return None
        for sec in range(sec0 + 1, ((pfn0 + count - 1) >> bits) + 1):
            if self.section_map.get(sec, 0) != base + ((sec - sec0) << bits) * size:
                return None  # the sections' memory maps are not one array here
        vaddr = base + (pfn0 - (sec0 << bits)) * size
        length = count * size
        first = self.translator.mapping(vaddr, self.read_phys)
        if first is None:
            return None
        paddr, done = first
        while done < length:
            more = self.translator.mapping(vaddr + done, self.read_phys)
            if more is None or more[0] != paddr + done:
                return None
            done += more[1]
        return self.map_phys(paddr, length)

    def _read_virt_into(
        self, vaddr: int, flat: memoryview, pos: int, length: int, valid: bytearray
    ) -> None:
        """Copy ``length`` bytes of vmemmap at ``vaddr`` into ``flat[pos:]``.

        Rows (struct pages) entirely inside a run of successfully read bytes are
        marked in ``valid`` (``flat`` and ``valid`` both start at the batch's first pfn);
        bytes that cannot be read are zeroed.
        """
        done = 0
        run_start: int | None = None
        while done < length:
            # one page-table walk per mapping (2 MiB or 1 GiB for the vmemmap, usually)
            mapped = self.translator.mapping(vaddr + done, self.read_phys)
            page_left = self.page_size - ((vaddr + done) & (self.page_size - 1))
            step = min(length - done, mapped[1] if mapped else page_left)
            ok = False
            if mapped and self.read_into is not None:
                ok = self.read_into(mapped[0], flat[pos + done : pos + done + step])
            if mapped and not ok:
                try:
                    data = self.read_phys(mapped[0], step)
                except KdumpyError:
                    data = b""
                if len(data) == step:
                    flat[pos + done : pos + done + step] = data
                    ok = True
            if not ok:
                flat[pos + done : pos + done + step] = bytes(step)
            if ok and run_start is None:
                run_start = pos + done
            elif not ok and run_start is not None:
                self._mark(valid, run_start, pos + done)
                run_start = None
            done += step
        if run_start is not None:
            self._mark(valid, run_start, pos + length)

    def _mark(self, valid: bytearray, lo: int, hi: int) -> None:
        """Mark rows whose bytes lie entirely in ``[lo, hi)``."""
        size = self.struct_size
        a, b = (lo + size - 1) // size, hi // size
        if a < b:
            valid[a:b] = b"\x01" * (b - a)
