"""Kernel linked lists: ``list_head`` and ``hlist_head``."""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.objects import Object
from kdumpy.errors import KdumpyError

# A corrupt list must not hang the debugger.
MAX_ENTRIES = 1_000_000


class ListError(KdumpyError):
    """A kernel list is corrupt (cycle without returning to its head, bad pointer)."""


def list_for_each(head: Object) -> Iterator[int]:
    """Addresses of the ``list_head`` nodes of a list (``head`` excluded)."""
    prog = head.prog_
    head_addr = int(head) if head.type_.strip().kind == "pointer" else head.address_
    if head_addr is None:
        raise ListError("list head has no address")
    node = prog.read_u64(head_addr)
    count = 0
    while node != head_addr:
        if node == 0:
            raise ListError(f"NULL pointer in list at {head_addr:#x}")
        yield node
        node = prog.read_u64(node)
        count += 1
        if count > MAX_ENTRIES:
            raise ListError(f"list at {head_addr:#x} does not end")


def list_for_each_entry(type_: str, head: Object, member: str) -> Iterator[Object]:
    """``struct type *`` objects linked through ``member`` on the list at ``head``."""
    prog = head.prog_
    t = prog.type(type_)
    offset = prog.offsetof(t, member)
    for node in list_for_each(head):
        yield prog.pointer(t, node - offset)


def list_empty(head: Object) -> bool:
    address = head.address_
    return address is not None and head.prog_.read_u64(address) == address


def hlist_for_each(head: Object) -> Iterator[int]:
    """Addresses of the ``hlist_node``\\ s of an ``hlist_head``."""
    prog = head.prog_
    node = int(head.first)
    count = 0
    while node:
        yield node
        node = prog.read_u64(node)
        count += 1
        if count > MAX_ENTRIES:
            raise ListError("hlist does not end")


def hlist_for_each_entry(type_: str, head: Object, member: str) -> Iterator[Object]:
    prog = head.prog_
    t = prog.type(type_)
    offset = prog.offsetof(t, member)
    for node in hlist_for_each(head):
        yield prog.pointer(t, node - offset)
