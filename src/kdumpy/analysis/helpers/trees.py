"""The kernel's search trees walked safely: red-black trees, XArrays (radix trees) and
maple trees.  Like :mod:`~kdumpy.analysis.helpers.lists`, a walk visits each node at
most once and stops at a corrupt pointer with a :class:`ListWarning`, so a tree from a
crafted dump costs time in proportion to its distinct nodes::

    for node in rbtree_inorder(prog, int(root.rb_node)): ...   # or rbtree_preorder
    for index, entry in xarray_entries(prog, int(xa.xa_head)): ...
    for first, last, entry in maple_entries(prog, int(mt.ma_root)): ...
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import partial
from kdumpy.analysis.helpers.rbtree import rb_nodes
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.program import Program

MAX_NODES = 1 << 22
XA_CHUNK_SIZE = 64  # slots per XArray node (CONFIG_BASE_SMALL=n, every distribution)
# XArray/maple entry encoding (include/linux/xarray.h): internal entries have bits 1:0
# == 2; those above 4096 point at a node (the pointer plus 2).
_INTERNAL = 2
# Maple nodes (include/linux/maple_tree.h): the type sits in bits 3..6 of an encoded
# node pointer, the node itself is 256-byte aligned.
_MAPLE_TYPE_SHIFT, _MAPLE_TYPE_MASK, _MAPLE_NODE_MASK = 3, 0xF, 0xFF
MAPLE_DENSE, MAPLE_LEAF_64, MAPLE_RANGE_64, MAPLE_ARANGE_64 = 0, 1, 2, 3


def rbtree_inorder(prog: Program, root: int) -> Iterator[int]:
    """``struct rb_node`` addresses in order (``rb_first``, ``rb_next``...) from the
    tree's top node ``root`` (``rb_root.rb_node``): the one in-order walk, :func:`rb_nodes`."""
    yield from rb_nodes(prog, root)


def rbtree_preorder(prog: Program, root: int) -> Iterator[int]:
    """``struct rb_node`` addresses depth first, each node before its left then right
    subtree (crash's ``tree`` order without ``-l``)."""
    right_off = prog.offsetof("struct rb_node", "rb_right")
    left_off = prog.offsetof("struct rb_node", "rb_left")
    stack = [root] if root else []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node in seen or len(seen) >= MAX_NODES:
            why = f"loops back to {node:#x}" if node in seen else "has too many nodes"
            partial(f"rbtree at {root:#x}", why, len(seen))
            return
        seen.add(node)
        yield node
        stack += [n for n in (prog.read_u64(node + right_off), prog.read_u64(node + left_off)) if n]


def _is_node(entry: int) -> bool:
    return entry & 3 == _INTERNAL and entry > 4096


def xarray_entries(prog: Program, head: int) -> Iterator[tuple[int, int]]:
    """``(index, entry)`` of an XArray or radix tree from its head (``xa_head``,
    ``rnode``), in index order; value and internal entries are skipped."""
    shift_off = prog.offsetof("struct xa_node", "shift")
    slots_off = prog.offsetof("struct xa_node", "slots")
    count = XA_CHUNK_SIZE
    seen: set[int] = set()

    def walk(entry: int, base: int, depth: int) -> Iterator[tuple[int, int]]:
        if not _is_node(entry):
            if entry and entry & 3 == 0:
                yield base, entry
            return
        node = entry - _INTERNAL
        if node in seen or depth > 16 or len(seen) >= MAX_NODES:
            partial(f"xarray at {head:#x}", f"loops back to node {node:#x}", len(seen))
            return
        seen.add(node)
        shift = prog.read(node + shift_off, 1)[0]
        raw = prog.read(node + slots_off, 8 * count)
        for i in range(count):
            child = int.from_bytes(raw[8 * i : 8 * i + 8], "little")
            if child:
                yield from walk(child, base + (i << shift), depth + 1)

    yield from walk(head, 0, 0)


def maple_entries(prog: Program, root: int, last: int = (1 << 64) - 1) -> Iterator[
    tuple[int, int, int]
]:  # fmt: skip
    """``(first, last, entry)`` of a maple tree (``ma_root``) in index order."""
    seen: set[int] = set()
    if not _is_node(root):
        if root:
            yield 0, 0, root
        return
    layout = {
        MAPLE_LEAF_64: ("struct maple_range_64", 16),
        MAPLE_RANGE_64: ("struct maple_range_64", 16),
        MAPLE_ARANGE_64: ("struct maple_arange_64", 10),
    }

    def walk(enode: int, low: int, high: int, depth: int) -> Iterator[tuple[int, int, int]]:
        node = enode & ~_MAPLE_NODE_MASK
        kind = (enode >> _MAPLE_TYPE_SHIFT) & _MAPLE_TYPE_MASK
        if node in seen or depth > 32 or kind not in layout or len(seen) >= MAX_NODES:
            partial(f"maple tree at {root:#x}", f"has a bad node {enode:#x}", len(seen))
            return
        seen.add(node)
        struct, slots = layout[kind]
        pivots = _u64s(prog, node + prog.offsetof(struct, "pivot"), slots - 1)
        entries = _u64s(prog, node + prog.offsetof(struct, "slot"), slots)
        end = _data_end(node, struct, pivots, high)
        for i in range(end + 1):
            pivot = min(pivots[i], high) if i < end else high
            entry = entries[i]
            if kind == MAPLE_LEAF_64:
                if entry and entry & 3 != _INTERNAL:
                    yield low, pivot, entry
            elif entry:  # below the root, a child is an encoded node, not an internal entry
                yield from walk(entry, low, pivot, depth + 1)
            low = pivot + 1

    def _data_end(node: int, struct: str, pivots: list[int], high: int) -> int:
        """The last used slot (``ma_data_end``): from the node's metadata in an
        allocation-range node or a range node whose last pivot is unused."""
        if struct == "struct maple_range_64" and pivots[-1]:
            return len(pivots) - 1 if pivots[-1] == high else len(pivots)
        meta = prog.read(node + prog.offsetof(struct, "meta"), 1)[0]
        return min(meta, len(pivots))

    try:
        yield from walk(root, 0, last, 0)
    except FaultError as exc:
        partial(f"maple tree at {root:#x}", f"has an unreadable node ({exc})", len(seen))


def _u64s(prog: Program, address: int, count: int) -> list[int]:
    raw = prog.read(address, 8 * count)
    return [int.from_bytes(raw[8 * i : 8 * i + 8], "little") for i in range(count)]
