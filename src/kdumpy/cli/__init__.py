"""The `kdumpy` command line: a thin layer that parses arguments and calls the library.

Each command group lives in its own module here and exposes ``register(subparsers)``;
the handler it sets with ``set_defaults(func=...)`` receives the parsed namespace and
returns an exit code.  Library errors (:class:`kdumpy.errors.KdumpyError`) become one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kdumpy import __version__
from kdumpy.errors import KdumpyError

# Modules of kdumpy.cli that register sub-commands.  A module that is missing
# (work in progress on another branch) is skipped rather than breaking the CLI.
COMMAND_MODULES = (
    "lab",
    "collect",
    "dmesg",
    "service",
    "save",
    "early",
    "crash",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdumpy",
        description="kdump in Python: reserve, load, capture, filter, save and analyse crash dumps",
    )
    parser.add_argument("--version", action="version", version=f"kdumpy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"kdumpy.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"kdumpy.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
