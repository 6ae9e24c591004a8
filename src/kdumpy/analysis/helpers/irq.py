"""Interrupt descriptors (``irq``).  With ``CONFIG_SPARSE_IRQ`` (every distribution)
the ``struct irq_desc``\\ s are found by number in ``sparse_irqs``, a maple tree
(6.5+), or ``irq_desc_tree``, a radix tree (before)::

    for irq, desc in irq_descs(prog).items():
        print(irq, [name for _action, name in irq_actions(desc)])
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import walk
from kdumpy.analysis.helpers.trees import maple_entries, xarray_entries
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program


def nr_irqs(prog: Program) -> int:
    """How many IRQ numbers there are (``total_nr_irqs`` since 7.2)."""
    name = "total_nr_irqs" if prog.has_symbol("total_nr_irqs") else "nr_irqs"
    return int(prog.object(name))


def irq_descs(prog: Program) -> dict[int, Object]:
    """Every allocated descriptor by IRQ number."""
    entries: Iterator[tuple[int, int]]
    if prog.has_symbol("sparse_irqs"):
        tree = prog.object("sparse_irqs")
        entries = ((first, e) for first, _last, e in maple_entries(prog, int(tree.ma_root)))
    else:
        entries = xarray_entries(prog, int(prog.object("irq_desc_tree").xa_head))
    return {irq: prog.pointer("struct irq_desc", e) for irq, e in entries}


def irq_actions(prog: Program, desc: Object) -> list[tuple[int, str]]:
    """``(struct irqaction address, name)`` of each handler sharing the line."""
    off = prog.offsetof("struct irqaction", "next")
    out = []
    for action in walk(int(desc.action), lambda a: prog.read_u64(a + off), 0, "irqaction list"):
        obj = prog.object_at("struct irqaction", action)
        out.append((action, obj.name.string_(64).decode("utf-8", "backslashreplace")))
    return out
