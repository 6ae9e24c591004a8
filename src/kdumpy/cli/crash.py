"""``kdumpy crash DUMP``: a crash-like shell over a dump, with nothing but the dump.

Interactive use gets the ``crash> `` prompt (prompt_toolkit: history, completion of
commands and symbols), and long output goes through the pager; ``-c CMD`` (repeatable)
and ``-i SCRIPT`` run commands in batch and exit.  As in crash, ``CMD | shell command``
pipes a command's output and ``CMD > FILE`` (``>>``) writes it to a file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kdumpy.cli.dumpargs import add_dump_files
from kdumpy.errors import KdumpyError

HISTORY = Path.home() / ".cache" / "kdumpy" / "crash_history"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "crash",
        help="analyse a dump interactively, like crash, without a vmlinux",
        description="A crash-like shell: symbols from the dump's kallsyms, types from its "
        "BTF, stacks from its ORC tables.  'help' in the shell lists the commands, "
        "'help CMD' one command's usage; 'CMD | shell command' pipes, 'CMD > FILE' "
        "redirects; 'py CODE' runs Python with prog bound (--python SCRIPT: a file).",
    )
    add_dump_files(p)
    p.add_argument("-c", dest="commands", action="append", metavar="CMD", default=[],
                   help="run CMD and exit (repeatable)")  # fmt: skip
    p.add_argument(
        "-i", dest="script", metavar="SCRIPT", help="run the commands in SCRIPT and exit"
    )
    p.add_argument("-s", "--silent", action="store_true", help="no sys banner at startup")
    p.add_argument("--python", dest="python", metavar="SCRIPT",
                   help="run a Python script with prog bound, then exit")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdumpy.analysis import Program
    from kdumpy.analysis.commands import Session, run_line

    batch: list[str] = list(args.commands)
    if args.script:
        try:
            batch += Path(args.script).read_text().splitlines()
        except OSError as exc:
            raise KdumpyError(f"{args.script}: cannot read: {exc.strerror}") from None
    with Program.open_files(args.files, args.force) as prog:
        if args.python:
            from kdumpy.analysis.scripting import run_script

            return 0 if run_script(prog, args.python, sys.stdout, sys.stderr) else 1
        session = Session(prog)
        if batch:
            return _batch(session, batch, run_line)
        if not sys.stdin.isatty():  # commands piped in: no prompt, no pager
            return _batch(session, sys.stdin.read().splitlines(), run_line)
        if not args.silent:
            _show(run_line(session, "sys"))
        return _interactive(session, run_line)


def py_blocks(lines: Iterable[str]) -> Iterator[str]:
    """Lines as the shell runs them: ``py`` alone takes the lines after it, up to an
    empty line, as one block of Python."""
    it = iter(lines)
    for line in it:
        if line.strip() == "py":
            block = []
            for more in it:
                if not more.strip():
                    break
                block.append(more)
            line = "py\n" + "\n".join(block)
        yield line


def _batch(session: Any, lines: Iterable[str], run_line: Any) -> int:
    status = 0
    for line in py_blocks(lines):
        try:
            out = run_line(session, line)
        except SystemExit:
            break
        sys.stdout.write(out)
        if session.failed:
            status = 1
    sys.stdout.flush()
    return status


def _show(text: str) -> None:
    """Print, through the pager when it would not fit on the screen."""
    rows = shutil.get_terminal_size().lines
    if sys.stdout.isatty() and text.count("\n") > rows - 2 and _page(text):
        return
    sys.stdout.write(text)


def _page(text: str) -> bool:
    """``$PAGER`` (``less -FRX`` when unset) showing the text; False when it cannot
    start.  (pydoc's pager would do, but importing pydoc costs every start 15 ms.)"""
    try:
        argv = shlex.split(os.environ.get("PAGER") or "less -FRX")
        with subprocess.Popen(argv, stdin=subprocess.PIPE, text=True,
                              errors="backslashreplace") as pager:  # fmt: skip
            assert pager.stdin is not None
            try:
                pager.stdin.write(text)
                pager.stdin.close()
            except BrokenPipeError:  # the pager quit before reading everything
                pass
            while True:
                try:
                    pager.wait()
                    break
                except KeyboardInterrupt:  # ^C belongs to the pager, as in pydoc
                    continue
    except (OSError, ValueError):
        return False
    return True


def _interactive(session: Any, run_line: Any, **io: Any) -> int:
    """The ``crash>`` loop; ``io`` passes prompt_toolkit ``input``/``output`` (tests)."""
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
    except ImportError:
        raise KdumpyError(
            "the interactive shell needs prompt_toolkit (a dependency of kdumpy: "
            "pip install prompt_toolkit); -c CMD and -i SCRIPT work without it"
        ) from None

    from kdumpy.analysis.commands import command_flags, command_names, load_commands

    load_commands()
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(HISTORY)),
        completer=_completer(session, command_names(), command_flags()),
        **io,
    )
    while True:
        try:
            line = prompt.prompt("crash> ")
            if line.strip() == "py":  # a block: up to an empty line
                line = "py\n" + "\n".join(iter(lambda: prompt.prompt("...... "), ""))
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        try:
            _show(run_line(session, line))
        except SystemExit:
            return 0


def _completer(
    session: Any, commands: Iterable[str], flags: dict[str, list[str]] | None = None
) -> Any:
    """Completion of the registered command names and aliases (``commands``), then of
    each one's declared ``flags`` after it, and of symbol names."""
    from prompt_toolkit.completion import Completer, Completion

    names = sorted(commands)

    class CrashCompleter(Completer):
        """Command names first, then the command's flags for a word starting with ``-``,
        else symbol names (prefix search in the symbol table)."""

        def get_completions(self, document: Any, complete_event: Any) -> Any:
            text = document.text_before_cursor
            word = document.get_word_before_cursor(WORD=True)
            if " " not in text.lstrip():
                for name in names:
                    if name.startswith(word):
                        yield Completion(name, -len(word))
                return
            if word.startswith("-"):
                for flag in (flags or {}).get(text.split()[0], []):
                    if flag.startswith(word):
                        yield Completion(flag, -len(word))
                return
            if len(word) < 2:
                return
            for sym in session.prog.symbols.search(word)[:200]:
                yield Completion(sym.name, -len(word))

    return CrashCompleter()
