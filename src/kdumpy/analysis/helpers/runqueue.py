"""Run queues: the running task, queued RT tasks and the CFS red-black tree, and the
task groups (cgroups' CPU controller) queued on them (``runq -g``)."""

from __future__ import annotations

from typing import NamedTuple

from kdumpy.analysis.helpers.cgroup import cgroup_name
from kdumpy.analysis.helpers.lists import list_for_each
from kdumpy.analysis.helpers.rbtree import rb_nodes
from kdumpy.analysis.helpers.tasks import cpu_rq
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.types import PointerType


def cfs_tasks(prog: Program, cfs_rq: Object, depth: int = 0) -> list[Object]:
    """Tasks on a CFS run queue (the running one included, as drgn's
    ``rq_for_each_fair_task``), descending into group entities."""
    se_type = prog.type("struct sched_entity")
    node_off = prog.offsetof(se_type, "run_node")
    se_off = prog.offsetof("struct task_struct", "se")
    out = []
    root = int(cfs_rq.tasks_timeline.rb_root.rb_node)
    # The running entity is taken out of the tree while it runs (cfs_rq->curr).
    entities = [int(cfs_rq.curr)] if int(cfs_rq.curr) else []
    entities += [node - node_off for node in rb_nodes(prog, root)]
    for address in dict.fromkeys(entities):
        se = prog.object_at(se_type, address)
        if se.has_member_("my_q") and int(se.my_q) and depth < 8:
            out += cfs_tasks(prog, se.my_q.deref_(), depth + 1)
        else:
            out.append(prog.pointer("struct task_struct", address - se_off))
    return out


def rt_tasks(prog: Program, rq: Object) -> list[tuple[int, Object]]:
    """``(prio, task)`` of queued real-time tasks (``rq->rt.active``)."""
    out = []
    rt_off = prog.offsetof("struct task_struct", "rt")
    list_off = prog.offsetof("struct sched_rt_entity", "run_list")
    queues = rq.rt.active.queue
    length = queues.type_.strip().length  # type: ignore[attr-defined]
    if not int(rq.rt.rt_nr_running):
        return []
    for prio in range(length):
        for node in list_for_each(queues[prio]):
            out.append((prio, prog.pointer("struct task_struct", node - list_off - rt_off)))
    return out


def runqueue_tasks(
    prog: Program, cpu: int
) -> tuple[int, Object, list[tuple[int, Object]], list[tuple[int, Object]]]:
    """``(rq address, current task, [(prio, rt task)], [(prio, cfs task)])``."""
    rq = cpu_rq(prog, cpu)
    cfs = [(int(t.prio), t) for t in cfs_tasks(prog, rq.cfs)]
    return int(rq.address_ or 0), rq.curr, rt_tasks(prog, rq), cfs


class GroupRow(NamedTuple):
    """One line of crash's ``runq -g`` walk: a task group's run queue (``group`` set),
    a task (``task`` set; ``current`` if it is the CPU's running task), or an empty
    queue (neither); ``depth`` is how deep in the task group tree it lies."""

    depth: int
    group: int = 0  # struct task_group *
    queue: int = 0  # its struct cfs_rq * / struct rt_rq * on this CPU
    name: str = ""  # the group's cgroup name
    throttled: bool = False
    task: Object | None = None
    prio: int = 0
    current: bool = False


_MAX_GROUP_DEPTH = 16  # deeper task group nesting than any kernel allows: a loop


def root_task_group(prog: Program) -> Object:
    """``&root_task_group``: the top of the CPU controller's task group tree."""
    return prog.object("root_task_group").address_of_()


def task_group_cfs_rq(prog: Program, group: Object, cpu: int) -> Object:
    """A task group's ``struct cfs_rq *`` on ``cpu``: ``tg->cfs_rq[cpu]``, an array of
    pointers, until 7.2 made ``tg->cfs_rq`` a ``__percpu`` pointer."""
    cfs_rq = group.cfs_rq
    t = cfs_rq.type_.strip()
    if isinstance(t, PointerType) and isinstance(t.target.strip(), PointerType):
        return cfs_rq[cpu]
    return prog.per_cpu_ptr(cfs_rq, cpu).address_of_()


def _group_name(group: Object) -> str:
    cgrp = group.css.cgroup
    return cgroup_name(cgrp) if int(cgrp) else ""


def cfs_group_rows(prog: Program, cfs_rq: Object, current: Object,
                   depth: int = 0) -> list[GroupRow]:  # fmt: skip
    """crash's ``runq -g`` walk of a CFS run queue: below the root, the queue's task
    group first; then the running entity (a group's queue, walked, or the CPU's
    running task, marked current), then the queued entities in tree order (groups
    walked, tasks listed); ``[no tasks queued]`` when there was nothing."""
    rows: list[GroupRow] = []
    if depth:
        group = cfs_rq.tg
        throttled = cfs_rq.has_member_("throttled") and bool(int(cfs_rq.throttled))
        rows.append(GroupRow(depth, int(group), int(cfs_rq), _group_name(group), throttled))
    se_type = prog.type("struct sched_entity")
    node_off = prog.offsetof(se_type, "run_node")
    se_off = prog.offsetof("struct task_struct", "se")
    entries = 0
    curr = int(cfs_rq.curr)
    curr_q = 0
    if curr and prog.has_member(se_type, "my_q"):
        curr_q = int(prog.object_at(se_type, curr).my_q)
    if curr_q and depth < _MAX_GROUP_DEPTH:
        entries += 1
        rows += cfs_group_rows(prog, prog.pointer("struct cfs_rq", curr_q), current, depth + 1)
    elif curr and curr - se_off == int(current):
        entries += 1
        rows.append(GroupRow(depth, task=current, prio=int(current.prio), current=True))
    for node in rb_nodes(prog, int(cfs_rq.tasks_timeline.rb_root.rb_node)):
        se = prog.object_at(se_type, node - node_off)
        entries += 1
        if se.has_member_("my_q") and int(se.my_q) and depth < _MAX_GROUP_DEPTH:
            rows += cfs_group_rows(prog, se.my_q, current, depth + 1)
            continue
        task = prog.pointer("struct task_struct", node - node_off - se_off)
        rows.append(GroupRow(depth, task=task, prio=int(task.prio)))
    if not entries:
        rows.append(GroupRow(depth))
    return rows
