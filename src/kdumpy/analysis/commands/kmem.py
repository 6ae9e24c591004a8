"""kmem: memory summary (-i), slab caches (-s/-S), vmalloc areas (-v), free lists (-f),
pages (-p), page flags (-g), VM counters (-V), zones (-z), HugeTLB states (-h), per-CPU
offsets (-o), and what an address is (slab object, vmalloc area, page)."""

from __future__ import annotations

import argparse
import struct

from kdumpy.analysis.commands import parse_number
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.kmemstat import (
    kmem_hstates,
    kmem_nodes,
    kmem_percpu_offsets,
    kmem_vmstat,
    kmem_zones,
)
from kdumpy.analysis.commands.memcmds import kmem_info
from kdumpy.analysis.commands.output import column
from kdumpy.analysis.commands.tasksel import all_tasks
from kdumpy.analysis.helpers.memmap import (
    PageMember,
    page_flag_bits,
    page_flags,
    page_member,
    page_rows,
    page_shift,
    page_size,
    pfn_to_page,
    read_struct_pages,
    sparse_pfn_ranges,
    translate,
    virt_to_page,
    vmemmap,
)
from kdumpy.analysis.helpers.mm import global_zone_page_state
from kdumpy.analysis.helpers.slab import (
    cache_slabs,
    find_slab_cache,
    for_each_slab_cache,
    slab_cache_name,
    slab_cache_order,
    slab_cache_usage,
    slab_object,
)
from kdumpy.analysis.helpers.tasks import task_comm, task_cpu, task_state_crash
from kdumpy.analysis.helpers.vmalloc import find_vmap_area, for_each_vmap_area
from kdumpy.analysis.helpers.zones import (
    for_each_zone,
    free_list_pages,
    zone_free_lists,
    zone_free_pages,
    zone_name,
)
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown

SLAB_HEADER = "CACHE             OBJSIZE  ALLOCATED  TOTAL  SLABS  SSIZE  NAME\n"
VMAP_HEADER = "   VMAP_AREA         VM_STRUCT                 ADDRESS RANGE                SIZE\n"
PAGE_HEADER = "      PAGE        PHYSICAL      MAPPING              INDEX  CNT  FLAGS\n"

_PRELUDE = "# prog = kdumpy.open(DUMP)\n"


def _python(opts: argparse.Namespace) -> str:
    """The kdumpy API doing what these kmem options do."""
    if opts.pages:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.memmap import page_rows\n"
            "for lo, hi in prog.dump.pfn_ranges():\n"
            "    for row in page_rows(prog, lo, hi - lo):\n"
            "        print(row)\n"
        )
    if opts.members:
        names = [n.strip() for n in opts.members.split(",")]
        return _PRELUDE + (
            "from kdumpy.analysis.api import FaultError, format_value\n"
            "from kdumpy.analysis.helpers.memmap import pfn_to_page, sparse_pfn_ranges\n"
            "for lo, hi in sparse_pfn_ranges(prog):\n"
            "    for pfn in range(lo, hi):\n"
            "        page = pfn_to_page(prog, pfn)\n"
            "        try:\n"
            "            page.deref_().read_bytes_()\n"
            "        except FaultError:\n"
            "            continue  # no struct page there (a hole in the vmemmap)\n"
            f"        values = [format_value(page.member_(m)) for m in {names!r}]\n"
            "        values = [' '.join(v.split()) for v in values]  # one line each\n"
            "        print(hex(int(page)), *values)\n"
        )
    if opts.free_pages:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.zones import (for_each_zone, free_list_pages,\n"
            "    zone_free_lists, zone_name)\n"
            "for nid, index, zone in for_each_zone(prog):\n"
            "    for order, kind, head, blocks in zone_free_lists(prog, zone):\n"
            "        for page in free_list_pages(prog, head):\n"
            "            print(zone_name(zone), order, kind, hex(page))\n"
        )
    if opts.free:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.zones import for_each_zone, zone_free_lists, zone_name\n"
            "for nid, index, zone in for_each_zone(prog):\n"
            "    for order, kind, head, blocks in zone_free_lists(prog, zone):\n"
            "        print(zone_name(zone), order, kind, blocks << order)\n"
        )
    if opts.vmstat or opts.zones:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.vmstat import global_zone_stat, stat_items, zone_stat\n"
            "from kdumpy.analysis.helpers.zones import for_each_zone, zone_name\n"
            "items = stat_items(prog, 'enum zone_stat_item', 'NR_VM_ZONE_STAT_ITEMS')\n"
            + ("for nid, index, zone in for_each_zone(prog):\n"
               "    print(nid, index, zone_name(zone),\n"
               "          [(n, zone_stat(zone, i)) for n, i in items])\n"
               if opts.zones else
               "for name, item in items:  # also global_node_stat, global_vm_event\n"
               "    print(name, global_zone_stat(prog, item))\n")
        )  # fmt: skip
    if opts.hstates:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.vmstat import for_each_hstate, huge_page_size\n"
            "for h in for_each_hstate(prog):\n"
            "    print(hex(h.address_), huge_page_size(prog, h), int(h.free_huge_pages),\n"
            "          int(h.nr_huge_pages), h.name.string_(32))\n"
        )
    if opts.nodes:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.sparse import for_each_mem_section, "
            "for_each_memory_block, section_state\n"
            "from kdumpy.analysis.helpers.zones import for_each_zone, zone_name\n"
            "for nid, index, zone in for_each_zone(prog):\n"
            "    print(nid, index, zone_name(zone), int(zone.spanned_pages),\n"
            "          int(zone.zone_start_pfn))\n"
            "for s in for_each_mem_section(prog):\n"
            "    print(s.nr, hex(s.address), hex(s.mem_map), section_state(prog, s.flags), s.pfn)\n"
            "for b in for_each_memory_block(prog):\n"
            "    print(hex(b.address), b.name, hex(b.start), b.nid, b.state, b.start_section)\n"
        )
    if opts.offsets:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.vmstat import per_cpu_offsets\n"
            "for cpu, offset in per_cpu_offsets(prog):\n"
            "    print(cpu, hex(offset))\n"
        )
    if opts.flags:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.memmap import page_flag_bits\n"
            f"flags = {parse_number(opts.flags):#x}\n"
            "print([name for name, bit in page_flag_bits(prog) if flags >> bit & 1])\n"
        )
    if opts.info:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.mm import totalram_pages, global_zone_page_state\n"
            'print(totalram_pages(prog), global_zone_page_state(prog, "NR_FREE_PAGES"))\n'
        )
    if opts.vmalloc:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.vmalloc import for_each_vmap_area\n"
            "for va in for_each_vmap_area(prog):\n"
            "    print(hex(int(va)), hex(int(va.vm)), hex(int(va.va_start)), hex(int(va.va_end)))\n"
        )
    if opts.slab or opts.slabs:
        pick = (
            f"[find_slab_cache(prog, n) for n in {opts.args!r}]"
            if opts.args
            else "for_each_slab_cache(prog)"
        )
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.slab import (find_slab_cache, for_each_slab_cache,\n"
            "    slab_cache_name, slab_cache_usage)\n"
            f"for cache in {pick}:\n"
            "    usage = slab_cache_usage(prog, cache)\n"
            "    print(slab_cache_name(cache), int(cache.object_size), usage.allocated,\n"
            "          usage.total, usage.slabs)\n"
        )
    return _PRELUDE + (
        "from kdumpy.analysis.helpers.slab import slab_object\n"
        "from kdumpy.analysis.helpers.vmalloc import find_vmap_area\n"
        "from kdumpy.analysis.helpers.memmap import virt_to_page\n"
        f"for address in {[int(a, 16) for a in opts.args]!r}:\n"
        "    print(slab_object(prog, address), find_vmap_area(prog, address),\n"
        "          virt_to_page(prog, address))\n"
    )


@command("kmem", "kernel memory",
         Arg("-i", dest="info", action="store_true", help="memory usage summary"),
         Arg("-s", dest="slab", action="store_true", help="slab caches (or the named ones)"),
         Arg("-S", dest="slabs", action="store_true",
             help="as -s, with each CPU slab and partial slab"),
         Arg("-v", dest="vmalloc", action="store_true", help="vmalloc areas"),
         Arg("-g", dest="flags", metavar="flags", help="decode page flags"),
         Arg("-f", dest="free", action="store_true", help="free lists of each zone"),
         Arg("-F", dest="free_pages", action="store_true",
             help="as -f, with the struct page of each free block (crash's layout)"),
         Arg("-m", dest="members", metavar="member[,member]",
             help="these members of every struct page (as -p walks them)"),
         Arg("-p", dest="pages", action="store_true",
             help="struct pages (of all RAM, or of the physical addresses given)"),
         Arg("-V", dest="vmstat", action="store_true",
             help="zone, node, NUMA and VM event counters"),
         Arg("-z", dest="zones", action="store_true", help="each zone's counters and watermarks"),
         Arg("-h", dest="hstates", action="store_true", help="HugeTLB states"),
         Arg("-o", dest="offsets", action="store_true", help="each CPU's per-CPU offset"),
         Arg("-n", dest="nodes", action="store_true",
             help="memory nodes and their zones, memory sections and memory blocks"),
         Arg("-I", dest="ignore", metavar="cache[,cache]", help="with -s/-S: leave these out"),
         Arg("args", nargs="*", metavar="cache|address",
             help="with -s: cache names; alone: addresses to identify"),
         usage="kmem -i | -f | -p [phys ...] | -s|-S [cache ...] | -v | -V | -z | -h | -o "
               "| -n | -F | -m member[,member] | -g flags | address ...",
         python=_python)  # fmt: skip
def cmd_kmem(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    modes = (opts.info, opts.slab or opts.slabs, opts.vmalloc, opts.flags, opts.free, opts.pages,
             opts.vmstat, opts.zones, opts.hstates, opts.offsets, opts.nodes,
             opts.free_pages, opts.members)  # fmt: skip
    if sum(map(bool, modes)) > 1:
        raise CommandError("give one of -i, -f, -F, -p, -m, -s, -v, -V, -z, -h, -o, -n, -g")
    if opts.members:
        return kmem_page_members(prog, opts.members)
    if opts.free_pages:
        return kmem_free_pages(prog)
    if opts.nodes:
        return kmem_nodes(prog)
    if opts.vmstat:
        return kmem_vmstat(prog)
    if opts.zones:
        return kmem_zones(prog)
    if opts.hstates:
        return kmem_hstates(prog)
    if opts.offsets:
        return kmem_percpu_offsets(prog)
    if opts.pages:
        return kmem_pages(prog, [parse_number(a) for a in opts.args])
    if opts.free:
        return kmem_free(prog)
    if opts.flags:
        return kmem_flags(prog, parse_number(opts.flags))
    if opts.info:
        return kmem_info(prog)
    if opts.ignore and not (opts.slab or opts.slabs):
        raise CommandError("-I goes with -s or -S")
    if opts.slab or opts.slabs:
        ignore = set(opts.ignore.split(",")) if opts.ignore else set()
        return kmem_slabs(prog, opts.args, detail=opts.slabs, ignore=ignore)
    if opts.vmalloc:
        return VMAP_HEADER + "".join(map(_vmap_row, for_each_vmap_area(prog)))
    if not opts.args:
        raise CommandError("give -i, -f, -F, -p, -m, -s, -v, -V, -z, -h, -o, -n, -g or an address")
    return "\n".join(kmem_address(session, parse_number(a)) for a in opts.args)


def kmem_pages(prog: Program, physical: list[int]) -> str:
    """``kmem -p``: the struct page of each physical address given, or of every frame
    the dump holds."""
    shift = page_shift(prog)
    rows = []
    if physical:
        for phys in physical:
            rows += page_rows(prog, phys >> shift, 1)
    else:
        for lo, hi in prog.dump.pfn_ranges():
            rows += page_rows(prog, lo, hi - lo)
    return PAGE_HEADER + "".join(
        f"{r.page:016x} {r.phys:>9x}  {r.mapping:16x}  {r.page_index:>16x} {r.refcount:>4}  "
        f"{r.flags:x}\n"
        for r in rows
    )


def kmem_free(prog: Program) -> str:
    """``kmem -f``: each zone, then its buddy free lists by order and migrate type; the
    pages found on them against the ``NR_FREE_PAGES`` counter."""
    ps = page_size(prog)
    out = []
    found = 0
    for _nid, index, zone in for_each_zone(prog):
        start = int(zone.zone_start_pfn)
        spanned = int(zone.spanned_pages)
        mem_map = int(pfn_to_page(prog, start)) if spanned else 0
        out.append("ZONE  NAME       SIZE    FREE      MEM_MAP       START_PADDR  START_PFN\n")
        out.append(f"{index:>2}    {shown(zone_name(zone)):<8} {spanned:>6}  "
                   f"{zone_free_pages(prog, zone):>6}  {mem_map:>16x}  {start * ps:>11x}  "
                   f"{start:>9}\n")  # fmt: skip
        if spanned:
            out.append("ORDER   SIZE  MIGRATE         FREE_LIST      BLOCKS   PAGES\n")
            for order, kind, head, blocks in zone_free_lists(prog, zone):
                found += blocks << order
                out.append(f"{order:>3}  {(ps << order) // 1024:>6}k  {kind:<11}  {head:016x}  "
                           f"{blocks:>6}  {blocks << order:>6}\n")  # fmt: skip
        out.append("\n")
    total = global_zone_page_state(prog, "NR_FREE_PAGES")
    check = "verified" if total == found else f"found {found}"
    return "".join(out) + f"nr_free_pages: {total}  ({check})\n"


def kmem_free_pages(prog: Program) -> str:
    """``kmem -F``: each zone (crash's -f columns), then each buddy free list of a zone
    with free pages, with the struct page of each free block under it, in crash
    8.0.2's layout; the free counters against the pages found."""
    ps = page_size(prog)
    nodes = {nid for nid, _i, _z in for_each_zone(prog)}
    out = []
    total = found = 0
    node_map = 0
    for nid, index, zone in for_each_zone(prog):
        if index == 0 and len(nodes) > 1:
            out.append(f"{chr(10) if nid else ''}NODE\n {nid:2d}\n")
        start = int(zone.zone_start_pfn)
        spanned = int(zone.spanned_pages)
        free = zone_free_pages(prog, zone)
        mem_map = int(pfn_to_page(prog, start)) if spanned else 0
        if index == 0:
            node_map = mem_map
        mapnr = (mem_map - node_map) // prog.sizeof("struct page") if mem_map else 0
        out.append(f"{chr(10) if index else ''}ZONE  NAME        SIZE    FREE  "
                   f"{column('MEM_MAP', 16)}  START_PADDR  START_MAPNR\n")  # fmt: skip
        out.append(f"{index:3d}   {shown(zone_name(zone)):<9} {spanned:6d}  {free:6d}  "
                   f"{column(f'{mem_map:x}', 16)}  {column(f'{start * ps:x}', 11, 'cr')}  "
                   f"{column(mapnr, 11, 'cr')}\n")  # fmt: skip
        total += free
        if not free:
            continue
        for order, _kind, head, _blocks in zone_free_lists(prog, zone):
            out.append("AREA    SIZE  FREE_AREA_STRUCT\n")
            out.append(
                f"{order:3d}  {f'{(ps << order) // 1024}k':>7}  {column(f'{head:x}', 16)}  \n"
            )
            pages = free_list_pages(prog, head)
            found += len(pages) << order
            out += [f"{page:x}\n" for page in pages]
    check = "verified" if total == found else f"found {found}"
    return "".join(out) + f"\nnr_free_pages: {total}  ({check})\n"


def kmem_page_members(prog: Program, names: str) -> str:
    """``kmem -m member[,member]``: each struct page of every present memory section
    (crash's -p walk) with the members named, formatted as crash 8.0.2 does."""
    wanted = [n.strip() for n in names.split(",")]
    if not all(wanted):
        raise CommandError(f"invalid format: {names}")
    try:
        members = [page_member(prog, n) for n in wanted]
    except KdumpyError as exc:
        raise CommandError(str(exc)) from None
    for m in members:
        _member_text(m, bytes(m.size))  # an unsupported kind fails before any output
    size = prog.sizeof("struct page")
    base = vmemmap(prog)
    out = [column("PAGE", 16) + "".join(f"  {m.name}" for m in members) + "\n"]
    step = max(1, (1 << 20) // size)
    for lo, hi in sparse_pfn_ranges(prog):
        for first in range(lo, hi, step):
            count = min(step, hi - first)
            data = read_struct_pages(prog, first, count)
            if data is None:
                continue
            for i in range(count):
                raw = data[i * size : (i + 1) * size]
                fields = "".join(
                    _member_text(m, raw[m.offset : m.offset + m.size]) for m in members
                )
                out.append(f"{base + (first + i) * size:x}  {fields}\n")
    return "".join(out)


def _member_text(m: PageMember, raw: bytes) -> str:
    """One member's value as crash's ``kmem -m`` prints it: ``flags`` in hex, counts in
    decimal, pointers as 16 hex digits, other structures as their words in hex."""
    if m.kind == "pointer":
        return f"{int.from_bytes(raw, 'little'):016x}  "
    if m.kind == "int" and m.is_bool:
        value = raw[0]
        return ("true  " if value else "false  ") if value <= 1 else str(value)
    if m.kind == "int" and m.size in (1, 2, 4, 8):
        value = int.from_bytes(raw, "little", signed=m.signed)
        if m.name != "flags":  # crash's default radix, decimal
            return f"{value}  "
        digits = f"{value & ((1 << 8 * m.size) - 1):0{2 * m.size}x}"
        return digits if m.signed and m.size == 8 else digits + "  "
    if m.kind == "struct":
        if m.name.startswith(("_count", "_mapcount")):
            return f"{int.from_bytes(raw[:4], 'little', signed=True)}  "
        if m.size and m.size % 8 == 0:
            words = struct.unpack(f"<{m.size // 8}Q", raw)
            return ",".join(f"{w:016x}" for w in words) + "  "
        if m.size and m.size % 4 == 0:
            return ",".join(f"{w:08x}" for w in struct.unpack(f"<{m.size // 4}I", raw))
        if m.size == 2:
            return f"{int.from_bytes(raw, 'little'):04x}  "
    raise CommandError(f"unsupported page member reference: page.{m.name}")


def kmem_flags(prog: Program, flags: int) -> str:
    """``kmem -g``: the ``enum pageflags`` bits set in a page's flags word."""
    width = len(f"{flags:x}")
    out = [f"FLAGS: {flags:x}\n  PAGE-FLAG       BIT  VALUE\n"]
    for name, bit in page_flag_bits(prog):
        if flags >> bit & 1:
            out.append(f"  {name:<14} {bit:>4}  {1 << bit:0{width}x}\n")
    return "".join(out)


def kmem_slabs(
    prog: Program, names: list[str], detail: bool = False, ignore: set[str] | None = None
) -> str:
    """``kmem -s``: one row per cache (the named ones, if any, less those in ``ignore``:
    ``-I``); ``-S`` adds the slabs each CPU and node holds."""
    if names:
        caches = []
        for name in names:
            cache = find_slab_cache(prog, name)
            if cache is None:
                raise CommandError(f"invalid slab cache name: {name}")
            caches.append(cache)
    else:
        caches = list(for_each_slab_cache(prog))
    if not detail:
        return SLAB_HEADER + "".join(_slab_row(prog, c, ignore) for c in caches)
    return "\n".join(SLAB_HEADER + _slab_row(prog, c, ignore)
                     + ("" if ignore and slab_cache_name(c) in ignore else _slab_detail(prog, c))
                     for c in caches)  # fmt: skip


def _slab_detail(prog: Program, cache: Object) -> str:
    out, where = [], ""
    for s in cache_slabs(prog, cache):
        if s.where != where:
            where = s.where
            out.append(f"{where}:\n  SLAB              MEMORY            TOTAL  ALLOCATED  FREE\n")
        out.append(f"  {s.slab:016x}  {s.memory:016x}  {s.total:>5}  {s.allocated:>9}  "
                   f"{s.free:>4}\n")  # fmt: skip
    return "".join(out)


def _slab_row(prog: Program, cache: Object, ignore: set[str] | None = None) -> str:
    """One cache's row; ``[IGNORED]`` in place of the counts for a cache ``-I`` names."""
    name = shown(slab_cache_name(cache))
    if ignore and slab_cache_name(cache) in ignore:
        return f"{int(cache):016x} {'[IGNORED]':>18}  {name}\n"
    ssize = f"{(page_size(prog) << slab_cache_order(cache)) // 1024}k"
    try:
        u = slab_cache_usage(prog, cache)
        counts = f"{u.allocated:>10} {u.total:>6} {u.slabs:>6}"
    except KdumpyError:
        counts = f"{'[UNKNOWN]':>10} {'':>6} {'':>6}"
    return f"{int(cache):016x} {int(cache.object_size):>8} {counts} {ssize:>6}  {name}\n"


def _vmap_row(va: Object) -> str:
    start, end = int(va.va_start), int(va.va_end)
    return f"{int(va):016x}  {int(va.vm):016x}  {start:016x} - {end:016x}  {end - start:>8}\n"


def kmem_address(session: Session, address: int) -> str:
    """What ``address`` is: the task it belongs to, the symbol, the slab object or
    vmalloc area holding it, and its page."""
    prog = session.prog
    out = [_task_block(prog, address)]
    sym = prog.find_symbol(address)
    if sym is not None:
        out.append(f"{address:x} ({sym.type}) {sym.describe(address)}\n\n")
    obj = slab_object(prog, address)
    if obj is not None:
        state = f"[{obj.address:x}]" if obj.allocated else f"{obj.address:x}"
        out.append(SLAB_HEADER + _slab_row(prog, obj.cache))
        out.append(f"  SLAB              MEMORY\n  {obj.slab:016x}  {obj.memory:016x}\n")
        out.append(f"  FREE / [ALLOCATED]\n  {state}\n\n")
    va = find_vmap_area(prog, address)
    if va is not None:
        out.append(VMAP_HEADER + _vmap_row(va) + "\n")
    out.append(_page_block(prog, address))
    return "".join(out)


def _task_block(prog: Program, address: int) -> str:
    """crash's task fields when ``address`` is inside a task_struct or its stack."""
    size = prog.sizeof("struct task_struct")
    stack_size = prog.dump.arch.stack_size(prog.dump.page_size)
    for task in all_tasks(prog):
        t, stack = int(task), int(task.stack)
        if t <= address < t + size or stack <= address < stack + stack_size:
            return (
                f"    PID: {int(task.pid)}\n"
                f'COMMAND: "{shown(task_comm(task))}"\n'
                f"   TASK: {t:x}\n"
                f"    CPU: {task_cpu(task)}\n"
                f"  STATE: {task_state_crash(task)}\n\n"
            )
    return ""


def _page_block(prog: Program, address: int) -> str:
    phys = translate(prog, address)
    if phys is None:
        return f"{address:x}: not a mapped kernel address\n"
    try:
        page = virt_to_page(prog, address)
        index_name = "index" if page.has_member_("index") else "__folio_index"  # 7.x
        mapping, index = int(page.member_("mapping")), int(page.member_(index_name))
        count, flags = int(page.member_("_refcount").counter), page_flags(page)
    except KdumpyError as exc:
        return f"{address:x}: page not readable ({exc})\n"
    base = phys & ~(page_size(prog) - 1)
    return PAGE_HEADER + (
        f"{int(page):016x} {base:>9x}  {mapping:16x}  {index:>16x} {count:>4}  {flags:x}\n"
    )
