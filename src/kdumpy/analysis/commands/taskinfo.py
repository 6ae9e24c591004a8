"""task, sig, fuser: a task's structure, its signal handling, who uses a file."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.output import RADIX_ARGS, member_lines
from kdumpy.analysis.commands.tasksel import all_tasks, task_from_arg, task_line
from kdumpy.analysis.helpers.files import d_path, task_files
from kdumpy.analysis.helpers.signals import SIG_DFL, SIG_IGN, flag_names, pending, sig_actions
from kdumpy.analysis.helpers.tasks import panic_task, task_comm
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


@command("sig", "task signal handling", Arg("tasks", nargs="*", metavar="pid|task"),
         usage="sig [pid|task]",
         python=lambda o: _PRELUDE + (
             "from kdumpy.analysis.helpers.tasks import find_task, panic_task\n"
             "from kdumpy.analysis.helpers.signals import sig_actions, pending\n"
             f"task = {_pick(o.tasks)}\n"
             "for action in sig_actions(prog, task):\n    print(action)\n"
             "print(pending(prog, task.pending),\n"
             "      pending(prog, task.signal.shared_pending))\n"))  # fmt: skip
def cmd_sig(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    return "\n".join(task_signals(prog, task) for task in _tasks(session, opts.tasks))


def task_signals(prog: Program, task: Object) -> str:
    """crash's ``sig`` block for one task."""
    signal = task.signal
    out = [task_line(task),
           f"SIGNAL_STRUCT: {int(signal):x}  NR_THREADS: {int(signal.nr_threads)}\n",
           " SIG     SIGACTION      HANDLER        MASK        FLAGS\n"]  # fmt: skip
    for a in sig_actions(prog, task):
        handler = {SIG_DFL: "SIG_DFL", SIG_IGN: "SIG_IGN"}.get(a.handler, f"{a.handler:x}")
        names = f" ({flag_names(a.flags)})" if flag_names(a.flags) else ""
        out.append(f"{f'[{a.signal}]':>4}  {a.address:016x}  {handler:>7}  {a.mask:016x}  "
                   f"{a.flags:x}{names}\n")  # fmt: skip
    out.append(f"   BLOCKED: {int(task.blocked.sig[0]):016x}\n")
    for title, sigpending in (("PRIVATE_PENDING", task.pending),
                              ("SHARED_PENDING", signal.shared_pending)):  # fmt: skip
        mask, queued = pending(prog, sigpending)
        queue = " ".join(f"{q:x}" for q in queued) or "(empty)"
        out.append(f"{title}\n    SIGNAL: {mask:016x}\n  SIGQUEUE: {queue}\n")
    return "".join(out)


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
