"""Kernel linked lists (``list_head``, ``hlist_head``) walked safely.

A dump's lists may be corrupt: the crash may have hit in the middle of an update, or
the dump may be crafted.  A walk remembers every node it has passed, so a list that
loops back into itself ends at the first repeated node instead of running on; a NULL
or unreadable pointer ends it too.  Either way the caller gets the entries found so
far (a partial answer) and a :class:`ListWarning` is issued, which the commands show
as one line after their output (see :func:`kdumpy.analysis.commands.run_line`).
Time and memory stay proportional to the number of distinct nodes in the dump.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.errors import KdumpyError

# No real list is longer; a longer one is taken as corrupt (and cut there).
MAX_ENTRIES = 1_000_000


class ListError(KdumpyError):
    """A kernel list cannot be walked at all (its head has no address)."""


class ListWarning(UserWarning):
    """A kernel list was cut short (a cycle, a NULL or unreadable pointer): the entries
    before that point are the answer."""


def partial(what: str, why: str, count: int) -> None:
    """Report a walk cut short after ``count`` entries (one line, no traceback)."""
    warnings.warn(ListWarning(f"{what} {why} after {count} entries; showing those"), stacklevel=3)


def walk(first: int, next_of: Callable[[int], int], stop: int, what: str) -> Iterator[int]:
    """Nodes from ``first`` following ``next_of`` until ``stop`` (the head, or 0), each
    at most once."""
    seen: set[int] = set()
    node = first
    while node != stop:
        if node == 0:
            partial(what, "has a NULL pointer", len(seen))
            return
        if node in seen:
            partial(what, f"loops back to {node:#x}", len(seen))
            return
        if len(seen) >= MAX_ENTRIES:
            partial(what, f"is longer than {MAX_ENTRIES} entries", len(seen))
            return
        seen.add(node)
        try:
            nxt = next_of(node)
        except FaultError as exc:
            partial(what, f"has an unreadable node ({exc})", len(seen) - 1)
            return
        yield node
        node = nxt


def list_for_each(head: Object) -> Iterator[int]:
    """Addresses of the ``list_head`` nodes of a list (``head`` excluded)."""
    prog = head.prog_
    head_addr = int(head) if head.type_.strip().kind == "pointer" else head.address_
    if head_addr is None:
        raise ListError("list head has no address")
    yield from walk(prog.read_u64(head_addr), prog.read_u64, head_addr, f"list at {head_addr:#x}")


def list_for_each_reverse(head: Object) -> Iterator[int]:
    """As :func:`list_for_each`, last node first (through ``list_head.prev``)."""
    prog = head.prog_
    head_addr = int(head) if head.type_.strip().kind == "pointer" else head.address_
    if head_addr is None:
        raise ListError("list head has no address")

    def prev(node: int) -> int:
        return prog.read_u64(node + 8)

    yield from walk(prev(head_addr), prev, head_addr, f"list at {head_addr:#x}")


def list_for_each_entry(type_: str, head: Object, member: str) -> Iterator[Object]:
    """``struct type *`` objects linked through ``member`` on the list at ``head``."""
    prog = head.prog_
    t = prog.type(type_)
    offset = prog.offsetof(t, member)
    for node in list_for_each(head):
        yield prog.pointer(t, node - offset)


def list_empty(head: Object) -> bool:
    """Whether the list at ``head`` (a ``struct list_head``) points back at itself."""
    address = head.address_
    return address is not None and head.prog_.read_u64(address) == address


def hlist_for_each(head: Object) -> Iterator[int]:
    """Addresses of the ``hlist_node``\\ s of an ``hlist_head``."""
    prog = head.prog_
    where = f"hlist at {head.address_:#x}" if head.address_ is not None else "hlist"
    yield from walk(int(head.first), prog.read_u64, 0, where)


def hlist_for_each_entry(type_: str, head: Object, member: str) -> Iterator[Object]:
    """``struct type *`` objects linked through ``member`` (an ``hlist_node``)."""
    prog = head.prog_
    t = prog.type(type_)
    offset = prog.offsetof(t, member)
    for node in hlist_for_each(head):
        yield prog.pointer(t, node - offset)
