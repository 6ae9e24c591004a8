"""Shared checks for the reader tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings

from kdumpy.errors import KdumpyError
from kdumpy.vmcore import Dump, open_dump
from kdumpy.vmcore.dmesg import kernel_log

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
            pages, present = pfns(dump, lo, count)
            ref, ref_present = pfns(src, lo, count)
            assert not (present & ~ref_present).any(), f"pfn near {lo:#x} invented"
            differ = (pages[present] != ref[present]).any(axis=1)
            assert not differ.any(), f"pfn {lo + int(np.flatnonzero(present)[differ][0]):#x}"
            total += int(present.sum())
        assert total >= min_pages
        return total


def consume(dump: Dump) -> int:
    """Use every part of an opened dump the way the tools do (ranges, every page, notes,
    VMCOREINFO, the kernel log if it has one); returns the number of pages read.  Errors
    propagate, except a kernel log the VMCOREINFO does not describe."""
    dump.ram_ranges()
    pages = 0
    for _start, data, present in batches(dump):
        pages += int(present.sum())
        del data  # hold one batch at a time, as a streaming consumer does
    _ = dump.prstatus, dump.qemu_cpu_states, dump.device_dumps, dump.eraseinfo
    if dump.has_vmcoreinfo:
        _ = dump.vmcoreinfo.osrelease
        with contextlib.suppress(KdumpyError):
            kernel_log(dump)
    return pages


def fuzz_settings(fast_examples: int) -> settings:
    """hypothesis settings for the reader fuzzers.

    The fast tier runs ``fast_examples`` derandomized examples (the same every run, no
    example database); ``KDUMPY_FUZZ=long`` runs 1000 random ones per test and
    ``KDUMPY_FUZZ=<n>`` any number, remembering failures in ``.hypothesis/``.
    """
    mode = os.environ.get("KDUMPY_FUZZ", "")
    examples = int(mode) if mode.isdigit() else 1000 if mode else fast_examples
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not mode,
        database=settings.default.database if mode else None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def pfns(dump: Dump, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``dump.read_pfns`` as arrays: uint8 ``[count, page_size]`` and bool ``[count]``."""
    pages, present = dump.read_pfns(start, count)
    return (
        np.frombuffer(pages, dtype=np.uint8).reshape(count, dump.page_size),
        np.frombuffer(present, dtype=np.uint8) != 0,
    )


def batches(dump: Dump, batch: int = 4096) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``dump.iter_pages`` as arrays (see :func:`pfns`)."""
    for start, pages, present in dump.iter_pages(batch):
        flags = np.frombuffer(present, dtype=np.uint8) != 0
        data = np.frombuffer(pages, dtype=np.uint8).reshape(flags.size, dump.page_size)
        del pages, present
        yield start, data, flags
        del data, flags  # one batch alive at a time, not two
