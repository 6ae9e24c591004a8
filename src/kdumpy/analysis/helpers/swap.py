"""Swap areas (``swap``): the ``swap_info_struct``\\ s in use."""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.files import file_path
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

SWP_USED = 0x1


def for_each_swap(prog: Program) -> Iterator[Object]:
    """Every ``struct swap_info_struct *`` in use (``swap_info[:nr_swapfiles]``)."""
    table = prog.object("swap_info")
    for i in range(min(int(prog.object("nr_swapfiles")), 64)):
        si = table[i]
        if int(si) and int(si.flags) & SWP_USED:
            yield si


def swap_filename(prog: Program, si: Object) -> str:
    """The swap file or partition's path."""
    return file_path(prog, si.swap_file) if int(si.swap_file) else ""
