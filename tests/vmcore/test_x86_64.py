"""Kernel virtual address translation, checked against drgn's own page-table walk and
the kernel's own variables (page_offset_base, vmemmap_base found through kallsyms)."""

from __future__ import annotations

import random

import pytest

from kdumpy.arch.select import TranslationError
from kdumpy.arch.x86_64.translate import START_KERNEL_MAP
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.elf import ElfDump
from kdumpy.vmcore.source import FileSource

pytestmark = pytest.mark.vm


def test_layout_matches_kernel_variables(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    prog = drgn_prog(lab_dump.vmcore, kallsyms=True, kernel=lab_dump.kernel)
    with open_dump(lab_dump.vmcore) as dump:
        t = dump.translator
        assert t.page_offset == prog.read_u64(prog.symbol("page_offset_base").address)
        assert t.vmemmap == prog.read_u64(prog.symbol("vmemmap_base").address)
        assert t.levels == (5 if dump.vmcoreinfo.number("pgtable_l5_enabled") else 4)


def test_page_offset_found_from_page_tables_alone(lab_dump) -> None:  # noqa: ANN001
    """Without PT_LOAD virtual addresses (as in QEMU dumps) the direct map is found by
    walking the page tables; it must land on the same base."""
    with open_dump(lab_dump.vmcore) as dump:
        expected = dump.translator.page_offset
        bare = ElfDump(FileSource(lab_dump.vmcore))
        bare.loads = []  # hide p_vaddr: only page tables remain
        try:
            assert bare.translator._find_page_offset() == expected
        finally:
            bare.close()


def _sample_addresses(dump, prog, rng: random.Random) -> list[int]:  # noqa: ANN001
    """Direct map, kernel image, vmemmap and vmalloc addresses (kallsyms for the last)."""
    t = dump.translator
    info = dump.vmcoreinfo
    out = []
    for start, end in dump.pfn_ranges():
        for _ in range(20):
            out.append(t.page_offset + rng.randrange(start << 12, end << 12))
    stext = info.require("SYMBOL(_stext)")
    out += [stext + rng.randrange(0, 1 << 24) for _ in range(50)]
    out += [t.vmemmap + 64 * rng.randrange(s, e) for s, e in dump.pfn_ranges() for _ in range(20)]
    # vmalloc'd memory: the printk ring buffer descriptors may be static; module text
    # and stacks are vmalloc'd.  Use the crashed task's stack pointer from PRSTATUS.
    out += [p.regs["sp"] for p in dump.prstatus]
    return out


def test_translation_matches_drgn(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    prog = drgn_prog(lab_dump.vmcore)
    rng = random.Random(7)
    with open_dump(lab_dump.vmcore) as dump:
        t = dump.translator
        addrs = _sample_addresses(dump, prog, rng)
        for va in addrs:
            ours = dump.read_virt(va, 64)
            assert ours == prog.read(va, 64), hex(va)
            if va < START_KERNEL_MAP:
                assert t.vtop(va) == t.walk(va), hex(va)  # shortcut == walk


def test_reads_cross_page_boundaries(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    prog = drgn_prog(lab_dump.vmcore)
    with open_dump(lab_dump.vmcore) as dump:
        start, end = dump.pfn_ranges()[0]
        for va in (
            dump.translator.page_offset + (start << 12) + 4000,  # direct map
            dump.vmcoreinfo.require("SYMBOL(_stext)") + 4000,  # kernel image
            dump.translator.vmemmap + 64 * start + 4000,  # vmemmap (page-table walk)
        ):
            assert dump.read_virt(va, 9000) == prog.read(va, 9000), hex(va)


def test_unmapped_address_is_a_one_line_error(lab_dump) -> None:  # noqa: ANN001
    with (
        open_dump(lab_dump.vmcore) as dump,
        pytest.raises(
            TranslationError,
            match=r"virtual address 0xffff800000000000 is not mapped|not in the dump",
        ),
    ):
        dump.read_virt(0xFFFF800000000000, 8)
