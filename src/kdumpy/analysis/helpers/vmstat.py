"""VM statistics (``kmem -V``/``-z``), zone watermarks, HugeTLB states (``kmem -h``)
and per-CPU offsets (``kmem -o``)::

    for name, item in stat_items(prog, "enum zone_stat_item", "NR_VM_ZONE_STAT_ITEMS"):
        print(name, global_zone_stat(prog, item))
    for nid, index, zone in for_each_zone(prog):
        print(zone_stat(zone, prog.constant("NR_FREE_PAGES")), zone_watermarks(zone))

The counters are the ones ``/proc/vmstat`` sums: the global ``atomic_long_t`` arrays
(``vm_zone_stat``, ``vm_node_stat``, ``vm_numa_event``), each zone's ``vm_stat``, and
the per-CPU ``vm_event_states`` added over the online CPUs.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

# enum zone_watermarks: WMARK_MIN, WMARK_LOW, WMARK_HIGH
_WMARKS = (0, 1, 2)


def stat_items(prog: Program, enum: str, count_name: str) -> list[tuple[str, int]]:
    """``(name, value)`` of an ``enum *_stat_item``'s items, its counting name left out;
    empty when the kernel lacks the enum."""
    try:
        values: list[tuple[str, int]] = prog.type(enum).strip().values  # type: ignore[attr-defined]
    except KdumpyError:
        return []
    return [(name, value) for name, value in values if name != count_name]


def _counter(array: Object, item: int) -> int:
    return int(array[item].counter)


def global_zone_stat(prog: Program, item: int) -> int:
    """``global_zone_page_state``: the sum over zones, clamped at 0 as the kernel does."""
    return max(0, _counter(prog.object("vm_zone_stat"), item))


def global_node_stat(prog: Program, item: int) -> int:
    """``global_node_page_state``: the sum over nodes, clamped at 0."""
    return max(0, _counter(prog.object("vm_node_stat"), item))


def numa_event_array(prog: Program) -> tuple[str, Object] | None:
    """The NUMA counters and their heading: ``vm_numa_event`` (5.14+) or the older
    ``vm_numa_stat``; None without CONFIG_NUMA."""
    for name, heading in (("vm_numa_event", "VM_NUMA_EVENT"), ("vm_numa_stat", "VM_NUMA_STAT")):
        if prog.has_symbol(name):
            return heading, prog.object(name)
    return None


def global_vm_event(prog: Program, item: int) -> int:
    """``vm_event_states.event[item]`` added over the online CPUs
    (CONFIG_VM_EVENT_COUNTERS)."""
    states = prog.object("vm_event_states")
    return sum(int(prog.per_cpu(states, cpu).event[item]) for cpu in prog.online_cpus)


def zone_stat(zone: Object, item: int) -> int:
    """``zone_page_state``: one zone's counter, clamped at 0."""
    return max(0, _counter(zone.vm_stat, item))


def zone_watermarks(zone: Object) -> tuple[int, int, int]:
    """``(min, low, high)`` pages: ``_watermark[]`` plus ``watermark_boost`` (5.0+),
    else ``watermark[]``."""
    if zone.has_member_("_watermark"):
        boost = int(zone.watermark_boost) if zone.has_member_("watermark_boost") else 0
        return tuple(int(zone._watermark[i]) + boost for i in _WMARKS)  # type: ignore[return-value]
    return tuple(int(zone.watermark[i]) for i in _WMARKS)  # type: ignore[return-value]


def for_each_hstate(prog: Program) -> Iterator[Object]:
    """Each HugeTLB state in use (``hstates[:hugetlb_max_hstate]``); none without
    CONFIG_HUGETLBFS."""
    if not prog.has_symbol("hstates"):
        return
    hstates = prog.object("hstates")
    for i in range(int(prog.object("hugetlb_max_hstate", "unsigned int"))):
        yield hstates[i]


def huge_page_size(prog: Program, hstate: Object) -> int:
    return prog.dump.page_size << int(hstate.order)


def per_cpu_offsets(prog: Program) -> list[tuple[int, int]]:
    """``(cpu, __per_cpu_offset[cpu])`` of every possible CPU."""
    return [(cpu, prog.per_cpu_offsets[cpu]) for cpu in prog.possible_cpus]
