"""irq: interrupt descriptors and their handlers (``-u`` the allocated ones), each
in-use interrupt's CPU affinity (``-a``) and counts per CPU (``-s``, ``-c``), the
softirq vectors (``-b``)."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands import parse_cpus
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.helpers.irq import (
    cpulist,
    idt_handlers,
    irq_actions,
    irq_affinity,
    irq_chip_name,
    irq_count,
    irq_descs,
    nr_irqs,
    softirq_actions,
)
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.printable import shown


def _python(opts: argparse.Namespace) -> str:
    if opts.idt:
        return (
            "# prog = kdumpy.open(DUMP)\n"
            "from kdumpy.analysis.helpers.irq import idt_handlers\n"
            "for vector, handler in enumerate(idt_handlers(prog)):\n"
            "    print(vector, hex(handler), prog.describe(handler))\n"
        )
    names = "cpulist, irq_actions, irq_affinity, irq_count, irq_descs, softirq_actions"
    return (
        "# prog = kdumpy.open(DUMP)\n"
        f"from kdumpy.analysis.helpers.irq import {names}\n"
        + ("for vec, action in enumerate(softirq_actions(prog)):\n"
           "    print(vec, hex(action), prog.describe(action))\n" if opts.softirqs else
           "for irq, desc in irq_descs(prog).items():\n"
           "    print(irq, hex(int(desc)), irq_actions(prog, desc),\n"
           "          cpulist(irq_affinity(prog, desc)),\n"
           "          [irq_count(prog, desc, cpu) for cpu in prog.online_cpus])\n")
    )  # fmt: skip


@command("irq", "IRQ data", Arg("irqs", nargs="*", type=int, metavar="irq"),
         Arg("-u", dest="used", action="store_true", help="allocated descriptors only"),
         Arg("-a", dest="affinity", action="store_true",
             help="the CPU affinity of each interrupt in use"),
         Arg("-s", dest="stats", action="store_true",
             help="how often each interrupt in use fired, per CPU"),
         Arg("-c", dest="cpus", type=parse_cpus, metavar="cpus", help="with -s: these CPUs"),
         Arg("-b", dest="softirqs", action="store_true", help="the softirq vectors"),
         Arg("-d", dest="idt", action="store_true",
             help="the interrupt descriptor table (x86_64)"),
         usage="irq [-u] [irq ...] | -d | -a | -s [-c cpus] | -b", python=_python)  # fmt: skip
def cmd_irq(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.cpus is not None and not opts.stats:
        raise CommandError("-c goes with -s")
    if opts.idt:
        if opts.irqs or opts.used or opts.affinity or opts.stats or opts.softirqs:
            raise CommandError("-d takes no other option nor irq")
        return _idt(prog)
    if opts.softirqs:
        return _softirqs(prog)
    if opts.affinity:
        return _affinity(prog)
    if opts.stats:
        return _stats(prog, opts.cpus if opts.cpus is not None else prog.online_cpus)
    descs = irq_descs(prog)
    out = ["IRQ      IRQ_DESC         IRQACTION      NAME\n"]
    numbers = opts.irqs or (sorted(descs) if opts.used else range(nr_irqs(prog)))
    for irq in numbers:
        desc = descs.get(irq)
        if desc is None:
            out.append(f"{irq:<3}      (unused)          (unused)\n")
            continue
        actions = irq_actions(prog, desc)
        if not actions:
            out.append(f"{irq:<3}  {int(desc):016x}      (unused)\n")
        for action, name in actions:
            out.append(f'{irq:<3}  {int(desc):016x}  {action:016x}  "{shown(name)}"\n')
    return "".join(out)


def _in_use(prog: Program) -> list[tuple[int, Object, str]]:
    """``(irq, desc, names)`` of each interrupt with a handler."""
    out = []
    for irq, desc in sorted(irq_descs(prog).items()):
        names = ",".join(name for _action, name in irq_actions(prog, desc))
        if int(desc.action):
            out.append((irq, desc, names))
    return out


def _affinity(prog: Program) -> str:
    rows: list[tuple[str, ...]] = [("IRQ", "NAME", "AFFINITY")]
    rows += [(str(irq), shown(names), cpulist(irq_affinity(prog, desc)))
             for irq, desc, names in _in_use(prog)]  # fmt: skip
    return _table(rows)


def _stats(prog: Program, cpus: list[int]) -> str:
    rows: list[tuple[str, ...]] = [("", *(f"CPU{cpu}" for cpu in cpus), "", "")]
    for irq, desc, names in _in_use(prog):
        counts = [str(irq_count(prog, desc, cpu)) for cpu in cpus]
        rows.append((f"{irq}:", *counts, shown(irq_chip_name(desc)), shown(names)))
    return _table(rows, right=len(cpus) + 1)


def _softirqs(prog: Program) -> str:
    rows: list[tuple[str, ...]] = [("SOFTIRQ_VEC", "ACTION", "")]
    for vec, action in enumerate(softirq_actions(prog)):
        sym = prog.find_symbol(action) if action else None
        rows.append((f"[{vec}]", f"{action:x}", f"<{sym.name}>" if sym else ""))
    return _table(rows)


def _idt(prog: Program) -> str:
    """``irq -d``: each vector's handler as ``name`` or ``name+offset`` (decimal, as
    crash), or its address where no symbol holds it."""
    out = []
    for vector, handler in enumerate(idt_handlers(prog)):
        sym = prog.find_symbol(handler)
        if sym is None:
            where = f"{handler:x}"
        elif handler == sym.address:
            where = shown(sym.name)
        else:
            where = f"{shown(sym.name)}+{handler - sym.address}"
        out.append(f"{f'[{vector}]':>5} {where}\n")
    return "".join(out)


def _table(rows: list[tuple[str, ...]], right: int = 0) -> str:
    """Columns two spaces apart; the first ``right`` ones right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(c.rjust(w) if i < right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip() + "\n"
        for r in rows
    )  # fmt: skip
