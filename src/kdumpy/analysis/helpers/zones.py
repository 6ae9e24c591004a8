"""Memory zones and the buddy allocator's free lists (``kmem -f``, ``-F``)::

for nid, index, zone in for_each_zone(prog):
    for order, migratetype, head, blocks in zone_free_lists(prog, zone):
        print(zone_name(zone), order, migratetype, blocks << order)
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import list_for_each, walk
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.types import ArrayType
from kdumpy.errors import KdumpyError


def for_each_pgdat(prog: Program) -> Iterator[tuple[int, Object]]:
    """``(nid, struct pglist_data)`` of every online node (``node_data[]`` with NUMA,
    ``contig_page_data`` without)."""
    if not prog.has_symbol("node_data"):
        yield 0, prog.object("contig_page_data")
        return
    table = prog.object("node_data")
    for nid in range(int(prog.object("nr_node_ids"))):
        if int(table[nid]):
            yield nid, table[nid].deref_()


def for_each_zone(prog: Program) -> Iterator[tuple[int, int, Object]]:
    """``(nid, zone index, struct zone)`` of every zone of every node."""
    for nid, pgdat in for_each_pgdat(prog):
        zones = pgdat.node_zones
        count = zones.type_.strip().length  # type: ignore[attr-defined]
        for i in range(count):
            yield nid, i, zones[i]


def zone_name(zone: Object) -> str:
    return zone.name.string_(32).decode("utf-8", "backslashreplace")


def zone_free_pages(prog: Program, zone: Object) -> int:
    """The zone's ``NR_FREE_PAGES`` counter."""
    return max(0, int(zone.vm_stat[prog.constant("NR_FREE_PAGES")].counter))


def migratetype_names(prog: Program, count: int) -> list[str]:
    """Names of the first ``count`` migrate types (``MIGRATE_MOVABLE`` -> ``MOVABLE``);
    the counting names ``MIGRATE_PCPTYPES`` and ``MIGRATE_TYPES`` yield to the real
    type of the same value (``MIGRATE_HIGHATOMIC``)."""
    names: dict[int, str] = {}
    try:
        values: list[tuple[str, int]] = prog.type("enum migratetype").strip().values  # type: ignore[attr-defined]
    except KdumpyError:
        values = []
    for name, value in values:
        if name not in ("MIGRATE_PCPTYPES", "MIGRATE_TYPES"):
            names.setdefault(value, name.removeprefix("MIGRATE_"))
    return [names.get(i, str(i)) for i in range(count)]


def zone_free_lists(prog: Program, zone: Object) -> Iterator[tuple[int, str, int, int]]:
    """``(order, migrate type, free_list address, blocks)`` of every buddy free list."""
    areas = zone.free_area
    orders = areas.type_.strip()
    count = orders.length if isinstance(orders, ArrayType) else 0
    for order in range(count):
        lists = areas[order].free_list
        kinds = lists.type_.strip().length  # type: ignore[attr-defined]
        names = migratetype_names(prog, kinds)
        for mt in range(kinds):
            head = lists[mt]
            blocks = sum(1 for _ in list_for_each(head))
            yield order, names[mt], int(head.address_ or 0), blocks


def free_list_pages(prog: Program, head: int) -> list[int]:
    """The ``struct page *`` (as addresses) of the first page of each block on a buddy
    free list (``free_area[order].free_list[migratetype]``): pages are linked through
    ``page->buddy_list`` (6.0+), before that ``page->lru``, the same place."""
    member = "buddy_list" if prog.has_member("struct page", "buddy_list") else "lru"
    offset = prog.offsetof("struct page", member)
    nodes = walk(prog.read_u64(head), prog.read_u64, head, f"free list at {head:#x}")
    return [node - offset for node in nodes]
