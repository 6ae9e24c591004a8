"""sys, log, help, q."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands.base import COMMANDS, Arg, CommandError, Session, command, lookup
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


def _field(name: str, value: str) -> str:
    return f"{name:>12}: {value}\n"


@command("sys", "system data")
def cmd_sys(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    info = system_info(prog)
    taints = taint_letters(prog)
    out = _field("KERNEL", "(none: symbols, types and stacks from the dump)" + (
        "  [TAINTED]" if taints else ""))  # fmt: skip
    out += _field("DUMPFILE", f"{prog.path}  [{prog.dump.format}]")
    out += _field("CPUS", str(info.cpus))
    out += _field("DATE", info.date)
    out += _field("UPTIME", info.uptime)
    out += _field("LOAD AVERAGE", info.load_average)
    out += _field("TASKS", str(info.tasks))
    out += _field("NODENAME", shown(info.nodename))
    out += _field("RELEASE", shown(info.release))
    out += _field("VERSION", shown(info.version))
    out += _field("MACHINE", f"{shown(info.machine)}  ({_mhz(session)} Mhz)")
    out += _field("MEMORY", format_bytes(info.memory))
    out += _field("PANIC", f'"{shown(info.panic.message)}"')
    return out + context(session)


def context(session: Session) -> str:
    """The panic task's identity, as crash prints it after ``sys`` at startup."""
    prog = session.prog
    task = panic_task(prog)
    if task is None:
        return ""
    state = task_state_crash(task)
    return (
        _field("PID", str(int(task.pid)))
        + _field("COMMAND", f'"{shown(task_comm(task))}"')
        + _field("TASK", f"{int(task):x}")
        + _field("CPU", str(task_cpu(task)))
        + _field("STATE", f"{_STATE_NAMES.get(state, state)} (PANIC)")
    )


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


@command("help", "get help", Arg("name", nargs="?"), usage="help [command]", aliases=("?",))
def cmd_help(session: Session, opts: argparse.Namespace) -> str:
    """One command's summary and usage, or every registered command's summary."""
    if opts.name:
        cmd = lookup(opts.name)
        if cmd is None:
            raise CommandError(f"no help for unknown command {opts.name}")
        return f"{cmd.name}: {cmd.summary}\nusage: {cmd.usage}\n"
    return "".join(
        f"{c.name:<8} {c.summary}\n" for c in sorted(COMMANDS.values(), key=lambda c: c.name)
    )


@command("q", "exit this session", aliases=("quit", "exit"))
def cmd_quit(session: Session, opts: argparse.Namespace) -> str:
    raise SystemExit(0)
