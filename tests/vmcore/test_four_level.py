"""4-level paging: a real dump of a kernel running without LA57.

The lab's guests run on QEMU's ``-cpu max``, which has LA57, so their kernels use 5-level
page tables; most real x86_64 machines have no LA57 and run 4-level.  Here the lab's own
capture cycle (kdumpy.lab.dumps.capture_vmcore, unchanged) runs with QEMU wrapped so the
CPU is ``max,la57=off`` (a later ``-cpu`` overrides the lab's).  The dump is cached apart
from the lab's (``derived/4level/``).  Oracles: drgn's own page-table walk and kallsyms
reading, the kernel's ``page_offset_base``/``vmemmap_base`` variables, and makedumpfile's
``--dump-dmesg``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from kdumpy.vmcore import open_dump
from kdumpy.vmcore.dmesg import kernel_log
from kdumpy.vmcore.elf import ElfDump
from kdumpy.vmcore.source import FileSource

from .conftest import makedumpfile_dmesg

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def four_level_vmcore() -> Path:
    from kdumpy.lab.cache import cache_root, locked
    from kdumpy.lab.dumps import capture_vmcore

    d = cache_root() / "derived" / "4level"
    d.mkdir(parents=True, exist_ok=True)
    out = d / "6.1-1G-256M-sysrq-nola57.vmcore"
    with locked("dump-6.1-nola57"):  # one capture even with concurrent test runs
        if not out.exists():
            _capture_without_la57(d, out, capture_vmcore)
    return out


def _capture_without_la57(d: Path, out: Path, capture_vmcore) -> None:  # noqa: ANN001
    """The lab's capture cycle with QEMU's CPU model overridden (no LA57)."""
    wrapper = d / "qemu-nola57"
    wrapper.write_text('#!/bin/sh\nexec qemu-system-x86_64 "$@" -cpu max,la57=off\n')
    wrapper.chmod(0o755)
    old = os.environ.get("KDUMPY_QEMU")
    os.environ["KDUMPY_QEMU"] = str(wrapper)
    try:
        capture_vmcore("6.1", out, memory="1G", crashkernel="256M", crash="sysrq")
    finally:
        if old is None:
            del os.environ["KDUMPY_QEMU"]
        else:
            os.environ["KDUMPY_QEMU"] = old


def test_kernel_runs_four_levels(four_level_vmcore: Path) -> None:
    with open_dump(four_level_vmcore) as dump:
        assert dump.vmcoreinfo.number("pgtable_l5_enabled") == 0
        assert dump.translator.levels == 4


def test_layout_matches_kernel_variables(four_level_vmcore: Path, drgn_prog) -> None:  # noqa: ANN001
    prog = drgn_prog(four_level_vmcore, kallsyms=True)
    with open_dump(four_level_vmcore) as dump:
        t = dump.translator
        assert t.page_offset == prog.read_u64(prog.symbol("page_offset_base").address)
        assert t.vmemmap == prog.read_u64(prog.symbol("vmemmap_base").address)
        # 4-level kernel half: the direct map lies below 2**47 from the top.
        assert t.page_offset >= 0xFFFF800000000000
        bare = ElfDump(FileSource(four_level_vmcore))
        bare.loads = []  # as in a QEMU dump: no virtual addresses in the PT_LOADs
        try:
            assert bare.translator._find_page_offset() == t.page_offset
        finally:
            bare.close()


def test_translation_matches_drgn(four_level_vmcore: Path, drgn_prog) -> None:  # noqa: ANN001
    prog = drgn_prog(four_level_vmcore)
    rng = random.Random(4)
    with open_dump(four_level_vmcore) as dump:
        t = dump.translator
        stext = dump.vmcoreinfo.require("SYMBOL(_stext)")
        addrs = [p.regs["sp"] for p in dump.prstatus]  # vmalloc'd kernel stacks
        addrs += [stext + rng.randrange(0, 1 << 24) for _ in range(50)]
        for start, end in dump.pfn_ranges():
            for _ in range(30):
                pfn = rng.randrange(start, end)
                addrs += [t.page_offset + (pfn << 12) + rng.randrange(4096), t.vmemmap + 64 * pfn]
        for va in addrs:
            assert dump.read_virt(va, 64) == prog.read(va, 64), hex(va)
            assert t.vtop(va) == t.walk(va), hex(va)  # shortcuts agree with the walk
        va = t.vmemmap + 64 * dump.pfn_ranges()[0][0] + 4000
        assert dump.read_virt(va, 9000) == prog.read(va, 9000)


def test_dmesg_matches_makedumpfile(four_level_vmcore: Path) -> None:
    reference = makedumpfile_dmesg(four_level_vmcore)
    if reference is None:
        pytest.skip("makedumpfile --dump-dmesg failed on this dump")
    with open_dump(four_level_vmcore) as dump:
        assert kernel_log(dump) == reference.read_bytes()


def test_compressed_dump_translates_alone(four_level_vmcore: Path, mdf) -> None:  # noqa: ANN001
    """makedumpfile's kdump file has no PT_LOAD virtual addresses: the direct map is found
    from the 4-level page tables and reads agree with the ELF source."""
    (out,) = mdf(four_level_vmcore, "kdump-l-d31", ["-l", "-d", "31"])
    rng = random.Random(5)
    with open_dump(four_level_vmcore) as elf, open_dump(out) as dump:
        assert dump.translator.levels == 4
        assert dump.translator.page_offset == elf.translator.page_offset
        assert dump.translator.vmemmap == elf.translator.vmemmap
        assert kernel_log(dump) == kernel_log(elf)
        stext = elf.vmcoreinfo.require("SYMBOL(_stext)")
        for va in [stext + rng.randrange(0, 1 << 22) for _ in range(50)]:
            assert dump.read_virt(va, 64) == elf.read_virt(va, 64), hex(va)
