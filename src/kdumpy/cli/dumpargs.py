"""Arguments shared by the commands that open a dump for analysis (crash, report)."""

from __future__ import annotations

import argparse


def add_dump_files(parser: argparse.ArgumentParser) -> None:
    """``[VMLINUX | System.map] DUMP`` in either order, told apart by content, as crash
    does, and ``--force`` to use symbol files that do not match the dump."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="[VMLINUX | System.map] DUMP",
        help="the vmcore (ELF, kdump-compressed or flattened), and optionally the kernel's "
        "vmlinux (symbols; types from DWARF when the dump has no BTF) or System.map",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="use a vmlinux or System.map that does not match the dump",
    )
