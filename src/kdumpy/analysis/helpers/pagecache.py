"""The page cache: the pages of a file (``address_space.i_pages``, an XArray).

Since 5.16 the XArray holds folios (``struct folio`` starts with its head
``struct page``, so the address is the same); value entries are shadow entries of
evicted pages (or swap entries in shmem) and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.xarray import xa_entries, xa_is_value
from kdumpy.analysis.objects import Object


def for_each_page_cache_page(mapping: Object) -> Iterator[tuple[int, Object]]:
    """``(index, struct page *)`` of every page (folio head) cached for a mapping.

    >>> inode = file.f_inode
    >>> sum(1 for _ in for_each_page_cache_page(inode.i_mapping))   # == nrpages
    """
    prog = mapping.prog_
    page_t = prog.type("struct page")
    where = f"page cache of mapping {int(mapping):#x}"
    for index, entry in xa_entries(prog, int(mapping.i_pages.xa_head), where):
        if not xa_is_value(entry):
            yield index, prog.pointer(page_t, entry)


def page_cache_size(mapping: Object) -> int:
    """Pages the mapping has cached, as the kernel counts them (``nrpages``)."""
    return int(mapping.nrpages)
