"""A process's user memory read through its own page tables: its argument and
environment strings (``ps -a``).

User pages are in a dump only when the collector kept them (``makedumpfile -d 31``
drops them): a page left out is a :class:`~kdumpy.analysis.memory.FaultError` naming
the user address, as crash's "cannot access user stack address" does.  Every size comes
from the dump, so each read is bounded by the caller's limit.
"""

from __future__ import annotations

from typing import NamedTuple

from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

# argv and envp together are bounded by the kernel (MAX_ARG_STRLEN a string, a quarter of
# the stack rlimit in all); a dump's mm may claim anything, so ps reads at most this much.
ARG_LIMIT = 256 << 10


def read_user(prog: Program, mm: Object, address: int, size: int) -> bytes:
    """``size`` bytes at user ``address`` of the process whose ``struct mm_struct *`` is
    ``mm``, page by page through ``mm->pgd``."""
    if size < 0 or address < 0 or address + size > 1 << 64:
        raise FaultError(f"invalid user address range {address:#x}+{size}", address)
    translator = prog.dump.translator
    pgd = prog.memory.vtop(int(mm.pgd))
    page = prog.dump.page_size
    out = bytearray()
    while size > 0:
        chunk = min(size, page - (address & (page - 1)))
        try:
            out += prog.dump.read_phys(translator.walk_user(pgd, address), chunk)
        except KdumpyError:
            raise FaultError(f"cannot access user stack address: {address:x}", address) from None
        address += chunk
        size -= chunk
    return bytes(out)


class UserStrings(NamedTuple):
    """NUL-separated strings from a user range; ``truncated``: the range was longer than
    the limit and only its start was read."""

    strings: list[bytes]
    truncated: bool


def user_strings(
    prog: Program, mm: Object, start: int, end: int, limit: int = ARG_LIMIT
) -> UserStrings:
    """The non-empty NUL-terminated strings in user ``[start, end)`` (at most ``limit``
    bytes read); an ``end`` before ``start`` is an empty range."""
    size = max(0, end - start)
    data = read_user(prog, mm, start, min(size, limit))
    return UserStrings([s for s in data.split(b"\0") if s], size > limit)


def mm_cmdline(prog: Program, mm: Object, limit: int = ARG_LIMIT) -> UserStrings:
    """The arguments a process was started with (``mm->arg_start .. arg_end``)."""
    return user_strings(prog, mm, int(mm.arg_start), int(mm.arg_end), limit)


def mm_environ(prog: Program, mm: Object, limit: int = ARG_LIMIT) -> UserStrings:
    """Its environment (``mm->env_start .. env_end``)."""
    return user_strings(prog, mm, int(mm.env_start), int(mm.env_end), limit)
