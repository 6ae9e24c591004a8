"""Control groups: a cgroup's path, its descendants, and the cgroup of a task.

The cgroup hierarchy is the kernfs tree under ``cgrp_dfl_root`` (cgroup v2; v1
hierarchies have their own ``cgroup_root``); a cgroup's name is its kernfs node's.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

_MAX_DEPTH = 256


def cgroup_name(cgrp: Object) -> str:
    """The last component of the cgroup's path (``""`` for a root)."""
    kn = cgrp.kn
    return kn.name.string_(256).decode("utf-8", "backslashreplace") if int(kn) else ""


def _kn_parent(kn: Object) -> Object:
    """A kernfs node's parent (``__parent`` since 6.15, RCU-protected)."""
    return kn.member_("__parent" if kn.has_member_("__parent") else "parent")


def cgroup_path(cgrp: Object) -> str:
    """``/system.slice/foo.service``, as ``/proc/PID/cgroup`` shows it (``/`` for a root).

    >>> cgroup_path(task_cgroup(find_task(prog, 1)))
    '/init.scope'
    """
    parts = []
    kn = cgrp.kn
    for _ in range(_MAX_DEPTH):
        if not int(kn):
            break
        parent = _kn_parent(kn)
        if not int(parent):
            break  # the root's own node has no name in the path
        parts.append(kn.name.string_(256).decode("utf-8", "backslashreplace"))
        kn = parent
    return "/" + "/".join(reversed(parts))


def root_cgroup(prog: Program) -> Object:
    """The root of the default (v2) hierarchy (``&cgrp_dfl_root.cgrp``)."""
    return prog.object("cgrp_dfl_root", "struct cgroup_root").cgrp.address_of_()


def css_children(css: Object) -> Iterator[Object]:
    """``struct cgroup_subsys_state *`` of a css's children."""
    yield from list_for_each_entry("struct cgroup_subsys_state", css.children, "sibling")


def cgroup_descendants(cgrp: Object) -> Iterator[Object]:
    """``struct cgroup *`` of a cgroup and every cgroup below it, parents first
    (``css_for_each_descendant_pre`` on its ``self`` css).

    >>> [cgroup_path(c) for c in cgroup_descendants(root_cgroup(prog))]
    """
    prog = cgrp.prog_
    cgroup_t = prog.type("struct cgroup")
    self_off = prog.offsetof(cgroup_t, "self")
    stack = [int(cgrp)]
    seen: set[int] = set()
    while stack:
        address = stack.pop()
        if address in seen or len(seen) > 1_000_000:
            continue
        seen.add(address)
        current = prog.pointer(cgroup_t, address)
        yield current
        children = [int(c) - self_off for c in css_children(current.self)]
        stack.extend(reversed(children))


def task_cgroup(task: Object) -> Object:
    """The task's cgroup in the default (v2) hierarchy (``task->cgroups->dfl_cgrp``)."""
    return task.cgroups.dfl_cgrp
