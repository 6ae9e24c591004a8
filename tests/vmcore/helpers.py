"""Shared checks for the reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdumpy.vmcore import open_dump

STEP = 8192  # pfns compared per numpy batch


def assert_same_pages(
    source: Path,
    dump_paths: Path | list[Path],
    min_pages: int = 1000,
    check_vmcoreinfo: bool = True,
) -> int:
    """All pages present in the dump equal the source's; returns how many there were."""
    with open_dump(source) as src, open_dump(dump_paths) as dump:
        assert dump.max_pfn == src.max_pfn
        assert dump.page_size == src.page_size
        if check_vmcoreinfo:
            assert dump.vmcoreinfo.raw == src.vmcoreinfo.raw
        total = 0
        for lo in range(0, dump.max_pfn, STEP):
            count = min(STEP, dump.max_pfn - lo)
            pages, present = dump.read_pfns(lo, count)
            ref, ref_present = src.read_pfns(lo, count)
            assert not (present & ~ref_present).any(), f"pfn near {lo:#x} invented"
            differ = (pages[present] != ref[present]).any(axis=1)
            assert not differ.any(), f"pfn {lo + int(np.flatnonzero(present)[differ][0]):#x}"
            total += int(present.sum())
        assert total >= min_pages
        return total
