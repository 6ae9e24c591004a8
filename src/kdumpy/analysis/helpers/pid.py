"""PIDs: the pid namespace's IDR (an XArray of ``struct pid``) and the tasks they name.

This is how the kernel itself finds a task by number (``find_task_by_pid_ns``), and
an independent path to the task list: ``init_task.tasks`` links processes, the IDR
indexes every pid.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import partial
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

# XArray entry encoding (include/linux/xarray.h): internal entries have bits 1:0 == 2;
# those above 4096 point at a node (the pointer plus 2).
_XA_INTERNAL = 2
_MAX_ENTRIES = 1 << 22


def _xa_entries(
    prog: Program, entry: int, depth: int = 0, seen: set[int] | None = None
) -> Iterator[int]:
    """Entries under ``entry``; each node is visited once (``seen``), so a node that
    points back at itself or an ancestor cannot multiply the walk."""
    seen = set() if seen is None else seen
    if not entry:
        return
    if entry & 3 == _XA_INTERNAL:
        if entry <= 4096 or depth > 12:
            return  # retry/zero/sibling entries, or corrupt nesting
        if entry in seen:
            partial("pid XArray", f"loops back to node {entry - _XA_INTERNAL:#x}", len(seen))
            return
        seen.add(entry)
        node = prog.object_at("struct xa_node", entry - _XA_INTERNAL)
        slots = node.slots
        count = slots.type_.strip().length  # type: ignore[attr-defined]
        raw = prog.read(int(slots.address_ or 0), 8 * count)
        for i in range(count):
            child = int.from_bytes(raw[8 * i : 8 * i + 8], "little")
            yield from _xa_entries(prog, child, depth + 1, seen)
    elif entry & 3 == 0:
        yield entry


def for_each_pid(prog: Program, ns: Object | None = None) -> Iterator[Object]:
    """``struct pid *`` of every pid in a namespace (the initial one by default)."""
    if ns is None:
        ns = prog.object("init_pid_ns").address_of_()
    head = int(ns.idr.idr_rt.xa_head)
    for n, entry in enumerate(_xa_entries(prog, head)):
        if n > _MAX_ENTRIES:
            break
        yield prog.pointer("struct pid", entry)


def pid_task(prog: Program, pid: Object, pid_type: str = "PIDTYPE_PID") -> Object | None:
    """The first task attached to ``pid`` for ``pid_type`` (``pid_task()``)."""
    index = prog.constant(pid_type)
    first = int(pid.tasks[index].first)
    if not first:
        return None
    # pid_links[] is an array of struct hlist_node (two pointers each).
    offset = prog.offsetof("struct task_struct", "pid_links") + 16 * index
    return prog.pointer("struct task_struct", first - offset)


def find_task_by_pid(prog: Program, number: int) -> Object | None:
    """The task whose pid (in the initial namespace) is ``number``."""
    for pid in for_each_pid(prog):
        if int(pid.numbers[0].nr) == number:
            return pid_task(prog, pid)
    return None
