"""vmalloc space: the busy ``vmap_area``\\ s (``kmem -v``) and which one holds an
address.  Since 6.9 busy areas sit in per-node red-black trees (``vmap_nodes[]``);
before, on ``vmap_area_list``::

    for va in for_each_vmap_area(prog):
        print(hex(int(va.va_start)), hex(int(va.va_end)), hex(int(va.vm)))
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.helpers.trees import rbtree_inorder
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program


def for_each_vmap_area(prog: Program) -> Iterator[Object]:
    """Every busy ``struct vmap_area *``: by start address, node by node since 6.9
    (the order crash and drgn show)."""
    if not prog.has_symbol("vmap_nodes"):
        yield from list_for_each_entry("struct vmap_area", prog.object("vmap_area_list"), "list")
        return
    nodes = prog.object("vmap_nodes")
    off = prog.offsetof("struct vmap_area", "rb_node")
    for i in range(int(prog.object("nr_vmap_nodes"))):
        root = nodes[i].busy.root.rb_node
        for node in rbtree_inorder(prog, int(root)):
            yield prog.pointer("struct vmap_area", node - off)


def find_vmap_area(prog: Program, address: int) -> Object | None:
    """The busy area holding ``address`` (``find_vmap_area``), or None."""
    for va in for_each_vmap_area(prog):
        if int(va.va_start) <= address < int(va.va_end):
            return va
    return None
