"""XArrays (``struct xarray``, also under ``struct idr`` and a page cache's
``i_pages``), walked safely: ``(index, entry)`` for every present entry.

Entry encoding (include/linux/xarray.h): bits 1:0 == 2 mark an internal entry;
above 4096 it points at a ``struct xa_node`` (the pointer plus 2), whose ``shift``
says how many index bits each of its slots covers.  Value entries (bit 0 set: swap
and shadow entries in a page cache) are yielded as they are, as drgn's ``xa_for_each``
does; pointers are plain.  Each node is visited once, so a node that points back at
itself or an ancestor cannot multiply the walk (a ``ListWarning`` says so).
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import partial
from kdumpy.analysis.objects import Object, ObjectProgram

_XA_INTERNAL = 2
_MAX_DEPTH = 12  # 64-bit indexes at 6 bits a level need 11
MAX_ENTRIES = 1 << 24


def xa_is_value(entry: int) -> bool:
    """A value entry (``xa_mk_value``: swap entries, shadow entries)."""
    return bool(entry & 1)


def xa_to_value(entry: int) -> int:
    """The integer a value entry holds (``xa_to_value``)."""
    return entry >> 1


def xa_entries(prog: ObjectProgram, head: int, what: str = "XArray") -> Iterator[tuple[int, int]]:
    """``(index, entry)`` under the head entry ``head`` (``xa->xa_head``)."""
    seen: set[int] = set()
    count = 0

    def walk(entry: int, base: int, depth: int) -> Iterator[tuple[int, int]]:
        nonlocal count
        if not entry:
            return
        if entry & 3 != _XA_INTERNAL:
            count += 1
            if count <= MAX_ENTRIES:
                yield base, entry
            return
        if entry <= 4096 or depth > _MAX_DEPTH:
            return  # retry, zero and sibling entries, or corrupt nesting
        if entry in seen:
            partial(what, f"loops back to node {entry - _XA_INTERNAL:#x}", len(seen))
            return
        seen.add(entry)
        node = prog.object_at("struct xa_node", entry - _XA_INTERNAL)
        shift = int(node.shift)
        slots = node.slots
        nslots = slots.type_.strip().length  # type: ignore[attr-defined]
        raw = prog.read(int(slots.address_ or 0), 8 * nslots)
        for i in range(nslots):
            child = int.from_bytes(raw[8 * i : 8 * i + 8], "little")
            yield from walk(child, base + (i << shift), depth + 1)

    yield from walk(head, 0, 0)


def xa_for_each(xa: Object) -> Iterator[tuple[int, Object]]:
    """``(index, void * entry)`` of every present entry of a ``struct xarray``.

    >>> inode = ...                                  # a struct inode *
    >>> pages = [e for _, e in xa_for_each(inode.i_mapping.i_pages)]
    """
    prog = xa.prog_
    void_p = prog.type("void *")
    where = f"XArray at {xa.address_:#x}" if xa.address_ is not None else "XArray"
    for index, entry in xa_entries(prog, int(xa.xa_head), where):
        yield index, prog.value(void_p, entry)


def xa_load(xa: Object, index: int) -> Object | None:
    """The entry at ``index``, or None (down the nodes, like the kernel's ``xa_load``)."""
    prog = xa.prog_
    entry = int(xa.xa_head)
    if entry & 3 != _XA_INTERNAL or entry <= 4096:  # a lone entry: index 0 only
        return prog.value("void *", entry) if entry and index == 0 else None
    for depth in range(_MAX_DEPTH):
        node = prog.object_at("struct xa_node", entry - _XA_INTERNAL)
        shift = int(node.shift)
        if depth == 0 and index >> shift >= 64:
            return None  # beyond what the root node covers
        entry = int(node.slots[(index >> shift) & 63])
        if entry & 3 != _XA_INTERNAL or entry <= 4096:
            break
    if not entry or entry & 3 == _XA_INTERNAL:
        return None
    return prog.value("void *", entry)
