"""What the fields of a ``struct page`` mean, decided from VMCOREINFO alone.

The kernel has changed how it marks page kinds several times; every rule here is
picked by which VMCOREINFO entries exist, never by the release string:

* page flag bits: ``NUMBER(PG_lru|PG_private|PG_swapcache|PG_swapbacked|PG_hwpoison)``,
  ``NUMBER(PG_head_mask)``; ``NUMBER(PG_slab)`` only before 6.10 (then slab became a
  page type).
* page types in ``_mapcount`` (``page_type``): ``NUMBER(PAGE_{BUDDY,SLAB,HUGETLB,OFFLINE,
  UNACCEPTED}_MAPCOUNT_VALUE)``.  From 6.12 the type is the top byte and the low 24
  bits may carry data; the kernel tests ``page_type >> 24 == PGTY_x``, so a value
  whose low 24 bits are zero is compared on its top byte, older encodings on all
  32 bits (as the kernel of their time and makedumpfile do).
* compound order and hugetlb: ``folio._flags_1 & 0xff`` in the first tail page from
  6.6 (``NUMBER(PG_hugetlb)`` or ``NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)`` present);
  before, ``compound_order`` / ``compound_dtor`` bytes of the first tail page.
* tail pages: bit 0 of ``page.compound_head`` (7.1+: ``page.compound_info``).
"""

from typing import NamedTuple

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

PAGE_MAPPING_ANON = 0x1
_TYPE_LOW_MASK = 0x00FFFFFF


class PageType(NamedTuple):
    """A ``PAGE_x_MAPCOUNT_VALUE``: the 32-bit value and the bits that identify it."""

    value: int
    mask: int

    @classmethod
    def from_number(cls, number: int | None) -> "PageType | None":
        if number is None:
            return None
        value = number & 0xFFFFFFFF
        # 6.12+: PGTY_x << 24 with free low bits; older: the whole word.
        mask = 0xFF000000 if value & _TYPE_LOW_MASK == 0 else 0xFFFFFFFF
        return cls(value, mask)


class PageRules(NamedTuple):
    """Offsets, flag bits and type values for classifying ``struct page``s."""

    struct_size: int
    off_flags: int
    off_mapping: int
    off_mapcount: int | None
    off_private: int | None
    off_compound_head: int | None
    pg_lru: int
    pg_private: int
    pg_swapcache: int
    pg_swapbacked: int | None
    pg_hwpoison: int | None
    pg_slab: int | None
    pg_hugetlb: int | None
    head_mask: int
    buddy: PageType | None
    slab: PageType | None
    hugetlb: PageType | None
    offline: PageType | None
    unaccepted: PageType | None
    free_area_len: int | None
    order_in_flags1: bool  # 6.6+: folio._flags_1 & 0xff
    off_order: int | None  # byte offset of compound_order inside the first tail page
    off_dtor: int | None
    hugetlb_dtor: int | None

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo) -> "PageRules":
        """Build the rules; a one-line error if the essential struct page entries are missing."""
        size = info.size("page")
        off_flags = info.offset("page.flags")
        off_mapping = info.offset("page.mapping")
        if size is None or off_flags is None or off_mapping is None:
            raise DumpFormatError(
                f"{info.source}: VMCOREINFO lacks SIZE(page)/OFFSET(page.flags)/"
                "OFFSET(page.mapping); cannot classify pages (use -d 0 or -d 1)"
            )
        head = info.offset("page.compound_head")
        if head is None:
            head = info.offset("page.compound_info")  # Linux 7.1 renamed it
        hugetlb_type = info.number("PAGE_HUGETLB_MAPCOUNT_VALUE")
        pg_hugetlb = info.number("PG_hugetlb")
        off_order = info.offset("page.compound_order")
        off_dtor = info.offset("page.compound_dtor")
        folio_order = info.offset("folio._folio_order")
        if off_order is None and folio_order is not None:
            off_order = folio_order - size  # 6.3-6.5: folio field, counted from the head
        folio_dtor = info.offset("folio._folio_dtor")
        if off_dtor is None and folio_dtor is not None:
            off_dtor = folio_dtor - size
        slab_type = info.number("PAGE_SLAB_MAPCOUNT_VALUE")
        pg_slab = info.number("PG_slab")
        if pg_slab is None and slab_type is None:
            pg_slab = 7  # makedumpfile's 2.6.25-era default for kernels that export neither
        head_mask = info.number("PG_head_mask")
        return cls(
            struct_size=size,
            off_flags=off_flags,
            off_mapping=off_mapping,
            off_mapcount=info.offset("page._mapcount"),
            off_private=info.offset("page.private"),
            off_compound_head=head,
            pg_lru=_num(info, "PG_lru", 5),
            pg_private=_num(info, "PG_private", 11),
            pg_swapcache=_num(info, "PG_swapcache", 15),
            pg_swapbacked=info.number("PG_swapbacked"),
            pg_hwpoison=info.number("PG_hwpoison"),
            pg_slab=pg_slab,
            pg_hugetlb=pg_hugetlb,
            head_mask=head_mask if head_mask is not None else 1 << 14,
            buddy=PageType.from_number(info.number("PAGE_BUDDY_MAPCOUNT_VALUE")),
            slab=PageType.from_number(slab_type),
            hugetlb=PageType.from_number(hugetlb_type),
            offline=PageType.from_number(info.number("PAGE_OFFLINE_MAPCOUNT_VALUE")),
            unaccepted=PageType.from_number(info.number("PAGE_UNACCEPTED_MAPCOUNT_VALUE")),
            free_area_len=info.length("zone.free_area"),
            order_in_flags1=hugetlb_type is not None or pg_hugetlb is not None,
            off_order=off_order,
            off_dtor=off_dtor,
            hugetlb_dtor=info.number("HUGETLB_PAGE_DTOR"),
        )

    @property
    def can_find_buddy(self) -> bool:
        """Free pages are recognisable from their struct page (kernels >= 2.6.38)."""
        return self.buddy is not None and self.off_mapcount is not None

    def needs_scan(self, dump_level: int) -> bool:
        """Whether struct pages must be read at all (makedumpfile's create_2nd_bitmap test)."""
        return bool(
            dump_level & 0x0E
            or self.pg_hwpoison is not None
            or (dump_level & 0x10 and self.can_find_buddy)
        )


def _num(info: VmcoreInfo, name: str, default: int) -> int:
    value = info.number(name)
    return default if value is None else value
