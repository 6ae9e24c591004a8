"""``kdumpy report DUMP [--json]``: a first-look triage report of a dump."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kdumpy.cli.dumpargs import add_dump_files


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="summarise a dump: panic, crashing task, taint, D-state tasks, signature",
        description="Read a dump with nothing but the dump and print what happened: the "
        "panic message and kind, the crashing task's backtrace, taint flags, recent log "
        "lines, tasks in D state, a memory summary and a signature for grouping crashes.",
    )
    add_dump_files(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdumpy.analysis import Program
    from kdumpy.analysis.report import build_report, format_report

    with Program.open_files(args.files, args.force) as prog:
        report = build_report(prog)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report))
    return 0
