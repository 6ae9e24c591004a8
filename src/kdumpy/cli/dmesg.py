"""``kdumpy dmesg DUMP [-o FILE]``: the kernel log of a dump, like makedumpfile --dump-dmesg."""

from __future__ import annotations

import argparse
import sys

from kdumpy.errors import KdumpyError
from kdumpy.fileio import replace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dmesg",
        help="print the kernel log saved in a dump",
        description="Print the crashed kernel's log buffer, in the same text as "
        "makedumpfile --dump-dmesg.  DUMP may be ELF, kdump-compressed, flattened, "
        "or the files of a split set.",
    )
    p.add_argument("dump", nargs="+", metavar="DUMP", help="dump file (several for a split set)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "--caller-id",
        action="store_true",
        help="add the [T<pid>]/[C<cpu>] caller column (makedumpfile 1.7.5 and later)",
    )
    p.set_defaults(func=run)


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write under a fresh temporary name beside *path* (O_EXCL|O_NOFOLLOW, 0600 from the
    start, as makedumpfile creates its output), then rename into place: a symbolic link
    planted at *path* is replaced, never followed."""
    try:
        replace(path, data, mode)
    except OSError as exc:
        raise KdumpyError(f"{path}: cannot write: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    from kdumpy.vmcore import open_dump
    from kdumpy.vmcore.dmesg import kernel_log

    with open_dump(args.dump if len(args.dump) > 1 else args.dump[0]) as dump:
        text = kernel_log(dump, caller_id=args.caller_id)
        for warning in dump.warnings:
            print(f"kdumpy dmesg: warning: {warning}", file=sys.stderr)
    if args.output:
        write_atomically(args.output, text)
    else:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    return 0
