"""arm64 address translation on translation tables built for the purpose.

Every page size (4K, 16K, 64K) with every VA size the kernel offers for it (36/39/42/47/48/
52 bits), page and block mappings at each level that may hold one, FEAT_LPA (64K pages,
52-bit PAs) and FEAT_LPA2 (4K/16K, 52-bit) descriptors with physical addresses above
2**48, a 52-bit kernel running 48-bit VAs, both linear-map layouts, and the vmemmap of
each kernel era against the addresses in the kernel's Documentation/arm64/memory.rst.
The tables come from tests/vmcore/arm64_tables.py (the Arm ARM's encodings), the
expected physical addresses from the test.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import pytest

from kdumpy.arch.arm64.translate import Arm64Translator, vmemmap_start
from kdumpy.arch.select import ARM64, Mapping, TranslationError, from_vmcoreinfo
from kdumpy.errors import DumpFormatError, PageNotPresent
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

from .arm64_tables import MASK64, Arm64Tables
from .builders import Load, elf_vmcore, note

PHYS_OFFSET = 0x4000_0000
IMAGE_PA = 0x4000_0000  # where the kernel image was loaded


def image_va(va_bits: int) -> int:
    """Where a 5.4+ kernel image lies: above PAGE_END = -2**(min(VA_BITS, 48) - 1),
    after 256 MiB of modules/BPF space."""
    return (-(1 << (min(va_bits, 48) - 1)) + 0x1000_0000) & MASK64


def kimage_voffset(va_bits: int) -> int:
    return (image_va(va_bits) - IMAGE_PA) & MASK64


# (page shift, VA bits) pairs the kernel's Kconfig offers.
CONFIGS = [(12, 39), (12, 48), (12, 52), (14, 36), (14, 47), (14, 48), (14, 52),
           (16, 42), (16, 48), (16, 52)]  # fmt: skip


@dataclass
class TableDump:
    """A DumpMemory over the test's physical pages (the protocol the layer reads)."""

    tables: Arm64Tables
    info_text: str
    path: str = "arm64.vmcore"
    max_pfn: int = 1 << 20
    reads: list[int] = field(default_factory=list)

    @property
    def page_size(self) -> int:
        return self.tables.page_size

    @property
    def vmcoreinfo(self) -> VmcoreInfo:
        return VmcoreInfo(self.info_text, self.path)

    def read_phys(self, paddr: int, size: int) -> bytes:
        self.reads.append(paddr)
        if paddr >> self.tables.page_shift not in self.tables.memory:
            raise PageNotPresent(f"{self.path}: physical address {paddr:#x} is not in the dump")
        return self.tables.read(paddr, size)

    def stated_mappings(self) -> list[Mapping]:
        return []

    def stated_phys_base(self) -> int | None:
        return None


def kernel_info(tables: Arm64Tables, va_bits: int, root: int | None = None, **extra: object) -> str:
    """VMCOREINFO of an arm64 kernel whose swapper_pg_dir is the tables' root."""
    voffset = kimage_voffset(va_bits)
    entries: dict[str, object] = {
        "OSRELEASE": "6.12.0-test",
        "PAGESIZE": tables.page_size,
        "SYMBOL(swapper_pg_dir)": f"{((root or tables.root) + voffset) & MASK64:x}",
        "SYMBOL(_stext)": f"{(IMAGE_PA + 0x10000 + voffset) & MASK64:x}",
        "NUMBER(VA_BITS)": va_bits,
        "NUMBER(kimage_voffset)": f"{voffset:#x}",
        "NUMBER(PHYS_OFFSET)": f"{PHYS_OFFSET:#x}",
        "NUMBER(KERNELPACMASK)": "0xff80000000000000",
    }
    entries.update(extra)
    return "".join(f"{k}={v}\n" for k, v in entries.items())


def translator(tables: Arm64Tables, va_bits: int, **extra: object) -> Arm64Translator:
    return Arm64Translator(TableDump(tables, kernel_info(tables, va_bits, **extra)))


def vmalloc_va(va_bits: int, offset: int) -> int:
    """An address in the upper half, outside the linear map (vmalloc-like)."""
    return (-(1 << (min(va_bits, 48) - 2)) + offset) & MASK64


@pytest.mark.parametrize(("shift", "va_bits"), CONFIGS)
def test_pages_and_blocks_every_config(shift: int, va_bits: int) -> None:
    lpa2 = shift != 16 and va_bits == 52
    tables = Arm64Tables(shift, va_bits, lpa2=lpa2)
    page = 1 << shift
    va = vmalloc_va(va_bits, 5 * page)
    high = (1 << 51) | (0x3 << 48) | (7 << shift) if va_bits == 52 else 0x8_1234_0000 << 4
    high &= ~(page - 1)
    tables.map(va, high)
    tr = translator(tables, va_bits)
    assert tr.levels == tables.levels
    assert tr.vtop(va + 0x123) == high + 0x123
    assert tr.walk(va + page - 8) == high + page - 8
    assert tr.mapping(va + 16) == (high + 16, page - 16)
    # A block at every level but the last, and the top of 3+ levels (4K: 1G, 2M; 16K
    # 36-bit: 32M at the top of two levels; 64K: 512M ...).
    for level in range(0 if tables.levels == 2 else 1, tables.levels - 1):
        size = 1 << tables.shift(level)
        block_va = vmalloc_va(va_bits, size * (8 + level))
        block_pa = (size * 3) & ((1 << 48) - 1) or size
        tables.map(block_va, block_pa, level)
        tr = translator(tables, va_bits)
        inside = size - page + 0x18
        assert tr.vtop(block_va + inside) == block_pa + inside
        assert tr.mapping(block_va + inside) == (block_pa + inside, size - inside)


@pytest.mark.parametrize(("shift", "va_bits"), CONFIGS)
def test_invalid_entries_are_clear_errors(shift: int, va_bits: int) -> None:
    tables = Arm64Tables(shift, va_bits, lpa2=shift != 16 and va_bits == 52)
    page = 1 << shift
    va = vmalloc_va(va_bits, 9 * page)
    tables.map(va + page, 0x7000_0000)  # the last-level table exists, va's entry is empty
    tr = translator(tables, va_bits)
    with pytest.raises(
        TranslationError, match=rf"^arm64.vmcore: virtual address {va:#x} is not mapped$"
    ):
        tr.vtop(va)
    assert tr.mapping(va) is None
    # Bit 1 clear at the last level is reserved, not a block.
    tables.set_raw(va, tables.levels - 1, 0x7000_0000 | 0x401)
    with pytest.raises(TranslationError, match="is reserved"):
        translator(tables, va_bits).vtop(va)
    # A table page the dump lacks.
    tables.drop_table(va, tables.levels - 1)
    with pytest.raises(TranslationError, match=r"page table for 0x[0-9a-f]+ is not in the dump"):
        translator(tables, va_bits).vtop(va)


def test_lpa_and_lpa2_high_physical_addresses() -> None:
    pa = (0xA << 48) | 0x1234_0000
    for shift, lpa2 in ((16, False), (12, True), (14, True)):
        tables = Arm64Tables(shift, 52, lpa2=lpa2)
        pa_page = pa & ~((1 << shift) - 1)
        va = vmalloc_va(52, 1 << 30)
        tables.map(va, pa_page)
        assert translator(tables, 52).vtop(va + 8) == pa_page + 8
    # Without LPA2 (4K, 48-bit VAs) bits 9:8 are shareability, never address bits.
    tables = Arm64Tables(12, 48)
    va = vmalloc_va(48, 0)
    tables.map(va, 0x8000_0000)
    assert translator(tables, 48).vtop(va) == 0x8000_0000


def test_52_bit_kernel_running_48_bit_vas() -> None:
    # 64K pages: the hardware starts inside swapper_pg_dir, at TTBR1_BAL_OFFSET (its
    # last 2**6 of 2**10 entries), indexing VA bits 47:42.
    tables = Arm64Tables(16, 48)
    swapper = tables.alloc()
    bal_offset = (1024 - 64) * 8
    tables.memory[(swapper + bal_offset) >> 16] = tables.memory.pop(tables.root >> 16)
    tables.root = swapper + bal_offset
    va = vmalloc_va(48, 3 << 20)
    tables.map(va, 0x9000_0000)
    tr = translator(tables, 52, root=swapper, **{"NUMBER(TCR_EL1_T1SZ)": 16})
    assert tr.vtop(va) == 0x9000_0000
    # 4K pages (LPA2 kernel on a CPU without LPA2): 4 levels from swapper_pg_dir, and
    # bits 9:8 are shareability again.
    tables = Arm64Tables(12, 48)
    va = vmalloc_va(48, 7 << 12)
    tables.map(va, 0x9000_0000)
    tr = translator(tables, 52, **{"NUMBER(TCR_EL1_T1SZ)": 16})
    assert (tr.levels, tr.lpa2) == (4, False)
    assert tr.vtop(va) == 0x9000_0000


def test_linear_map_both_layouts() -> None:
    tables = Arm64Tables(12, 48)
    # 5.4+: PAGE_OFFSET = -2**48, linear up to PAGE_END = -2**47 (memory.rst, 4K/48).
    tr = translator(tables, 48)
    assert tr.page_offset == 0xFFFF_0000_0000_0000
    assert tr.vtop(0xFFFF_0000_0012_3456) == PHYS_OFFSET + 0x12_3456
    assert not tr.is_linear(0xFFFF_8000_0000_0000)
    # Before 5.4: PAGE_OFFSET = -2**47 to the top; the image lies below it.
    old_stext = f"{0xFFFF_0000_0808_1000:x}"
    old = translator(tables, 48, **{"SYMBOL(_stext)": old_stext, "OSRELEASE": "4.18.0"})
    assert old.page_offset == 0xFFFF_8000_0000_0000
    assert old.vtop(0xFFFF_8000_0000_2000) == PHYS_OFFSET + 0x2000
    assert not old.is_linear(0xFFFF_0000_0808_1000)
    # __va: RAM's first byte (PHYS_OFFSET, not physical 0) is the linear map's first byte.
    assert tr.phys_to_virt(PHYS_OFFSET + 0x12_3456) == 0xFFFF_0000_0012_3456
    assert old.phys_to_virt(PHYS_OFFSET + 0x2000) == 0xFFFF_8000_0000_2000
    # 39-bit VAs, 5.4+: PAGE_OFFSET = -2**39.
    assert translator(Arm64Tables(12, 39), 39).page_offset == 0xFFFF_FF80_0000_0000


def test_vmemmap_start_per_era() -> None:
    # Documentation/arm64/memory.rst, 4K pages, 48-bit VAs: 5.11+ "fffffc0000000000 2TB
    # vmemmap"; 5.4..5.10 "fffffdffffe00000 2TB vmemmap"; 4.x: PAGE_OFFSET - 2 TB.
    assert vmemmap_start((6, 1), 48, 12) == 0xFFFF_FC00_0000_0000
    # 6.9+: ends 1 GiB below the top; the 6.12 arm64 lab kernel (4K, 52-bit) exports
    # NUMBER(VMEMMAP_START)=0xffffc1ffc0000000.
    assert vmemmap_start((6, 12), 52, 12) == 0xFFFF_C1FF_C000_0000
    assert vmemmap_start((5, 10), 48, 12) == 0xFFFF_FDFF_FFE0_0000
    assert vmemmap_start((4, 18), 48, 12, flipped=False) == 0xFFFF_7E00_0000_0000
    # 64K pages, 48-bit VAs, 5.11+: -(2**(48 - 10)) = ffffffc000000000 (memory.rst 64K).
    assert vmemmap_start((6, 1), 48, 16) == 0xFFFF_FFC0_0000_0000
    tables = Arm64Tables(12, 48)
    tr = translator(tables, 48, **{"SIZE(page)": 64, "OSRELEASE": "6.1.0-test"})
    # struct page of pfn p = VMEMMAP_START + (p - PHYS_OFFSET/PAGE_SIZE) * 64
    assert tr.vmemmap + (PHYS_OFFSET >> 12) * 64 == 0xFFFF_FC00_0000_0000
    exported = translator(tables, 48, **{"NUMBER(VMEMMAP_START)": "0xfffffc0000000000"})
    assert exported.vmemmap_start == 0xFFFF_FC00_0000_0000


def test_missing_entries_are_one_line_errors() -> None:
    tables = Arm64Tables(12, 48)
    for key in ("NUMBER(VA_BITS)", "NUMBER(kimage_voffset)", "SYMBOL(swapper_pg_dir)"):
        text = "".join(
            line + "\n" for line in kernel_info(tables, 48).splitlines() if not line.startswith(key)
        )
        with pytest.raises(
            DumpFormatError,
            match=rf"^arm64.vmcore: arm64 VMCOREINFO has no {re.escape(key)}$",
        ):
            Arm64Translator(TableDump(tables, text))
    with pytest.raises(DumpFormatError, match="impossible arm64 VA bits 60"):
        translator(tables, 60)


def arm64_prstatus(pid: int, regs: list[int]) -> bytes:
    """``struct elf_prstatus`` on arm64: 112-byte head, user_pt_regs (34 u64), fpvalid."""
    head = struct.pack("<iiihxxQQiiii", 0, 0, 0, 11, 0, 0, pid, 1, 0, 0) + bytes(64)
    return head + struct.pack("<34Q", *regs) + bytes(8)


def test_arm64_elf_dump_end_to_end(tmp_path) -> None:  # noqa: ANN001
    """An EM_AARCH64 /proc/vmcore: the reader picks arm64 from e_machine, parses its
    PRSTATUS and reads kernel virtual memory through the tables."""
    tables = Arm64Tables(12, 48)
    va = vmalloc_va(48, 0x10_0000)
    data_pa = 0x4800_0000
    tables.map(va, data_pa)
    tables.write(data_pa, b"arm64 says hello")
    regs = list(range(1000, 1034))
    info = kernel_info(tables, 48).encode()
    notes = note("CORE", 1, arm64_prstatus(7, regs)) + note("VMCOREINFO", 0, info)
    loads = [Load(pfn << 12, bytes(page)) for pfn, page in sorted(tables.memory.items())]
    path = tmp_path / "arm64.vmcore"
    path.write_bytes(elf_vmcore(loads, notes, machine=183))
    with open_dump(str(path)) as dump:
        assert dump.arch is ARM64
        (pr,) = dump.prstatus
        assert pr.pid == 7 and pr.regs["x0"] == 1000 and pr.regs["x29"] == 1029
        assert (pr.regs["sp"], pr.regs["pc"], pr.regs["pstate"]) == (1031, 1032, 1033)
        assert dump.read_virt(va, 16) == b"arm64 says hello"
        assert dump.read_virt(0xFFFF_0000_0800_0000, 16) == b"arm64 says hello"  # linear


def test_arch_from_vmcoreinfo() -> None:
    assert from_vmcoreinfo(VmcoreInfo("NUMBER(kimage_voffset)=0xffff800000000000\n")) is ARM64
    assert from_vmcoreinfo(VmcoreInfo("SYMBOL(init_top_pgt)=ffffffff82a0a000\n")).name == "x86_64"
