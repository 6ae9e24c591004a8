"""task, sig, fuser: a task's structure, its signal handling, who uses a file."""

from __future__ import annotations

import argparse
import textwrap

from kdumpy.analysis.commands import parse_number
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.output import RADIX_ARGS, member_lines
from kdumpy.analysis.commands.tasksel import all_tasks, task_from_arg, task_line
from kdumpy.analysis.helpers.files import d_path, task_files
from kdumpy.analysis.helpers.signals import (
    SIG_DFL,
    SIG_IGN,
    decode_sigset,
    flag_names,
    pending,
    sig_actions,
    signal_numbers,
)
from kdumpy.analysis.helpers.tasks import for_each_thread, panic_task, task_comm
from kdumpy.analysis.helpers.vma import for_each_vma, vma_name
from kdumpy.analysis.objects import Object
from kdumpy.analysis.printing import format_value
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown

_PRELUDE = "# prog = kdumpy.open(DUMP)\n"


def _tasks(session: Session, words: list[str]) -> list[Object]:
    """The tasks named by pid or address, or the panic task."""
    tasks = [task_from_arg(session, w) for w in words]
    if tasks:
        return tasks
    task = session.extra.get("task") or panic_task(session.prog)
    if not isinstance(task, Object):
        raise CommandError("no task given and no panic task")
    return [task]


def _pick(words: list[str]) -> str:
    """Python choosing the task a command names (first pid, else the panic task)."""
    return (
        f"find_task(prog, {int(words[0])})"
        if words and words[0].isdigit()
        else ("panic_task(prog)")
    )


@command("task", "task_struct contents",
         Arg("-R", dest="members", metavar="member[,member]", help="only these members"),
         Arg("tasks", nargs="*", metavar="pid|task"), *RADIX_ARGS,
         usage="task [-R member[,member]] [-x|-d] [pid|task]",
         python=lambda o: _PRELUDE + (
             "from kdumpy.analysis.helpers.tasks import find_task, panic_task\n"
             f"task = {_pick(o.tasks)}\n"
             + (f"for m in {o.members.split(',')!r}:\n    print(m, task.member_(m).value_())\n"
                if o.members else "print(task.value_())\n")))  # fmt: skip
def cmd_task(session: Session, opts: argparse.Namespace) -> str:
    out = []
    for task in _tasks(session, opts.tasks):
        out.append(task_line(task))
        if opts.members:
            out.append(member_lines(task, opts.members.split(","), opts.radix))
        else:
            out.append(f"struct task_struct {format_value(task.deref_(), 0, opts.radix)}\n")
    return "".join(out)


def _sig_python(opts: argparse.Namespace) -> str:
    if opts.list:
        return _PRELUDE + ("from kdumpy.analysis.helpers.signals import signal_numbers\n"
                           "for number, names in signal_numbers().items():\n"
                           "    print(number, names)\n")  # fmt: skip
    if opts.sigset is not None:
        return _PRELUDE + ("from kdumpy.analysis.helpers.signals import decode_sigset\n"
                           f"print(decode_sigset({parse_number(opts.sigset):#x}))\n")  # fmt: skip
    return _PRELUDE + (
        "from kdumpy.analysis.helpers.tasks import find_task, panic_task\n"
        "from kdumpy.analysis.helpers.signals import sig_actions, pending\n"
        f"task = {_pick(opts.tasks)}\n"
        "for action in sig_actions(prog, task):\n    print(action)\n"
        "print(pending(prog, task.pending),\n"
        "      pending(prog, task.signal.shared_pending))\n")  # fmt: skip


@command("sig", "task signal handling", Arg("tasks", nargs="*", metavar="pid|task"),
         Arg("-l", dest="list", action="store_true", help="every signal number and name"),
         Arg("-s", dest="sigset", metavar="sigset", help="the names in a hex signal set"),
         Arg("-g", dest="group", action="store_true",
             help="each thread's blocked and pending signals"),
         usage="sig [-g] [pid|task] | -l | -s sigset", python=_sig_python)  # fmt: skip
def cmd_sig(session: Session, opts: argparse.Namespace) -> str:
    if opts.list:
        return "".join(f"{f'[{n}]':>4} {'/'.join(names)}\n"
                       for n, names in signal_numbers().items())  # fmt: skip
    if opts.sigset is not None:
        return textwrap.fill(" ".join(decode_sigset(parse_number(opts.sigset))), 80) + "\n"
    prog = session.prog
    return "\n".join(task_signals(prog, task, opts.group) for task in _tasks(session, opts.tasks))


def task_signals(prog: Program, task: Object, group: bool = False) -> str:
    """crash's ``sig`` block for one task; ``group`` (``-g``): the shared pending set,
    then each thread's blocked and private pending signals."""
    signal = task.signal
    out = [task_line(task),
           f"SIGNAL_STRUCT: {int(signal):x}  NR_THREADS: {int(signal.nr_threads)}\n",
           " SIG     SIGACTION      HANDLER        MASK        FLAGS\n"]  # fmt: skip
    for a in sig_actions(prog, task):
        handler = {SIG_DFL: "SIG_DFL", SIG_IGN: "SIG_IGN"}.get(a.handler, f"{a.handler:x}")
        names = f" ({flag_names(a.flags)})" if flag_names(a.flags) else ""
        out.append(f"{f'[{a.signal}]':>4}  {a.address:016x}  {handler:>7}  {a.mask:016x}  "
                   f"{a.flags:x}{names}\n")  # fmt: skip
    if not group:
        out.append(f"   BLOCKED: {int(task.blocked.sig[0]):016x}\n")
        out.append("PRIVATE_PENDING\n" + _pending(prog, task.pending))
    out.append("SHARED_PENDING\n" + _pending(prog, signal.shared_pending))
    if group:
        for thread in for_each_thread(task.group_leader):
            out.append(f"\n  {task_line(thread)}     BLOCKED: {int(thread.blocked.sig[0]):016x}\n"
                       f"  PRIVATE_PENDING\n{_pending(prog, thread.pending, '  ')}")  # fmt: skip
    return "".join(out)


def _pending(prog: Program, sigpending: Object, indent: str = "") -> str:
    mask, queued = pending(prog, sigpending)
    queue = " ".join(f"{q:x}" for q in queued) or "(empty)"
    return f"{indent}    SIGNAL: {mask:016x}\n{indent}  SIGQUEUE: {queue}\n"


@command("fuser", "file users", Arg("path", help="a path name, as d_path gives it"),
         usage="fuser path",
         python=lambda o: _PRELUDE + (
             "from kdumpy.analysis.helpers.tasks import for_each_task\n"
             "from kdumpy.analysis.helpers.files import task_files\n"
             "for task in for_each_task(prog):\n"
             f"    if any(f[5] == {o.path!r} for f in task_files(prog, task)):\n"
             "        print(int(task.pid))\n"))  # fmt: skip
def cmd_fuser(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    out = [" PID         TASK        COMM             USAGE\n"]
    for task in all_tasks(prog):
        usage = file_usage(prog, task, opts.path)
        if usage:
            comm = f'"{shown(task_comm(task))}"'
            out.append(f"{int(task.pid):>5}  {int(task):016x}  {comm:<16} {' '.join(usage)}\n")
    if len(out) == 1:
        return f"No users of {shown(opts.path)} found\n"
    return "".join(out)


def file_usage(prog: Program, task: Object, path: str) -> list[str]:
    """How ``task`` uses ``path``: ``root``, ``cwd``, ``fd`` and ``mmap`` (crash's words)."""
    usage = []
    try:
        fs = task.fs
        if int(fs):
            if d_path(prog, fs.root.mnt, fs.root.dentry) == path:
                usage.append("root")
            if d_path(prog, fs.pwd.mnt, fs.pwd.dentry) == path:
                usage.append("cwd")
        if any(f[5] == path for f in task_files(prog, task)):
            usage.append("fd")
        mm = task.mm
        if int(mm) and any(vma_name(prog, v) == path for v in for_each_vma(prog, mm)):
            usage.append("mmap")
    except KdumpyError:
        pass
    return usage
