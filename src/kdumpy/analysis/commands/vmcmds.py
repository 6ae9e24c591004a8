"""vm: a task's memory map."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.tasksel import task_from_arg, task_line
from kdumpy.analysis.helpers.mm import task_rss_vsz
from kdumpy.analysis.helpers.tasks import panic_task
from kdumpy.analysis.helpers.vma import for_each_vma, vma_name
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.printable import shown


def _python(opts: argparse.Namespace) -> str:
    first = opts.tasks[0] if opts.tasks else ""
    pick = f"find_task(prog, {int(first)})" if first.isdigit() else "panic_task(prog)"
    return (
        "# prog = kdumpy.open(DUMP)\n"
        "from kdumpy.analysis.helpers.tasks import find_task, panic_task\n"
        "from kdumpy.analysis.helpers.vma import for_each_vma, vma_name\n"
        f"task = {pick}\n"
        "for vma in for_each_vma(prog, task.mm):\n"
        "    print(hex(int(vma)), hex(int(vma.vm_start)), hex(int(vma.vm_end)),\n"
        "          hex(int(vma.vm_flags)), vma_name(prog, vma))\n"
    )


@command("vm", "virtual memory", Arg("tasks", nargs="*", metavar="pid|task"),
         usage="vm [pid | task] ...", python=_python)  # fmt: skip
def cmd_vm(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    tasks = [task_from_arg(session, t) for t in opts.tasks]
    if not tasks:
        task = panic_task(prog)
        if task is None:
            raise CommandError("no task given and no panic task")
        tasks = [task]
    return "\n".join(task_vm(prog, t) for t in tasks)


_MM_HEADER = "       MM               PGD          RSS   TOTAL_VM\n"


def task_vm(prog: Program, task: Object) -> str:
    """crash's ``vm`` block for one task: the mm, then one row per VMA."""
    out = [task_line(task)]
    mm = task.mm
    if not int(mm):
        return out[0] + _MM_HEADER + f"{0:016x}  {0:016x}  0k  0k\n"
    rss, vsz = task_rss_vsz(prog, task)
    out.append(_MM_HEADER)
    out.append(f"{int(mm):016x}  {int(mm.pgd):016x}  {rss}k  {vsz}k\n")
    out.append("      VMA            START          END       FLAGS    FILE\n")
    for vma in for_each_vma(prog, mm):
        start, end, flags = int(vma.vm_start), int(vma.vm_end), int(vma.vm_flags)
        out.append(f"{int(vma):016x}  {start:>12x}  {end:>12x}  {flags:>8x}  "
                   f"{shown(vma_name(prog, vma))}\n")  # fmt: skip
    return "".join(out)
