"""irq: interrupt descriptors and their handlers."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands.base import Arg, Session, command
from kdumpy.analysis.helpers.irq import irq_actions, irq_descs, nr_irqs
from kdumpy.printable import shown


@command("irq", "IRQ data", Arg("irqs", nargs="*", type=int, metavar="irq"),
         usage="irq [irq ...]",
         python=lambda o: (
             "# prog = kdumpy.open(DUMP)\n"
             "from kdumpy.analysis.helpers.irq import irq_actions, irq_descs\n"
             "for irq, desc in irq_descs(prog).items():\n"
             "    print(irq, hex(int(desc)), irq_actions(prog, desc))\n"))  # fmt: skip
def cmd_irq(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    descs = irq_descs(prog)
    out = ["IRQ      IRQ_DESC         IRQACTION      NAME\n"]
    for irq in opts.irqs or range(nr_irqs(prog)):
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
