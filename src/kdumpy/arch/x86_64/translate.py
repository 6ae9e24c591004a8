"""x86_64 kernel virtual -> physical translation from VMCOREINFO alone.

The walk starts at ``SYMBOL(init_top_pgt)``, whose physical address is
``va - __START_KERNEL_map + NUMBER(phys_base)``; entries are masked with bits 12..51
minus ``NUMBER(sme_mask)`` (AMD memory encryption); ``NUMBER(pgtable_l5_enabled)``
selects 5 levels.  Two shortcuts avoid the walk, as crash's ``x86_64_VTOP`` does:
kernel image addresses (``__START_KERNEL_map`` + phys_base) and the direct map
(``page_offset``, up to the end of the dump's RAM).  ``page_offset`` comes from
/proc/vmcore's PT_LOADs when they carry virtual addresses, otherwise it is discovered by
finding where the page tables map physical address 0.
"""

from __future__ import annotations

import struct
from functools import cached_property

from kdumpy.arch.base import DumpMemory, PageTableReads, ReadFn, TranslationError
from kdumpy.errors import DumpFormatError, KdumpyError, PageNotPresent

START_KERNEL_MAP = 0xFFFFFFFF80000000
MODULES_VADDR = 0xFFFFFFFFC0000000  # above the image (1 GiB with KASLR)
DEFAULT_KERNEL_IMAGE_SIZE = 1 << 30
PAGE_PRESENT = 0x1
PAGE_PSE = 0x80
PHYS_MASK = 0x000FFFFFFFFFF000
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
_CACHE_LIMIT = 4096  # translated pages remembered; cleared wholesale when full


class X86_64Translator(PageTableReads):
    """Translate kernel virtual addresses of a dump and read memory through them."""

    page_size = PAGE_SIZE  # x86_64 kernels page at 4 KiB

    def __init__(self, dump: DumpMemory) -> None:
        self.dump = dump
        info = dump.vmcoreinfo
        pgt = info.symbol("init_top_pgt") or info.symbol("init_level4_pgt")
        if pgt is None:
            raise DumpFormatError(f"{dump.path}: VMCOREINFO has no SYMBOL(init_top_pgt)")
        phys_base = info.number("phys_base")
        self.phys_base: int = self._phys_base_from_loads() if phys_base is None else phys_base
        self.sme_mask = info.number("sme_mask") or 0
        self.entry_mask = PHYS_MASK & ~self.sme_mask
        self.levels = 5 if info.number("pgtable_l5_enabled") else 4
        self.pgd_paddr = pgt - START_KERNEL_MAP + self.phys_base
        self.kernel_image_size = info.number("KERNEL_IMAGE_SIZE") or DEFAULT_KERNEL_IMAGE_SIZE
        self.max_physmem_bits = info.number("MAX_PHYSMEM_BITS") or (52 if self.levels == 5 else 46)
        # The direct-map shortcut covers the dump's RAM only: with KASLR the kernel sizes the
        # direct-map region to RAM plus padding and randomizes vmalloc right above it (5.10
        # lab dump: vmalloc_base = page_offset_base + 12 TiB, well inside 2**46).
        ram_end = dump.max_pfn * dump.page_size
        self.direct_map_size = min(ram_end or 1 << 64, 1 << self.max_physmem_bits)
        self._cache: dict[int, int] = {}
        self._page_offset: int | None = None

    def _phys_base_from_loads(self) -> int:
        """Fallback without NUMBER(phys_base): the kernel-text PT_LOAD of /proc/vmcore, or
        the kdump sub-header's copy."""
        stated = self.dump.stated_phys_base()
        if stated:
            return stated
        for seg in self.dump.stated_mappings():
            if seg.vaddr >= START_KERNEL_MAP and seg.vaddr != seg.paddr:
                return int(seg.paddr - (seg.vaddr - START_KERNEL_MAP))
        raise DumpFormatError(f"{self.dump.path}: cannot find phys_base (no NUMBER(phys_base))")

    def _entry(self, paddr: int) -> int:
        return int(struct.unpack("<Q", self.dump.read_phys(paddr, 8))[0])

    def walk(self, vaddr: int) -> int:
        """Translate by walking the page tables (no shortcuts, no cache)."""
        return self._walk_from(self.pgd_paddr, vaddr)

    def walk_user(self, pgd_paddr: int, vaddr: int) -> int:
        """A user address through a process's own PGD (``mm->pgd``: with page-table
        isolation that is the kernel half's copy, which maps user space as well)."""
        return self._walk_from(pgd_paddr, vaddr)

    def _walk_from(self, pgd_paddr: int, vaddr: int) -> int:
        mask = self.entry_mask
        table = pgd_paddr
        shifts = (48, 39, 30, 21, 12) if self.levels == 5 else (39, 30, 21, 12)
        for shift in shifts:
            try:
                entry = self._entry(table + ((vaddr >> shift) & 511) * 8)
            except PageNotPresent as exc:
                raise TranslationError(
                    f"{self.dump.path}: page table for {vaddr:#x} is not in the dump ({exc})"
                ) from None
            if not entry & PAGE_PRESENT:
                raise TranslationError(
                    f"{self.dump.path}: virtual address {vaddr:#x} is not mapped"
                )
            if shift in (30, 21) and entry & PAGE_PSE:
                size = 1 << shift
                return (entry & mask & ~(size - 1)) + (vaddr & (size - 1))
            table = entry & mask
        return table + (vaddr & (PAGE_SIZE - 1))

    def mapping(self, vaddr: int, read: ReadFn | None = None) -> tuple[int, int] | None:
        """``(paddr, bytes mapped contiguously from vaddr)`` by the page tables, read
        through ``read`` (the collector's own reader), or None if unmapped."""
        read = read or self.dump.read_phys
        table = self.pgd_paddr
        shifts = (48, 39, 30, 21, 12) if self.levels == 5 else (39, 30, 21, 12)
        for shift in shifts:
            try:
                entry = int(struct.unpack("<Q", read(table + ((vaddr >> shift) & 511) * 8, 8))[0])
            except KdumpyError:
                return None
            if not entry & PAGE_PRESENT:
                return None
            size = 1 << shift
            if shift == PAGE_SHIFT or (shift in (30, 21) and entry & PAGE_PSE):
                base = entry & self.entry_mask & ~(size - 1)
                return base + (vaddr & (size - 1)), size - (vaddr & (size - 1))
            table = entry & self.entry_mask
        return None

    @property
    def modules_start(self) -> int:
        """``MODULES_VADDR``: x86_64 modules live above the kernel image."""
        return MODULES_VADDR

    @property
    def page_offset(self) -> int:
        """Virtual address of physical 0 in the direct map (randomized with KASLR)."""
        if self._page_offset is None:
            self._page_offset = self._find_page_offset()
        return self._page_offset

    def phys_to_virt(self, phys: int) -> int:
        """``__va``: the direct map starts at physical 0."""
        return (self.page_offset + phys) & ((1 << 64) - 1)

    def _find_page_offset(self) -> int:
        # /proc/vmcore: RAM PT_LOADs have p_vaddr = __va(p_paddr).
        for seg in reversed(self.dump.stated_mappings()):
            if seg.vaddr < START_KERNEL_MAP and seg.vaddr != seg.paddr and seg.vaddr >> 63:
                return int(seg.vaddr - seg.paddr)
        # Otherwise find the lowest kernel-half, 1 GiB aligned address whose mapping
        # starts at physical 0: the direct map base is PUD aligned even when randomized
        # and lies below vmalloc and vmemmap.
        for va in self._mapped_gigabytes():
            try:
                if self.walk(va) == 0 and self.walk(va + (1 << 20)) == 1 << 20:
                    return va
            except TranslationError:
                continue
        raise DumpFormatError(f"{self.dump.path}: cannot locate the direct map (page_offset)")

    def _present_entries(self, table: int) -> list[tuple[int, int]]:
        """(index, entry) of the present entries of a page table; none if it is missing."""
        try:
            data = self.dump.read_phys(table, PAGE_SIZE)
        except PageNotPresent:
            return []
        entries = struct.unpack("<512Q", data)
        return [(i, e) for i, e in enumerate(entries) if e & PAGE_PRESENT]

    def _mapped_gigabytes(self) -> list[int]:
        """1 GiB aligned kernel-half addresses below the kernel image with a present PUD."""
        found: list[int] = []
        shifts = (48, 39) if self.levels == 5 else (39,)
        tables = [(self.pgd_paddr, 0)]
        for shift in shifts:
            next_tables = []
            for table, prefix in tables:
                for index, entry in self._present_entries(table):
                    if shift == shifts[0] and index < 256:
                        continue  # user half
                    next_tables.append((entry & self.entry_mask, prefix | (index << shift)))
            tables = next_tables
        top_bits = ~((1 << (shifts[0] + 9)) - 1) & ((1 << 64) - 1)
        for table, prefix in tables:
            for index, _entry in self._present_entries(table):
                va = top_bits | prefix | (index << 30)
                if va < START_KERNEL_MAP:
                    found.append(va)
        return sorted(found)

    def vtop(self, vaddr: int) -> int:
        """Physical address of a kernel virtual address; :class:`TranslationError` if unmapped."""
        if START_KERNEL_MAP <= vaddr < START_KERNEL_MAP + self.kernel_image_size:
            return vaddr - START_KERNEL_MAP + self.phys_base
        page = vaddr & ~(PAGE_SIZE - 1)
        cached = self._cache.get(page)
        if cached is None:
            po = self._page_offset
            if po is not None and po <= vaddr < po + self.direct_map_size:
                cached = page - po
            else:
                cached = self.walk(page)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[page] = cached
        return cached + (vaddr & (PAGE_SIZE - 1))

    @cached_property
    def vmemmap(self) -> int:
        """Base of the ``struct page`` array (``vmemmap_base``, randomized with KASLR).

        From ``SYMBOL(vmemmap)`` when exported, else decoded from the first present
        ``mem_section``: with SPARSEMEM_VMEMMAP the encoded ``section_mem_map`` is
        ``vmemmap`` itself plus flag bits (the per-section pfn is subtracted out).
        """
        info = self.dump.vmcoreinfo
        value = info.symbol("vmemmap")
        if value is not None:
            return value
        root_array = info.require("SYMBOL(mem_section)")
        size = info.require("SIZE(mem_section)")
        off = info.require("OFFSET(mem_section.section_mem_map)")
        per_root = PAGE_SIZE // size
        roots = info.length("mem_section") or 1
        for r in range(roots):
            root = self.read_u64(root_array + 8 * r)
            if not root:
                continue
            for i in range(per_root):
                raw = self.read_u64(root + i * size + off)
                if raw & 1:  # SECTION_MARKED_PRESENT
                    return raw & ~0x3F
        raise DumpFormatError(f"{self.dump.path}: no present memory section found")
