"""ps, foreach, files, runq, set."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kdumpy.analysis.commands.backtrace import format_backtrace
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.output import fields, quoted
from kdumpy.analysis.commands.taskinfo import task_signals
from kdumpy.analysis.commands.tasksel import all_tasks, task_from_arg, task_line
from kdumpy.analysis.commands.vmcmds import task_vm
from kdumpy.analysis.helpers.files import task_files, task_root_cwd
from kdumpy.analysis.helpers.mm import task_rss_vsz, totalram_pages
from kdumpy.analysis.helpers.runqueue import runqueue_tasks
from kdumpy.analysis.helpers.tasks import (
    active_tasks,
    cpu_of_active_task,
    is_kthread,
    panic_task,
    task_comm,
    task_cpu,
    task_state_crash,
)
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.unwind import stack_trace
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown


@command("ps", "display process status information",
         Arg("-k", dest="kernel", action="store_true", help="kernel threads only"),
         Arg("-u", dest="user", action="store_true", help="user tasks only"),
         Arg("wanted", nargs="*", metavar="pid|comm", help="pids or command names"),
         usage="ps [-k|-u] [pid|comm ...]")  # fmt: skip
def cmd_ps(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    row = _ps_row(prog)
    lines = [_PS_HEADER]
    for task in all_tasks(prog):
        kthread = _is_kernel_thread(task)
        if (opts.kernel and not kthread) or (opts.user and kthread):
            continue
        wanted = opts.wanted
        if wanted and str(int(task.pid)) not in wanted and task_comm(task) not in wanted:
            continue
        lines.append(row(task))
    return "".join(lines)


_PS_HEADER = "   PID    PPID  CPU       TASK        ST  %MEM     VSZ    RSS  COMM\n"


def _is_kernel_thread(task: Object) -> bool:
    return is_kthread(task) or int(task.pid) == 0


def _ps_row(prog: Program) -> Callable[[Object], str]:
    """The formatter of one task's ps line (``>`` marks a task active on a CPU)."""
    active = {int(t) for t in active_tasks(prog).values()}
    total_kb = max(1, totalram_pages(prog) * prog.dump.page_size // 1024)

    def row(task: Object) -> str:
        comm = task_comm(task)
        rss, vsz = task_rss_vsz(prog, task)
        mark = ">" if int(task) in active else " "
        name = f"[{shown(comm)}]" if _is_kernel_thread(task) else shown(comm)
        return (
            f"{mark}{int(task.pid):>6} {int(task.real_parent.pid):>7} {task_cpu(task):>4}  "
            f"{int(task):016x}  {task_state_crash(task)}  {100 * rss / total_kb:4.1f} "
            f"{vsz:>7} {rss:>6}  {name}\n"
        )

    return row


_STATE_FILTERS = {"RU", "IN", "UN", "ST", "TR", "ZO", "DE", "PA", "ID", "WA", "NE"}


@command("foreach", "display command data for multiple tasks",
         Arg("words", nargs="+", metavar="[STATE] bt|ps|files|vm|sig",
             help="a task state (RU, IN, UN, ...) and a command"),
         usage="foreach [STATE] bt|ps|files|vm|sig")  # fmt: skip
def cmd_foreach(session: Session, opts: argparse.Namespace) -> str:
    states = {a for a in opts.words if a in _STATE_FILTERS}
    verbs = [a for a in opts.words if a not in states]
    if not verbs or verbs[0] not in ("bt", "files", "ps", "vm", "sig"):
        raise CommandError("foreach supports bt, files, ps, vm and sig")
    prog = session.prog
    tasks = [t for t in all_tasks(prog) if not states or task_state_crash(t) in states]
    if verbs[0] == "ps":
        return "".join(map(_ps_row(prog), tasks))
    if verbs[0] == "files":
        return "\n".join(_files(prog, task) for task in tasks)
    if verbs[0] == "vm":
        return "\n".join(task_vm(prog, task) for task in tasks)
    if verbs[0] == "sig":
        return "\n".join(task_signals(prog, task) for task in tasks if int(task.sighand))
    return "\n".join(format_backtrace(task, stack_trace(prog, task)) for task in tasks)


def _files(prog: Program, task: Object) -> str:
    root, cwd = task_root_cwd(prog, task)
    out = [
        task_line(task),
        f"ROOT: {shown(root)}    CWD: {shown(cwd)}\n",
        " FD       FILE            DENTRY           INODE       TYPE PATH\n",
    ]
    for fd, file, dentry, inode, kind, path in task_files(prog, task):
        out.append(f"{fd:>3} {file:016x} {dentry:016x} {inode:016x} {kind:<4} {shown(path)}\n")
    return "".join(out)


@command(
    "files", "open files", Arg("task", nargs="?", metavar="pid|task"), usage="files [pid | task]"
)
def cmd_files(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    task = task_from_arg(session, opts.task) if opts.task else panic_task(prog)
    if task is None:
        raise CommandError("no task given")
    return _files(prog, task)


@command("runq", "run queue")
def cmd_runq(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    out = []
    for cpu in prog.online_cpus:
        rq, curr, rt, cfs = runqueue_tasks(prog, cpu)
        out.append(f"CPU {cpu} RUNQUEUE: {rq:x}\n")
        pid, comm = int(curr.pid), shown(task_comm(curr))
        out.append(f'  CURRENT: PID: {pid:<6} TASK: {int(curr):x}  COMMAND: "{comm}"\n')
        for title, queued in (("RT PRIO_ARRAY", rt), ("CFS RB_ROOT", cfs)):
            out.append(f"  {title}:\n")
            if not queued:
                out.append("     [no tasks queued]\n")
            for prio, task in queued:
                out.append(
                    f"     [{prio:3d}] PID: {int(task.pid):<6} TASK: {int(task):x}  "
                    f'COMMAND: "{shown(task_comm(task))}"\n'
                )
        out.append("\n")
    return "".join(out)


@command(
    "set",
    "set the context task",
    Arg("task", nargs="?", metavar="pid|task"),
    usage="set [pid | task]",
)
def cmd_set(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.task:
        session.extra["task"] = task_from_arg(session, opts.task)
    task = session.extra.get("task") or panic_task(prog)
    if not isinstance(task, Object):
        return "no context task\n"
    try:
        cpu = cpu_of_active_task(prog, task)
    except KdumpyError:
        cpu = None
    state = task_state_crash(task) + (" (ACTIVE)" if cpu is not None else "")
    return fields([
        ("PID", int(task.pid)),
        ("COMMAND", quoted(task_comm(task))),
        ("TASK", f"{int(task):x}"),
        ("CPU", task_cpu(task)),
        ("STATE", state),
    ])  # fmt: skip
