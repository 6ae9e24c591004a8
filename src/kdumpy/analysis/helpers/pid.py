"""PIDs: the pid namespace's IDR (an XArray of ``struct pid``) and the tasks they name.

This is how the kernel itself finds a task by number (``find_task_by_pid_ns``), and
an independent path to the task list: ``init_task.tasks`` links processes, the IDR
indexes every pid.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.xarray import xa_entries, xa_is_value
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program


def for_each_pid(prog: Program, ns: Object | None = None) -> Iterator[Object]:
    """``struct pid *`` of every pid in a namespace (the initial one by default)."""
    if ns is None:
        ns = prog.object("init_pid_ns").address_of_()
    for _, entry in xa_entries(prog, int(ns.idr.idr_rt.xa_head), "pid XArray"):
        if not xa_is_value(entry):
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
