"""SPARSEMEM memory sections and memory hotplug blocks (crash's ``kmem -n``)::

    for s in for_each_mem_section(prog):
        print(s.nr, hex(s.address), hex(s.mem_map), section_state(prog, s.flags), s.pfn)
    for b in for_each_memory_block(prog):
        print(b.name, hex(b.start), b.state, b.start_section)

The section array comes from VMCOREINFO (``SYMBOL(mem_section)``: the root array,
``LENGTH(mem_section)`` roots, ``SIZE(mem_section)``, ``NUMBER(SECTION_SIZE_BITS)``), as
makedumpfile reads it; memory blocks from the ``memory_blocks`` XArray (by block id,
the order sysfs lists them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from kdumpy.analysis.helpers.xarray import xa_for_each
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

# The section_mem_map flag bits, in the kernel's order (include/linux/mmzone.h), with
# crash's letters; an enum in BTF (``SECTION_MARKED_PRESENT_BIT`` ...) since 5.13.
SECTION_FLAGS = (("SECTION_MARKED_PRESENT", "P"), ("SECTION_HAS_MEM_MAP", "M"),
                 ("SECTION_IS_ONLINE", "O"), ("SECTION_IS_EARLY", "E"),
                 ("SECTION_TAINT_ZONE_DEVICE", "D"))  # fmt: skip
_MAX_ROOTS = 1 << 20  # LENGTH(mem_section) beyond this is not a kernel's
# memory_block.state values (include/linux/memory.h) before they became ``enum
# memory_block_state`` (6.19, and Debian's 6.12)
BLOCK_STATES = {1 << 0: "ONLINE", 1 << 1: "GOING_OFFLINE", 1 << 2: "OFFLINE",
                1 << 3: "GOING_ONLINE", 1 << 4: "CANCEL_ONLINE",
                1 << 5: "CANCEL_OFFLINE"}  # fmt: skip


class MemSection(NamedTuple):
    """A present memory section: its number, ``struct mem_section`` address, encoded
    and decoded ``mem_map`` (its first ``struct page``), flag bits and first pfn."""

    nr: int
    address: int
    coded_mem_map: int
    mem_map: int
    flags: int
    pfn: int


class MemoryBlock(NamedTuple):
    """A memory hotplug block (``struct memory_block``)."""

    address: int
    name: str
    start: int  # physical
    end: int  # physical, inclusive; -1 when the block size is unknown
    nid: int | None  # None before struct memory_block had a node
    state: str
    start_section: int


def section_size_bits(prog: Program) -> int:
    """``SECTION_SIZE_BITS`` (VMCOREINFO; x86_64's 27 when not exported)."""
    return prog.info.number("SECTION_SIZE_BITS") or 27


def section_nr_to_pfn(prog: Program, nr: int) -> int:
    return nr << (section_size_bits(prog) - prog.dump.page_size.bit_length() + 1)


def section_flag_bits(prog: Program) -> list[tuple[int, str]]:
    """``(bit, letter)`` of the section flags this kernel has: from the BTF enum where
    it is one, else the kernel's order (present, mem_map, online, early) as before 5.12."""
    out = []
    for bit, (name, letter) in enumerate(SECTION_FLAGS):
        try:
            out.append((prog.constant(f"{name}_BIT"), letter))
        except KdumpyError:
            if bit < 4:
                out.append((bit, letter))
    return out


def section_map_last_bit(prog: Program) -> int:
    """``SECTION_MAP_LAST_BIT``: the bits below it are flags, not the map's address."""
    try:
        return prog.constant("SECTION_MAP_LAST_BIT")
    except KdumpyError:
        return 1 + max(bit for bit, _ in section_flag_bits(prog))


def section_state(prog: Program, flags: int) -> str:
    """crash's STATE letters for a section's flag bits (``PMOE``)."""
    return "".join(letter for bit, letter in section_flag_bits(prog) if flags >> bit & 1)


def for_each_mem_section(prog: Program) -> Iterator[MemSection]:
    """Every present section (``SECTION_MARKED_PRESENT``), by number (SPARSEMEM_EXTREME:
    a root array of pointers to pages of ``struct mem_section``)."""
    info = prog.info
    roots_at = info.symbol("mem_section")
    size = info.size("mem_section")
    offset = info.offset("mem_section.section_mem_map") or 0
    roots = info.length("mem_section") or 1
    if roots_at is None or not size or not 0 < roots <= _MAX_ROOTS:
        raise KdumpyError("VMCOREINFO has no usable mem_section: no SPARSEMEM sections")
    per_root = prog.dump.page_size // size
    present = 1 << next((bit for bit, letter in section_flag_bits(prog) if letter == "P"), 0)
    mask = ~((1 << section_map_last_bit(prog)) - 1) & ((1 << 64) - 1)
    page_size = prog.sizeof("struct page")
    pointers = struct.unpack(f"<{roots}Q", prog.read(roots_at, 8 * roots))
    for root, table in enumerate(pointers):
        if not table:
            continue
        try:
            data = prog.read(table, per_root * size)
        except FaultError:
            continue
        for i in range(per_root):
            (raw,) = struct.unpack_from("<Q", data, i * size + offset)
            if not raw & present:
                continue
            nr = root * per_root + i
            pfn = section_nr_to_pfn(prog, nr)
            coded = raw & mask
            yield MemSection(nr, table + i * size, coded, (coded + pfn * page_size) & mask,
                             raw & ~mask, pfn)  # fmt: skip


def memory_block_size(prog: Program) -> int | None:
    """Bytes per memory block: ``memory_block_size_probed`` (x86_64) when set, else
    None (crash then prints each block's start only)."""
    if prog.has_symbol("memory_block_size_probed"):
        size = int(prog.object("memory_block_size_probed"))
        if size:
            return size
    return None


def memory_block_state(prog: Program, value: int) -> str:
    """A memory block's state as crash names it (``ONLINE``): the enumerator of ``enum
    memory_block_state`` where the kernel has one, else the older bit values."""
    try:
        values: list[tuple[str, int]] = prog.type("enum memory_block_state").strip().values  # type: ignore[attr-defined]
    except KdumpyError:
        return BLOCK_STATES.get(value, "UNKNOWN")
    name = next((n for n, v in values if v == value), "UNKNOWN")
    return name.removeprefix("MEM_")


def for_each_memory_block(prog: Program) -> Iterator[MemoryBlock]:
    """Every memory hotplug block (``CONFIG_MEMORY_HOTPLUG``), by block id; nothing
    when the kernel has none."""
    if not prog.has_symbol("memory_blocks"):
        return
    size = memory_block_size(prog)
    shift = prog.dump.page_size.bit_length() - 1
    has_nid = prog.has_member("struct memory_block", "nid")
    for _index, entry in xa_for_each(prog.object("memory_blocks")):
        block = entry.cast_("struct memory_block *")
        start_nr = int(block.start_section_nr)
        start = section_nr_to_pfn(prog, start_nr) << shift
        name = block.dev.kobj.name.string_(64).decode("utf-8", "backslashreplace")
        state = memory_block_state(prog, int(block.state))
        nid = int(block.nid) if has_nid else None
        end = start + size - 1 if size else -1
        yield MemoryBlock(int(block), name, start, end, nid, state, start_nr)
