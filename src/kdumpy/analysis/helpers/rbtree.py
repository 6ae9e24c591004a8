"""Red-black trees (``struct rb_root``), walked in order, safely.

A corrupt tree (a child pointing back at a node already passed) ends the walk with a
:class:`~kdumpy.analysis.helpers.lists.ListWarning` and the nodes found so far, as the
list walks do.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import partial
from kdumpy.analysis.objects import Object, ObjectProgram

# No real tree is this big (a CFS run queue, a VMA tree): beyond it, the tree is corrupt.
MAX_NODES = 1_000_000


def rb_nodes(prog: ObjectProgram, root: int) -> Iterator[int]:
    """Addresses of the ``struct rb_node``\\ s under the node at ``root``, in order
    (left to right), each at most once."""
    right_off = prog.offsetof("struct rb_node", "rb_right")
    left_off = prog.offsetof("struct rb_node", "rb_left")
    stack: list[int] = []
    seen: set[int] = set()
    node = root
    while stack or node:
        while node:
            if node in seen or len(seen) >= MAX_NODES:
                why = f"loops back to {node:#x}" if node in seen else "has too many nodes"
                partial(f"rbtree at {root:#x}", why, len(seen))
                return
            seen.add(node)
            stack.append(node)
            node = prog.read_u64(node + left_off)
        node = stack.pop()
        yield node
        node = prog.read_u64(node + right_off)


def _root_node(root: Object) -> int:
    """The first node of a ``struct rb_root`` or ``rb_root_cached`` (or a pointer to one)."""
    if root.has_member_("rb_root"):
        root = root.rb_root
    return int(root.rb_node)


def rbtree_inorder_for_each(root: Object) -> Iterator[Object]:
    """``struct rb_node *`` of every node of a tree, in order.

    >>> for node in rbtree_inorder_for_each(prog.per_cpu("runqueues", 0).cfs.tasks_timeline):
    ...     se = node.container_of_("struct sched_entity", "run_node")
    """
    prog = root.prog_
    node_type = prog.type("struct rb_node")
    for address in rb_nodes(prog, _root_node(root)):
        yield prog.pointer(node_type, address)


def rbtree_inorder_for_each_entry(type_: str, root: Object, member: str) -> Iterator[Object]:
    """``struct type *`` objects linked into a tree through their ``member`` node.

    >>> rq = prog.per_cpu("runqueues", 0)
    >>> [e for e in rbtree_inorder_for_each_entry("struct sched_entity",
    ...                                           rq.cfs.tasks_timeline, "run_node")]
    """
    prog = root.prog_
    t = prog.type(type_)
    offset = prog.offsetof(t, member)
    for address in rb_nodes(prog, _root_node(root)):
        yield prog.pointer(t, address - offset)
