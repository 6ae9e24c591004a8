"""The page decision chain of makedumpfile's ``__exclude_unnecessary_pages``.

For a batch of consecutive pfns it reads the struct page fields (in C,
``_pagepack.classify``; numpy in :mod:`.classify_np` without the extension) and gives
every pfn a class: kept, or excluded as free / cache / cache with private data /
user / hwpoison / offline.  The order of the tests is makedumpfile's (the first that
matches wins); a page that heads a multi-page block (a free buddy block of order
``private``, a compound page of order ``folio._flags_1 & 0xff``) takes the whole block
with it, and the pfns inside that block are not examined themselves.  A block that
runs past the end of the batch is carried into the next one (:class:`Pending`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeAlias

from kdumpy.collect.pageclass import CLASS_NAMES, KEEP, Pending
from kdumpy.collect.pagerules import PageRules

# The chain in C; an install built without the extension uses the numpy version (also
# the reference the tests compare the C one with).
_numpy_classify: Callable[..., Any] | None = None
try:
    from kdumpy.collect._pagepack import classify as _native_classify
except ImportError:
    _native_classify = None
    from kdumpy.collect.classify_np import classify_numpy

    _numpy_classify = classify_numpy

__all__ = ["CLASS_NAMES", "KEEP", "Pending", "classify", "native_rules"]
Buffer: TypeAlias = Any  # bytes, bytearray, memoryview, an array: the buffer protocol


@functools.lru_cache(maxsize=8)
def native_rules(rules: PageRules) -> tuple[int, ...]:
    """The rules as the C classifier takes them: -1 for what VMCOREINFO lacks, then
    (value, mask) of the buddy, slab, hugetlb, offline and unaccepted page types."""

    def opt(value: int | None) -> int:
        return -1 if value is None else value

    fields = (
        rules.off_flags, rules.off_mapping, opt(rules.off_mapcount), opt(rules.off_private),
        opt(rules.off_compound_head), rules.pg_lru, rules.pg_private, rules.pg_swapcache,
        opt(rules.pg_swapbacked), opt(rules.pg_hwpoison), opt(rules.pg_slab),
        opt(rules.pg_hugetlb), rules.head_mask, opt(rules.free_area_len),
        int(rules.order_in_flags1), opt(rules.off_order), opt(rules.off_dtor),
        opt(rules.hugetlb_dtor),
    )  # fmt: skip
    types = (rules.buddy, rules.slab, rules.hugetlb, rules.offline, rules.unaccepted)
    pairs = [(0, 0) if t is None else (t.value, t.mask) for t in types]
    return fields + tuple(x for pair in pairs for x in pair)


def classify(
    rules: PageRules,
    raw: Buffer,
    examine: Buffer,
    pfn0: int,
    level: int,
    pending: Pending,
) -> bytearray:
    """Classes (one byte each) of pfns ``pfn0 .. pfn0+n-1``.

    ``raw`` holds ``n+1`` struct pages back to back (the extra one is the first tail of
    a head in the last slot); ``examine`` has one byte per pfn, nonzero where the struct
    page is valid and the pfn lies in the dump's RAM.  ``pending`` is updated in place.
    """
    n = memoryview(examine).nbytes
    size = memoryview(raw).nbytes // (n + 1)
    if _native_classify is None:
        assert _numpy_classify is not None
        return bytearray(_numpy_classify(rules, raw, examine, pfn0, level, pending, size))
    out = bytearray(n)
    pending.end_pfn, pending.cls = _native_classify(
        raw, size, examine, pfn0, level, native_rules(rules), pending.end_pfn, pending.cls, out
    )
    return out
