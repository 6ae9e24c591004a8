"""QEMU dump-guest-memory files: ELF with QEMU notes and the flattened kdump-zlib format.

No guest kernel runs: QEMU is started paused at the reset vector (-S, firmware only,
~1 s) and asked for an ELF and a kdump-zlib dump of the same, unchanging memory.  The
oracles are QEMU's own ELF writer (for the kdump pages) and the architected x86 reset
state (for the CPU note).  QEMU 7.2 on this machine offers neither lzo nor snappy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore import open_dump

from .helpers import assert_same_pages


def test_qemu_elf(qemu_dumps: dict[str, Path]) -> None:
    with open_dump(qemu_dumps["elf"]) as dump:
        assert dump.format == "qemu-elf"
        assert all(seg.vaddr == seg.paddr for seg in dump.loads)
        (cpu,) = dump.qemu_cpu_states
        # x86 reset state: CS selector F000, base FFFF0000, IP FFF0.
        assert cpu.regs["rip"] == 0xFFF0
        assert cpu.segments["cs"]["selector"] == 0xF000
        assert cpu.segments["cs"]["base"] == 0xFFFF0000
        # 64 MiB of RAM plus firmware ranges.
        ram = sum(e - s for s, e in dump.ram_ranges()) * dump.page_size
        assert 64 << 20 <= ram < 70 << 20
        assert not dump.has_vmcoreinfo
        with pytest.raises(DumpFormatError, match=r"q\.elf: dump has no VMCOREINFO note$"):
            _ = dump.vmcoreinfo


def test_qemu_kdump_zlib_equals_its_elf(qemu_dumps: dict[str, Path]) -> None:
    with open_dump(qemu_dumps["zlib"]) as dump:
        assert dump.format == "flattened-kdump"
        assert dump.compression == "zlib"
        assert dump.header.machine == "x86_64"
        assert len(dump.qemu_cpu_states) == 1
    with open_dump(qemu_dumps["elf"]) as elf, open_dump(qemu_dumps["zlib"]) as dump:
        assert dump.ram_ranges() == elf.ram_ranges()
    assert_same_pages(qemu_dumps["elf"], qemu_dumps["zlib"], check_vmcoreinfo=False)
