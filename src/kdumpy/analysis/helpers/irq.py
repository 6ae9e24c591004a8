"""Interrupt descriptors (``irq``).  With ``CONFIG_SPARSE_IRQ`` (every distribution)
the ``struct irq_desc``\\ s are found by number in ``sparse_irqs``, a maple tree
(6.5+), or ``irq_desc_tree``, a radix tree (before)::

    for irq, desc in irq_descs(prog).items():
        print(irq, [name for _action, name in irq_actions(desc)])
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import walk
from kdumpy.analysis.helpers.trees import maple_entries, xarray_entries
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError


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


def irq_affinity(prog: Program, desc: Object) -> list[int]:
    """The CPUs an interrupt may go to: ``irq_common_data.affinity`` (4.3+; a pointer
    with CONFIG_CPUMASK_OFFSTACK, else a one-element array), else ``irq_data``'s."""
    holder = desc.irq_common_data if desc.has_member_("irq_common_data") else desc.irq_data
    mask = holder.affinity
    address = int(mask) if mask.type_.strip().kind == "pointer" else int(mask.address_ or 0)
    words = (prog.nr_cpu_ids + 63) // 64
    bits = [prog.read_u64(address + 8 * w) for w in range(words)]
    return [cpu for cpu in range(prog.nr_cpu_ids) if bits[cpu // 64] >> cpu % 64 & 1]


def irq_count(prog: Program, desc: Object, cpu: int) -> int:
    """How often the interrupt fired on ``cpu``: the per-CPU ``kstat_irqs`` (a struct
    with ``cnt`` since 6.10, the count itself before)."""
    kstat = desc.kstat_irqs
    if not int(kstat):
        return 0
    target = kstat.type_.strip().target  # type: ignore[attr-defined]
    offset = prog.offsetof(target, "cnt") if target.strip().kind == "struct" else 0
    return prog.read_u32((int(kstat) + offset + prog.per_cpu_offsets[cpu]) & ((1 << 64) - 1))


def irq_chip_name(desc: Object) -> str:
    """The name of the controller chip handling the interrupt ("" when unset)."""
    chip = desc.irq_data.chip
    if not int(chip) or not int(chip.name):
        return ""
    return chip.name.string_(64).decode("utf-8", "backslashreplace")


def softirq_actions(prog: Program) -> list[int]:
    """The handler of each softirq vector (``softirq_vec[NR_SOFTIRQS]``), 0 when unset."""
    count = prog.constant("NR_SOFTIRQS")
    vec = prog.object("softirq_vec", f"struct softirq_action [{count}]")
    return [int(vec[i].action) for i in range(count)]


def cpulist(cpus: list[int]) -> str:
    """``0-3,8`` as the kernel writes CPU lists."""
    runs: list[list[int]] = []
    for cpu in cpus:
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


IDT_ENTRIES = 256
# An x86_64 gate descriptor (struct gate_struct, fixed by the hardware): offset bits
# 0-15, segment, type bits, offset bits 16-31, offset bits 32-63, reserved.
_GATE = struct.Struct("<HHHHII")


def idt_handlers(prog: Program) -> list[int]:
    """The handler address of each of the 256 vectors of x86_64's interrupt descriptor
    table (``idt_table``), as the CPU assembles it from the gate's three offset parts."""
    if prog.arch.name != "x86_64":
        raise KdumpyError(f"the interrupt descriptor table is x86_64's (this is {prog.arch.name})")
    raw = prog.read(prog.symbol_address("idt_table"), IDT_ENTRIES * _GATE.size)
    return [low | middle << 16 | high << 32
            for low, _seg, _bits, middle, high, _res in _GATE.iter_unpack(raw)]  # fmt: skip
