"""The slab allocator (SLUB): caches, their usage, and which object an address is in.

SLUB keeps no count of free objects; they are summed, as ``/proc/slabinfo`` does,
from every place a free object can wait: the partial slabs of each node, the per-CPU
slab's freelist and partial slabs (before 7.0), and the per-CPU and per-node sheaves
(6.18+).  Slab and object counts come from each node's ``nr_slabs`` and
``total_objects`` (``CONFIG_SLUB_DEBUG``, on in every distribution kernel)::

    for cache in for_each_slab_cache(prog):
        usage = slab_cache_usage(prog, cache)
        print(slab_cache_name(cache), usage.allocated, usage.total, usage.slabs)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from kdumpy.analysis.helpers.lists import list_for_each_entry, walk
from kdumpy.analysis.helpers.memmap import page_flags, page_to_virt, virt_to_page
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

OO_SHIFT = 16  # kmem_cache.oo: order << 16 | objects per slab
_MAX_FREELIST = 1 << 16  # no slab holds more objects


class SlabUsage(NamedTuple):
    """A cache's slabs, objects and free objects (``kmem -s``'s columns)."""

    slabs: int
    total: int
    free: int

    @property
    def allocated(self) -> int:
        return self.total - self.free


class SlabObject(NamedTuple):
    """Where an address lies in a slab: the cache, the slab's ``struct slab`` (or
    ``struct page``) address, its first object, the object and whether it is allocated."""

    cache: Object
    slab: int
    memory: int
    address: int
    allocated: bool


def for_each_slab_cache(prog: Program) -> Iterator[Object]:
    """Every ``struct kmem_cache *`` on ``slab_caches``, newest first (the kernel's order)."""
    head = prog.object("slab_caches")
    yield from list_for_each_entry("struct kmem_cache", head, "list")


def slab_cache_name(cache: Object) -> str:
    """A ``struct kmem_cache``'s name (bytes that are not UTF-8 kept as ``\\xNN``)."""
    return cache.name.string_(256).decode("utf-8", "backslashreplace")


def find_slab_cache(prog: Program, name: str) -> Object | None:
    """The cache called ``name`` (``find_slab_cache(prog, "task_struct")``), or None."""
    return next((c for c in for_each_slab_cache(prog) if slab_cache_name(c) == name), None)


def slab_cache_order(cache: Object) -> int:
    """The page order of the cache's slabs (``oo``'s high half)."""
    return int(cache.oo.x) >> OO_SHIFT


def _nodes(prog: Program, cache: Object) -> list[tuple[Object, Object | None]]:
    """``(kmem_cache_node, barn or None)`` of each NUMA node (7.1+: ``per_node[]``)."""
    count = prog.read_u32(prog.symbol_address("nr_node_ids"))  # per cache: kept cheap
    out: list[tuple[Object, Object | None]] = []
    if cache.has_member_("per_node"):
        for i in range(count):
            per = cache.per_node[i]
            out.append((per.node, per.barn))
        return out
    for i in range(count):
        node = cache.node[i]
        if int(node):
            out.append((node, node.barn if node.has_member_("barn") else None))
    return out


def _slab_type(prog: Program) -> str:
    """``struct slab`` since 5.17; ``struct page`` before."""
    try:
        prog.type("struct slab")
        return "struct slab"
    except KdumpyError:
        return "struct page"


def _freelist_next(prog: Program, cache: Object) -> Callable[[int], int]:
    """The decoder of a free object's next pointer (``CONFIG_SLAB_FREELIST_HARDENED``:
    stored as ``next ^ cache->random ^ swab(where)``, as ``freelist_ptr_decode`` does)."""
    offset = int(cache.offset)
    random = int(cache.random) if cache.has_member_("random") else None

    def next_of(obj: int) -> int:
        where = obj + offset
        value = prog.read_u64(where)
        if random is None:
            return value
        return value ^ random ^ int.from_bytes(where.to_bytes(8, "little"), "big")

    return next_of


def freelist(prog: Program, cache: Object, first: int) -> list[int]:
    """The free objects chained from ``first`` (a cycle or bad pointer cuts it short)."""
    if not first:
        return []
    what = f"{slab_cache_name(cache)} freelist"
    return list(walk(first, _freelist_next(prog, cache), 0, what))[:_MAX_FREELIST]


def _sheaf_objects(sheaf: Object) -> list[int]:
    """Objects held by a sheaf (6.18+ per-CPU caching layer)."""
    size = min(int(sheaf.size), _MAX_FREELIST)
    return [int(sheaf.objects[i]) for i in range(size)] if int(sheaf) else []


def cpu_free_objects(prog: Program, cache: Object) -> tuple[set[int], int]:
    """Free objects held per CPU: ``(objects known one by one, free count of per-CPU
    partial slabs)`` (the per-CPU slab's freelist, and the CPU's sheaves)."""
    objects: set[int] = set()
    partial_free = 0
    if cache.has_member_("cpu_sheaves") and int(cache.cpu_sheaves):
        for cpu in prog.online_cpus:
            pcs = prog.per_cpu_ptr(cache.cpu_sheaves, cpu)
            for sheaf in (pcs.main, pcs.spare):
                if int(sheaf):
                    objects.update(_sheaf_objects(sheaf))
    if not cache.has_member_("cpu_slab"):
        return objects, partial_free
    for cpu in prog.online_cpus:
        c = prog.per_cpu_ptr(cache.cpu_slab, cpu)
        slab = c.slab if c.has_member_("slab") else c.page
        if int(slab) and int(slab.slab_cache) == int(cache):
            objects.update(freelist(prog, cache, int(c.freelist)))
        if c.has_member_("partial"):
            partial_free += _cpu_partial_free(c.partial)
    return objects, partial_free


def _cpu_partial_free(partial: Object) -> int:
    """Free objects of a CPU's partial slabs (chained by ``next``)."""
    free = 0
    seen: set[int] = set()
    while int(partial) and int(partial) not in seen and len(seen) < _MAX_FREELIST:
        seen.add(int(partial))
        free += int(partial.objects) - int(partial.inuse)
        partial = partial.next
    return free


def slab_cache_usage(prog: Program, cache: Object) -> SlabUsage:
    """``SlabUsage(slabs, total, free)`` of a cache, as ``/proc/slabinfo`` counts it."""
    slab_type = _slab_type(prog)
    member = "slab_list" if prog.has_member(slab_type, "slab_list") else "lru"
    slabs = total = free = 0
    for node, barn in _nodes(prog, cache):
        if not node.has_member_("nr_slabs"):
            raise KdumpyError("slab counts need CONFIG_SLUB_DEBUG")
        slabs += int(node.nr_slabs.counter)
        total += int(node.total_objects.counter)
        for slab in list_for_each_entry(slab_type, node.partial.address_of_(), member):
            free += int(slab.objects) - int(slab.inuse)
        if barn is not None and int(barn):
            full = barn.sheaves_full.address_of_()
            for sheaf in list_for_each_entry("struct slab_sheaf", full, "barn_list"):
                free += int(sheaf.size)
    objects, partial_free = cpu_free_objects(prog, cache)
    return SlabUsage(slabs, total, free + len(objects) + partial_free)


class SlabInfo(NamedTuple):
    """One slab as ``kmem -S`` lists it: where it waits (``CPU 0``, ``NODE 0 PARTIAL``),
    its ``struct slab``, first object, and object counts."""

    where: str
    slab: int
    memory: int
    total: int
    free: int

    @property
    def allocated(self) -> int:
        return self.total - self.free


def cache_slabs(prog: Program, cache: Object) -> list[SlabInfo]:
    """The slabs a cache can name: each CPU's slab (free objects on the CPU's freelist
    and the slab's own) and each node's partial slabs.  Full slabs are on no list."""
    out = []
    if cache.has_member_("cpu_slab"):
        for cpu in prog.online_cpus:
            c = prog.per_cpu_ptr(cache.cpu_slab, cpu)
            slab = c.slab if c.has_member_("slab") else c.page
            if int(slab) and int(slab.slab_cache) == int(cache):
                # As kmem -s counts: objects other CPUs freed onto the slab's own
                # freelist stay "in use" until the slab is unfrozen.
                free = len(freelist(prog, cache, int(c.freelist)))
                memory = page_to_virt(prog, int(slab))
                out.append(SlabInfo(f"CPU {cpu}", int(slab), memory, int(slab.objects), free))
            partial = c.partial if c.has_member_("partial") else None
            seen: set[int] = set()
            while partial is not None and int(partial) and int(partial) not in seen:
                seen.add(int(partial))
                total = int(partial.objects)
                out.append(SlabInfo(f"CPU {cpu} PARTIAL", int(partial),
                                    page_to_virt(prog, int(partial)), total,
                                    total - int(partial.inuse)))  # fmt: skip
                partial = partial.next if len(seen) < _MAX_FREELIST else None
    slab_type = _slab_type(prog)
    member = "slab_list" if prog.has_member(slab_type, "slab_list") else "lru"
    for nid, (node, _barn) in enumerate(_nodes(prog, cache)):
        for slab in list_for_each_entry(slab_type, node.partial.address_of_(), member):
            total = int(slab.objects)
            out.append(SlabInfo(f"NODE {nid} PARTIAL", int(slab), page_to_virt(prog, int(slab)),
                                total, total - int(slab.inuse)))  # fmt: skip
    return out


def page_is_slab(prog: Program, page: Object) -> bool:
    """``PageSlab``: PG_slab in the head page's flags (before 6.10), or the page type
    ``PGTY_slab`` in ``page_type``'s top byte (6.10+)."""
    head = compound_head(prog, page)
    try:
        bit = prog.constant("PG_slab")
        return bool(page_flags(head) >> bit & 1)
    except KdumpyError:
        pass
    pgty = prog.constant("PGTY_slab")
    return int(head.page_type) >> 24 == pgty


def compound_head(prog: Program, page: Object) -> Object:
    """The head page of a compound page: a tail's ``compound_head`` (``compound_info``
    since 7.1) is the head's address + 1, or, when ``struct page`` has a power-of-two
    size and vmemmap tails are shared (``compound_info_has_mask``), an address mask + 1."""
    member = "compound_head" if page.has_member_("compound_head") else "compound_info"
    value = int(page.member_(member)) if page.has_member_(member) else 0
    if not value & 1:
        return page
    if member == "compound_info" and _compound_info_has_mask(prog):
        return prog.pointer("struct page", int(page) & (value - 1))
    return prog.pointer("struct page", value - 1)


def _compound_info_has_mask(prog: Program) -> bool:
    size = prog.sizeof("struct page")
    return size & (size - 1) == 0 and prog.has_member("struct zone", "vmemmap_tails")


def slab_cache_of(prog: Program, address: int) -> Object | None:
    """The ``struct kmem_cache *`` whose slab page holds ``address``, or None when the
    address is not mapped or its page is not a slab page (crash's
    ``vaddr_to_kmem_cache``: ``rd -S`` names it; no freelist is read)."""
    try:
        page = compound_head(prog, virt_to_page(prog, address))
        if not page_is_slab(prog, page):
            return None
        cache = prog.pointer(_slab_type(prog), int(page)).slab_cache
        return cache if int(cache) else None
    except KdumpyError:
        return None


def slab_object(prog: Program, address: int) -> SlabObject | None:
    """The slab object ``address`` falls in (``kmem ADDRESS``), or None when its page
    is not a slab page."""
    try:
        page = compound_head(prog, virt_to_page(prog, address))
        if not page_is_slab(prog, page):
            return None
    except KdumpyError:
        return None
    slab = prog.pointer(_slab_type(prog), int(page))
    cache = slab.slab_cache
    memory = page_to_virt(prog, int(page))
    size = int(cache.size)
    pad = int(cache.red_left_pad) if cache.has_member_("red_left_pad") else 0
    index = (address - memory) // size
    if index >= int(slab.objects):
        return None
    obj = memory + index * size + pad
    free = set(freelist(prog, cache, int(slab.freelist)))
    free |= cpu_free_objects(prog, cache)[0]
    return SlabObject(cache, int(slab), memory, obj, obj not in free)
