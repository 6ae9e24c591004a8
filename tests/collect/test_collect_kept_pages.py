"""Which pages each dump level keeps: kdumpy against makedumpfile 1.7.2 on real dumps.

Before Linux 6.3 (5.10, 6.1: kernels makedumpfile 1.7.2 handles) the set of kept
pages must be equal for every dump level tried.  From 6.3 on makedumpfile 1.7.2
predates the compound page (and later page type) changes, so the sets differ: 6.3
removed ``OFFSET(page.compound_order)`` from VMCOREINFO (kernel commit 1c5509be58f6),
whose replacements makedumpfile reads only from 1.7.3 (446c4f6, ``folio._folio_order``)
and 1.7.4 (9661c1d, ``folio._flags_1`` on 6.6+).  The test then requires every
differing page to be explained by the kernel's own data -- the struct pages in the
dump (read through drgn, not kdumpy) and VMCOREINFO -- in kdumpy's favour:

* kept by makedumpfile, dropped by kdumpy: a *tail page* (``compound_head`` /
  7.1+ ``compound_info`` bit 0) of a compound page whose head both tools dropped;
  the head's order (``folio._flags_1 & 0xff`` in the first tail) covers the page.
  makedumpfile 1.7.2 cannot read that order on >= 6.6 (it looks for
  ``OFFSET(page.compound_order)``, gone from VMCOREINFO), so it drops the head only
  and leaves the rest of the folio (user or page-cache data) in the dump.
* dropped by makedumpfile, kept by kdumpy: a page whose own page type -- or its
  head's, for a tail -- is a kernel type (top byte >= 0xf0 on >= 6.12, e.g.
  ``PAGE_SLAB_MAPCOUNT_VALUE``).  Slab/large-kmalloc memory is kernel data; the odd
  value at ``page.mapping`` there is a slab field, not ``PAGE_MAPPING_ANON``.
  makedumpfile 1.7.2 tests slab with ``PG_slab``, which 6.10+ no longer exports,
  and (on 7.x) does not know ``OFFSET(page.compound_info)`` either, so it reads
  these pages as anonymous user memory.  For the same reason on 7.x it judges tail
  pages on their own: the first tail of a page-cache folio carries
  ``_large_mapcount = -1`` where a page has ``mapping``, which looks "anonymous";
  the folio's real mapping (the head's) has no ``PAGE_MAPPING_ANON`` bit.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from collect_oracle import field, number, read_kdump, struct_pages

pytestmark = pytest.mark.vm  # real lab dumps (made in QEMU on first use)

LEVELS = [0, 1, 2, 4, 8, 16, 31, 3, 6, 12, 17, 24, 30]
MDF_172_SIZES_COMPOUND_PAGES_BEFORE = (6, 3)  # see the module docstring


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a ``uname -r`` string such as ``5.10.0-32-cloud-amd64``."""
    major, minor = release.split(".")[:2]
    return int(major), int(minor.split("-")[0].split("+")[0])


@pytest.mark.parametrize("level", LEVELS)
def test_kept_pages_match_or_are_explained(lab_dump, level, kdumpy_out, makedumpfile_out):
    vmcore = Path(lab_dump.vmcore)
    ours = read_kdump(kdumpy_out(vmcore, ["-l", "-d", str(level)]))
    theirs = read_kdump(makedumpfile_out(vmcore, ["-l", "-d", str(level)]))
    assert ours.max_mapnr == theirs.max_mapnr
    assert np.array_equal(ours.bitmap1, theirs.bitmap1), "1st bitmaps (existing pages) differ"
    diff = np.flatnonzero(ours.bitmap2 != theirs.bitmap2)
    release = lab_dump.kernel.release
    if kernel_version(release) < MDF_172_SIZES_COMPOUND_PAGES_BEFORE:
        assert diff.size == 0, f"{diff.size} pages differ from makedumpfile on {release}"
        return
    reasons = explain(vmcore, ours.bitmap2, theirs.bitmap2, diff)
    print(f"{lab_dump.kernel.version} -d {level}: {diff.size} pages differ: {dict(reasons)}")
    unexplained = {k: v for k, v in reasons.items() if k.startswith("UNEXPLAINED")}
    assert not unexplained, f"pages differing without a reason: {unexplained}"
    if level == 31:
        assert diff.size > 0, "expected makedumpfile 1.7.2 to misclassify some pages here"


def explain(vmcore: Path, ours: np.ndarray, theirs: np.ndarray, diff: np.ndarray) -> Counter:
    """A reason (from struct pages and VMCOREINFO) for each differing pfn."""
    raw, info, vmemmap = struct_pages(vmcore, ours.shape[0])
    flags = field(raw, int(info["OFFSET(page.flags)"]), "<u8")
    mapcount = field(raw, int(info["OFFSET(page._mapcount)"]), "<u4")
    head_key = "OFFSET(page.compound_head)"
    if head_key not in info:
        head_key = "OFFSET(page.compound_info)"  # Linux 7.1 renamed it
    chead = field(raw, int(info[head_key]), "<u8")
    mapping = field(raw, int(info["OFFSET(page.mapping)"]), "<u8")
    head_mask = number(info, "NUMBER(PG_head_mask)")
    assert head_mask
    slab_type = (number(info, "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)") or 0) & 0xFFFFFFFF
    size = raw.shape[1]
    reasons: Counter = Counter()
    for pfn in diff.tolist():
        tail = bool(chead[pfn] & 1)
        head = head_of(pfn, int(chead[pfn]), size, vmemmap, raw.shape[0]) if tail else pfn
        ptype = int(mapcount[head])
        # >= 6.12: a page type is the top byte, PGTY_buddy (0xf0) and up; -1 is "none".
        typed = ptype >> 24 >= 0xF0 and ptype != 0xFFFFFFFF
        if not ours[pfn]:
            order = int(flags[head + 1] & 0xFF)
            if (
                tail
                and flags[head] & head_mask
                and not ours[head]
                and not theirs[head]
                and head <= pfn < head + (1 << order)
            ):
                reasons["dropped: tail of a dropped compound head (order from _flags_1)"] += 1
            else:
                reasons[f"UNEXPLAINED dropped pfn {pfn:#x}"] += 1
        elif typed:
            kind = "slab" if ptype == slab_type else f"type {ptype >> 24:#x}"
            reasons[f"kept: {'head' if tail else 'page'} has a kernel page type ({kind})"] += 1
        elif tail and ours[head] and not mapping[head] & 1:
            # The tail's own 'mapping' word is folio metadata (e.g. _large_mapcount = -1
            # on 7.x), odd by accident; the folio's mapping is the head's, not anonymous.
            reasons["kept: tail of a kept non-anonymous folio (head mapping has no anon bit)"] += 1
        else:
            reasons[f"UNEXPLAINED kept pfn {pfn:#x}"] += 1
    return reasons


def head_of(pfn: int, value: int, size: int, vmemmap: int, npages: int) -> int:
    """The head pfn of a tail page, decoded like the kernel's ``compound_head()``.

    <= 7.0: ``compound_head`` = head struct page address | 1.  7.1+: when it is not
    such an address, ``compound_info`` = mask | 1 and the head's struct page is the
    tail's struct page address AND the mask (folio struct pages are aligned).
    """
    pointer = value - 1
    if vmemmap <= pointer < vmemmap + npages * size:
        return (pointer - vmemmap) // size
    head_addr = (vmemmap + pfn * size) & (value & ~1)
    return (head_addr - vmemmap) // size
