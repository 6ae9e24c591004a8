"""x86_64 address translation on hand-built page tables (fast twin of test_x86_64.py and
test_four_level.py, which check real kernels against drgn).

The tables are written by tests/vmcore/builders.PageTables from the architecture's
rules (9 bits per level, PSE for 2 MiB and 1 GiB leaves, the SME C-bit in every entry);
the mapping a test asks for is the oracle.  Both paging modes, a relocated kernel
(phys_base), SME, and the direct map found from the tables alone.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kdumpy.arch.select import TranslationError
from kdumpy.arch.x86_64.translate import START_KERNEL_MAP
from kdumpy.errors import DumpFormatError
from kdumpy.vmcore import open_dump

from .builders import (
    PAGE,
    Load,
    PageTables,
    elf_vmcore,
    kdump_file,
    memory_loads,
    notes_segment,
    page_bytes,
    vmcoreinfo,
)

DIRECT = {4: 0xFFFF888000000000, 5: 0xFF11000000000000}
VMALLOC = {4: 0xFFFFC90000000000, 5: 0xFFA0000000000000}
VMEMMAP = {4: 0xFFFFEA0000000000, 5: 0xFFD4000000000000}
PHYS_BASE = 0x200000  # the kernel image is loaded 2 MiB up (2 MiB aligned, as x86_64 needs)


def build(tmp_path: Path, levels: int, sme: int = 0, fmt: str = "elf",
          direct_in_loads: bool = False) -> tuple[Path, dict[int, bytes]]:  # fmt: skip
    """A dump whose page tables map the direct map (1 GiB leaf at physical 0), two
    vmalloc pages onto scattered pfns (4 KiB leaves), vmemmap (2 MiB leaf at 2 MiB)
    and the kernel image (2 MiB leaf at PHYS_BASE)."""
    tables = PageTables(0x400, levels=levels, phys_base=PHYS_BASE, sme_mask=sme)
    tables.map(DIRECT[levels], 0, 1 << 30)
    tables.map(VMALLOC[levels] + 0x1000, 0x150 * PAGE)
    tables.map(VMALLOC[levels] + 0x2000, 0x140 * PAGE)
    tables.map(VMEMMAP[levels], 0x200000, 1 << 21)
    tables.map(START_KERNEL_MAP, PHYS_BASE, 1 << 21)
    memory = {p: page_bytes(p) for p in [*range(0x100, 0x160), 0x200, 0x201]}
    memory.update(tables.pages())
    entries = {**tables.vmcoreinfo(), "SYMBOL(vmemmap)": f"{VMEMMAP[levels]:x}"}
    if fmt == "elf":
        loads = memory_loads(memory)
        if direct_in_loads:
            for load in loads:
                load.vaddr = DIRECT[levels] + load.paddr
        data = elf_vmcore(loads, notes_segment(vmcoreinfo(entries)))
    else:
        data = kdump_file(memory, max(memory) + 1, notes=notes_segment(vmcoreinfo(entries)),
                          compression="zstd")  # fmt: skip
    path = tmp_path / f"vmcore-{levels}"
    path.write_bytes(data)
    return path, memory


@pytest.mark.parametrize("fmt", ["elf", "kdump"])
@pytest.mark.parametrize("levels", [4, 5])
@pytest.mark.parametrize("sme", [0, 1 << 47])
def test_translation(tmp_path: Path, levels: int, sme: int, fmt: str) -> None:
    path, memory = build(tmp_path, levels, sme, fmt)
    with open_dump(path) as dump:
        t = dump.translator
        assert t.levels == levels and t.phys_base == PHYS_BASE and t.sme_mask == sme
        assert t.walk(VMALLOC[levels] + 0x1008) == 0x150 * PAGE + 8
        assert t.walk(VMEMMAP[levels] + 0x1234) == 0x201234
        assert t.walk(DIRECT[levels] + 0x123456) == 0x123456
        assert t.walk(START_KERNEL_MAP + 0x40010) == PHYS_BASE + 0x40010
        assert t.vtop(START_KERNEL_MAP + 0x40010) == PHYS_BASE + 0x40010  # the shortcut
        # Across a page boundary onto a pfn that is not the next one.
        data = dump.read_virt(VMALLOC[levels] + 0x2000 - 8, 16)
        assert data == memory[0x150][-8:] + memory[0x140][:8]
        assert dump.read_virt(VMEMMAP[levels] + PAGE, 8) == memory[0x201][:8]
        assert t.page_offset == DIRECT[levels]  # from the page tables alone
        assert t.vmemmap == VMEMMAP[levels]
        with pytest.raises(TranslationError, match="not mapped"):
            t.walk(VMALLOC[levels] + 0x3000)
        with pytest.raises(TranslationError, match="is not mapped") as exc:
            dump.read_virt(VMALLOC[levels] + 0x3000, 8)
        assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)


def test_page_table_outside_the_dump(tmp_path: Path) -> None:
    """An entry pointing at a page the dump does not have: a one-line error."""
    path, _ = build(tmp_path, 4)
    raw = bytearray(path.read_bytes())
    with open_dump(path) as dump:  # the top table's entry for vmalloc, in the file
        pgd = dump.translator.pgd_paddr
        ext = next(e for e in dump.extents if e.start <= pgd < e.end)
        at = ext.offset + (pgd - ext.start) + 8 * ((VMALLOC[4] >> 39) & 511)
    struct.pack_into("<Q", raw, at, (0x7000 << 12) | 0x63)
    path.write_bytes(raw)
    with open_dump(path) as dump, pytest.raises(TranslationError, match="not in the dump"):
        dump.translator.walk(VMALLOC[4] + 0x1000)


def test_direct_map_from_pt_load_vaddr(tmp_path: Path) -> None:
    path, _ = build(tmp_path, 4, direct_in_loads=True)
    with open_dump(path) as dump:
        assert dump.translator.page_offset == DIRECT[4]


def test_vmemmap_from_mem_section(tmp_path: Path) -> None:
    """Without SYMBOL(vmemmap): decoded from the first present mem_section."""
    tables = PageTables(0x180)
    tables.map(START_KERNEL_MAP, 0, 1 << 21)
    sections = bytearray(PAGE)
    struct.pack_into("<Q", sections, 32, 0xFFFFEA0000000000 | 0x3)  # section 2 present
    roots = struct.pack("<Q", START_KERNEL_MAP + 0x151000).ljust(PAGE, b"\0")
    memory = {0x150: roots, 0x151: bytes(sections)}
    memory.update(tables.pages())
    entries = {**tables.vmcoreinfo(), "SYMBOL(mem_section)": f"{START_KERNEL_MAP + 0x150000:x}",
               "SIZE(mem_section)": 16, "OFFSET(mem_section.section_mem_map)": 0,
               "LENGTH(mem_section)": 1}  # fmt: skip
    path = tmp_path / "vmcore"
    path.write_bytes(elf_vmcore(memory_loads(memory), notes_segment(vmcoreinfo(entries))))
    with open_dump(path) as dump:
        assert dump.translator.vmemmap == 0xFFFFEA0000000000


def test_no_page_tables(tmp_path: Path) -> None:
    path = tmp_path / "bare"
    path.write_bytes(elf_vmcore([Load(0, bytes(PAGE))], notes_segment(vmcoreinfo())))
    with open_dump(path) as dump, pytest.raises(DumpFormatError, match="init_top_pgt") as exc:
        dump.read_virt(START_KERNEL_MAP, 8)
    assert "\n" not in str(exc.value)
