"""A small x86_64 machine's ELF vmcore, built byte by byte for the fast collect tests.

The layout is what kdump tools look for in a real /proc/vmcore, at a few MiB:

* RAM pfns ``0 .. pages`` (minus ``holes``), one PT_LOAD per range with
  ``p_vaddr = PAGE_OFFSET + p_paddr`` (the direct map, as /proc/vmcore has it);
* the kernel image at :data:`PHYS_BASE`: ``init_top_pgt`` and the page tables of the
  direct map, the image and the vmemmap, ``init_uts_ns`` (a 4-byte kref, then ``name``: the
  layout before Linux 5.11), the ``mem_section`` root array and one root of sections
  (SPARSEMEM_EXTREME, 128 MiB sections: RAM fits in section 0);
* the ``struct page`` array (64 bytes each) at :data:`MEMMAP_PADDR`, seen at
  :data:`VMEMMAP`;
* a VMCOREINFO note (the entries a test passes, plus the layout ones) and one
  PRSTATUS note.

A test fills page data and struct page fields through :class:`FakeMachine` and writes
the file with :meth:`FakeMachine.write`.
"""

from __future__ import annotations

import struct
from pathlib import Path

PAGE = 4096
PAGE_OFFSET = 0xFFFF888000000000
VMEMMAP = 0xFFFFEA0000000000
START_KERNEL_MAP = 0xFFFFFFFF80000000
PHYS_BASE = 0x200000  # the kernel image (2 MiB)
MEMMAP_PADDR = 0x400000  # struct pages: one 2 MiB page (4 MiB .. 6 MiB)
STRUCT_PAGE = 64
# Kernel image offsets (one page each)
PGD, PUD, PMD, UTS, SECTION_ROOTS, SECTIONS, PUD_K, PMD_K, PUD_D = (i * PAGE for i in range(9))
# struct page members (x86_64, 5.10 to 7.x): name -> offset
PAGE_FIELDS = {"flags": 0, "compound_head": 8, "lru": 8, "mapping": 24, "private": 40,
               "_mapcount": 48, "_refcount": 52}  # fmt: skip
UTS_LEN = 65
UTSNAME = ("Linux", "fakehost", "5.10.0-32-amd64", "#1 SMP Debian 5.10.237-1", "x86_64", "(none)")
OSRELEASE = UTSNAME[2]
NT_PRSTATUS = 1
PRSTATUS_SIZE = 336


def kvaddr(offset: int) -> int:
    """Kernel image virtual address of an offset into the image."""
    return START_KERNEL_MAP + offset


class FakeMachine:
    """Physical memory of ``pages`` pfns (at least 6 MiB) and its VMCOREINFO."""

    def __init__(self, pages: int = 2048, holes: tuple[tuple[int, int], ...] = ()) -> None:
        assert pages * PAGE >= MEMMAP_PADDR + 2 * 1024 * 1024
        self.pages = pages
        self.holes = holes
        self.mem = bytearray(pages * PAGE)
        self.info: dict[str, str] = {
            "OSRELEASE": OSRELEASE,
            "PAGESIZE": str(PAGE),
            "SYMBOL(init_uts_ns)": f"{kvaddr(UTS):x}",
            "SYMBOL(init_top_pgt)": f"{kvaddr(PGD):x}",
            "SYMBOL(swapper_pg_dir)": f"{kvaddr(PGD):x}",
            "SYMBOL(_stext)": f"{kvaddr(0):x}",
            "SYMBOL(mem_section)": f"{PAGE_OFFSET + PHYS_BASE + SECTION_ROOTS:x}",
            "LENGTH(mem_section)": "2048",
            "SIZE(mem_section)": "16",
            "OFFSET(mem_section.section_mem_map)": "0",
            "NUMBER(SECTION_SIZE_BITS)": "27",
            "NUMBER(MAX_PHYSMEM_BITS)": "46",
            "SIZE(page)": str(STRUCT_PAGE),
            **{f"OFFSET(page.{name})": str(off) for name, off in PAGE_FIELDS.items()},
            "NUMBER(phys_base)": str(PHYS_BASE),
            "NUMBER(pgtable_l5_enabled)": "0",
            "KERNELOFFSET": "0",
        }
        self._map()
        self.set_utsname(UTSNAME)

    def put(self, paddr: int, data: bytes) -> None:
        self.mem[paddr : paddr + len(data)] = data

    def _u64(self, paddr: int, value: int) -> None:
        self.put(paddr, struct.pack("<Q", value))

    def _map(self) -> None:
        """Page tables for the direct map (a 1 GiB page), the kernel image and VMEMMAP (a
        2 MiB page each), and section 0 pointing at the struct pages."""
        img = PHYS_BASE
        self._u64(img + PGD + ((PAGE_OFFSET >> 39) & 511) * 8, (img + PUD_D) | 0x63)
        self._u64(img + PUD_D, 0xE3)
        self._u64(img + PGD + 511 * 8, (img + PUD_K) | 0x63)
        self._u64(img + PUD_K + 510 * 8, (img + PMD_K) | 0x63)
        self._u64(img + PMD_K, PHYS_BASE | 0xE3)
        self._u64(img + PGD + ((VMEMMAP >> 39) & 511) * 8, (img + PUD) | 0x63)
        self._u64(img + PUD + ((VMEMMAP >> 30) & 511) * 8, (img + PMD) | 0x63)
        self._u64(img + PMD + ((VMEMMAP >> 21) & 511) * 8, MEMMAP_PADDR | 0xE3)  # PSE
        self._u64(img + SECTION_ROOTS, PAGE_OFFSET + img + SECTIONS)
        self._u64(img + SECTIONS, VMEMMAP | 0x3)  # SECTION_MARKED_PRESENT | HAS_MEM_MAP

    def set_utsname(self, fields: tuple[str, ...], name_offset: int = 4) -> None:
        """``init_uts_ns.name`` at ``name_offset`` (4: after ``struct kref``, before 5.11)."""
        raw = b"".join(f.encode().ljust(UTS_LEN, b"\0") for f in fields)
        self.put(PHYS_BASE + UTS + name_offset, raw)

    def struct_page(self, pfn: int, **fields: tuple[int, str, int]) -> None:
        """Write members of pfn's struct page: ``name=(offset, struct format, value)``."""
        for offset, fmt, value in fields.values():
            self.put(MEMMAP_PADDR + pfn * STRUCT_PAGE + offset, struct.pack("<" + fmt, value))

    def ram_ranges(self) -> list[tuple[int, int]]:
        out, start = [], 0
        for lo, hi in sorted(self.holes):
            if lo > start:
                out.append((start, lo))
            start = hi
        if start < self.pages:
            out.append((start, self.pages))
        return out

    def vmcoreinfo(self) -> bytes:
        return "".join(f"{k}={v}\n" for k, v in self.info.items()).encode()

    def write(self, path: Path) -> Path:
        """The ELF vmcore: header, program headers, notes, then each RAM range."""
        notes = _note(b"CORE", NT_PRSTATUS, bytes(PRSTATUS_SIZE))
        notes += _note(b"VMCOREINFO", 0, self.vmcoreinfo())
        ranges = self.ram_ranges()
        phnum = 1 + len(ranges)
        data_off = -(-(64 + 56 * phnum + len(notes)) // PAGE) * PAGE
        phdrs = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56 * phnum, 0, 0, len(notes), len(notes), 0)
        offset = data_off
        for lo, hi in ranges:
            size = (hi - lo) * PAGE
            phdrs += struct.pack(
                "<IIQQQQQQ", 1, 7, offset, PAGE_OFFSET + lo * PAGE, lo * PAGE, size, size, 0
            )  # fmt: skip  (p_align 0, as in /proc/vmcore)
            offset += size
        ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1,
                           0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)  # fmt: skip
        with open(path, "wb") as f:
            f.write((ehdr + phdrs + notes).ljust(data_off, b"\0"))
            for lo, hi in ranges:
                f.write(self.mem[lo * PAGE : hi * PAGE])
        return path


def mixed_vmcore(path: Path) -> Path:
    """A small ELF vmcore with every kind of page a collector treats apart: distinct data
    pages, runs of them, zero pages, a hole in RAM and pages after it."""
    machine = FakeMachine(pages=2048, holes=((1800, 1900),))
    for pfn in (*range(1550, 1700, 3), *range(1790, 1797), 1950, 2001):
        machine.put(pfn * PAGE, bytes([pfn & 0xFF or 1]) * 100 + pfn.to_bytes(4, "little"))
    return machine.write(path)


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name += b"\0"
    return (
        struct.pack("<III", len(name), len(desc), ntype)
        + name.ljust(-(-len(name) // 4) * 4, b"\0")
        + desc.ljust(-(-len(desc) // 4) * 4, b"\0")
    )
