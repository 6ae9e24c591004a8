"""sys, log, help, q."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands import load_commands
from kdumpy.analysis.commands.apicode import api_code
from kdumpy.analysis.commands.base import COMMANDS, Arg, CommandError, Session, command, lookup
from kdumpy.analysis.commands.output import fields, quoted
from kdumpy.analysis.helpers.printk import format_log, log_records
from kdumpy.analysis.helpers.system import boot_epoch, format_bytes, system_info, taint_letters
from kdumpy.analysis.helpers.tasks import panic_task, task_comm, task_cpu, task_state_crash
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown

_STATE_NAMES = {
    "RU": "TASK_RUNNING", "IN": "TASK_INTERRUPTIBLE", "UN": "TASK_UNINTERRUPTIBLE",
    "ST": "TASK_STOPPED", "TR": "TASK_TRACED", "ZO": "EXIT_ZOMBIE", "DE": "EXIT_DEAD",
    "PA": "TASK_PARKED", "ID": "TASK_IDLE", "WA": "TASK_WAKING", "NE": "TASK_NEW",
}  # fmt: skip


SYS_WIDTH = 12  # "LOAD AVERAGE": the panic task's fields line up under sys's


def sys_python(opts: argparse.Namespace) -> str:
    return api_code(
        ["system_info", "panic_task", "task_comm"],
        """
info = system_info(prog)
for name in ("cpus", "date", "uptime", "load_average", "tasks", "nodename", "release",
             "version", "machine", "memory"):
    print(f"{name.upper().replace('_', ' ')}: {getattr(info, name)}")
print(f"PANIC: {info.panic.message!r}")
task = panic_task(prog)
print(f"PID: {int(task.pid)}  COMMAND: {task_comm(task)!r}  TASK: {int(task):x}")
""",
    )


@command("sys", "system data", python=sys_python)
def cmd_sys(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    info = system_info(prog)
    tainted = "  [TAINTED]" if taint_letters(prog) else ""
    sf = prog.symbol_file  # the vmlinux or System.map given, as crash names its vmlinux
    kernel = sf.path if sf is not None else "(none: symbols, types and stacks from the dump)"
    return fields([
        ("KERNEL", kernel + tainted),
        ("DUMPFILE", f"{prog.path}  [{prog.dump.format}]"),
        ("CPUS", info.cpus),
        ("DATE", info.date),
        ("UPTIME", info.uptime),
        ("LOAD AVERAGE", info.load_average),
        ("TASKS", info.tasks),
        ("NODENAME", shown(info.nodename)),
        ("RELEASE", shown(info.release)),
        ("VERSION", shown(info.version)),
        ("MACHINE", f"{shown(info.machine)}  ({_mhz(session)} Mhz)"),
        ("MEMORY", format_bytes(info.memory)),
        ("PANIC", quoted(info.panic.message)),
    ], SYS_WIDTH) + context(session)  # fmt: skip


def context(session: Session) -> str:
    """The panic task's identity, as crash prints it after ``sys`` at startup."""
    task = panic_task(session.prog)
    if task is None:
        return ""
    state = task_state_crash(task)
    return fields([
        ("PID", int(task.pid)),
        ("COMMAND", quoted(task_comm(task))),
        ("TASK", f"{int(task):x}"),
        ("CPU", task_cpu(task)),
        ("STATE", f"{_STATE_NAMES.get(state, state)} (PANIC)"),
    ], SYS_WIDTH)  # fmt: skip


def _mhz(session: Session) -> str:
    try:
        return str(int(session.prog.object("cpu_khz")) // 1000)
    except KdumpyError:
        return "?"


def log_python(opts: argparse.Namespace) -> str:
    names = ["log_records"]
    head = ""
    if opts.no_time:
        stamp = '""'
    elif opts.dates:
        names += ["boot_epoch", "crash_date"]
        head = "boot = boot_epoch(prog)\n"
        stamp = 'f"[{crash_date(boot + rec.ts_nsec // 10**9)}] "'
    else:
        stamp = 'f"[{rec.ts_nsec // 10**9:5d}.{rec.ts_nsec % 10**9 // 1000:06d}] "'
    level = ' + f"<{rec.level:x}>"' if opts.levels else ""
    return api_code(
        names,
        f"""{head}for rec in log_records(prog):
    print({stamp}{level} + rec.text.decode("utf-8", "backslashreplace"))
""",
    )


@command("log", "dump system message buffer",
         Arg("-t", dest="no_time", action="store_true", help="without timestamps"),
         Arg("-T", dest="dates", action="store_true", help="timestamps as dates"),
         Arg("-m", dest="levels", action="store_true", help="each message's log level"),
         usage="log [-t|-T] [-m]", aliases=("dmesg",), python=log_python)  # fmt: skip
def cmd_log(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    boot = None
    if opts.dates:
        boot = boot_epoch(prog)
        if boot is None:
            raise CommandError("-T needs the crash time, which the dump does not give")
    return format_log(log_records(prog), not opts.no_time, opts.levels, boot)


@command(
    "help",
    "get help",
    Arg("name", nargs="?", metavar="command"),
    usage="help [command]",
    aliases=("?",),
    python=lambda opts: "import kdumpy.analysis.api\n\nhelp(kdumpy.analysis.api)\n",
)
def cmd_help(session: Session, opts: argparse.Namespace) -> str:
    """One command's summary and usage, or every registered command's summary."""
    load_commands()  # the shell imports a command's module when it is first used
    if opts.name:
        cmd = lookup(opts.name)
        if cmd is None:
            raise CommandError(f"no help for unknown command {opts.name}")
        return cmd.help()
    return "".join(
        f"{c.name:<8} {c.summary}\n" for c in sorted(COMMANDS.values(), key=lambda c: c.name)
    )


@command("q", "exit this session", aliases=("quit", "exit"),
         python=lambda opts: "prog.close()\nraise SystemExit(0)\n")  # fmt: skip
def cmd_quit(session: Session, opts: argparse.Namespace) -> str:
    raise SystemExit(0)
