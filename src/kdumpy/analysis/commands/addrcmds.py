"""btop, ptob, ptov, vtop, pte: between page numbers, physical and virtual addresses
(vtop: of the kernel, or of a process through its own page tables)."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands import parse_number, resolve_address
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.memcmds import current_task
from kdumpy.analysis.commands.tasksel import task_from_arg
from kdumpy.analysis.helpers.memmap import (
    is_user_address,
    page_shift,
    phys_to_virt,
    translate,
    user_vtop,
)
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

_PRELUDE = "# prog = kdumpy.open(DUMP)\nfrom kdumpy.analysis.helpers import memmap\n"


def address_code(word: str) -> str:
    """An address word as Python: a hex number, or the symbol's lookup."""
    try:
        return hex(parse_number(word))
    except CommandError:
        return f"prog.symbol_address({word!r})"


def _numbers(opts: argparse.Namespace) -> list[int]:
    return [parse_number(a) for a in opts.values]


def page_number(text: str) -> int:
    """A page frame number as crash reads it: decimal, unless it says hex (``0x``, or
    a digit a-f)."""
    if text.isdigit():
        return int(text)
    return parse_number(text)


@command("btop", "bytes to page", Arg("values", nargs="+", metavar="address"),
         usage="btop address ...",
         python=lambda o: _PRELUDE + "\n".join(
             f"print(hex({parse_number(a):#x} >> memmap.page_shift(prog)))" for a in o.values
         ))  # fmt: skip
def cmd_btop(session: Session, opts: argparse.Namespace) -> str:
    shift = page_shift(session.prog)
    return "".join(f"{v:x}: {v >> shift:x}\n" for v in _numbers(opts))


@command("ptob", "page to bytes", Arg("values", nargs="+", metavar="page_number"),
         usage="ptob page_number ...",
         python=lambda o: _PRELUDE + "\n".join(
             f"print(hex({page_number(a):#x} << memmap.page_shift(prog)))" for a in o.values
         ))  # fmt: skip
def cmd_ptob(session: Session, opts: argparse.Namespace) -> str:
    shift = page_shift(session.prog)
    return "".join(f"{v:x}: {v << shift:x}\n" for v in map(page_number, opts.values))


@command("ptov", "physical to virtual", Arg("values", nargs="+", metavar="address"),
         usage="ptov address ...",
         python=lambda o: _PRELUDE + "\n".join(
             f"print(hex(memmap.phys_to_virt(prog, {parse_number(a):#x})))" for a in o.values
         ))  # fmt: skip
def cmd_ptov(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    rows = (f"{phys_to_virt(prog, v):<16x}  {v:x}\n" for v in _numbers(opts))
    return "VIRTUAL           PHYSICAL\n" + "".join(rows)


def vtop_python(opts: argparse.Namespace) -> str:
    if opts.kernel:
        return _PRELUDE + "".join(
            f"print(memmap.translate(prog, {address_code(a)}))\n" for a in opts.values
        )
    task = "panic_task(prog)  # the current task" if opts.task is None else (
        f"find_task(prog, {int(opts.task)})" if opts.task.isdigit()
        else f'prog.pointer("struct task_struct", {parse_number(opts.task):#x})')  # fmt: skip
    lines = [
        "from kdumpy.analysis.api import FaultError, find_task, panic_task\n",
        f"task = {task}\n",
        "def vtop(address):  # user addresses through the task's own page tables\n",
        "    if not (opts_user or memmap.is_user_address(address)):\n",
        "        return memmap.translate(prog, address)\n",
        "    try:\n",
        "        return memmap.user_vtop(prog, task.mm, address)\n",
        "    except FaultError:\n",
        "        return None  # not mapped\n",
        f"opts_user = {bool(opts.user)}\n",
    ]
    lines += [f"print(vtop({address_code(a)}))\n" for a in opts.values]
    return _PRELUDE + "".join(lines)


@command("vtop", "virtual to physical",
         Arg("-u", dest="user", action="store_true",
             help="user virtual addresses (of the current task, or -c's)"),
         Arg("-k", dest="kernel", action="store_true", help="kernel virtual addresses"),
         Arg("-c", dest="task", metavar="pid|task",
             help="translate user addresses through this task's page tables"),
         Arg("values", nargs="+", metavar="address|symbol"),
         usage="vtop [-c pid|task] [-u|-k] address|symbol ...", python=vtop_python)  # fmt: skip
def cmd_vtop(session: Session, opts: argparse.Namespace) -> str:
    """An address below the kernel's half is a user address of the current task (or
    -c's), as crash reads it; -u and -k say which space it is."""
    prog = session.prog
    if opts.user and opts.kernel:
        raise CommandError("-u and -k name different address spaces: give one")
    task = task_from_arg(session, opts.task) if opts.task is not None else current_task(session)
    out = ["VIRTUAL           PHYSICAL\n"]
    for word in opts.values:
        address = resolve_address(session, word)
        user = opts.user or (not opts.kernel and is_user_address(address))
        phys = _user_phys(prog, task, address, opts.user) if user else translate(prog, address)
        out.append(f"{address:<16x}  {'(not accessible)' if phys is None else f'{phys:x}'}\n")
    return "".join(out)


def _user_phys(prog: Program, task: Object | None, address: int, explicit: bool) -> int | None:
    """A user address's physical address through the task's page tables; None when it
    is not mapped.  Asked for (-u) of a task without memory, a one-line error."""
    mm = task.mm if task is not None else None
    if mm is None or not int(mm):
        if explicit:
            pid = int(task.pid) if task is not None else "?"
            raise CommandError(f"-u: the task (pid {pid}) has no user address space")
        return None
    try:
        return user_vtop(prog, mm, address)
    except FaultError:
        return None


# x86_64 page table entry bits, crash's names (arch/x86/include/asm/pgtable_types.h).
PTE_FLAGS = ((0x1, "PRESENT"), (0x2, "RW"), (0x4, "USER"), (0x8, "PWT"), (0x10, "PCD"),
             (0x20, "ACCESSED"), (0x40, "DIRTY"), (0x80, "PSE"), (0x100, "GLOBAL"),
             (1 << 63, "NX"))  # fmt: skip
PTE_PFN_MASK = 0x000FFFFFFFFFF000


def pte_flags(pte: int) -> str:
    """``(PRESENT|RW|...)`` of a page table entry's bits."""
    return "(" + "|".join(name for bit, name in PTE_FLAGS if pte & bit) + ")"


@command("pte", "translate a page table entry", Arg("values", nargs="+", metavar="pte"),
         usage="pte value ...",
         python=lambda o: _PRELUDE + "".join(
             f"print(hex({parse_number(a):#x} & 0x000FFFFFFFFFF000))\n" for a in o.values
         ))  # fmt: skip
def cmd_pte(session: Session, opts: argparse.Namespace) -> str:
    out = []
    for pte in _numbers(opts):
        width = max(8, len(f"{pte:x}"))
        out.append(f"{'PTE':^{width}}  PHYSICAL  FLAGS\n")
        out.append(f"{pte:<{width}x}  {pte & PTE_PFN_MASK:<8x}  {pte_flags(pte)}\n")
    return "".join(out)
