"""Run queues: the running task, queued RT tasks and the CFS red-black tree."""

from __future__ import annotations

from kdumpy.analysis.helpers.lists import list_for_each
from kdumpy.analysis.helpers.rbtree import rb_nodes
from kdumpy.analysis.helpers.tasks import cpu_rq
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program


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
