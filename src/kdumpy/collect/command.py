"""``kdumpy collect``'s command line: makedumpfile's, where the options coincide.

    kdumpy collect [-d LEVEL] [-c|-l|-p|-z] [-F] [-E] [--num-threads N] SRC [DST]
    kdumpy collect --split [-d LEVEL] ... SRC DST1 DST2 ...
    kdumpy collect --reassemble DST1 DST2 ... OUT
    kdumpy collect -R OUT < flattened-stream

A kdump.conf ``core_collector makedumpfile -l --message-level 7 -d 31`` line works
with the program name replaced: ``--message-level``, ``-f``, ``-b`` and
``--cyclic-buffer`` are accepted (``--message-level`` and ``--cyclic-buffer`` are
honoured, the others have nothing to change here).  Messages go to stderr, so
stdout can carry a flattened dump.

It lives here, under the CLI, so that the capture kernel can run a ``core_collector
kdumpy collect ...`` line in its own process (:func:`run_argv`) instead of starting a
second Python interpreter: in a crashkernel reservation of 128-160 MiB the second
interpreter's ~10 MiB and its own imports decided whether a network dump fitted.
``kdumpy.cli.collect`` registers the same options under ``kdumpy``.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from kdumpy.collect.levels import parse_dump_levels
from kdumpy.collect.options import DEFAULT_CYCLIC_KIB, CollectOptions
from kdumpy.errors import KdumpyError

ML_PROGRESS, ML_COMMON, ML_ERROR, ML_DEBUG, ML_REPORT = 1, 2, 4, 8, 16
PROG = "kdumpy collect"
# The statuses `kdumpy collect` exits with when run as a program (kdumpy.cli.main):
# argparse's usage error, SIGINT's and SIGPIPE's.
USAGE_STATUS, INTERRUPTED_STATUS, BROKEN_PIPE_STATUS = 2, 130, 141


class CollectUsageError(KdumpyError):
    """The collector's command line is wrong (argparse's error, status 2)."""

    exit_code = USAGE_STATUS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options and operands of ``kdumpy collect``."""
    p.add_argument("files", nargs="*", metavar="FILE", help="SRC DST (or see --split/-R)")
    p.add_argument(
        "-d",
        dest="dump_level",
        default="31",
        metavar="LEVEL",
        help="dump level 0-31, or a retry list like 11,31 (default 31)",
    )
    comp = p.add_mutually_exclusive_group()
    comp.add_argument("-c", dest="compression", action="store_const", const="zlib", help="zlib")
    comp.add_argument("-l", dest="compression", action="store_const", const="lzo", help="lzo")
    comp.add_argument("-p", dest="compression", action="store_const", const="snappy", help="snappy")
    comp.add_argument("-z", dest="compression", action="store_const", const="zstd", help="zstd")
    comp.add_argument(
        "--compression", dest="compression", metavar="NAME", help="none, zlib, lzo, snappy or zstd"
    )
    p.add_argument("-F", dest="flat", action="store_true", help="flattened output (stdout)")
    p.add_argument("-E", dest="elf", action="store_true", help="ELF output")
    p.add_argument(
        "-R",
        dest="rearrange",
        action="store_true",
        help="rebuild a dump from a flattened stream on stdin",
    )
    p.add_argument("--split", action="store_true", help="write the dump into several files")
    p.add_argument(
        "--splitblock-size",
        type=int,
        default=None,
        metavar="KIB",
        help="granularity of --split ranges, KiB (default 1 GiB)",
    )
    p.add_argument("--reassemble", action="store_true", help="join --split files into one")
    p.add_argument(
        "--num-threads",
        type=int,
        default=0,
        metavar="N",
        help="compress on N threads (default: in the main thread)",
    )
    p.add_argument(
        "--cyclic-buffer",
        type=int,
        default=None,
        metavar="KIB",
        help="memory for the page bitmap between passes, KiB",
    )
    p.add_argument(
        "--message-level",
        type=int,
        default=7,
        metavar="N",
        help="1 progress, 2 common, 4 error, 8 debug, 16 report (default 7)",
    )
    p.add_argument("--show-stats", action="store_true", help="print the report (message level 16)")
    p.add_argument("-D", dest="debug", action="store_true", help="debug messages")
    p.add_argument("-f", dest="force", action="store_true", help="accepted (no effect)")
    p.add_argument("-b", dest="block_order", type=int, metavar="ORDER", help="accepted (no effect)")


class _Parser(argparse.ArgumentParser):
    """A parser that raises instead of exiting: the capture process must go on to its
    failure_action after a bad ``core_collector`` line."""

    def error(self, message: str) -> Any:  # argparse's signature says NoReturn
        raise CollectUsageError(f"{self.prog}: error: {message}")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """``kdumpy collect``'s *argv* (without the program and command words);
    CollectUsageError if it is wrong.  No ``-h``: help would go to stdout, the dump."""
    parser = _Parser(prog=PROG, add_help=False)
    add_arguments(parser)
    return parser.parse_args(list(argv))


def run_argv(argv: Sequence[str], stream: BinaryIO | None = None) -> int:
    """Run ``kdumpy collect ARGV`` here and return the status the program would exit
    with; errors are printed as the program prints them (``kdumpy: ...`` on stderr).
    *stream* stands for stdout (``-F`` without a destination file)."""
    try:
        return run(parse(argv), stream)
    except CollectUsageError as exc:  # argparse's form: "kdumpy collect: error: ..."
        print(exc, file=sys.stderr)
        return exc.exit_code
    except KdumpyError as exc:
        print(f"kdumpy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kdumpy: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    except BrokenPipeError:  # the reader (ssh) went away
        return BROKEN_PIPE_STATUS


def _progress(level: int) -> tuple[Callable[[str, int, int], None] | None, Callable[[], None]]:
    """A rich progress bar on a terminal when message level bit 1 is set."""
    if not level & ML_PROGRESS or not sys.stderr.isatty():
        return None, lambda: None
    # rich only now: a collection without a terminal never loads it (start-up, memory).
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                   console=Console(stderr=True), transient=True)  # fmt: skip
    tasks: dict[str, Any] = {}
    bar.start()

    def update(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done, total=total)

    return update, bar.stop


def run(args: argparse.Namespace, stream: BinaryIO | None = None) -> int:
    """Carry out a parsed ``kdumpy collect`` (KdumpyError on failure); returns 0."""
    level = (
        args.message_level | (ML_REPORT if args.show_stats else 0) | (ML_DEBUG if args.debug else 0)
    )
    files: list[str] = args.files
    if args.rearrange:
        return _rearrange(files, level)
    if args.reassemble:
        return _reassemble(files, level)
    options = CollectOptions(
        dump_levels=parse_dump_levels(args.dump_level),
        compression=args.compression or "none",
        flat=args.flat,
        elf=args.elf,
        num_threads=max(0, args.num_threads),
        cyclic_buffer_kib=args.cyclic_buffer or DEFAULT_CYCLIC_KIB,
    )
    if args.elf and args.num_threads > 1:
        raise KdumpyError("--num-threads cannot be used with ELF output (-E)")
    progress, stop = _progress(level)
    options.progress = progress
    # The collector makes no reference cycles (batches are buffers, freed by reference
    # counting); the cyclic collector would only walk the objects its imports create,
    # again and again (~5 ms of start-up).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if args.split:
            # Each writer only when asked for: the capture kernel imports the one it runs.
            from kdumpy.collect.split import DEFAULT_SPLITBLOCK_KIB, collect_split

            if len(files) < 3:
                raise KdumpyError("--split needs a source and at least two destination files")
            block = args.splitblock_size or DEFAULT_SPLITBLOCK_KIB
            summary = collect_split(files[0], files[1:], options, block)
        else:
            from kdumpy.collect.collector import collect

            if not files or len(files) > 2 or (len(files) == 1 and not args.flat):
                raise KdumpyError("usage: kdumpy collect [options] SRC DST (or -F SRC > FILE)")
            summary = collect(files[0], files[1] if len(files) == 2 else None, options, stream)
    finally:
        if gc_was_enabled:
            gc.enable()
        stop()
    for warning in summary.warnings:
        print(f"kdumpy collect: warning: {warning}", file=sys.stderr)
    if level & ML_REPORT:
        print(summary.format(), file=sys.stderr)
    if level & ML_COMMON:
        where = ", ".join(summary.outputs) if summary.outputs else summary.output
        print(f"The dumpfile is saved to {where}.\n\nkdumpy collect Completed.", file=sys.stderr)
    return 0


def _rearrange(files: list[str], level: int) -> int:
    from kdumpy.collect.output import FileSink
    from kdumpy.vmcore.flat_writer import rearrange

    if len(files) != 1:
        raise KdumpyError("usage: kdumpy collect -R OUT < flattened-stream")
    sink = FileSink(files[0])
    try:
        rearrange(sys.stdin.buffer, sink)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    if level & ML_COMMON:
        print(f"The dumpfile is saved to {files[0]}.\n\nkdumpy collect Completed.", file=sys.stderr)
    return 0


def _reassemble(files: list[str], level: int) -> int:
    # Reads kdump-compressed files (numpy): never in the capture kernel, so only here.
    from kdumpy.collect.reassemble import reassemble

    if len(files) < 3:
        raise KdumpyError("usage: kdumpy collect --reassemble SPLIT1 SPLIT2 ... OUT")
    reassemble(files[:-1], files[-1])
    if level & ML_COMMON:
        print(
            f"The dumpfile is saved to {files[-1]}.\n\nkdumpy collect Completed.", file=sys.stderr
        )
    return 0
