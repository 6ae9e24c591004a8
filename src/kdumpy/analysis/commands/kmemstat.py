"""kmem's statistics views, in crash's layouts: ``-V`` (the VM counters), ``-z`` (each
zone's counters and watermarks), ``-h`` (HugeTLB states), ``-o`` (per-CPU offsets), ``-n``
(nodes, memory sections and memory blocks)."""

from __future__ import annotations

from kdumpy.analysis.commands.output import column
from kdumpy.analysis.helpers.memmap import page_shift, pfn_to_page
from kdumpy.analysis.helpers.sparse import (
    for_each_mem_section,
    for_each_memory_block,
    section_state,
)
from kdumpy.analysis.helpers.vmstat import (
    for_each_hstate,
    global_node_stat,
    global_vm_event,
    global_zone_stat,
    huge_page_size,
    numa_event_array,
    per_cpu_offsets,
    stat_items,
    zone_stat,
    zone_watermarks,
)
from kdumpy.analysis.helpers.zones import for_each_pgdat, for_each_zone, zone_name
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.printable import shown

ZONE_ITEMS = ("enum zone_stat_item", "NR_VM_ZONE_STAT_ITEMS")
NODE_ITEMS = ("enum node_stat_item", "NR_VM_NODE_STAT_ITEMS")
EVENT_ITEMS = ("enum vm_event_item", "NR_VM_EVENT_ITEMS")


def _table(heading: str, rows: list[tuple[str, int]], indent: str = "") -> str:
    """``heading:`` then ``NAME: value`` with the names right-aligned, as crash."""
    width = max((len(name) for name, _ in rows), default=0) + 2
    body = "".join(f"{indent}{name:>{width}}: {value}\n" for name, value in rows)
    return f"{indent}{heading}:\n{body}"


def kmem_vmstat(prog: Program) -> str:
    """``kmem -V``: the zone, node, NUMA and VM event counters of the whole machine."""
    parts = [
        _table("VM_ZONE_STAT", [(n, global_zone_stat(prog, i))
                                for n, i in stat_items(prog, *ZONE_ITEMS)]),
        _table("VM_NODE_STAT", [(n, global_node_stat(prog, i))
                                for n, i in stat_items(prog, *NODE_ITEMS)]),
    ]  # fmt: skip
    numa = numa_event_array(prog)
    if numa is not None:
        heading, array = numa
        count = "NR_VM_NUMA_EVENT_ITEMS" if heading == "VM_NUMA_EVENT" else "NR_VM_NUMA_STAT_ITEMS"
        items = stat_items(prog, "enum numa_stat_item", count)
        parts.append(_table(heading, [(n, int(array[i].counter)) for n, i in items]))
    if prog.has_symbol("vm_event_states"):
        events = [(n, global_vm_event(prog, i)) for n, i in stat_items(prog, *EVENT_ITEMS)]
        parts.append(_table("VM_EVENT_STATES", events))
    return "\n".join(parts)


def kmem_zones(prog: Program) -> str:
    """``kmem -z``: each zone's size, watermarks and counters; ``[unpopulated]`` for
    a zone without pages."""
    items = stat_items(prog, *ZONE_ITEMS)
    out = []
    for nid, index, zone in for_each_zone(prog):
        head = (f"NODE: {nid}  ZONE: {index}  ADDR: {zone.address_ or 0:x}  "
                f'NAME: "{shown(zone_name(zone))}"\n')  # fmt: skip
        size = int(zone.spanned_pages)
        if not size:
            out.append(head + "  [unpopulated]\n")
            continue
        present = int(zone.present_pages) if zone.has_member_("present_pages") else size
        shown_present = f"  PRESENT: {present}" if present < size else ""
        low, mid, high = zone_watermarks(zone)
        out.append(head + f"  SIZE: {size}{shown_present}  MIN/LOW/HIGH: {low}/{mid}/{high}\n"
                   + _table("VM_STAT", [(n, zone_stat(zone, i)) for n, i in items], "  ")
                   + "\n")  # fmt: skip
    return "\n".join(out)


def kmem_hstates(prog: Program) -> str:
    """``kmem -h``: each HugeTLB state, its page size and free and total pages."""
    out = ["          HSTATE        SIZE    FREE   TOTAL  NAME\n"]
    for h in for_each_hstate(prog):
        name = h.name.string_(32).decode("utf-8", "backslashreplace")
        size = _binary_units(huge_page_size(prog, h)) + "B"
        out.append(f"{h.address_ or 0:>16x}  {size:>8}  {int(h.free_huge_pages):>6}  "
                   f"{int(h.nr_huge_pages):>6}  {shown(name)}\n")  # fmt: skip
    return "".join(out)


def _binary_units(n: int) -> str:
    """``2M``, ``1G``: the largest binary unit that divides ``n`` exactly."""
    for unit in ("", "K", "M", "G", "T"):
        if n < 1024 or n % 1024:
            return f"{n}{unit}"
        n //= 1024
    return f"{n}P"


def kmem_percpu_offsets(prog: Program) -> str:
    """``kmem -o``: what is added to a per-CPU symbol's address on each CPU."""
    rows = [f"{f'CPU {cpu}':>7}: {offset:x}\n" for cpu, offset in per_cpu_offsets(prog)]
    return "PER-CPU OFFSET VALUES:\n" + "".join(rows)


def kmem_nodes(prog: Program) -> str:
    """``kmem -n``: each node (its zones' addresses, first struct page, start), each
    zone's size and first struct page, then every present memory section and every
    memory hotplug block, in crash's layout."""
    shift = page_shift(prog)
    out: list[str] = []
    zone_header = (
        "ZONE  NAME         SIZE  " + column("MEM_MAP", 16, "cr") + "  START_PADDR  START_MAPNR"
    )
    for n, (nid, pgdat) in enumerate(for_each_pgdat(prog)):
        if n:
            out.append("\n" + "-" * len(zone_header))
        start_pfn = int(pgdat.node_start_pfn)
        zones = pgdat.node_zones
        zone_size = prog.sizeof("struct zone")
        count = zones.type_.strip().length  # type: ignore[attr-defined]
        first = zones.address_ or 0
        out.append(f"{chr(10) * 2 if n else ''}NODE  {column('SIZE', 8)}  "
                   f"{column('PGLIST_DATA', 16)}  {column('BOOTMEM_DATA', 16)}  "
                   f"{column('NODE_ZONES', 16)}\n")  # fmt: skip
        out.append(f" {nid:2d}   {column(int(pgdat.node_spanned_pages), 8)}  "
                   f"{column(f'{int(pgdat.address_ or 0):x}', 16)}  {column('----', 16)}  "
                   f"{column(f'{first:x}', 16)}\n")  # fmt: skip
        out += [" " * 52 + f"{first + i * zone_size:x}\n" for i in range(1, count)]
        mem_map = _node_mem_map(prog, pgdat, start_pfn)
        out.append(f"{column('MEM_MAP', 16)}     START_PADDR    START_MAPNR\n")
        out.append(f"{column(f'{mem_map:x}', 16)}  {column(f'{start_pfn << shift:x}', 16, 'cr')}  "
                   f"{column(start_pfn, 11, 'cr')}\n")  # fmt: skip
        out.append(f"\n{zone_header}\n")
        for i in range(count):
            zone = zones[i]
            size = int(zone.spanned_pages)
            zstart = int(zone.zone_start_pfn)
            zmap = int(pfn_to_page(prog, zstart)) if size else 0
            out.append(f" {i:2d}   {shown(zone_name(zone)):<9} {size:7d}  {zmap:>16x}  "
                       f"{zstart << shift:>11x}  {zstart if size else 0:>11}\n")  # fmt: skip
    out.append(_sections(prog))
    out.append(_memory_blocks(prog))
    return "".join(out)


def _node_mem_map(prog: Program, pgdat: Object, start_pfn: int) -> int:
    """A node's first struct page: ``node_mem_map`` (FLATMEM), else the vmemmap's."""
    if pgdat.has_member_("node_mem_map"):
        return int(pgdat.node_mem_map)
    return int(pfn_to_page(prog, start_pfn))


def _sections(prog: Program) -> str:
    """The present memory sections, after a rule (crash's ``dump_mem_sections``)."""
    out = ["\n" + "-" * 67 + "\n\n"]
    heads = "  ".join(column(name, 16) for name in ("SECTION", "CODED_MEM_MAP", "MEM_MAP"))
    out.append(f"NR  {heads}  STATE PFN\n")
    for s in for_each_mem_section(prog):
        maps = "  ".join(column(f"{v:x}", 16, "cr") for v in (s.coded_mem_map, s.mem_map))
        state = column(section_state(prog, s.flags), 5)
        out.append(f"{s.nr:2d}  {column(f'{s.address:x}', 16)}  {maps}  {state} "
                   f"{column(s.pfn, 16, 'l')}\n")  # fmt: skip
    return "".join(out)


def _memory_blocks(prog: Program) -> str:
    """The memory hotplug blocks (none without ``CONFIG_MEMORY_HOTPLUG``)."""
    blocks = list(for_each_memory_block(prog))
    if not blocks:
        return ""
    width = len(f"{prog.dump.max_pfn * prog.dump.page_size:x}")  # crash's PADDR_PRLEN
    known_end = all(b.end >= 0 for b in blocks)
    title = "PHYSICAL RANGE" if known_end else "PHYSICAL START"
    with_nid = all(b.nid is not None for b in blocks)
    node = f"{column('NODE', 4)}  " if with_nid else " "
    out = [f"\n{column('MEM_BLOCK', 16)} {column('NAME', 10)}   "
           f"{column(title, 2 * width + (2 if with_nid else 0))}   {node}"
           f"{column('STATE', 7, 'l')} {column('START_SECTION_NO', 12, 'l')}\n"]  # fmt: skip
    for b in blocks:
        if known_end:
            where = f"{b.start:>{width}x} - {b.end:>{width}x}"
        else:
            where = column(f"{b.start:x}", 2 * width + 3)
        nid = f" {column(b.nid, 4)} " if with_nid else " "
        name = column(shown(b.name), 12 if with_nid else 10)
        state = f"{column(b.state, 7, 'l')} {column(b.start_section, 12, 'l')}"
        out.append(f" {b.address:<16x} {name} {where}{nid} {state}\n")
    return "".join(out)
