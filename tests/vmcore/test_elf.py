"""The ELF reader on real /proc/vmcore copies, checked against drgn and the guest."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kdumpy.errors import PageNotPresent
from kdumpy.vmcore import open_dump

from .helpers import batches, pfns

pytestmark = pytest.mark.vm


def test_structure(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    with open_dump(lab_dump.vmcore) as dump:
        assert dump.format == "elf"
        assert dump.page_size == 4096
        # One NT_PRSTATUS per CPU the capture saw; the guest has 2 vCPUs.
        assert len(dump.prstatus) == 2
        assert dump.vmcoreinfo.osrelease == lab_dump.kernel.release
        ram = dump.ram_ranges()
        total = sum(e - s for s, e in ram) * dump.page_size
        # RAM minus the crashkernel reservation and firmware holes: within the guest size.
        assert lab_dump.memory * 0.6 < total <= lab_dump.memory
        assert dump.max_pfn == ram[-1][1]


def test_prstatus_registers_are_kernel_addresses(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    """The panicking CPU's ip is inside the kernel image (_stext .. +KERNEL_IMAGE_SIZE)
    and its sp lies in the direct map or vmalloc space (the kernel's own layout)."""
    with open_dump(lab_dump.vmcore) as dump:
        stext = dump.vmcoreinfo.require("SYMBOL(_stext)")
        for regs in (p.regs for p in dump.prstatus):
            assert stext <= regs["ip"] < stext + (1 << 30)
            assert regs["cs"] == 0x10 and regs["ss"] in (0, 0x18)
            assert regs["sp"] >> 63 == 1


def test_physical_reads_match_drgn(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    """Random physical reads (page-crossing, odd sizes) equal drgn's reads."""
    prog = drgn_prog(lab_dump.vmcore)
    rng = random.Random(1)
    with open_dump(lab_dump.vmcore) as dump:
        ranges = dump.pfn_ranges()
        for _ in range(300):
            start, end = rng.choice(ranges)
            pa = rng.randrange(start << 12, (end << 12) - 9000)
            size = rng.choice([1, 8, 100, 4096, 8193])
            assert dump.read_phys(pa, size) == prog.read(pa, size, True)


def test_bulk_read_equals_page_reads(lab_dump, drgn_prog) -> None:  # noqa: ANN001
    with open_dump(lab_dump.vmcore) as dump:
        start, end = dump.pfn_ranges()[0]
        pages, present = pfns(dump, start - 3, 64)
        assert not present[:3].any() and present[3:].all()
        assert not pages[:3].any()
        for i in range(3, 64):
            assert pages[i].tobytes() == dump.read_pfn(start - 3 + i)
        with pytest.raises(PageNotPresent, match="not in the dump"):
            dump.read_pfn(start - 1)
        assert np.array_equal(
            np.frombuffer(dump.read_phys(start << 12, 3 * 4096), np.uint8), pages[3:6].reshape(-1)
        )


def test_iter_pages_covers_pfn_ranges(lab_dump) -> None:  # noqa: ANN001
    with open_dump(lab_dump.vmcore) as dump:
        seen = 0
        for start, pages, present in batches(dump, batch=50000):
            assert present.all() and pages.shape == (present.size, dump.page_size)
            assert dump.is_dumpable(start) and dump.is_dumpable(start + present.size - 1)
            seen += present.size
        assert seen == sum(e - s for s, e in dump.pfn_ranges())


def test_pread_fallback_reads_the_same(lab_dump, monkeypatch) -> None:  # noqa: ANN001
    """When the kernel refuses to map the file (old /proc/vmcore), reads use pread.
    The refusal is simulated (mmap patched to fail); the file and reads are real."""
    import kdumpy.vmcore.source as source

    with open_dump(lab_dump.vmcore) as mapped:
        ranges = mapped.pfn_ranges()
        want = [pfns(mapped, s, min(e - s, 300))[0].copy() for s, e in ranges]
        dmesg_start = mapped.read_virt(mapped.vmcoreinfo.require("SYMBOL(prb)"), 8)

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(19, "No such device")

    monkeypatch.setattr(source.mmap, "mmap", refuse)
    with open_dump(lab_dump.vmcore) as dump:
        assert dump.src._map is None
        assert dump.pfn_ranges() == ranges
        for (s, e), pages in zip(ranges, want, strict=True):
            assert np.array_equal(pfns(dump, s, min(e - s, 300))[0], pages)
        assert dump.read_virt(dump.vmcoreinfo.require("SYMBOL(prb)"), 8) == dmesg_start
