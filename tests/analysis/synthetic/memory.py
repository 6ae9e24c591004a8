"""Physical memory, x86_64 page tables and the ELF vmcore of a synthetic kernel.

Layout (4 KiB pages, 4-level paging, no KASLR):

* RAM ``[0, HEAP_SIZE)``: the heap (direct-map allocations), page tables, and the
  pages behind vmalloc'ed stacks and module memory;
* the kernel image at physical ``KERNEL_PHYS``, virtual ``KERNEL_VIRT``
  (``__START_KERNEL_map`` + phys, ``phys_base`` 0): text, then data;
* ``init_top_pgt`` in the image data maps the direct map (one 1 GiB page), the kernel
  image (2 MiB pages) and, with 4 KiB pages, vmalloc and module addresses: those are
  reached only by walking the tables, as kdumpy's reader must.

The ELF file is laid out as /proc/vmcore: a PT_NOTE (``CORE`` PRSTATUS per CPU, then
``VMCOREINFO``), RAM PT_LOADs whose ``p_vaddr`` is the direct-map address, and a
PT_LOAD for the kernel image at its ``__START_KERNEL_map`` address.
"""

from __future__ import annotations

import struct

PAGE = 4096
START_KERNEL_MAP = 0xFFFFFFFF80000000
PAGE_OFFSET = 0xFFFF888000000000
VMALLOC_START = 0xFFFFC90000000000
MODULES_VADDR = 0xFFFFFFFFC0000000
KERNEL_PHYS = 0x1000000
KERNEL_VIRT = START_KERNEL_MAP + KERNEL_PHYS  # 0xffffffff81000000
HEAP_SIZE = 4 << 20
IMAGE_SIZE = 2 << 20
PRESENT_RW = 0x3
PSE = 0x80

# struct user_regs_struct order (pr_reg of elf_prstatus).
PRSTATUS_REGS = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx",
    "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs",
)  # fmt: skip


class Memory:
    """Physical memory with a bump allocator, page tables and typed writers."""

    def __init__(self) -> None:
        self.heap = bytearray(HEAP_SIZE)
        self.image = bytearray(IMAGE_SIZE)
        self._heap_next = PAGE  # keep physical page 0 unused, as a kernel does
        self._mapped: dict[int, int] = {}  # 4 KiB virtual page -> physical page
        self._vmalloc_next = VMALLOC_START
        self._module_next = MODULES_VADDR

    # -- physical ----------------------------------------------------------------------------
    def _phys_buffer(self, paddr: int, size: int) -> tuple[bytearray, int]:
        if paddr >= 0 and paddr + size <= HEAP_SIZE:
            return self.heap, paddr
        if paddr >= KERNEL_PHYS and paddr + size <= KERNEL_PHYS + IMAGE_SIZE:
            return self.image, paddr - KERNEL_PHYS
        raise ValueError(f"physical {paddr:#x}+{size} is outside the synthetic RAM")

    def write_phys(self, paddr: int, data: bytes) -> None:
        buf, at = self._phys_buffer(paddr, len(data))
        buf[at : at + len(data)] = data

    def read_phys(self, paddr: int, size: int) -> bytes:
        buf, at = self._phys_buffer(paddr, size)
        return bytes(buf[at : at + size])

    def alloc_phys(self, size: int, align: int = 8) -> int:
        at = (self._heap_next + align - 1) & -align
        if at + size > HEAP_SIZE:
            raise MemoryError("synthetic heap exhausted")
        self._heap_next = at + size
        return at

    # -- virtual -----------------------------------------------------------------------------
    def vtop(self, vaddr: int) -> int:
        if START_KERNEL_MAP <= vaddr < MODULES_VADDR:
            return vaddr - START_KERNEL_MAP
        if PAGE_OFFSET <= vaddr < PAGE_OFFSET + (1 << 30):
            return vaddr - PAGE_OFFSET
        page = self._mapped.get(vaddr & ~(PAGE - 1))
        if page is None:
            raise ValueError(f"synthetic kernel: {vaddr:#x} is not mapped")
        return page + (vaddr & (PAGE - 1))

    def write(self, vaddr: int, data: bytes) -> None:
        """Write at a kernel virtual address (crossing pages of any mapping)."""
        while data:
            chunk = min(len(data), PAGE - (vaddr & (PAGE - 1)))
            self.write_phys(self.vtop(vaddr), data[:chunk])
            vaddr, data = vaddr + chunk, data[chunk:]

    def read(self, vaddr: int, size: int) -> bytes:
        out = b""
        while size:
            chunk = min(size, PAGE - (vaddr & (PAGE - 1)))
            out += self.read_phys(self.vtop(vaddr), chunk)
            vaddr, size = vaddr + chunk, size - chunk
        return out

    def read_u64(self, vaddr: int) -> int:
        return int.from_bytes(self.read(vaddr, 8), "little")

    def read_u32(self, vaddr: int) -> int:
        return int.from_bytes(self.read(vaddr, 4), "little")

    def u64(self, vaddr: int, value: int) -> None:
        self.write(vaddr, struct.pack("<Q", value & (1 << 64) - 1))

    def u32(self, vaddr: int, value: int) -> None:
        self.write(vaddr, struct.pack("<I", value & 0xFFFFFFFF))

    def alloc(self, size: int, align: int = 8) -> int:
        """Zeroed direct-map memory (kmalloc)."""
        return PAGE_OFFSET + self.alloc_phys(size, align)

    def _map_pages(self, vaddr: int, size: int) -> None:
        """Back ``size`` bytes at ``vaddr`` with fresh heap pages, taken in reverse
        order so that virtually contiguous never means physically contiguous."""
        pages = [self.alloc_phys(PAGE, PAGE) for _ in range((size + PAGE - 1) // PAGE)]
        for i, phys in enumerate(reversed(pages)):
            self._mapped[vaddr + i * PAGE] = phys

    def vmalloc(self, size: int) -> int:
        """Page-table-mapped memory with an unmapped guard page after it (stacks)."""
        vaddr = self._vmalloc_next
        self._map_pages(vaddr, size)
        self._vmalloc_next += (size + 2 * PAGE - 1) & -PAGE
        return vaddr

    def module_alloc(self, size: int) -> int:
        vaddr = self._module_next
        self._map_pages(vaddr, size)
        self._module_next += (size + 2 * PAGE - 1) & -PAGE
        return vaddr

    # -- page tables -------------------------------------------------------------------------
    def build_page_tables(self, pgd_paddr: int) -> None:
        """Fill the PGD at ``pgd_paddr`` (in the image) and the tables below it."""
        tables: dict[tuple[int, ...], int] = {(): pgd_paddr}

        def table(path: tuple[int, ...]) -> int:
            if path not in tables:
                tables[path] = self.alloc_phys(PAGE, PAGE)
                parent = table(path[:-1])
                self._entry(parent, path[-1], tables[path] | PRESENT_RW)
            return tables[path]

        def index(vaddr: int, shift: int) -> int:
            return (vaddr >> shift) & 511

        # Direct map: one 1 GiB page at PAGE_OFFSET.
        pud = table((index(PAGE_OFFSET, 39),))
        self._entry(pud, index(PAGE_OFFSET, 30), 0 | PRESENT_RW | PSE)
        # Kernel image: 2 MiB pages from START_KERNEL_MAP up to the end of the image.
        pmd = table((index(START_KERNEL_MAP, 39), index(START_KERNEL_MAP, 30)))
        for phys in range(0, KERNEL_PHYS + IMAGE_SIZE, 2 << 20):
            self._entry(pmd, index(START_KERNEL_MAP + phys, 21), phys | PRESENT_RW | PSE)
        # vmalloc and modules: 4 KiB pages.
        for vaddr, phys in sorted(self._mapped.items()):
            path = tuple(index(vaddr, s) for s in (39, 30, 21))
            self._entry(table(path), index(vaddr, 12), phys | PRESENT_RW)

    def map_user(self, pgd_paddr: int, vaddr: int, data: bytes) -> None:
        """Put ``data`` at user ``vaddr`` of the process whose page tables start at
        ``pgd_paddr`` (fresh pages, its tables written now)."""
        first, end = vaddr & ~(PAGE - 1), vaddr + len(data)
        for page in range(first, end, PAGE):
            table = pgd_paddr
            for shift in (39, 30, 21):
                at = table + 8 * ((page >> shift) & 511)
                entry = int.from_bytes(self.read_phys(at, 8), "little")
                if not entry & 1:
                    entry = self.alloc_phys(PAGE, PAGE) | PRESENT_RW
                    self.write_phys(at, struct.pack("<Q", entry))
                table = entry & ~(PAGE - 1)
            phys = self.alloc_phys(PAGE, PAGE)
            self._entry(table, (page >> 12) & 511, phys | PRESENT_RW | 0x4)  # _PAGE_USER
            lo, hi = max(vaddr, page), min(end, page + PAGE)
            self.write_phys(phys + (lo - page), data[lo - vaddr : hi - vaddr])

    def _entry(self, table_paddr: int, index: int, value: int) -> None:
        self.write_phys(table_paddr + 8 * index, struct.pack("<Q", value))

    # -- the dump file -----------------------------------------------------------------------
    def elf(self, vmcoreinfo: str, prstatus: list[tuple[int, dict[str, int]]]) -> bytes:
        """The ELF vmcore: notes, then the heap and the kernel image as PT_LOADs."""
        notes = b"".join(_note("CORE", 1, _prstatus(pid, regs)) for pid, regs in prstatus)
        notes += _note("VMCOREINFO", 0, vmcoreinfo.encode())
        heap_end = (self._heap_next + PAGE - 1) & -PAGE
        loads = [
            (PAGE_OFFSET, 0, bytes(self.heap[:heap_end])),
            (KERNEL_VIRT, KERNEL_PHYS, bytes(self.image)),
        ]
        phnum = 1 + len(loads)
        offset = 64 + 56 * phnum
        phdrs = [struct.pack("<IIQQQQQQ", 4, 0, offset, 0, 0, len(notes), len(notes), 4)]
        data_at = (offset + len(notes) + PAGE - 1) & -PAGE
        body = bytearray()
        for vaddr, paddr, data in loads:
            phdrs.append(struct.pack("<IIQQQQQQ", 1, 7, data_at + len(body), vaddr, paddr,
                                     len(data), len(data), PAGE))  # fmt: skip
            body += data
        ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
        ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 4, 62, 1, 0, 64, 0, 0, 64, 56, phnum,
                           64, 0, 0)  # fmt: skip
        head = ehdr + b"".join(phdrs) + notes
        return head + bytes(data_at - len(head)) + bytes(body)


def _note(name: str, ntype: int, desc: bytes) -> bytes:
    raw = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(raw), len(desc), ntype) + pad(raw) + pad(desc)


def _prstatus(pid: int, regs: dict[str, int]) -> bytes:
    """x86_64 ``struct elf_prstatus`` (336 bytes): pr_pid at 32, pr_reg at 112."""
    desc = bytearray(336)
    struct.pack_into("<i", desc, 32, pid)
    values = [regs.get(r, 0) & (1 << 64) - 1 for r in PRSTATUS_REGS]
    struct.pack_into("<27Q", desc, 112, *values)
    return bytes(desc)
