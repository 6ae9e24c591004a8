"""crash-like commands over a :class:`~kdumpy.analysis.program.Program`.

Each command is declared once with :func:`~kdumpy.analysis.commands.base.command`
(name, aliases, summary, crash's flags), in one module per family listed in
:data:`_MODULES`; the shell, ``-c`` and ``-i`` all go through :func:`run_line`, which
parses the words with the command's parser and turns every typed error into one
line, ``name: message``.  :func:`run_line` is also where
output meets the terminal: commands print fields from the dump through
:func:`~kdumpy.printable.shown`, and whatever else they print is escaped there (see
:mod:`kdumpy.printable`), so no control character from a dump reaches the screen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import subprocess
import warnings
from collections.abc import Callable

from kdumpy.analysis.commands.base import (
    ALIASES,
    COMMANDS,
    Arg,
    Command,
    CommandError,
    CommandUsageError,
    Session,
    command,
    command_flags,
    command_names,
    lookup,
    usage_line,
)
from kdumpy.analysis.helpers.lists import ListWarning
from kdumpy.errors import KdumpyError
from kdumpy.printable import LINES, escape_text

# Where each command (and alias) is declared, so that ``-c sys`` imports the module of
# ``sys`` and not all sixteen (start-up time: their helpers are ~40 modules).  The
# declarations stay the registry; tests/analysis/test_startup.py checks this map
# against them (a new command: add its name here, beside its module).
_MODULE_OF = {
    "?": "system", "dmesg": "system", "exit": "system", "help": "system", "log": "system",
    "q": "system", "quit": "system", "sys": "system",
    "bt": "backtrace",
    "files": "taskcmds", "foreach": "taskcmds", "ps": "taskcmds", "runq": "taskcmds",
    "set": "taskcmds",
    "dis": "memcmds", "rd": "memcmds", "sym": "memcmds",
    "lsmod": "typecmds", "mod": "typecmds", "p": "typecmds", "struct": "typecmds",
    "union": "typecmds", "whatis": "typecmds",
    "kmem": "kmem",
    "btop": "addrcmds", "pte": "addrcmds", "ptob": "addrcmds", "ptov": "addrcmds",
    "vtop": "addrcmds",
    "vm": "vmcmds",
    "mount": "fscmds", "swap": "fscmds",
    "list": "listcmds", "tree": "listcmds",
    "irq": "irqcmds",
    "py": "pycmd",
    "fuser": "taskinfo", "sig": "taskinfo", "task": "taskinfo",
    "dev": "kerninfo", "ipcs": "kerninfo", "net": "kerninfo", "timer": "kerninfo",
    "waitq": "kerninfo",
    "search": "searchcmd",
    "ascii": "misccmds", "bpf": "misccmds", "eval": "misccmds",
}  # fmt: skip
_MODULES = tuple(dict.fromkeys(_MODULE_OF.values()))
__all__ = [
    "ALIASES", "COMMANDS", "Arg", "Command", "CommandError", "CommandUsageError", "Session",
    "command", "command_flags", "command_names", "load_command", "load_commands", "lookup",
    "parse_count",
    "parse_cpus",
    "parse_number", "resolve_address", "run_line",
]  # fmt: skip


def load_commands() -> dict[str, Command]:
    """Import every command module; their declarations fill :data:`COMMANDS`."""
    for module in _MODULES:
        importlib.import_module(f"kdumpy.analysis.commands.{module}")
    return COMMANDS


def load_command(name: str) -> Command | None:
    """The command a word names, importing only the module declaring it (every module
    when the word is not a known name)."""
    module = _MODULE_OF.get(name)
    if module is None:
        load_commands()
    else:
        importlib.import_module(f"kdumpy.analysis.commands.{module}")
    return lookup(name)


def run_line(session: Session, line: str) -> str:
    """Run one command line; errors come back as ``name: message`` text, and a corrupt
    structure met on the way as a ``WARNING:`` line after a partial answer.  The answer
    is safe for a terminal: control characters other than newline and tab escaped."""
    session.failed = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ListWarning)
        out = _run(session, line)
    notes = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, ListWarning))
    out += "".join(f"WARNING: {note}\n" for note in notes)
    return escape_text(out, LINES)


def _run(session: Session, line: str) -> str:
    """One command, its output sent on as crash does: ``cmd | shell command`` pipes it
    through ``/bin/sh``, ``cmd > file`` / ``>> file`` writes it to a file."""
    name, rest = ([*line.split(None, 1), "", ""])[:2]
    cmd = load_command(name) if name in _MODULE_OF else None
    if cmd is not None and cmd.raw:  # its text is its own: no words, no operators
        return _guarded(session, cmd, lambda: cmd.run_text(session, rest))
    command_text, op, target = split_output(line)
    out = _run_command(session, command_text)
    if not op:
        return out
    if not target.strip():
        return _failed(session, f"crash: {op} needs a target\n")
    if op == "|":
        proc = subprocess.run(["/bin/sh", "-c", target], input=out, capture_output=True,
                              text=True, errors="backslashreplace", check=False)  # fmt: skip
        return proc.stdout + proc.stderr
    try:
        path = shlex.split(target)
    except ValueError as exc:
        return _failed(session, f"crash: {exc}\n")
    if len(path) != 1:
        return _failed(session, f"crash: {op} takes one file name\n")
    try:
        return _write_output(path[0], out, append=op == ">>")
    except OSError as exc:
        return _failed(session, f"crash: {path[0]}: cannot write: {exc.strerror}\n")


def _failed(session: Session, message: str) -> str:
    """An error line, marking the session's line as failed."""
    session.failed = True
    return message


def split_output(line: str) -> tuple[str, str, str]:
    """``(command, operator, target)`` at the first ``|``, ``>`` or ``>>`` outside
    quotes (``("ps", "|", " grep sleep")``); the operator is empty when there is none.
    C's ``->`` in an expression (``p task->comm``) is not a redirection."""
    quote = ""
    for i, c in enumerate(line):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "|":
            return line[:i], "|", line[i + 1 :]
        elif c == ">" and line[i - 1 : i] != "-":
            op = ">>" if line[i + 1 : i + 2] == ">" else ">"
            return line[:i], op, line[i + len(op) :]
    return line, "", ""


def _write_output(path: str, text: str, append: bool) -> str:
    """A redirection target: created 0600, never through a symbolic link (OSError
    when it cannot be written)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(escape_text(text, LINES))
    return ""


def _run_command(session: Session, line: str) -> str:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        return _failed(session, f"crash: {exc}\n")
    if not words:
        return ""
    if words[0].startswith("*") and len(words[0]) > 1:  # crash's "*type addr": struct type
        words = ["struct", words[0][1:], *words[1:]]
    cmd = load_command(words[0])
    if cmd is None:
        return _failed(session, f"crash: command not found: {words[0]}\n")
    return _guarded(session, cmd, lambda: cmd.run(session, words[1:]))


def _guarded(session: Session, cmd: Command, run: Callable[[], str]) -> str:
    """A command's output, or its typed error as one line."""
    try:
        return run()
    except CommandError as exc:
        return _failed(session, usage_line(cmd, exc))
    except KdumpyError as exc:
        return _failed(session, f"{cmd.name}: {exc}\n")


def parse_count(text: str) -> int:
    """A count argument (``rd ADDR 16``, ``dis ADDR 0x10``): a non-negative integer."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid count: {text}")
    return value


def parse_cpus(text: str) -> list[int]:
    """A CPU list as crash and the kernel write it: ``3``, ``1,8,9``, ``1-3,8``."""
    cpus: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            lo, hi = int(first), int(last or first)
            if not 0 <= lo <= hi < 1 << 16:
                raise ValueError
            cpus += range(lo, hi + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid CPU list: {text}") from None
    return sorted(set(cpus))


def parse_number(text: str) -> int:
    """crash reads bare hex for addresses: ``ffff8880...`` or ``0x...``; decimal
    when marked with ``0d`` or when it cannot be hex."""
    text = text.strip()
    if text.startswith("0d"):
        return int(text[2:], 10)
    try:
        return int(text, 16)
    except ValueError:
        raise CommandError(f"invalid number: {text}") from None


def resolve_address(session: Session, text: str) -> int:
    """A hex address or a symbol name (``init_task``, ``panic+0x10``)."""
    prog = session.prog
    name, plus, offset = text.partition("+")
    if prog.symbols.address_of(name) is not None or not _is_hex(name):
        base = prog.symbol_address(name)
        return base + (int(offset, 0) if plus else 0)
    return parse_number(text)


def _is_hex(text: str) -> bool:
    text = text[2:] if text.lower().startswith("0x") else text
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)
