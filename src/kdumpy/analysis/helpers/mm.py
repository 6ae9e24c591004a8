"""Memory accounting: RSS and VSZ of a task, totalram, vm statistics, and the other
figures of ``/proc/meminfo`` that ``kmem -i`` shows (buffers, huge pages, swap,
overcommit)."""

from __future__ import annotations

from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

# enum in include/linux/mm_types_task.h
MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = 0, 1, 2, 3
_RSS_MEMBERS = (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES)


def _percpu_counter_sum(prog: Program, counter: Object) -> int:
    """``percpu_counter_sum``: the shared count plus every CPU's delta (s32)."""
    total = int(counter.count)
    counters = counter.counters
    if int(counters):
        for cpu in prog.possible_cpus:
            total += int.from_bytes(
                prog.read((int(counters) + prog.per_cpu_offsets[cpu]) & ((1 << 64) - 1), 4),
                "little",
                signed=True,
            )
    return total


def mm_counter(prog: Program, mm: Object, member: int) -> int:
    """One of the mm's RSS counters in pages (6.2+: percpu_counter; before: atomic)."""
    rss = mm.rss_stat
    t = rss.type_.strip()
    if t.kind == "array":  # 6.2+: struct percpu_counter rss_stat[NR_MM_COUNTERS]
        return max(0, _percpu_counter_sum(prog, rss[member]))
    return max(0, int(rss.count[member].counter))


def get_mm_rss(prog: Program, mm: Object) -> int:
    """Resident pages (file + anon + shmem)."""
    return sum(mm_counter(prog, mm, m) for m in _RSS_MEMBERS)


def task_rss_vsz(prog: Program, task: Object) -> tuple[int, int]:
    """``(rss, vsz)`` in KiB like ps; zero for kernel threads."""
    mm = task.mm
    if not int(mm):
        return 0, 0
    page_kb = prog.dump.page_size // 1024
    try:
        rss = get_mm_rss(prog, mm)
        # Before 6.2 each thread caches RSS deltas (SPLIT_RSS_COUNTING): add them back.
        if task.has_member_("rss_stat"):
            from kdumpy.analysis.helpers.tasks import for_each_thread

            for thread in for_each_thread(task.group_leader):
                rss += sum(int(thread.rss_stat.count[m]) for m in _RSS_MEMBERS)
        vsz = int(mm.total_vm)
    except KdumpyError:
        return 0, 0
    return max(0, rss) * page_kb, vsz * page_kb


def totalram_pages(prog: Program) -> int:
    """Pages of RAM the kernel manages (meminfo "MemTotal")."""
    return int(prog.object("_totalram_pages").counter)


def global_zone_page_state(prog: Program, item: str) -> int:
    value = int(prog.object("vm_zone_stat")[prog.constant(item)].counter)
    return max(0, value)


def global_node_page_state(prog: Program, item: str) -> int:
    value = int(prog.object("vm_node_stat")[prog.constant(item)].counter)
    return max(0, value)


def nr_blockdev_pages(prog: Program) -> int:
    """Page cache of block devices (meminfo "Buffers"): the kernel's own
    ``nr_blockdev_pages()`` sums the pages of every inode of the bdev pseudo-fs."""
    sb = prog.object("blockdev_superblock")
    total = 0
    for inode in list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list"):
        total += int(inode.i_mapping.nrpages)
    return total


def hugetlb_pages(prog: Program) -> tuple[int, int]:
    """``(total, free)`` huge pages of every huge page size, counted in base pages."""
    try:
        count = int(prog.object("hugetlb_max_hstate"))
        hstates = prog.object("hstates")
    except KdumpyError:
        return 0, 0  # no CONFIG_HUGETLBFS
    total = free = 0
    for i in range(count):
        h = hstates[i]
        pages = 1 << int(h.order)
        total += int(h.nr_huge_pages) * pages
        free += int(h.free_huge_pages) * pages
    return total, free


def swap_pages(prog: Program) -> tuple[int, int]:
    """``(total, free)`` swap pages of the active swap areas."""
    return int(prog.object("total_swap_pages")), int(prog.object("nr_swap_pages").counter)


def commit_limit(prog: Program) -> int:
    """``vm_commit_limit()``: the overcommit limit in pages (meminfo "CommitLimit")."""
    kbytes = int(prog.object("sysctl_overcommit_kbytes"))
    if kbytes:
        allowed = kbytes // (prog.dump.page_size // 1024)
    else:
        ratio = int(prog.object("sysctl_overcommit_ratio"))
        allowed = (totalram_pages(prog) - hugetlb_pages(prog)[0]) * ratio // 100
    return allowed + swap_pages(prog)[0]


def committed_pages(prog: Program) -> int:
    """Pages committed to address spaces (meminfo "Committed_AS": the per-CPU
    counter's exact sum, never negative)."""
    return max(0, _percpu_counter_sum(prog, prog.object("vm_committed_as")))
