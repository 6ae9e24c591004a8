"""makedumpfile's page decision chain over numpy: the reference the C classifier
(``_pagepack.classify``) is tested against, and the classifier of an install built
without the C extension (see :mod:`.classify` for the chain itself)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdumpy.collect.levels import (
    EXCLUDE_CACHE,
    EXCLUDE_CACHE_PRIVATE,
    EXCLUDE_FREE,
    EXCLUDE_USER,
)
from kdumpy.collect.pageclass import (
    CACHE,
    CACHE_PRIVATE,
    FREE,
    HWPOISON,
    OFFLINE,
    USER,
    Pending,
)
from kdumpy.collect.pagerules import PAGE_MAPPING_ANON, PageRules, PageType


def _field(raw: np.ndarray, offset: int | None, dtype: str) -> np.ndarray | None:
    """One struct page member for every row of ``raw`` (uint8 [rows, SIZE(page)])."""
    if offset is None:
        return None
    rows, size = raw.shape
    return np.ndarray((rows,), dtype=dtype, buffer=raw, offset=offset, strides=(size,))


def _bit(flags: np.ndarray, nr: int | None) -> np.ndarray:
    if nr is None:
        return np.zeros(flags.shape, dtype=bool)
    return (flags & np.uint64(1 << nr)) != 0


def _is_type(mapcount: np.ndarray | None, ptype: PageType | None) -> np.ndarray | bool:
    if ptype is None or mapcount is None:
        return False
    return (mapcount & np.uint32(ptype.mask)) == np.uint32(ptype.value)


def _compound_order(
    rules: PageRules, flags: np.ndarray, raw: np.ndarray, mapcount: np.ndarray | None, pfn0: int
) -> tuple[np.ndarray, np.ndarray]:
    """Order and hugetlb-ness of compound heads (0 / False elsewhere), from the next struct page."""
    n = flags.shape[0] - 1
    head = (flags[:n] & np.uint64(rules.head_mask)) != 0
    order = np.zeros(n, dtype=np.int64)
    hugetlb = np.zeros(n, dtype=bool)
    if not head.any():
        return order, hugetlb
    idx = np.nonzero(head)[0]
    nxt = raw[idx + 1]
    if rules.order_in_flags1:
        flags1 = _field(np.ascontiguousarray(nxt), rules.off_flags, "<u8")
        assert flags1 is not None
        order[idx] = (flags1 & np.uint64(0xFF)).astype(np.int64)
        if rules.hugetlb is not None and mapcount is not None:
            hugetlb[idx] = _is_type(mapcount[idx], rules.hugetlb)
        elif rules.pg_hugetlb is not None:
            hugetlb[idx] = _bit(flags1, rules.pg_hugetlb)
    else:
        if rules.off_order is not None:
            order[idx] = nxt[:, rules.off_order].astype(np.int64)
        if rules.off_dtor is not None and rules.hugetlb_dtor is not None:
            hugetlb[idx] = nxt[:, rules.off_dtor] == rules.hugetlb_dtor
    pfns = np.arange(pfn0, pfn0 + n, dtype=np.int64)
    bad = (order >= 64) | ((pfns & ((np.int64(1) << np.minimum(order, 62)) - 1)) != 0)
    order[bad] = 0
    return order, hugetlb


def classify_numpy(
    rules: PageRules,
    raw: Any,
    examine: Any,
    pfn0: int,
    level: int,
    pending: Pending,
    size: int | None = None,
) -> np.ndarray:
    """Classes (uint8) of pfns ``pfn0 .. pfn0+n-1``.

    ``raw`` holds ``n+1`` struct pages of ``size`` bytes (the extra one is the first
    tail of a head in the last slot; ``size`` None: ``raw`` is a ``[n+1, size]`` array);
    ``examine`` marks pfns whose struct page is valid and that lie in the dump's RAM.
    ``pending`` is updated in place.
    """
    n = memoryview(examine).nbytes
    examine = np.frombuffer(examine, dtype=np.uint8, count=n) != 0
    if size is not None:
        raw = np.frombuffer(raw, dtype=np.uint8, count=(n + 1) * size).reshape(n + 1, size)
    out = np.zeros(n, dtype=np.uint8)
    start = 0
    if pending.end_pfn > pfn0:
        start = min(n, pending.end_pfn - pfn0)
        out[:start] = pending.cls
    flags = _field(raw, rules.off_flags, "<u8")
    mapping = _field(raw, rules.off_mapping, "<u8")
    assert flags is not None and mapping is not None
    mapcount = _field(raw, rules.off_mapcount, "<u4")
    private = _field(raw, rules.off_private, "<u8")
    chead = _field(raw, rules.off_compound_head, "<u8")
    f, m = flags[:n], mapping[:n]
    mc = None if mapcount is None else mapcount[:n]

    slab = np.zeros(n, dtype=bool) | _is_type(mc, rules.slab)
    if rules.pg_slab is not None:
        slab |= _bit(f, rules.pg_slab)
    anon = ((m & np.uint64(PAGE_MAPPING_ANON)) != 0) & ~slab
    lru, is_private = _bit(f, rules.pg_lru), _bit(f, rules.pg_private)
    swapcache = _bit(f, rules.pg_swapcache)
    if rules.pg_swapbacked is not None:
        swapcache &= _bit(f, rules.pg_swapbacked)
    cache = lru | swapcache
    order, hugetlb = _compound_order(rules, flags, raw, mapcount, pfn0)

    live = examine.copy()
    live[:start] = False
    if chead is not None:
        live &= (chead[:n] & np.uint64(1)) == 0  # tail pages go with their head
    cls = np.zeros(n, dtype=np.uint8)
    nr_log2 = order.copy()
    undecided = live.copy()

    def take(mask: np.ndarray | bool, code: int) -> None:
        hit = undecided & mask
        cls[hit] = code
        undecided[hit] = False

    if level & EXCLUDE_FREE and rules.can_find_buddy and private is not None:
        buddy = _is_type(mc, rules.buddy) & ~slab
        priv = private[:n]
        limit = rules.free_area_len if rules.free_area_len is not None else 64
        bad = buddy & (priv >= np.uint64(limit))
        undecided &= ~bad  # makedumpfile warns and keeps such a page
        buddy &= ~bad
        nr_log2 = np.where(undecided & buddy, priv.astype(np.int64), nr_log2)
        take(buddy, FREE)
    if level & EXCLUDE_FREE and rules.unaccepted is not None and rules.free_area_len:
        unacc = undecided & _is_type(mc, rules.unaccepted)
        nr_log2 = np.where(unacc, rules.free_area_len - 1, nr_log2)
        take(unacc, FREE)
    if level & EXCLUDE_CACHE:
        take(cache & ~is_private & ~anon, CACHE)
    if level & EXCLUDE_CACHE_PRIVATE:
        take(cache & ~anon & is_private, CACHE_PRIVATE)
        take(cache & ~anon, CACHE)
    if level & EXCLUDE_USER:
        take(anon | hugetlb, USER)
    if rules.pg_hwpoison is not None:
        take(_bit(f, rules.pg_hwpoison), HWPOISON)
    if rules.offline is not None:
        take(_is_type(mc, rules.offline) & ~slab, OFFLINE)

    hits = np.nonzero(cls)[0]
    multi = nr_log2[hits] > 0
    single = hits[~multi]
    out[single] = cls[single]
    end_of_block = start
    for i in hits[multi].tolist():
        if i < end_of_block:
            continue  # inside a block excluded before: makedumpfile skips it
        end = i + (1 << int(nr_log2[i]))
        out[i : min(end, n)] = cls[i]
        end_of_block = end
        if end > n:
            pending.end_pfn, pending.cls = pfn0 + end, int(cls[i])
    if end_of_block <= n and pending.end_pfn <= pfn0 + n:
        pending.end_pfn = 0
    return out
