"""sys, log, help, q."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands.base import COMMANDS, Arg, CommandError, Session, command, lookup
from kdumpy.analysis.commands.output import fields, quoted
from kdumpy.analysis.helpers.printk import format_log, log_records
from kdumpy.analysis.helpers.system import format_bytes, system_info, taint_letters
from kdumpy.analysis.helpers.tasks import panic_task, task_comm, task_cpu, task_state_crash
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown

_STATE_NAMES = {
    "RU": "TASK_RUNNING", "IN": "TASK_INTERRUPTIBLE", "UN": "TASK_UNINTERRUPTIBLE",
    "ST": "TASK_STOPPED", "TR": "TASK_TRACED", "ZO": "EXIT_ZOMBIE", "DE": "EXIT_DEAD",
    "PA": "TASK_PARKED", "ID": "TASK_IDLE", "WA": "TASK_WAKING", "NE": "TASK_NEW",
}  # fmt: skip


SYS_WIDTH = 12  # "LOAD AVERAGE": the panic task's fields line up under sys's


@command("sys", "system data")
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


@command("log", "dump system message buffer",
         Arg("-t", dest="no_time", action="store_true", help="without timestamps"),
         usage="log [-t]", aliases=("dmesg",))  # fmt: skip
def cmd_log(session: Session, opts: argparse.Namespace) -> str:
    return format_log(log_records(session.prog), timestamps=not opts.no_time)


@command(
    "help",
    "get help",
    Arg("name", nargs="?", metavar="command"),
    usage="help [command]",
    aliases=("?",),
)
def cmd_help(session: Session, opts: argparse.Namespace) -> str:
    """One command's summary and usage, or every registered command's summary."""
    if opts.name:
        cmd = lookup(opts.name)
        if cmd is None:
            raise CommandError(f"no help for unknown command {opts.name}")
        return cmd.help()
    return "".join(
        f"{c.name:<8} {c.summary}\n" for c in sorted(COMMANDS.values(), key=lambda c: c.name)
    )


@command("q", "exit this session", aliases=("quit", "exit"))
def cmd_quit(session: Session, opts: argparse.Namespace) -> str:
    raise SystemExit(0)
