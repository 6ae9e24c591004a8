"""VMCOREINFO parsing: the kernel's printing rules, then a real dump against drgn/kallsyms."""

from __future__ import annotations

import pytest

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

POINTER_SYMBOLS = {"mem_section"}

# Lines in the exact formats of kernel/vmcore_info.c (and a 6.1 lab dump's values).
SAMPLE = (
    "OSRELEASE=6.1.0-50-cloud-amd64\n"
    "PAGESIZE=4096\n"
    "SYMBOL(init_top_pgt)=ffffffffb4c10000\n"
    "SIZE(page)=64\n"
    "OFFSET(page.flags)=0\n"
    "OFFSET(page._refcount)=52\n"
    "LENGTH(zone.free_area)=11\n"
    "NUMBER(phys_base)=-251658240\n"
    "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n"
    "NUMBER(VMALLOC_START)=0xffa0000000000000\n"
    "KERNELOFFSET=32200000\n"
    "CRASHTIME=1795463484\n"
)


def test_bases_follow_the_kernel_printing_rules() -> None:
    info = VmcoreInfo(SAMPLE.encode() + b"\0\0\0", "sample")
    assert info.osrelease == "6.1.0-50-cloud-amd64"
    assert info.page_size == 4096
    assert info.symbol("init_top_pgt") == 0xFFFFFFFFB4C10000  # %lx, no 0x
    assert info.size("page") == 64
    assert info.offset("page._refcount") == 52
    assert info.length("zone.free_area") == 11
    assert info.number("phys_base") == -251658240  # signed decimal
    assert info.number("PAGE_BUDDY_MAPCOUNT_VALUE") & 0xFFFFFFFF == 0xFFFFFF7F
    assert info.number("VMALLOC_START") == 0xFFA0000000000000  # hex fallback
    assert info.kernel_offset == 0x32200000
    assert info.crash_time == 1795463484
    assert info.symbol("missing") is None and info.number("missing") is None


def test_decimal_first_then_hex() -> None:
    # "10" is ten (decimal wins); "1f" is only valid as hex, like strtol's retry.
    info = VmcoreInfo("NUMBER(a)=10\nNUMBER(b)=1f\nSIZE(c)=zz\n")
    assert info.number("a") == 10
    assert info.number("b") == 0x1F
    assert info.size("c") is None


def test_require_names_the_dump_and_entry() -> None:
    info = VmcoreInfo("PAGESIZE=4096\n", "/x/vmcore")
    assert info.require("PAGESIZE") == 4096
    with pytest.raises(
        DumpFormatError, match=r"^/x/vmcore: VMCOREINFO has no usable SYMBOL\(prb\)$"
    ):
        info.require("SYMBOL(prb)")


@pytest.mark.vm
def test_symbols_agree_with_kallsyms(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    """Every SYMBOL() that kallsyms also knows must have the same address: the oracle
    is drgn's decoding of the kernel's own kallsyms tables in the dump (before 6.0, the
    symbol table of the kernel's -dbg vmlinux)."""
    prog = drgn_prog(lab_dump.vmcore, kallsyms=True, kernel=lab_dump.kernel)
    with open_dump(lab_dump.vmcore) as dump:
        info = dump.vmcoreinfo
        assert info.osrelease == lab_dump.kernel.release
        checked = 0
        for key in info:
            if not key.startswith("SYMBOL("):
                continue
            name = key[7:-1]
            try:
                sym = prog.symbol(name)
            except LookupError:
                continue
            # VMCOREINFO_SYMBOL_ARRAY(mem_section) prints the pointer's value, not its address.
            want = prog.read_u64(sym.address) if name in POINTER_SYMBOLS else sym.address
            assert info.symbol(name) == want, name
            checked += 1
        assert checked >= 5
