"""kdumpy's Python API: a crashed kernel from its dump, for scripts.

    import kdumpy
    prog = kdumpy.open("vmcore")                 # or kdumpy.open("vmcore", "vmlinux")
    for task in for_each_task(prog):
        print(int(task.pid), task_comm(task), task_state_crash(task))

This module gathers, under one name, what the crash commands are built on: the
:class:`~kdumpy.analysis.program.Program` (symbols, types, memory, per-CPU data),
typed :class:`~kdumpy.analysis.objects.Object`\\ s and the helpers per kernel
subsystem (:mod:`kdumpy.analysis.helpers`).  Every name in :data:`__all__` is stable
(docs/python-api.md says what that promises); ``kdumpy crash --python SCRIPT`` and the
shell's ``py`` command run code with ``prog`` and all of these names bound, and every
crash command's ``--python`` prints the code of this API that does what it does.

Strings from the dump (task and file names, log text) are returned as the kernel holds
them: print them through :func:`kdumpy.printable.shown` (``py`` and ``--python``
scripts have their output escaped for the terminal already).
"""

from __future__ import annotations

import os

from kdumpy.analysis.helpers.cgroup import (
    cgroup_descendants,
    cgroup_name,
    cgroup_path,
    css_children,
    root_cgroup,
    task_cgroup,
)
from kdumpy.analysis.helpers.files import (
    d_path,
    dentry_name,
    file_path,
    file_reference_matches,
    file_type,
    task_files,
    task_root_cwd,
)
from kdumpy.analysis.helpers.lists import (
    ListWarning,
    hlist_for_each,
    hlist_for_each_entry,
    list_empty,
    list_for_each,
    list_for_each_entry,
)
from kdumpy.analysis.helpers.mm import task_rss_vsz, totalram_pages
from kdumpy.analysis.helpers.modules import for_each_module, module_info, module_name
from kdumpy.analysis.helpers.mount import (
    dentry_path,
    for_each_mount,
    mount_devname,
    mount_dir,
    mount_fstype,
)
from kdumpy.analysis.helpers.net import for_each_netdev, netdev_name, task_sockets
from kdumpy.analysis.helpers.pagecache import (
    for_each_page_cache_page,
    page_cache_rows,
    page_cache_size,
    page_flag_names,
)
from kdumpy.analysis.helpers.pid import find_task_by_pid, for_each_pid, pid_task
from kdumpy.analysis.helpers.printk import crash_date, format_log, log_records
from kdumpy.analysis.helpers.rbtree import rbtree_inorder_for_each, rbtree_inorder_for_each_entry
from kdumpy.analysis.helpers.resource import Rlimit, task_rlimits
from kdumpy.analysis.helpers.runqueue import runqueue_tasks
from kdumpy.analysis.helpers.slab import (
    find_slab_cache,
    for_each_slab_cache,
    slab_cache_name,
    slab_cache_usage,
    slab_object,
)
from kdumpy.analysis.helpers.symbolize import symbolize
from kdumpy.analysis.helpers.system import (
    boot_epoch,
    system_info,
    taint_letters,
    task_run_seconds,
    uptime_jiffies,
)
from kdumpy.analysis.helpers.tasks import (
    active_tasks,
    cpu_curr,
    cpu_of_active_task,
    cpu_rq,
    find_task,
    for_each_process,
    for_each_task,
    for_each_thread,
    idle_task,
    is_kthread,
    panic_task,
    task_ancestors,
    task_comm,
    task_cpu,
    task_last_arrival,
    task_saved_sp,
    task_state,
    task_state_crash,
    task_state_to_char,
)
from kdumpy.analysis.helpers.usermem import UserStrings, mm_cmdline, mm_environ, read_user
from kdumpy.analysis.helpers.vma import for_each_vma, vma_name
from kdumpy.analysis.helpers.xarray import xa_for_each, xa_is_value, xa_load, xa_to_value
from kdumpy.analysis.lines import LinesUnavailable, SourceLine, line_table
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object, ObjectError
from kdumpy.analysis.printing import format_type, format_value
from kdumpy.analysis.program import Program, TypesMissingError
from kdumpy.analysis.unwind import Frame, stack_trace
from kdumpy.printable import shown

__all__ = [
    # the program and its objects
    "open", "Program", "Object", "ObjectError", "FaultError", "TypesMissingError",
    "format_value", "format_type", "shown",
    # lists, trees, arrays
    "list_for_each", "list_for_each_entry", "list_empty", "hlist_for_each",
    "hlist_for_each_entry", "rbtree_inorder_for_each", "rbtree_inorder_for_each_entry",
    "xa_for_each", "xa_load", "xa_is_value", "xa_to_value", "ListWarning",
    # tasks, stacks, pids, run queues
    "for_each_task", "for_each_process", "for_each_thread", "find_task", "panic_task",
    "active_tasks", "idle_task", "cpu_curr", "cpu_rq", "cpu_of_active_task", "task_comm",
    "task_cpu", "task_state", "task_state_crash", "task_state_to_char", "is_kthread",
    "stack_trace", "Frame", "symbolize", "line_table", "SourceLine", "LinesUnavailable",
    "for_each_pid", "pid_task", "find_task_by_pid", "runqueue_tasks", "task_ancestors",
    "task_last_arrival", "task_saved_sp", "task_run_seconds", "uptime_jiffies",
    "task_rlimits", "Rlimit", "mm_cmdline", "mm_environ", "read_user", "UserStrings",
    # memory, files, page cache, cgroups, modules, log, system
    "task_rss_vsz", "totalram_pages", "task_files", "task_root_cwd", "file_path", "d_path",
    "dentry_name", "for_each_page_cache_page", "page_cache_size", "cgroup_path", "cgroup_name",
    "dentry_path", "file_type", "file_reference_matches", "page_cache_rows", "page_flag_names",
    "cgroup_descendants", "css_children", "root_cgroup", "task_cgroup", "for_each_module",
    "module_info", "module_name", "log_records", "format_log", "crash_date", "boot_epoch",
    "system_info", "taint_letters",
    # slab caches, mounts, VMAs, network devices and sockets
    "for_each_slab_cache", "find_slab_cache", "slab_cache_name", "slab_cache_usage",
    "slab_object", "for_each_mount", "mount_devname", "mount_fstype", "mount_dir",
    "for_each_vma", "vma_name", "for_each_netdev", "netdev_name", "task_sockets",
]  # fmt: skip


def open(  # noqa: A001 - kdumpy.open mirrors the builtin's role for dumps
    dump: str | os.PathLike[str],
    vmlinux: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Program:
    """Open a dump for analysis: any format kdumpy reads (ELF /proc/vmcore, kdump-
    compressed, flattened, QEMU's), with a vmlinux or
    System.map of the same build if given (``force``: even if it does not match).

    Symbols come from the dump's kallsyms, types from its BTF and stacks from its ORC
    tables; the vmlinux adds DWARF types for kernels without BTF.  Close it with
    ``prog.close()`` or use it in a ``with`` block.

    >>> import kdumpy
    >>> with kdumpy.open("vmcore") as prog:
    ...     task = panic_task(prog)
    ...     print(task.pid, task_comm(task), [f.name for f in stack_trace(prog, task)])
    """
    return Program.open(dump, vmlinux, force)


def script_namespace(prog: Program) -> dict[str, object]:
    """The globals a script run by ``kdumpy crash --python`` or ``py`` starts with:
    ``prog`` and every name of this API."""
    namespace: dict[str, object] = {"__name__": "__main__", "prog": prog}
    namespace.update({name: globals()[name] for name in __all__})
    return namespace
