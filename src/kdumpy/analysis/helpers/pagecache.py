"""The page cache: the pages of a file (``address_space.i_pages``, an XArray).

Since 5.16 the XArray holds folios (``struct folio`` starts with its head
``struct page``, so the address is the same); value entries are shadow entries of
evicted pages (or swap entries in shmem) and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.memmap import PageRow, page_flag_bits, page_rows, page_to_pfn
from kdumpy.analysis.helpers.xarray import xa_entries, xa_is_value
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program


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


def page_cache_rows(prog: Program, mapping: Object) -> list[PageRow]:
    """The struct page fields (``kmem -p``'s) of every page cached for a mapping, in
    index order (``files -p``); a page whose struct page cannot be read is left out."""
    rows: list[PageRow] = []
    for _index, page in for_each_page_cache_page(mapping):
        rows += page_rows(prog, page_to_pfn(prog, int(page)), 1)
    return rows


def page_flag_names(prog: Program, flags: int) -> list[str]:
    """The ``enum pageflags`` names of the bits set in a page's flags, as crash lists
    them after the flags word: lower case, no ``PG_``, in bit order, each bit by its
    first name (``uptodate``, not its later alias ``reported``)."""
    names: dict[int, str] = {}
    for name, bit in page_flag_bits(prog):
        names.setdefault(bit, name[3:].lower())
    return [names[bit] for bit in sorted(names) if flags >> bit & 1]
