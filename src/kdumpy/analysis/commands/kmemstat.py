"""kmem's statistics views, in crash's layouts: ``-V`` (the VM counters), ``-z`` (each
zone's counters and watermarks), ``-h`` (HugeTLB states), ``-o`` (per-CPU offsets)."""

from __future__ import annotations

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
from kdumpy.analysis.helpers.zones import for_each_zone, zone_name
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
