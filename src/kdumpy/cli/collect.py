"""``kdumpy collect``: makedumpfile's command line, where the options coincide (the
options and the collection are :mod:`kdumpy.collect.command`'s, which the capture kernel
also runs in its own process)."""

from __future__ import annotations

from typing import Any

from kdumpy.collect.command import add_arguments, run


def register(sub: Any) -> None:
    p = sub.add_parser(
        "collect",
        help="filter and compress a crash dump (makedumpfile work-alike)",
        description="Copy a crash dump (/proc/vmcore, ELF or kdump-compressed) leaving out "
        "pages by dump level, into a kdump-compressed, flattened or ELF file.",
    )
    add_arguments(p)
    p.set_defaults(func=run)  # fmt: skip
