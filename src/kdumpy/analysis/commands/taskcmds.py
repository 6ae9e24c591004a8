"""ps, foreach, files, runq, set."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable

from kdumpy.analysis.commands import parse_cpus, parse_number
from kdumpy.analysis.commands.apicode import (
    ALL_TASKS,
    ALL_TASKS_NAMES,
    address_expr,
    api_code,
    task_expr,
)
from kdumpy.analysis.commands.backtrace import format_backtrace
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.output import fields, quoted
from kdumpy.analysis.commands.taskinfo import task_signals
from kdumpy.analysis.commands.tasksel import all_tasks, task_from_arg, task_line
from kdumpy.analysis.commands.vmcmds import task_vm
from kdumpy.analysis.helpers.files import (
    file_reference_matches,
    file_type,
    task_files,
    task_root_cwd,
)
from kdumpy.analysis.helpers.mm import task_rss_vsz, totalram_pages
from kdumpy.analysis.helpers.mount import dentry_path
from kdumpy.analysis.helpers.pagecache import page_cache_rows, page_cache_size, page_flag_names
from kdumpy.analysis.helpers.runqueue import runqueue_tasks
from kdumpy.analysis.helpers.tasks import (
    active_tasks,
    cpu_of_active_task,
    cpu_rq,
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

_PS_ROW = """    rss, vsz = task_rss_vsz(prog, task)
    print(int(task.pid), int(task.real_parent.pid), task_cpu(task), f"{int(task):x}",
          task_state_crash(task), vsz, rss, task_comm(task))"""
_PS_NAMES = {"task_rss_vsz", "task_cpu", "task_state_crash", "task_comm"}


def ps_python(opts: argparse.Namespace) -> str:
    filters = []
    names = _PS_NAMES | ALL_TASKS_NAMES
    kthread = "is_kthread(task) or int(task.pid) == 0"
    if opts.kernel:
        filters.append(f"    if not ({kthread}):\n        continue")
    if opts.user:
        filters.append(f"    if {kthread}:\n        continue")
    if opts.kernel or opts.user:
        names.add("is_kthread")
    if opts.wanted:
        filters.append(
            f"    if str(int(task.pid)) not in {opts.wanted!r} "
            f"and task_comm(task) not in {opts.wanted!r}:\n        continue"
        )
    body = "\n".join([*filters, _PS_ROW])
    return api_code(names, f"{ALL_TASKS}\nfor task in tasks:\n{body}\n")


# Scheduling policies (include/uapi/linux/sched.h; ISO never merged, crash takes it).
_POLICIES = {"NORMAL": 0, "OTHER": 0, "FIFO": 1, "RR": 2, "BATCH": 3, "ISO": 4, "IDLE": 5,
             "DEADLINE": 6}  # fmt: skip


def _policies(text: str) -> set[int]:
    """``-y``: policy names or numbers, comma-separated, any case."""
    out = set()
    for word in text.split(","):
        if word.upper() in _POLICIES:
            out.add(_POLICIES[word.upper()])
        elif word.isdigit():
            out.add(int(word))
        else:
            raise argparse.ArgumentTypeError(f"invalid policy: {word}")
    return out


@command("ps", "display process status information",
         Arg("-k", dest="kernel", action="store_true", help="kernel threads only"),
         Arg("-u", dest="user", action="store_true", help="user tasks only"),
         Arg("-G", dest="leaders", action="store_true", help="thread group leaders only"),
         Arg("-A", dest="active", action="store_true", help="the task active on each CPU"),
         Arg("-y", dest="policies", type=_policies, metavar="policy[,policy]",
             help="these scheduling policies only (NORMAL, FIFO, RR, BATCH, IDLE, "
                  "DEADLINE or numbers)"),
         Arg("-S", dest="summary", action="store_true", help="how many tasks in each state"),
         Arg("wanted", nargs="*", metavar="pid|comm", help="pids or command names"),
         usage="ps [-k|-u] [-G] [-A] [-y policy] [-S] [pid|comm ...]",
         python=ps_python)  # fmt: skip
def cmd_ps(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    active = {int(t) for t in active_tasks(prog).values()} if opts.active else set()
    chosen = []
    for task in all_tasks(prog):
        kthread = _is_kernel_thread(task)
        if (opts.kernel and not kthread) or (opts.user and kthread):
            continue
        if opts.leaders and int(task) != int(task.group_leader):
            continue
        if opts.active and int(task) not in active:
            continue
        if opts.policies is not None and int(task.policy) not in opts.policies:
            continue
        wanted = opts.wanted
        if wanted and str(int(task.pid)) not in wanted and task_comm(task) not in wanted:
            continue
        chosen.append(task)
    if opts.summary:
        counts = Counter(task_state_crash(task) for task in chosen)
        return "".join(f"  {state}: {count}\n" for state, count in counts.items())
    row = _ps_row(prog)
    return _PS_HEADER + "".join(row(task) for task in chosen)


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


def foreach_python(opts: argparse.Namespace) -> str:
    states = [a for a in opts.words if a in _STATE_FILTERS]
    verbs = [a for a in opts.words if a not in states]
    verb = verbs[0] if verbs else "bt"
    if verb in ("vm", "sig"):  # one task's code is `vm --python` / `sig --python`
        raise CommandError(f"foreach {verb} has no Python equivalent; see '{verb} PID --python'")
    names = ALL_TASKS_NAMES | {"task_state_crash"}
    head = ALL_TASKS + "\nfor task in tasks:\n"
    if states:
        head += f"    if task_state_crash(task) not in {states!r}:\n        continue\n"
    if verb == "ps":
        return api_code(names | _PS_NAMES, head + _PS_ROW + "\n")
    if verb == "files":
        return api_code(names | {"task_files"}, head + _FILES_ROWS)
    return api_code(
        names | {"stack_trace", "task_comm"},
        head
        + """\
    print(f"PID: {int(task.pid)}  TASK: {int(task):x}  COMMAND: {task_comm(task)!r}")
    for i, frame in enumerate(stack_trace(prog, task)):
        print(f"#{i} [{frame.slot:x}] {frame.name} at {frame.pc:x}")
""",
    )


_FILES_ROWS = """\
    for fd, file, dentry, inode, kind, path in task_files(prog, task):
        print(fd, f"{file:016x} {dentry:016x} {inode:016x}", kind, path)
"""


@command("foreach", "display command data for multiple tasks",
         Arg("words", nargs="+", metavar="[STATE] bt|ps|files|vm|sig",
             help="a task state (RU, IN, UN, ...) and a command"),
         usage="foreach [STATE] bt|ps|files|vm|sig", python=foreach_python)  # fmt: skip
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


def _files(prog: Program, task: Object, cache: bool = False, ref: str | None = None) -> str:
    """One task's root, cwd and open files; ``cache`` (``-c``): each file's inode,
    address_space and cached pages instead of its file and dentry; ``ref`` (``-R``):
    only the files referring to it, and nothing when neither they nor the root or cwd
    do."""
    root, cwd = task_root_cwd(prog, task)
    rows = []
    for fd, file, dentry, inode, kind, path in task_files(prog, task):
        mapping = _mapping(prog, inode)
        if ref is not None:
            addresses = (inode, mapping) if cache else (file, dentry, inode)
            if not file_reference_matches(ref, fd, addresses, path):
                continue
        if cache:
            space = prog.pointer("struct address_space", mapping)
            nrpages = page_cache_size(space) if mapping else 0
            rows.append(f"{fd:>3} {inode:016x} {mapping:016x} {nrpages:>7} {kind:<4} "
                        f"{shown(path)}\n")  # fmt: skip
        else:
            rows.append(f"{fd:>3} {file:016x} {dentry:016x} {inode:016x} {kind:<4} "
                        f"{shown(path)}\n")  # fmt: skip
    if ref is not None and not rows and ref not in root and ref not in cwd:
        return ""
    header = (" FD      INODE          I_MAPPING     NRPAGES TYPE PATH\n" if cache else
              " FD       FILE            DENTRY           INODE       TYPE PATH\n")  # fmt: skip
    out = [task_line(task), f"ROOT: {shown(root)}    CWD: {shown(cwd)}\n"]
    if rows:
        out += [header, *rows]
    elif ref is None:
        out.append("No open files\n")
    return "".join(out)


def _mapping(prog: Program, inode: int) -> int:
    """An inode's ``i_mapping`` (0 for an unreadable file's inode)."""
    return int(prog.object_at("struct inode", inode).i_mapping) if inode else 0


def _files_dentry(prog: Program, address: int) -> str:
    """``files -d``: a dentry's inode, superblock, file type and full path."""
    dentry = prog.pointer("struct dentry", address)
    inode = dentry.d_inode
    sb, kind = (int(inode.i_sb), file_type(inode)) if int(inode) else (0, "")
    return ("     DENTRY           INODE           SUPERBLK     TYPE PATH\n"
            f"{address:016x} {int(inode):016x} {sb:016x} {kind:<4} "
            f"{shown(dentry_path(prog, dentry))}\n")  # fmt: skip


def _files_inode(prog: Program, address: int) -> str:
    """``files -p``: an inode's cached page count, then each cached page (kmem -p's
    columns, the flags decoded)."""
    mapping = prog.object_at("struct inode", address).i_mapping
    out = ["     INODE        NRPAGES\n", f"{address:016x} {page_cache_size(mapping):>8}\n", "\n"]
    rows = page_cache_rows(prog, mapping)
    if rows:
        out.append("      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS\n")
    for r in rows:
        names = shown(",".join(page_flag_names(prog, r.flags)))  # names from the dump's BTF
        out.append(f"{r.page:016x} {r.phys:>9x} {r.mapping:016x} {r.page_index:>8x} "
                   f"{r.refcount:>3} {r.flags:x} {names}\n")  # fmt: skip
    return "".join(out)


def files_python(opts: argparse.Namespace) -> str:
    if opts.dentry is not None:
        return api_code(
            ["dentry_path", "file_type"],
            f"""
dentry = prog.pointer("struct dentry", {address_expr(opts.dentry)})
inode = dentry.d_inode
print(hex(int(dentry)), hex(int(inode)), hex(int(inode.i_sb)), file_type(inode),
      dentry_path(prog, dentry))
""",
        )
    if opts.inode is not None:
        return api_code(
            ["page_cache_rows", "page_cache_size", "page_flag_names"],
            f"""
mapping = prog.object_at("struct inode", {address_expr(opts.inode)}).i_mapping
print("pages cached:", page_cache_size(mapping))
for row in page_cache_rows(prog, mapping):
    print(hex(row.page), hex(row.phys), hex(row.mapping), row.page_index, row.refcount,
          page_flag_names(prog, row.flags))
""",
        )
    expr, names = task_expr(opts.tasks[0] if opts.tasks else None)
    rows = "\n".join(line[4:] for line in _FILES_ROWS.splitlines())
    if opts.cache:
        rows = """for fd, file, dentry, inode, kind, path in task_files(prog, task):
    mapping = prog.object_at("struct inode", inode).i_mapping
    print(fd, f"{inode:016x} {int(mapping):016x}", page_cache_size(mapping), kind, path)"""
        names = names | {"page_cache_size"}
    if opts.reference is not None:
        what = "(inode, int(mapping))" if opts.cache else "(file, dentry, inode)"
        lines = rows.splitlines()
        test = f"    if not file_reference_matches({opts.reference!r}, fd, {what}, path):"
        at = 2 if opts.cache else 1  # after the line that reads what is compared
        rows = "\n".join([*lines[:at], test, "        continue", *lines[at:]])
        names = names | {"file_reference_matches"}
    return api_code(names | {"task_files"}, f"task = {expr}\n{rows}\n")


@command("files", "open files",
         Arg("tasks", nargs="*", metavar="pid|task"),
         Arg("-d", dest="dentry", metavar="dentry",
             help="a dentry's inode, superblock, file type and full path"),
         Arg("-p", dest="inode", metavar="inode", help="the pages an inode has cached"),
         Arg("-c", dest="cache", action="store_true",
             help="each file's inode, address_space and number of cached pages"),
         Arg("-R", dest="reference", metavar="reference",
             help="only the files referring to this fd, path, or file, dentry, inode "
                  "or address_space address"),
         usage="files [-d dentry] | [-p inode] | [-c] [-R reference] [pid | task] ...",
         python=files_python)  # fmt: skip
def cmd_files(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if (opts.dentry is not None or opts.inode is not None) and (
        opts.cache or opts.reference is not None or opts.tasks
    ):
        raise CommandError("-d and -p take no task, -c or -R")
    if opts.dentry is not None and opts.inode is not None:
        raise CommandError("give -d or -p, not both")
    if opts.dentry is not None:
        return _files_dentry(prog, parse_number(opts.dentry))
    if opts.inode is not None:
        return _files_inode(prog, parse_number(opts.inode))
    if opts.tasks:
        tasks = [task_from_arg(session, t) for t in opts.tasks]
    else:
        task = panic_task(prog)
        if task is None:
            raise CommandError("no task given")
        tasks = [task]
    blocks = [_files(prog, task, opts.cache, opts.reference) for task in tasks]
    return "\n".join(b for b in blocks if b)


def runq_python(opts: argparse.Namespace) -> str:
    return api_code(
        ["runqueue_tasks", "task_comm"],
        """
for cpu in prog.online_cpus:
    rq, current, rt, cfs = runqueue_tasks(prog, cpu)
    print(f"CPU {cpu} RUNQUEUE: {rq:x}  CURRENT: {int(current.pid)} {task_comm(current)}")
    for prio, task in rt + cfs:
        if int(task) != int(current):  # the running task is CURRENT, not queued
            print(f"  [{prio:3d}] PID: {int(task.pid)} TASK: {int(task):x} {task_comm(task)}")
""",
    )


@command("runq", "run queue",
         Arg("-c", dest="cpus", type=parse_cpus, metavar="cpus", help="these CPUs only"),
         Arg("-t", dest="times", action="store_true",
             help="each run queue's clock and when its task started running (ns)"),
         Arg("-T", dest="lag", action="store_true",
             help="how far each run queue's clock lags the latest"),
         Arg("-m", dest="elapsed", action="store_true",
             help="how long each CPU's task has been running"),
         usage="runq [-t | -T | -m] [-c cpus]", python=runq_python)  # fmt: skip
def cmd_runq(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    cpus = prog.online_cpus if opts.cpus is None else opts.cpus
    if opts.times:
        return _runq_times(prog, cpus)
    if opts.lag:
        return _runq_lag(prog, cpus)
    if opts.elapsed:
        return _runq_elapsed(prog, cpus)
    out = []
    for cpu in cpus:
        rq, curr, rt, cfs = runqueue_tasks(prog, cpu)
        # As crash: the running task is CURRENT, not one of the queued (cfs_rq->curr).
        cfs = [(prio, task) for prio, task in cfs if int(task) != int(curr)]
        out.append(f"CPU {cpu} RUNQUEUE: {rq:x}\n")
        pid, comm = int(curr.pid), shown(task_comm(curr))
        out.append(f'  CURRENT: PID: {pid:<6} TASK: {int(curr):x}  COMMAND: "{comm}"\n')
        # crash names each queue by its address: &rq->rt.active, &rq->cfs.tasks_timeline
        heads = (rq + prog.offsetof("struct rq", "rt.active"),
                 rq + prog.offsetof("struct rq", "cfs.tasks_timeline"))  # fmt: skip
        titles = ("RT PRIO_ARRAY", "CFS RB_ROOT")
        for title, head, queued in zip(titles, heads, (rt, cfs), strict=True):
            out.append(f"  {title}: {head:x}\n")
            if not queued:
                out.append("     [no tasks queued]\n")
            for prio, task in queued:
                out.append(
                    f"     [{prio:3d}] PID: {int(task.pid):<6} TASK: {int(task):x}  "
                    f'COMMAND: "{shown(task_comm(task))}"\n'
                )
        out.append("\n")
    return "".join(out)


def _header(task: Object) -> str:
    return (f"PID: {int(task.pid):<7} TASK: {int(task):x}  "
            f'COMMAND: "{shown(task_comm(task))}"\n')  # fmt: skip


def _runq_times(prog: Program, cpus: list[int]) -> str:
    """``runq -t``: the run queue's clock, and when its current task last arrived."""
    out = []
    for cpu in cpus:
        rq = cpu_rq(prog, cpu)
        curr = rq.curr
        arrived = int(curr.sched_info.last_arrival)
        out.append(f" CPU {cpu}: {int(rq.clock):016d}\n        {arrived:016d}  {_header(curr)}")
    return "".join(out)


def _runq_lag(prog: Program, cpus: list[int]) -> str:
    """``runq -T``: each clock behind the latest one, latest first."""
    clocks = sorted(((int(cpu_rq(prog, cpu).clock), cpu) for cpu in cpus), reverse=True)
    if not clocks:
        return ""
    width = max(len(f"CPU {cpu}") for _, cpu in clocks)
    latest = clocks[0][0]
    return "".join(f"{f'CPU {cpu}':>{2 + width}}: {(latest - clock) / 1e9:.2f} secs\n"
                   for clock, cpu in clocks)  # fmt: skip


def _runq_elapsed(prog: Program, cpus: list[int]) -> str:
    """``runq -m``: how long each CPU's task has run, as days hh:mm:ss.ms."""
    rows = []
    for cpu in cpus:
        rq = cpu_rq(prog, cpu)
        ns = max(int(rq.clock) - int(rq.curr.sched_info.last_arrival), 0)
        secs, ms = divmod(ns // 1_000_000, 1000)
        mins, secs = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        days, hours = divmod(hours, 24)
        rows.append((f"CPU {cpu}", f"{days} {hours:02}:{mins:02}:{secs:02}.{ms:03}", rq.curr))
    cw = max((len(c) for c, _, _ in rows), default=0)
    ew = max((len(e) for _, e, _ in rows), default=0)
    return "".join(f"{c:>{2 + cw}}: [{e:>{ew}}]  {_header(t)}" for c, e, t in rows)


def set_python(opts: argparse.Namespace) -> str:
    expr, names = task_expr(opts.task)
    if opts.cpu is not None:
        expr, names = f"active_tasks(prog)[{opts.cpu}]", {"active_tasks"}
    return api_code(
        names | {"task_comm", "task_cpu", "task_state_crash"},
        f"""
task = {expr}
print(int(task.pid), task_comm(task), f"{{int(task):x}}", task_cpu(task), task_state_crash(task))
""",
    )


@command("set", "set the context task", Arg("task", nargs="?", metavar="pid|task"),
         Arg("-c", dest="cpu", type=int, metavar="cpu", help="the task active on this CPU"),
         Arg("-p", dest="panic", action="store_true", help="the panic task"),
         usage="set [pid | task | -c cpu | -p]", python=set_python)  # fmt: skip
def cmd_set(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if sum(map(bool, (opts.task, opts.cpu is not None, opts.panic))) > 1:
        raise CommandError("give one of a task, -c cpu or -p")
    if opts.task:
        session.extra["task"] = task_from_arg(session, opts.task)
    elif opts.cpu is not None:
        active = active_tasks(prog)
        if opts.cpu not in active:
            raise CommandError(f"no active task on CPU {opts.cpu}")
        session.extra["task"] = active[opts.cpu]
    elif opts.panic:
        session.extra["task"] = panic_task(prog)
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
