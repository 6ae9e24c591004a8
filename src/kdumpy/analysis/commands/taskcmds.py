"""ps, bt, foreach, files, runq, set."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands import parse_number
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.memcmds import with_exception_frames, with_frame_words
from kdumpy.analysis.helpers.files import task_files, task_root_cwd
from kdumpy.analysis.helpers.mm import task_rss_vsz, totalram_pages
from kdumpy.analysis.helpers.runqueue import runqueue_tasks
from kdumpy.analysis.helpers.tasks import (
    active_tasks,
    cpu_of_active_task,
    find_task,
    for_each_task,
    idle_task,
    is_kthread,
    panic_task,
    task_comm,
    task_cpu,
    task_state_crash,
)
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program, TypesMissingError
from kdumpy.analysis.unwind import PT_REGS, Frame, panic_cpu_trace, stack_trace
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown


def all_tasks(prog: Program) -> list[Object]:
    """Idle tasks of each CPU first, then every other task (crash's order)."""
    idle = [idle_task(prog, cpu) for cpu in prog.online_cpus]
    return idle + sorted(for_each_task(prog), key=lambda t: int(t.pid))


@command("ps", "display process status information",
         Arg("-k", dest="kernel", action="store_true", help="kernel threads only"),
         Arg("-u", dest="user", action="store_true", help="user tasks only"),
         Arg("wanted", nargs="*", help="pids or command names"),
         usage="ps [-k|-u] [pid|comm ...]")  # fmt: skip
def cmd_ps(session: Session, opts: argparse.Namespace) -> str:
    return ps_table(session, opts.kernel, opts.user, opts.wanted)


def ps_table(session: Session, kernel: bool, user: bool, wanted: list[str]) -> str:
    """The ps header and a line per task (only kernel threads, only user tasks, only
    the pids or names in ``wanted`` when given)."""
    prog = session.prog
    active = {int(t) for t in active_tasks(prog).values()}
    total_kb = max(1, totalram_pages(prog) * prog.dump.page_size // 1024)
    lines = ["   PID    PPID  CPU       TASK        ST  %MEM     VSZ    RSS  COMM\n"]
    for task in all_tasks(prog):
        kthread = is_kthread(task) or int(task.pid) == 0
        if (kernel and not kthread) or (user and kthread):
            continue
        comm = task_comm(task)
        if wanted and str(int(task.pid)) not in wanted and comm not in wanted:
            continue
        rss, vsz = task_rss_vsz(prog, task)
        mark = ">" if int(task) in active else " "
        name = f"[{shown(comm)}]" if kthread else shown(comm)
        lines.append(
            f"{mark}{int(task.pid):>6} {int(task.real_parent.pid):>7} {task_cpu(task):>4}  "
            f"{int(task):016x}  {task_state_crash(task)}  {100 * rss / total_kb:4.1f} "
            f"{vsz:>7} {rss:>6}  {name}\n"
        )
    return "".join(lines)


def _regs_block(regs: dict[str, int]) -> str:
    """An exception frame's registers in crash's layout."""
    r = {k: regs.get(k, 0) for k in PT_REGS}
    rows = [
        ("RIP", "ip"), ("RSP", "sp"), ("RFLAGS", "flags"), None,
        ("RAX", "ax"), ("RBX", "bx"), ("RCX", "cx"), None,
        ("RDX", "dx"), ("RSI", "si"), ("RDI", "di"), None,
        ("RBP", "bp"), ("R8", "r8"), ("R9", "r9"), None,
        ("R10", "r10"), ("R11", "r11"), ("R12", "r12"), None,
        ("R13", "r13"), ("R14", "r14"), ("R15", "r15"), None,
    ]  # fmt: skip
    out: list[str] = []
    line: list[str] = []
    for item in rows:
        if item is None:
            out.append("    " + "  ".join(line) + "\n")
            line = []
            continue
        label, key = item
        width = 8 if key == "flags" else 16
        line.append(f"{label:>3}: {r[key]:0{width}x}")
    out.append(f"    ORIG_RAX: {r['orig_ax']:016x}  CS: {r['cs']:04x}  SS: {r['ss']:04x}\n")
    return "".join(out)


def task_line(task: Object) -> str:
    """``PID: 1234    TASK: ffff...  CPU: 1   COMMAND: "bash"``, as bt, files and foreach
    head each task."""
    return (
        f"PID: {int(task.pid):<7} TASK: {int(task):x}  CPU: {task_cpu(task):<3} "
        f'COMMAND: "{shown(task_comm(task))}"\n'
    )


def format_backtrace(prog: Program, task: Object, frames: list[Frame]) -> str:
    out = [task_line(task)]
    for i, frame in enumerate(frames):
        if frame.left_irq_stack:
            out.append("--- <IRQ stack> ---\n")
        if frame.regs is not None and not (frame.regs.get("cs", 0) & 3):
            out.append(_regs_block(frame.regs).replace("    RIP", "    [exception RIP: "
                       f"{frame.location()}]\n    RIP", 1))  # fmt: skip
        out.append(f"{'#' + str(i):>3} [{frame.slot:x}] {shown(frame.name)} at {frame.pc:x}\n")
        if frame.user_regs is not None:
            out.append(_regs_block(frame.user_regs))
    if not frames:
        out.append("  (no stack frames)\n")
    return "".join(out)


def task_from_arg(session: Session, arg: str) -> Object:
    """A task by pid (decimal) or by task_struct address (hex)."""
    prog = session.prog
    if arg.isdigit() and len(arg) < 8:
        task = find_task(prog, int(arg))
        if task is None:
            raise CommandError(f"invalid task or pid value: {arg}")
        return task
    address = parse_number(arg)
    for task in [*all_tasks(prog)]:
        if int(task) == address:
            return task
    raise CommandError(f"invalid task or pid value: {arg}")


def _bt_text(prog: Program, task: Object, opts: argparse.Namespace) -> str:
    """One task's backtrace, with each frame's stack words for ``-f``; ``-e`` lists
    the exception frames found on the stack instead."""
    if opts.eframes:
        header = format_backtrace(prog, task, []).splitlines(True)[0]
        return with_exception_frames(prog, task, header, _regs_block)
    frames = stack_trace(prog, task)
    text = format_backtrace(prog, task, frames)
    return with_frame_words(prog, text, frames) if opts.words else text


@command("bt", "backtrace",
         Arg("-a", dest="active", action="store_true", help="the task active on each CPU"),
         Arg("-e", dest="eframes", action="store_true", help="exception frames on the stack"),
         Arg("-f", dest="words", action="store_true", help="each frame's stack words"),
         Arg("-l", dest="lines", action="store_true", help="source lines (needs DWARF)"),
         Arg("tasks", nargs="*", help="pids or task_struct addresses"),
         usage="bt [-a] [-e] [-f] [pid | task ...]")  # fmt: skip
def cmd_bt(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.lines:  # source lines need DWARF line tables, which neither dump nor BTF carry
        raise CommandError("-l needs DWARF line tables; the dump has symbols and BTF only")
    if opts.active:
        tasks = [t for _, t in sorted(active_tasks(prog).items())]
    elif opts.tasks:
        tasks = [task_from_arg(session, a) for a in opts.tasks]
    else:
        try:
            current = session.extra.get("task") or panic_task(prog)
        except TypesMissingError as exc:  # issue 10 item 7: the panic CPU's stack still
            return _bt_without_types(prog, exc)
        if current is None:
            raise CommandError("no panic task found; give a pid")
        tasks = [current]  # type: ignore[list-item]
    return "\n".join(_bt_text(prog, t, opts) for t in tasks)


def _bt_without_types(prog: Program, why: TypesMissingError) -> str:
    """No types to find tasks with: the panic CPU's frames from its registers."""
    found = panic_cpu_trace(prog)
    if found is None:
        raise CommandError(str(why))
    cpu, frames = found
    out = [f"CPU: {cpu}  (task unknown: {why})\n"]
    out += [f"{'#' + str(i):>3} [{f.slot:x}] {f.name} at {f.pc:x}\n" for i, f in enumerate(frames)]
    return "".join(out)


_STATE_FILTERS = {"RU", "IN", "UN", "ST", "TR", "ZO", "DE", "PA", "ID", "WA", "NE"}


@command("foreach", "display command data for multiple tasks",
         Arg("words", nargs="+", metavar="[STATE] bt|ps|files"),
         usage="foreach [STATE] bt|ps|files")  # fmt: skip
def cmd_foreach(session: Session, opts: argparse.Namespace) -> str:
    args = opts.words
    states = {a for a in args if a in _STATE_FILTERS}
    verbs = [a for a in args if a not in states]
    if not verbs or verbs[0] not in ("bt", "files", "ps"):
        raise CommandError("foreach supports bt, files and ps")
    prog = session.prog
    out = []
    for task in all_tasks(prog):
        if states and task_state_crash(task) not in states:
            continue
        if verbs[0] == "bt":
            out.append(format_backtrace(prog, task, stack_trace(prog, task)))
        elif verbs[0] == "files":
            out.append(_files(prog, task))
        else:
            out.append(ps_table(session, False, False, [str(int(task.pid))]).splitlines(True)[-1])
    return "\n".join(out) if verbs[0] != "ps" else "".join(out)


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


@command("files", "open files", Arg("task", nargs="?"), usage="files [pid | task]")
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


@command("set", "set the context task", Arg("task", nargs="?"), usage="set [pid | task]")
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
    return (
        f'    PID: {int(task.pid)}\nCOMMAND: "{shown(task_comm(task))}"\n   TASK: {int(task):x}\n'
        f"    CPU: {task_cpu(task)}\n  STATE: {state}\n"
    )
