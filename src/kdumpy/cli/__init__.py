"""The `kdumpy` command line: a thin layer that parses arguments and calls the library.

Each command group lives in its own module here and exposes ``register(subparsers)``;
the handler it sets with ``set_defaults(func=...)`` receives the parsed namespace and
returns an exit code.  Library errors (:class:`kdumpy.errors.KdumpyError`) become one
line on stderr and a non-zero exit, never a traceback.

Only the chosen command's module is imported (see :data:`COMMANDS`): ``kdumpy
--version`` loads nothing but this file, and ``kdumpy collect`` (the capture kernel's
core collector, while the machine is down) loads the collector and nothing of the
analysis, service or lab layers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from kdumpy import __version__
from kdumpy.errors import KdumpyError

# Every command, in `kdumpy --help` order: the module of kdumpy.cli whose register()
# adds its parser, and its line in `kdumpy --help`.  A module registers all the
# commands listed here for it (tests/cli checks that the help lines match).  A module
# that is not installed (the capture initramfs ships only collect and dmesg) leaves its
# commands out, as if they did not exist.
COMMANDS: dict[str, tuple[str, str]] = {
    "lab": ("lab", "boot real kernels in QEMU, crash them, keep the vmcore"),
    "collect": ("collect", "filter and compress a crash dump (makedumpfile work-alike)"),
    "dmesg": ("dmesg", "print the kernel log saved in a dump"),
    "config": ("service", "check /etc/kdump.conf"),
    "start": ("service", "load the capture kernel (rebuilding its initramfs if stale)"),
    "stop": ("service", "unload the capture kernel"),
    "restart": ("service", "stop, then start"),
    "reload": ("service", "reload kernel and initramfs without rebuilding"),
    "status": ("service", "is a capture kernel loaded? (exit 0 yes, 3 no)"),
    "rebuild": ("service", "rebuild the capture initramfs now"),
    "estimate": ("service", "recommend a crashkernel= size for this machine"),
    "showmem": ("service", "show the memory reserved for the capture kernel"),
    "reserve": ("service", "set crashkernel= in the boot loader"),
    "test": ("service", "crash this machine now to test that a dump is saved"),
    "propagate": ("service", "install the ssh key on the ssh dump target"),
    "get-default-crashkernel": ("service", "print kdump-utils' default crashkernel= for here"),
    "reset-crashkernel": ("service", "set the default crashkernel= in the boot loader"),
    "install-service": ("service", "install and enable kdumpy.service"),
    "save": ("save", "save /proc/vmcore to the kdump.conf target (capture kernel)"),
    "early": ("early", "early kdump: load the capture kernel from the initramfs"),
    "crash": ("crash", "analyse a dump interactively, like crash, without a vmlinux"),
    "report": (
        "report",
        "summarise a dump: panic, crashing task, taint, D-state tasks, signature",
    ),
}


def installed(module: str) -> bool:
    """Is ``kdumpy.cli.<module>`` there (found without importing it)?"""
    return importlib.util.find_spec(f"{__name__}.{module}") is not None


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command word of *argv*: its first non-option (top-level options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def lists_commands(argv: Sequence[str]) -> bool:
    """Whether parsing *argv* may print the list of commands (top-level help, or an
    unknown command's error); otherwise the other commands need no placeholder."""
    for arg in argv:
        if arg == "--version":
            return False  # argparse prints the version and exits before anything else
        if not arg.startswith("-"):
            return arg not in COMMANDS or not installed(COMMANDS[arg][0])
        return True  # -h, or an option argparse will complain about
    return True  # no command: the help is printed


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized to the terminal without importing shutil.

    argparse makes a formatter for every add_argument (to check metavars), and the
    first one imports shutil for the width (with fnmatch, bz2, lzma: ~2.5 ms of every
    `kdumpy collect`, whose help is never printed in a capture kernel)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:  # fmt: skip
        width = terminal_columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class ArgumentParser(argparse.ArgumentParser):
    """kdumpy's parsers and subparsers: :class:`HelpFormatter` unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for *argv*: the chosen command's module registers its real parsers; the
    other commands get a placeholder carrying their help line when it may be shown.  With
    ``argv`` None, every command module is imported (the full parser, for tests)."""
    parser = ArgumentParser(
        prog="kdumpy",
        description="kdump in Python: reserve, load, capture, filter, save and analyse crash dumps",
    )
    parser.add_argument("--version", action="version", version=f"kdumpy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    chosen = COMMANDS.get(chosen_command(argv) or "", ("", ""))[0] if argv is not None else None
    placeholders = argv is not None and lists_commands(argv)
    for name, (module, text) in COMMANDS.items():
        registers = chosen is None or module == chosen
        # Whether a module is installed is asked only of those used: a lookup for
        # each of the 23 commands cost 1 ms of every `kdumpy collect`.
        if name in sub.choices or not (registers or placeholders) or not installed(module):
            continue
        if registers:
            importlib.import_module(f"{__name__}.{module}").register(sub)
        else:
            sub.add_parser(name, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # numpy's OpenBLAS starts a thread per CPU when it is loaded, which costs 30-80 ms
    # of every start; kdumpy does no linear algebra, so one thread is all it needs.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args_in = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(args_in)
    args = parser.parse_args(args_in)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KdumpyError as exc:
        print(f"kdumpy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kdumpy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
