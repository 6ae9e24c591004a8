"""arm64 kernel virtual -> physical translation from VMCOREINFO and the dump's page tables.

Facts (reach.md 6.2; the kernel's arch/arm64/include/asm/memory.h and pgtable-hwdef.h):

* The walk starts at ``SYMBOL(swapper_pg_dir)``, a kernel-image address:
  ``pa = va - NUMBER(kimage_voffset)``.
* Levels: ``ARM64_HW_PGTABLE_LEVELS(va_bits) = (va_bits - 4) // (PAGE_SHIFT - 3)``, each
  level resolving ``PAGE_SHIFT - 3`` bits: 4K pages 39 bits -> 3, 48 -> 4, 52 -> 5; 16K
  36 -> 2, 47 -> 3, 48/52 -> 4; 64K 42 -> 2, 48/52 -> 3.
* A kernel built for 52-bit VAs may run with 48 (``NUMBER(TCR_EL1_T1SZ)`` says:
  ``vabits_actual = 64 - T1SZ``).  With the same number of levels (64K, 16K) the hardware
  starts inside the 52-bit top table (``TTBR1_BAL_OFFSET``), which is what indexing the
  sign-extended address with the configured bits gives; with fewer (4K LPA2 falling back
  to 4 levels) the top level is folded and the walk uses the running bits.
* Descriptors: bit 0 valid; above the last level bit 1 set = table, clear = block.
  Output address ``desc[47:PAGE_SHIFT]``; 64K pages add PA[51:48] from ``desc[15:12]``
  (FEAT_LPA; RES0 without it); 4K/16K pages running 52-bit VAs use FEAT_LPA2:
  ``desc[49:PAGE_SHIFT]`` plus PA[51:50] from ``desc[9:8]`` (without LPA2 those bits are
  shareability, so they are taken as address bits only then).
* Linear map, 5.4 and later (the "flipped" layout): ``PAGE_OFFSET = -2**VA_BITS``,
  ``PAGE_END = -2**(min(VA_BITS, 48) - 1)``; before 5.4 ``PAGE_OFFSET =
  -2**(VA_BITS - 1)`` up to the top.  Either way ``pa = va - PAGE_OFFSET +
  PHYS_OFFSET``.  The layout is told by where the kernel image lies: at or above
  ``PAGE_END`` (5.4+), below ``PAGE_OFFSET`` (before), else by OSRELEASE.
* vmemmap: the first present memory section's ``section_mem_map`` (SPARSEMEM_VMEMMAP
  encodes ``vmemmap`` itself), else ``NUMBER(VMEMMAP_START)``, else the version's formula
  (:func:`vmemmap_start`).
  The struct page of pfn ``p`` is at ``VMEMMAP_START + (p - PHYS_OFFSET/PAGE_SIZE) *
  sizeof(struct page)``.
"""

from __future__ import annotations

import struct
from functools import cached_property

from kdumpy.arch.base import (
    DumpMemory,
    PageTableReads,
    ReadFn,
    TranslationError,
    release_version,
)
from kdumpy.errors import DumpFormatError, KdumpyError, PageNotPresent

MASK64 = (1 << 64) - 1
SZ_2M = 2 << 20
STRUCT_PAGE_MAX_SHIFT = 6  # log2 of sizeof(struct page) rounded up: 64 bytes
_CACHE_LIMIT = 4096  # translated pages remembered; cleared wholesale when full
_VALID, _TABLE = 0x1, 0x2


def pgtable_levels(va_bits: int, page_shift: int) -> int:
    """The kernel's ``ARM64_HW_PGTABLE_LEVELS``."""
    return (va_bits - 4) // (page_shift - 3)


def output_address(desc: int, page_shift: int, lpa2: bool) -> int:
    """The physical address in a table, block or page descriptor (low bits clear)."""
    if page_shift == 16:  # 64K pages: FEAT_LPA keeps PA[51:48] in desc[15:12]
        return (desc & 0x0000_FFFF_FFFF_0000) | ((desc >> 12) & 0xF) << 48
    if lpa2:  # FEAT_LPA2: desc[49:PAGE_SHIFT] and PA[51:50] in desc[9:8]
        low = desc & ((1 << 50) - 1) & ~((1 << page_shift) - 1)
        return low | ((desc >> 8) & 0x3) << 50
    return desc & ((1 << 48) - 1) & ~((1 << page_shift) - 1)


def _version(release: str | None) -> tuple[int, int]:
    """An unknown release is taken as the oldest: the layouts before 5.4."""
    return release_version(release) or (0, 0)


def vmemmap_start(
    release: tuple[int, int], va_bits: int, page_shift: int, flipped: bool = True
) -> int:
    """``VMEMMAP_START`` of a kernel version and configuration (crash's
    ``arm64_get_range_v5_*``; memory.h)."""
    vmemmap_shift = page_shift - STRUCT_PAGE_MAX_SHIFT
    page_end = -(1 << (min(va_bits, 48) - 1))
    if release >= (6, 9):
        # The vmemmap projects the linear map and ends 1 GiB below the top (the 6.12 lab
        # kernel exports 0xffffc1ffc0000000 for 52 bits; the first release is inferred
        # from the LPA2 series, not checked).
        size = (page_end + (1 << va_bits)) >> vmemmap_shift
        return (-(1 << 30) - size) & MASK64
    if release >= (5, 11):
        return -(1 << (va_bits - vmemmap_shift)) & MASK64
    if flipped:  # 5.4 .. 5.10: the linear map's struct pages end 2 MiB below the top
        size = (page_end + (1 << va_bits)) >> vmemmap_shift
        return (-size - SZ_2M) & MASK64
    # Before 5.4: right below PAGE_OFFSET, sized for the whole linear half.
    page_offset = -(1 << (va_bits - 1))
    size = 1 << (va_bits - 1 - vmemmap_shift)
    return (page_offset - size) & MASK64


class Arm64Translator(PageTableReads):
    """Translate arm64 kernel virtual addresses of a dump and read memory through them."""

    def __init__(self, dump: DumpMemory) -> None:
        self.dump = dump
        info = dump.vmcoreinfo
        self.page_size = dump.page_size
        self.page_shift = self.page_size.bit_length() - 1
        if self.page_shift not in (12, 14, 16):
            raise DumpFormatError(f"{dump.path}: arm64 page size {self.page_size} is impossible")
        self.va_bits = self._require(info.number("VA_BITS"), "NUMBER(VA_BITS)")
        t1sz = info.number("TCR_EL1_T1SZ")
        self.vabits_actual = 64 - t1sz if t1sz else self.va_bits
        if not 36 <= self.vabits_actual <= self.va_bits <= 52:
            raise DumpFormatError(
                f"{dump.path}: impossible arm64 VA bits {self.va_bits} "
                f"(running {self.vabits_actual})"
            )
        self.kimage_voffset = (
            self._require(info.number("kimage_voffset"), "NUMBER(kimage_voffset)") & MASK64
        )
        self.phys_offset = self._require(info.number("PHYS_OFFSET"), "NUMBER(PHYS_OFFSET)")
        self.phys_offset &= MASK64
        pgd = self._require(info.symbol("swapper_pg_dir"), "SYMBOL(swapper_pg_dir)")
        self.pgd_paddr = (pgd - self.kimage_voffset) & MASK64
        self.lpa2 = self.page_shift != 16 and self.vabits_actual > 48
        self.levels = pgtable_levels(self.vabits_actual, self.page_shift)
        # The bits the top table is indexed by (see the module docstring).
        same = self.levels == pgtable_levels(self.va_bits, self.page_shift)
        self.index_bits = self.va_bits if same else self.vabits_actual
        stext = info.symbol("_stext")
        self.flipped = self._flipped(stext, info.osrelease)
        if self.flipped:
            self.page_offset_value = -(1 << self.va_bits) & MASK64
            self.page_end = -(1 << (min(self.va_bits, 48) - 1)) & MASK64
        else:
            self.page_offset_value = -(1 << (self.va_bits - 1)) & MASK64
            self.page_end = 1 << 64
        self._cache: dict[int, int] = {}

    def _require(self, value: int | None, key: str) -> int:
        if value is None:
            raise DumpFormatError(f"{self.dump.path}: arm64 VMCOREINFO has no {key}")
        return value

    def _flipped(self, stext: int | None, release: str | None) -> bool:
        """Whether the kernel uses the 5.4+ layout (linear map in the lower half)."""
        if stext is not None:
            if stext >= -(1 << (min(self.va_bits, 48) - 1)) & MASK64:
                return True  # the image lies above PAGE_END: 5.4+
            if stext < -(1 << (self.va_bits - 1)) & MASK64:
                return False  # below the old PAGE_OFFSET: before 5.4
        return _version(release) >= (5, 4)

    # -- the walk -------------------------------------------------------------------------
    def _shifts(self) -> list[int]:
        step = self.page_shift - 3
        return [self.page_shift + step * i for i in reversed(range(self.levels))]

    def _descend(self, vaddr: int, read: ReadFn, root: int | None = None) -> tuple[int, int]:
        """``(output address, mapping size)`` of the page or block mapping ``vaddr``,
        from ``swapper_pg_dir`` or the table at physical ``root``."""
        table = self.pgd_paddr if root is None else root
        shifts = self._shifts()
        for level, shift in enumerate(shifts):
            top = self.index_bits if level == 0 else shift + self.page_shift - 3
            index = (vaddr >> shift) & ((1 << (top - shift)) - 1)
            try:
                raw = read(table + 8 * index, 8)
            except PageNotPresent as exc:
                raise TranslationError(
                    f"{self.dump.path}: page table for {vaddr:#x} is not in the dump ({exc})"
                ) from None
            desc = int(struct.unpack("<Q", raw)[0])
            if not desc & _VALID:
                raise TranslationError(
                    f"{self.dump.path}: virtual address {vaddr:#x} is not mapped"
                )
            last = level == len(shifts) - 1
            address = output_address(desc, self.page_shift, self.lpa2)
            if last or not desc & _TABLE:
                if last and not desc & _TABLE:
                    raise TranslationError(
                        f"{self.dump.path}: page table entry {desc:#x} for {vaddr:#x} is "
                        "reserved (invalid at the last level)"
                    )
                size = 1 << shift
                return address & ~(size - 1), size
            table = address
        raise AssertionError("unreachable: the last level returns")

    def walk(self, vaddr: int) -> int:
        """Translate by walking the page tables (no shortcut, no cache)."""
        base, size = self._descend(vaddr, self.dump.read_phys)
        return base + (vaddr & (size - 1))

    def walk_user(self, pgd_paddr: int, vaddr: int) -> int:
        """A user address through a process's table (``mm->pgd``, what TTBR0 holds):
        the same levels as the kernel's; a user address has its top bits clear, so the
        top-level index starts at the table's first entry."""
        base, size = self._descend(vaddr, self.dump.read_phys, pgd_paddr)
        return base + (vaddr & (size - 1))

    def mapping(self, vaddr: int, read: ReadFn | None = None) -> tuple[int, int] | None:
        """``(paddr, bytes mapped contiguously from vaddr)``, or None if unmapped."""
        try:
            base, size = self._descend(vaddr, read or self.dump.read_phys)
        except KdumpyError:
            return None
        offset = vaddr & (size - 1)
        return base + offset, size - offset

    def is_linear(self, vaddr: int) -> bool:
        """Whether ``vaddr`` lies in the linear map (``__is_lm_address``)."""
        return self.page_offset_value <= vaddr < self.page_end

    @property
    def modules_start(self) -> int:
        """``NUMBER(MODULES_VADDR)``, else a floor below modules and image: PAGE_END
        (5.4+, where the module area begins, after BPF's on 5.4..5.10), or the start of
        the kernel half before 5.4."""
        exported = self.dump.vmcoreinfo.number("MODULES_VADDR")
        if exported is not None:
            return exported & MASK64
        return self.page_end if self.flipped else -(1 << self.va_bits) & MASK64

    @property
    def page_offset(self) -> int:
        """``PAGE_OFFSET``: the linear map's start."""
        return self.page_offset_value

    def phys_to_virt(self, phys: int) -> int:
        """``__va``: the linear map starts at ``PHYS_OFFSET`` (the start of RAM); the
        inverse of :meth:`vtop` on it."""
        return (phys - self.phys_offset + self.page_offset_value) & MASK64

    def vtop(self, vaddr: int) -> int:
        """Physical address of a kernel virtual address; :class:`TranslationError` if
        unmapped."""
        if self.is_linear(vaddr):
            return (vaddr - self.page_offset_value + self.phys_offset) & MASK64
        page = vaddr & ~(self.page_size - 1)
        cached = self._cache.get(page)
        if cached is None:
            cached = self.walk(page)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[page] = cached
        return cached + (vaddr & (self.page_size - 1))

    @cached_property
    def vmemmap_start(self) -> int:
        """``VMEMMAP_START``: VMCOREINFO's, else the version's formula."""
        exported = self.dump.vmcoreinfo.number("VMEMMAP_START")
        if exported is not None:
            return exported & MASK64
        release = _version(self.dump.vmcoreinfo.osrelease)
        return vmemmap_start(release, self.va_bits, self.page_shift, self.flipped)

    @cached_property
    def vmemmap(self) -> int:
        """Address of pfn 0's ``struct page`` (the kernel's ``vmemmap``).

        From the first present memory section when VMCOREINFO has them (SPARSEMEM
        encodes ``mem_map - section_start_pfn``, which is this), else from
        ``VMEMMAP_START`` and ``PHYS_OFFSET``.
        """
        decoded = self._vmemmap_from_sections()
        if decoded is not None:
            return decoded
        size = self.dump.vmcoreinfo.size("page") or 1 << STRUCT_PAGE_MAX_SHIFT
        first_pfn = self.phys_offset >> self.page_shift
        return (self.vmemmap_start - first_pfn * size) & MASK64

    def _vmemmap_from_sections(self) -> int | None:
        info = self.dump.vmcoreinfo
        root_array = info.symbol("mem_section")
        size = info.size("mem_section")
        off = info.offset("mem_section.section_mem_map")
        if root_array is None or not size or off is None:
            return None
        per_root = self.page_size // size
        try:
            for r in range(info.length("mem_section") or 1):
                root = self.read_u64(root_array + 8 * r)
                for i in range(per_root if root else 0):
                    raw = self.read_u64(root + i * size + off)
                    if raw & 1:  # SECTION_MARKED_PRESENT
                        return raw & ~0x3F
        except KdumpyError:
            return None
        return None
