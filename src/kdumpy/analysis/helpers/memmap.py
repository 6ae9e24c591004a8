"""Addresses and pages: the direct map, ``struct page`` through the vmemmap, and
page-table translation (crash's ``btop``, ``ptob``, ``ptov``, ``vtop``)::

    phys = virt_to_phys(prog, address)
    page = virt_to_page(prog, address)        # struct page *
    page_to_virt(prog, int(page)) == address & ~(page_size(prog) - 1)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from kdumpy.analysis.helpers.sparse import for_each_mem_section, section_size_bits, section_state
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.types import IntType, StructType
from kdumpy.errors import KdumpyError


def page_size(prog: Program) -> int:
    return prog.dump.page_size


def page_shift(prog: Program) -> int:
    return page_size(prog).bit_length() - 1


def page_offset(prog: Program) -> int:
    """Virtual address of physical 0 in the direct map (``PAGE_OFFSET``)."""
    return prog.dump.translator.page_offset


def vmemmap(prog: Program) -> int:
    """Address of the ``struct page`` of pfn 0 (``vmemmap``)."""
    return prog.dump.translator.vmemmap


def phys_to_virt(prog: Program, phys: int) -> int:
    """``__va``: the direct-map address of a physical address (the architecture's: arm64's
    linear map starts at the start of RAM, x86_64's at physical 0)."""
    return prog.dump.translator.phys_to_virt(phys)


def virt_to_phys(prog: Program, address: int) -> int:
    """The physical address behind a kernel virtual address (page-table walk);
    a one-line :class:`FaultError` when it is not mapped."""
    return prog.memory.vtop(address)


def pfn_to_page(prog: Program, pfn: int) -> Object:
    return prog.pointer("struct page", vmemmap(prog) + pfn * prog.sizeof("struct page"))


def page_to_pfn(prog: Program, page: int) -> int:
    return (page - vmemmap(prog)) // prog.sizeof("struct page")


def page_to_virt(prog: Program, page: int) -> int:
    """The direct-map address of a ``struct page`` (its address as an int)."""
    return phys_to_virt(prog, page_to_pfn(prog, page) << page_shift(prog))


def virt_to_page(prog: Program, address: int) -> Object:
    """The ``struct page *`` of the frame behind any mapped kernel address."""
    return pfn_to_page(prog, virt_to_phys(prog, address) >> page_shift(prog))


def page_flags(page: Object) -> int:
    """``page->flags`` (a ``memdesc_flags_t`` wrapping the word since 7.x)."""
    flags = page.member_("flags")
    return int(flags.member_("f")) if flags.has_member_("f") else int(flags)


def page_flag_bits(prog: Program) -> list[tuple[str, int]]:
    """``(PG_name, bit)`` of ``enum pageflags`` in the kernel's order, aliases (a
    later name for a bit, such as ``PG_swapcache`` for ``PG_owner_priv_1``) included."""
    t = prog.type("enum pageflags").strip()
    values: list[tuple[str, int]] = t.values  # type: ignore[attr-defined]
    return [(n, v) for n, v in values if n.startswith("PG_") and 0 <= v < 64]


def translate(prog: Program, address: int) -> int | None:
    """``vtop``: the physical address, or None when the address is not mapped."""
    try:
        return virt_to_phys(prog, address)
    except (FaultError, KdumpyError):
        return None


class PageRow(NamedTuple):
    """A ``struct page``'s fields as ``kmem -p`` shows them."""

    page: int
    phys: int
    mapping: int
    page_index: int
    refcount: int
    flags: int


def _row_struct(fields: list[tuple[int, str]], size: int) -> struct.Struct:
    """One struct.Struct that unpacks the (offset, format code) *fields* of a *size*-byte
    record in one call, in the order given (pad bytes between them)."""
    order = sorted(range(len(fields)), key=lambda i: fields[i][0])
    fmt, at = "<", 0
    for i in order:
        offset, code = fields[i]
        fmt += f"{offset - at}x{code}"
        at = offset + struct.calcsize("<" + code)
    return struct.Struct(fmt + f"{size - at}x")


def page_rows(prog: Program, first_pfn: int, count: int) -> list[PageRow]:
    """The struct pages of ``count`` frames from ``first_pfn``, read from the vmemmap a
    batch at a time, one unpack per page (unreadable struct pages are left out)."""
    size = prog.sizeof("struct page")
    t = prog.type("struct page")
    index_name = "index" if prog.has_member(t, "index") else "__folio_index"  # 7.x
    names = ("mapping", index_name, "_refcount", "flags")
    fields = [(prog.offsetof(t, m), c) for m, c in zip(names, "QQiQ", strict=True)]
    row = _row_struct(fields, size)
    # the unpacked values come in offset order: put them back in (mapping, index, ...) order
    where = sorted(range(4), key=lambda i: fields[i][0])
    back = [where.index(i) for i in range(4)]
    base = vmemmap(prog)
    shift = page_shift(prog)
    out: list[PageRow] = []
    step = max(1, (256 << 12) // size)
    for lo in range(first_pfn, first_pfn + count, step):
        n = min(step, first_pfn + count - lo)
        try:
            raw = prog.read(base + lo * size, n * size)
        except KdumpyError:  # a hole in the vmemmap: take what can be read, page by page
            chunk = max(1, (1 << shift) // size)
            if n > chunk:
                for sub in range(lo, lo + n, chunk):
                    out += page_rows(prog, sub, min(chunk, lo + n - sub))
            continue
        for i, values in enumerate(row.iter_unpack(raw)):
            pfn = lo + i
            mapping, index, refs, flags = (values[j] for j in back)
            out.append(PageRow(base + pfn * size, pfn << shift, mapping, index, refs, flags))
    return out


def is_user_address(address: int) -> bool:
    """Whether an address lies in the lower (user) half of a 64-bit address space, where
    x86_64 and arm64 map processes (crash's ``!IS_KVADDR``: ``rd`` reads it as a user
    address of the current task)."""
    return 0 <= address < 1 << 63


def user_vtop(prog: Program, mm: Object, address: int) -> int:
    """The physical address behind a user virtual address of the process whose
    ``struct mm_struct *`` is ``mm``: a walk of its own page tables (``mm->pgd``); a
    one-line :class:`FaultError` when it is not mapped (or swapped out)."""
    if not is_user_address(address):
        raise FaultError(f"invalid user virtual address: {address:#x}", address)
    try:
        return prog.dump.translator.walk_user(virt_to_phys(prog, int(mm.pgd)), address)
    except KdumpyError:
        raise FaultError(f"invalid user virtual address: {address:#x}", address) from None


class PageMember(NamedTuple):
    """Where a ``struct page`` member lies and what it is (``kmem -m``): ``kind`` is
    the stripped type's kind (``int``, ``pointer``, ``struct``, ``union``, ``enum``...)."""

    name: str
    offset: int
    size: int
    kind: str
    signed: bool
    is_bool: bool


def page_member(prog: Program, name: str) -> PageMember:
    """A ``struct page`` member by name (anonymous unions looked through); a one-line
    error for an unknown member or a bit field."""
    t = prog.type("struct page").strip()
    found = t.member(name) if isinstance(t, StructType) else None
    if found is None:
        raise KdumpyError(f"invalid page struct member: {name}")
    member, bits = found
    if member.bit_size or bits % 8:
        raise KdumpyError(f"unsupported page member reference: page.{name} (a bit field)")
    mt = member.type.strip()
    signed = isinstance(mt, IntType) and mt.signed
    is_bool = isinstance(mt, IntType) and mt.is_bool
    return PageMember(name, bits // 8, mt.size, mt.kind, signed, is_bool)


def sparse_pfn_ranges(prog: Program) -> list[tuple[int, int]]:
    """``[lo, hi)`` pfn ranges of the present memory sections that have a mem_map (every
    struct page the kernel keeps, as crash's ``kmem -p``/``-m`` walk them), merged;
    the dump's own ranges when the kernel has no SPARSEMEM sections."""
    per_section = 1 << (section_size_bits(prog) - page_shift(prog))
    ranges: list[tuple[int, int]] = []
    try:
        sections = [s for s in for_each_mem_section(prog) if "M" in section_state(prog, s.flags)]
    except KdumpyError:
        return list(prog.dump.pfn_ranges())
    for s in sections:
        if ranges and ranges[-1][1] == s.pfn:
            ranges[-1] = (ranges[-1][0], s.pfn + per_section)
        else:
            ranges.append((s.pfn, s.pfn + per_section))
    return ranges


def read_struct_pages(prog: Program, first_pfn: int, count: int) -> bytes | None:
    """The ``struct page`` array of ``count`` frames from ``first_pfn``, or None when the
    vmemmap there cannot be read."""
    size = prog.sizeof("struct page")
    try:
        return prog.read(vmemmap(prog) + first_pfn * size, count * size)
    except KdumpyError:
        return None
