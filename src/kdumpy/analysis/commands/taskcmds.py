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
from kdumpy.analysis.commands.backtrace import bt_text, cmd_bt, format_backtrace
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
from kdumpy.analysis.helpers.resource import task_rlimits
from kdumpy.analysis.helpers.runqueue import (
    GroupRow,
    cfs_group_rows,
    root_task_group,
    rt_tasks,
    runqueue_tasks,
    task_group_cfs_rq,
)
from kdumpy.analysis.helpers.system import format_uptime, task_run_seconds
from kdumpy.analysis.helpers.tasks import (
    active_tasks,
    cpu_of_active_task,
    cpu_rq,
    is_kthread,
    panic_task,
    task_ancestors,
    task_comm,
    task_cpu,
    task_last_arrival,
    task_saved_sp,
    task_state_crash,
)
from kdumpy.analysis.helpers.usermem import mm_cmdline, mm_environ
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.unwind import stack_trace
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown

_PS_ROW = """    rss, vsz = task_rss_vsz(prog, task)
    print(int(task.pid), int(task.real_parent.pid), task_cpu(task), f"{int(task):x}",
          task_state_crash(task), vsz, rss, task_comm(task))"""
_PS_NAMES = {"task_rss_vsz", "task_cpu", "task_state_crash", "task_comm"}
# What each ps view prints per chosen task (``chosen``: the tasks after the filters).
_PS_VIEW_CODE = {
    "parents": ({"task_ancestors"}, """
for task in chosen:
    for depth, t in enumerate(task_ancestors(task)):
        print(" " * depth, int(t.pid), f"{int(t):x}", task_comm(t))
"""),
    "children": (set(), """
for task in chosen:
    kids = [t for t in tasks if int(t.parent) == int(task) and int(t) != int(task)]
    print(int(task.pid), task_comm(task), [int(t.pid) for t in kids])
"""),
    "times": ({"task_run_seconds"}, """
for task in sorted(chosen, key=lambda t: int(t.start_time)):
    print(int(task.pid), task_run_seconds(prog, task), int(task.start_time),
          int(task.utime), int(task.stime))
"""),
    "last_run": ({"task_last_arrival"}, """
for task in sorted(chosen, key=task_last_arrival, reverse=True):
    print(task_last_arrival(task), task_state_crash(task), int(task.pid), task_comm(task))
"""),
    "elapsed": ({"task_last_arrival", "cpu_rq"}, """
for task in sorted(chosen, key=task_last_arrival, reverse=True):
    clock = int(cpu_rq(prog, task_cpu(task)).clock)
    print(max(clock - task_last_arrival(task), 0), task_state_crash(task), int(task.pid),
          task_comm(task))
"""),
    "arguments": ({"mm_cmdline", "mm_environ", "is_kthread"}, """
for task in chosen:
    if int(task.mm) and not is_kthread(task):  # a kernel thread has no user memory
        print(int(task.pid), mm_cmdline(prog, task.mm).strings,
              mm_environ(prog, task.mm).strings)
"""),
    "threads": (set(), """
for task in chosen:
    if int(task) == int(task.group_leader):
        threads = [t for t in tasks if int(t.tgid) == int(task.tgid) and int(t) != int(task)]
        print(int(task.pid), task_comm(task), [int(t.pid) for t in threads])
"""),
    "rlimits": ({"task_rlimits"}, """
for task in chosen:
    print(int(task.pid), task_comm(task))
    for limit in task_rlimits(task):  # None: unlimited
        print(limit.name, limit.cur, limit.max)
"""),
    "summary": (set(), """
print(collections.Counter(task_state_crash(task) for task in chosen))
"""),
    "kstackp": ({"task_saved_sp", "active_tasks", "task_rss_vsz"}, """
running = {int(t) for t in active_tasks(prog).values()}  # these saved no stack pointer
for task in chosen:
    rss, vsz = task_rss_vsz(prog, task)
    sp = "--" if int(task) in running else f"{task_saved_sp(task):x}"
    print(int(task.pid), int(task.real_parent.pid), task_cpu(task), sp,
          task_state_crash(task), vsz, rss, task_comm(task))
"""),
}  # fmt: skip


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
    if opts.leaders:
        filters.append("    if int(task) != int(task.group_leader):\n        continue")
    if opts.policies is not None:
        filters.append(
            f"    if int(task.policy) not in {sorted(opts.policies)!r}:\n        continue"
        )
    if opts.active:
        names.add("active_tasks")
        filters.append(
            "    if int(task) not in {int(t) for t in active_tasks(prog).values()}:\n"
            "        continue"
        )
    if opts.cpus is not None and opts.cpus not in ("a", "all"):
        filters.append(f"    if task_cpu(task) not in {parse_cpus(opts.cpus)!r}:\n        continue")
    if opts.wanted:
        filters.append(
            f"    if str(int(task.pid)) not in {opts.wanted!r} "
            f"and task_comm(task) not in {opts.wanted!r}:\n        continue"
        )
    views = [view for view in (*_PS_VIEWS, "kstackp") if vars(opts)[view]]
    view = views[0] if views and views[0] != "active" else None
    if view is None:
        body = "\n".join([*filters, _PS_ROW])
        return api_code(names, f"{ALL_TASKS}\nfor task in tasks:\n{body}\n")
    extra, code = _PS_VIEW_CODE[view]
    choose = "\n".join([*filters, "    chosen.append(task)"])
    return api_code(
        names | extra,
        f"{ALL_TASKS}\nchosen = []\nfor task in tasks:\n{choose}\n{code}",
        ["collections"] if view == "summary" else [],
    )


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


# ps's views other than the table: crash takes one at a time.
_PS_VIEWS = ("parents", "children", "times", "last_run", "elapsed", "arguments", "threads",
             "rlimits", "summary", "active")  # fmt: skip
_PS_EXCLUSIVE = "-a, -t, -c, -p, -g, -l, -m, -S, -r and -A flags are all mutually-exclusive"


@command("ps", "display process status information",
         Arg("-k", dest="kernel", action="store_true", help="kernel threads only"),
         Arg("-u", dest="user", action="store_true", help="user tasks only"),
         Arg("-G", dest="leaders", action="store_true", help="thread group leaders only"),
         Arg("-y", dest="policies", type=_policies, metavar="policy[,policy]",
             help="these scheduling policies only (NORMAL, FIFO, RR, BATCH, IDLE, "
                  "DEADLINE or numbers)"),
         Arg("-s", dest="kstackp", action="store_true",
             help="the saved kernel stack pointer (KSTACKP) instead of the task_struct"),
         Arg("-p", dest="parents", action="store_true", help="each task's parental hierarchy"),
         Arg("-c", dest="children", action="store_true", help="each task's children"),
         Arg("-t", dest="times", action="store_true",
             help="run time, start time, user and system time"),
         Arg("-l", dest="last_run", action="store_true",
             help="when each task last ran (sched_info.last_arrival), latest first"),
         Arg("-m", dest="elapsed", action="store_true",
             help="as -l, as days hh:mm:ss.ms before its CPU's run queue clock"),
         Arg("-C", dest="cpus", metavar="cpus",
             help="with -l or -m: tasks by CPU, in blocks (1,3,5-7 or a[ll])"),
         Arg("-a", dest="arguments", action="store_true",
             help="the arguments and environment of user tasks (from their memory)"),
         Arg("-g", dest="threads", action="store_true", help="tasks by thread group"),
         Arg("-r", dest="rlimits", action="store_true", help="resource limits"),
         Arg("-S", dest="summary", action="store_true", help="how many tasks in each state"),
         Arg("-A", dest="active", action="store_true", help="the task active on each CPU"),
         Arg("-H", dest="no_header", action="store_true", help="no header line"),
         Arg("wanted", nargs="*", metavar="pid|task|comm",
             help="pids, task_struct addresses or command names"),
         usage="ps [-k|-u|-G|-y policy] [-s] [-p|-c|-t|-[l|m][-C cpus]|-a|-g|-r|-S|-A] [-H] "
               "[pid|task|comm ...]",
         python=ps_python)  # fmt: skip
def cmd_ps(session: Session, opts: argparse.Namespace) -> str:
    return ps_text(session, opts)


def ps_text(session: Session, opts: argparse.Namespace, only: set[int] | None = None) -> str:
    """ps's output for parsed options, over the tasks whose addresses are ``only`` when
    given (``foreach ... ps -option``) rather than over the named or all tasks."""
    prog = session.prog
    views = [view for view in _PS_VIEWS if vars(opts)[view]]
    if len(views) > 1:
        raise CommandError(_PS_EXCLUSIVE)
    if opts.kernel and opts.user:
        raise CommandError("-u and -k are mutually exclusive")
    timestamps = opts.last_run or opts.elapsed
    if opts.cpus is not None and not timestamps:
        raise CommandError("-C option is only applicable with -l and -m")
    if opts.cpus is not None and opts.wanted:
        raise CommandError("-C option is not applicable with specified tasks")
    if opts.leaders and timestamps:
        raise CommandError(f"-G not supported with -{'l' if opts.last_run else 'm'} option")
    if opts.summary and opts.wanted:
        raise CommandError("-S option takes no arguments")
    tasks = all_tasks(prog)
    chosen = _ps_chosen(session, tasks, opts)
    if only is not None:
        chosen = [task for task in chosen if int(task) in only]
    if opts.summary:
        counts = Counter(task_state_crash(task) for task in chosen)
        return "".join(f"  {state}: {count}\n" for state, count in counts.items())
    if opts.parents:
        return "".join(_ps_parents(task) + "\n" for task in chosen)
    if opts.children:
        children: dict[int, list[Object]] = {}  # by parent: one pass, not one per task
        for t in tasks:
            children.setdefault(int(t.parent), []).append(t)
        return "".join(_ps_children(task, children) + "\n" for task in chosen)
    if opts.times:
        if not opts.wanted:  # crash lists every task by start time, oldest first
            chosen = sorted(chosen, key=lambda t: int(t.start_time))
        return "".join(_ps_times(prog, task) for task in chosen)
    if timestamps:
        return _ps_last_run(prog, tasks, chosen, opts)
    if opts.arguments:
        return "".join(_ps_arguments(prog, task) for task in chosen)
    if opts.threads:
        return _ps_threads(chosen, tasks, bool(opts.wanted))
    if opts.rlimits:
        return "".join(_ps_rlimits(task) for task in chosen)
    row = _ps_row(prog, opts.kstackp)
    header = "" if opts.no_header else _ps_header(opts.kstackp)
    return header + "".join(row(task) for task in chosen)


def _ps_chosen(session: Session, tasks: list[Object], opts: argparse.Namespace) -> list[Object]:
    """The tasks ps shows, in crash's order: every task (idle tasks first, then by pid)
    that passes the filters and, if any are named, matches a pid, an address or a name
    (with -g, a name matches the group leaders only)."""
    prog = session.prog
    active = {int(t) for t in active_tasks(prog).values()} if opts.active else set()
    pids = {int(w) for w in opts.wanted if _is_pid(w)}
    addresses = {int(task_from_arg(session, w)) for w in opts.wanted
                 if not _is_pid(w) and _is_address(w)}  # fmt: skip
    names = {w.removeprefix("\\") for w in opts.wanted}
    chosen = []
    for task in tasks:
        kthread = _is_kernel_thread(task)
        if (opts.kernel and not kthread) or (opts.user and kthread):
            continue
        if opts.leaders and int(task) != int(task.group_leader):
            continue
        if opts.active and int(task) not in active:
            continue
        if opts.policies is not None and int(task.policy) not in opts.policies:
            continue
        if opts.wanted:
            by_name = task_comm(task) in names and (
                not opts.threads or int(task.pid) == int(task.tgid)
            )
            if int(task.pid) not in pids and int(task) not in addresses and not by_name:
                continue
        chosen.append(task)
    return chosen


def _is_pid(word: str) -> bool:
    return word.isdigit() and len(word) < 8


def _is_address(word: str) -> bool:
    """A hex task_struct address (a word of hex digits as long as a kernel pointer)."""
    digits = word.removeprefix("0x")
    return len(digits) >= 9 and all(c in "0123456789abcdefABCDEF" for c in digits)


def _ps_parents(task: Object) -> str:
    """``-p``: the task's ancestors from the idle task down, one more space each."""
    return "".join(" " * depth + task_line(t) for depth, t in enumerate(task_ancestors(task)))


def _ps_children(task: Object, children: dict[int, list[Object]]) -> str:
    """``-c``: the task, then every task whose parent it is (crash scans them all; CPU
    0's idle task, its own parent, is not its own child here)."""
    kids = [t for t in children.get(int(task), []) if int(t) != int(task)]
    lines = [task_line(task), *("  " + task_line(t) for t in kids)]
    return "".join(lines) if kids else "".join(lines) + "  (no children)\n"


def _ps_times(prog: Program, task: Object) -> str:
    """``-t``: how long the task has existed (jiffies at HZ, as crash), when it started
    (ns since boot) and its user and system time (ns), raw."""
    return (
        task_line(task) + f"    RUN TIME: {format_uptime(task_run_seconds(prog, task))}\n"
        f"  START TIME: {int(task.start_time)}\n"
        f"       UTIME: {int(task.utime)}\n"
        f"       STIME: {int(task.stime)}\n\n"
    )


def _nanoseconds(ns: int) -> str:
    """``days hh:mm:ss.ms`` (crash's translate_nanoseconds)."""
    secs, ms = divmod(ns // 1_000_000, 1000)
    mins, secs = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    days, hours = divmod(hours, 24)
    return f"{days} {hours:02}:{mins:02}:{secs:02}.{ms:03}"


def _cpu_spec(prog: Program, text: str) -> list[int]:
    """``-C``: ``a`` or ``all`` (every possible CPU), or a CPU list."""
    if text in ("a", "all"):
        return list(prog.possible_cpus)
    try:
        cpus = parse_cpus(text)
    except argparse.ArgumentTypeError as exc:
        raise CommandError(str(exc)) from None
    bad = [c for c in cpus if c not in prog.possible_cpus]
    if bad:
        raise CommandError(f"invalid cpu: {bad[0]}")
    return cpus


def _ps_last_run(
    prog: Program, tasks: list[Object], chosen: list[Object], opts: argparse.Namespace
) -> str:
    """``-l`` / ``-m``: latest run first; ``-m`` as the time before the run queue clock
    of the task's CPU; ``-C``: in blocks by CPU (and ``-m``'s days column aligned)."""
    # latest first; a stable sort keeps crash's task order among equal stamps
    chosen = sorted(chosen, key=task_last_arrival, reverse=True)
    width = len(str(max(task_last_arrival(t) for t in tasks)))
    clocks: dict[int, int] = {}

    def stamp(task: Object, pad: bool) -> str:
        if opts.last_run:
            return f"{task_last_arrival(task):>{width}}"
        cpu = task_cpu(task)
        if cpu not in clocks:
            clocks[cpu] = int(cpu_rq(prog, cpu).clock)
        text = _nanoseconds(max(clocks[cpu] - task_last_arrival(task), 0))
        if not pad:
            return text
        days = len(_nanoseconds(clocks[cpu]).split()[0])
        return " " * max(0, days - len(text.split()[0])) + text

    def line(task: Object, pad: bool) -> str:
        return f"[{stamp(task, pad)}] [{task_state_crash(task)}]  {task_line(task)}"

    if opts.cpus is None:
        return "".join(line(task, bool(opts.wanted)) for task in chosen)
    blocks = []
    for cpu in _cpu_spec(prog, opts.cpus):
        if cpu not in prog.online_cpus:
            blocks.append(f"CPU: {cpu} [OFFLINE]\n")
            continue
        rows = [line(task, True) for task in chosen if task_cpu(task) == cpu]
        blocks.append(f"CPU: {cpu}\n" + "".join(rows))
    return "\n".join(blocks)


def _ps_arguments(prog: Program, task: Object) -> str:
    """``-a``: the arguments and the environment, read from the task's user memory."""
    head = task_line(task)
    mm = task.mm
    if not int(mm) or _is_kernel_thread(task):
        return head + "ps: no user stack\n\n"
    try:
        argv, envp = mm_cmdline(prog, mm), mm_environ(prog, mm)
    except FaultError as exc:
        return head + f"ps: {exc}\n\n"
    more = " ..." if argv.truncated else ""
    out = [head, f"ARG: {' '.join(shown(a) for a in argv.strings)}{more}\n"]
    env = [shown(e) for e in envp.strings] + (["..."] if envp.truncated else [])
    out.append("ENV: " + "\n     ".join(env) + "\n\n")
    return "".join(out)


def _ps_threads(chosen: list[Object], tasks: list[Object], named: bool) -> str:
    """``-g``: each thread group once, its leader then its other threads (by tgid).  A
    named thread stands for its group; the idle tasks are one group (tgid 0), led by
    CPU 0's."""
    out = []
    seen: set[int] = set()
    groups: dict[int, list[Object]] = {}  # by tgid: one pass, not one per group
    for t in tasks:
        groups.setdefault(int(t.tgid), []).append(t)
    for task in chosen:
        leader = task.group_leader if int(task.pid) else tasks[0]
        if int(task) != int(leader) and not named:
            continue
        if int(leader) in seen:
            continue
        seen.add(int(leader))
        tgid = int(leader.tgid)
        threads = [t for t in groups.get(tgid, []) if int(t) != int(leader)]
        body = "".join("  " + task_line(t) for t in threads) or "  (no threads)\n"
        out.append(task_line(leader) + body + "\n")
    return "".join(out)


def _center(text: str, width: int, right: bool) -> str:
    """crash's mkstring CENTER: an odd space goes left (``right``) or right."""
    extra = max(0, width - len(text))
    left = extra // 2 + (extra % 2 if right else 0)
    return " " * left + text + " " * (extra - left)


def _ps_rlimits(task: Object) -> str:
    """``-r``: each limit's current and maximum, ``(unlimited)`` for RLIM_INFINITY."""
    limits = task_rlimits(task)
    name_w = max((len(r.name) for r in limits), default=6)
    val_w = len("(unlimited)")

    def value(v: int | None) -> str:
        return "(unlimited)" if v is None else _center(str(v), val_w, False)

    head = (f"  {'RLIMIT':>{name_w}}   {_center('CURRENT', val_w, True)}   "
            f"{_center('MAXIMUM', val_w, True)}")  # fmt: skip
    out = [task_line(task), head.rstrip() + "\n"]
    out += [f"  {r.name:>{name_w}}   {value(r.cur)}   {value(r.max)}".rstrip() + "\n"
            for r in limits]  # fmt: skip
    return "".join(out) + "\n"


_PS_HEADER = "   PID    PPID  CPU       TASK        ST  %MEM     VSZ    RSS  COMM\n"


def _ps_header(kstackp: bool) -> str:
    """The table's header; ``-s`` names the pointer column KSTACKP."""
    return _PS_HEADER.replace("      TASK      ", "     KSTACKP    ") if kstackp else _PS_HEADER


def _is_kernel_thread(task: Object) -> bool:
    return is_kthread(task) or int(task.pid) == 0


def _ps_row(prog: Program, kstackp: bool = False) -> Callable[[Object], str]:
    """The formatter of one task's ps line (``>`` marks a task active on a CPU); with
    ``kstackp`` the pointer column is the saved stack pointer (``--`` for a task running
    at the crash: it saved none)."""
    active = {int(t) for t in active_tasks(prog).values()}
    total_kb = max(1, totalram_pages(prog) * prog.dump.page_size // 1024)

    def row(task: Object) -> str:
        comm = task_comm(task)
        rss, vsz = task_rss_vsz(prog, task)
        mark = ">" if int(task) in active else " "
        name = f"[{shown(comm)}]" if _is_kernel_thread(task) else shown(comm)
        pointer = f"{int(task):016x}"
        if kstackp:
            running = int(task) in active
            pointer = _center("--", 16, True) if running else f"{task_saved_sp(task):016x}"
        return (
            f"{mark}{int(task.pid):>6} {int(task.real_parent.pid):>7} {task_cpu(task):>4}  "
            f"{pointer}  {task_state_crash(task)}  {100 * rss / total_kb:4.1f} "
            f"{vsz:>7} {rss:>6}  {name}\n"
        )

    return row


_STATE_FILTERS = {"RU", "IN", "UN", "ST", "TR", "ZO", "DE", "PA", "ID", "WA", "NE"}


def _foreach_words(words: list[str]) -> tuple[list[str], str, list[str]]:
    """``(states, command, its options)`` of foreach's words: task states (RU, IN, UN,
    ...) anywhere, the command, and after it the options passed to it (crash's
    ``-option``)."""
    states = [w for w in words if w in _STATE_FILTERS]
    rest = [w for w in words if w not in _STATE_FILTERS]
    if not rest or rest[0] not in _FOREACH_VERBS:
        raise CommandError("foreach supports bt, files, ps, vm and sig")
    verb, options = rest[0], rest[1:]
    for word in _option_flags(verb, options):
        if not word.startswith("-"):
            raise CommandError(f"{verb}: unexpected argument {word}")
    if options and verb not in _FOREACH_OPTIONS:
        raise CommandError(f"{verb} takes no options here")
    return states, verb, options


_FOREACH_VERBS = ("bt", "files", "ps", "vm", "sig")
# The options each command keeps when foreach runs it per task (bt's -a, -c and -p
# choose tasks themselves; sig's -l and -s name no task).
_FOREACH_OPTIONS = {
    "ps": None,
    "bt": {"-e", "-f", "-F", "-l"},
    "sig": {"-g"},
    "files": {"-c", "-R"},
}
# Options whose next word is their value (files -R REFERENCE), not a flag.
_FOREACH_VALUED = {"files": {"-R"}}


def _option_flags(verb: str, options: list[str]) -> list[str]:
    """The option words of *options* without the values the valued ones take."""
    valued, flags, skip = _FOREACH_VALUED.get(verb, set()), [], False
    for word in options:
        if not skip:
            flags.append(word)
        skip = not skip and word in valued
    return flags


def foreach_python(opts: argparse.Namespace) -> str:
    states, verb, options = _foreach_words(opts.words)
    if verb in ("vm", "sig"):  # one task's code is `vm --python` / `sig --python`
        raise CommandError(f"foreach {verb} has no Python equivalent; see '{verb} PID --python'")
    if options:  # the command's own code, for every task (states: filter its rows)
        line = " ".join([verb, *options])
        raise CommandError(f"foreach {line} has no Python equivalent; see '{line} --python'")
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
         Arg("words", nargs=argparse.REMAINDER, metavar="[STATE] bt|ps|files|vm|sig [-option]",
             help="a task state (RU, IN, UN, ...), a command, and options for it "
                  "(ps: any of its own; bt: -e -f -F -l; sig: -g)"),
         usage="foreach [STATE] bt|ps|files|vm|sig [-option ...]", python=foreach_python,
         passthrough=True)  # fmt: skip
def cmd_foreach(session: Session, opts: argparse.Namespace) -> str:
    states, verb, options = _foreach_words(opts.words)
    allowed = _FOREACH_OPTIONS.get(verb)
    for option in _option_flags(verb, options):
        if allowed is not None and option not in allowed:
            raise CommandError(f"{verb}: {option} is not applicable")
    prog = session.prog
    tasks = [t for t in all_tasks(prog) if not states or task_state_crash(t) in states]
    if verb == "ps":
        if not options:
            return "".join(map(_ps_row(prog), tasks))
        ps_opts = cmd_ps.parser.parse_words(options)
        if ps_opts.wanted or ps_opts.cpus is not None:
            raise CommandError("ps: -C is not applicable")
        return ps_text(session, ps_opts, {int(t) for t in tasks})
    if verb == "files":
        f_opts = cmd_files.parser.parse_words(options)
        blocks = [_files(prog, task, f_opts.cache, f_opts.reference) for task in tasks]
        return "\n".join(b for b in blocks if b)  # -R: only the tasks that refer to it
    if verb == "vm":
        return "\n".join(task_vm(prog, task) for task in tasks)
    if verb == "sig":
        group = "-g" in options  # each thread group once, by its leader
        chosen = [t for t in tasks if int(t.sighand) and (not group or _leads(t))]
        return "\n".join(task_signals(prog, task, group) for task in chosen)
    if options:
        bt_opts = cmd_bt.parser.parse_words(options)
        return "\n".join(bt_text(prog, task, bt_opts) for task in tasks)
    return "\n".join(format_backtrace(task, stack_trace(prog, task)) for task in tasks)


def _leads(task: Object) -> bool:
    return int(task) == int(task.group_leader)


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
    if opts.groups:
        return api_code(
            ["cpu_rq"],
            """from kdumpy.analysis.helpers.runqueue import (cfs_group_rows, root_task_group,
    task_group_cfs_rq)

root = root_task_group(prog)
for cpu in prog.online_cpus:
    rq, cfs_rq = cpu_rq(prog, cpu), task_group_cfs_rq(prog, root, cpu)
    print(f"CPU {cpu} ROOT_TASK_GROUP: {int(root):x}  CFS_RQ: {int(cfs_rq):x}")
    for row in cfs_group_rows(prog, cfs_rq, rq.curr):
        what = f"PID: {int(row.task.pid)}" if row.task is not None else f"{row.group:x}"
        print("   " * row.depth, what, row.name, "[CURRENT]" if row.current else "")
""",
        )
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
         Arg("-g", dest="groups", action="store_true",
             help="the queued tasks by task group (the CPU controller's cgroups)"),
         usage="runq [-t | -T | -m | -g] [-c cpus]", python=runq_python)  # fmt: skip
def cmd_runq(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    cpus = prog.online_cpus if opts.cpus is None else opts.cpus
    if sum(map(bool, (opts.times, opts.lag, opts.elapsed, opts.groups))) > 1:
        raise CommandError("give one of -t, -T, -m, -g")
    if opts.groups:
        return _runq_groups(prog, cpus)
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


def _runq_groups(prog: Program, cpus: list[int]) -> str:
    """``runq -g``: each CPU's running task, then its CFS run queue walked down the task
    group tree from ``root_task_group``, each group's queue heading its tasks (crash
    8.0.2's layout; real-time tasks are listed by priority when the kernel groups
    them too, ``CONFIG_RT_GROUP_SCHED``)."""
    root = root_task_group(prog)
    out = []
    for n, cpu in enumerate(cpus):
        rq = cpu_rq(prog, cpu)
        curr = rq.curr
        out.append(f"{chr(10) if n else ''}CPU {cpu}\n")
        out.append(f"  CURRENT: PID: {int(curr.pid):<5}  TASK: {int(curr):x}  "
                   f'COMMAND: "{shown(task_comm(curr))}"\n')  # fmt: skip
        if root.has_member_("rt_rq"):
            out.append(f"  ROOT_TASK_GROUP: {int(root):x}  RT_RQ: {int(root.rt_rq[cpu]):x}\n")
            rt = rt_tasks(prog, rq)
            out += [f"     [{prio:3d}] {_runq_task(task)}\n" for prio, task in rt]
            out += [] if rt else ["     [no tasks queued]\n"]
        cfs_rq = task_group_cfs_rq(prog, root, cpu)
        out.append(f"  ROOT_TASK_GROUP: {int(root):x}  CFS_RQ: {int(cfs_rq):x}\n")
        for row in cfs_group_rows(prog, cfs_rq, curr):
            out.append(_group_row(row))
    return "".join(out)


def _runq_task(task: Object) -> str:
    return f'PID: {int(task.pid):<5}  TASK: {int(task):x}  COMMAND: "{shown(task_comm(task))}"'


def _group_row(row: GroupRow) -> str:
    """A ``runq -g`` line: a task group's queue, a task (``[prio]``), or an empty queue."""
    if row.group:
        name = f" <{shown(row.name)}>" if row.name else ""
        throttled = " (THROTTLED)" if row.throttled else ""
        return (" " * (2 + 3 * row.depth) + f"TASK_GROUP: {row.group:x}  CFS_RQ: {row.queue:x} "
                f"{name}{throttled}\n")  # fmt: skip
    indent = " " * (5 + 3 * row.depth)
    if row.task is None:
        return f"{indent}[no tasks queued]\n"
    mark = " [CURRENT]" if row.current else ""
    return f"{indent}[{row.prio:3d}] {_runq_task(row.task)}{mark}\n"


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
