"""Run queues: the running task, queued RT tasks and the CFS red-black tree."""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import list_for_each, partial
from kdumpy.analysis.helpers.tasks import cpu_rq
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

_MAX_NODES = 100_000


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
    entities += [node - node_off for node in _rb_nodes(prog, root)]
    for address in dict.fromkeys(entities):
        se = prog.object_at(se_type, address)
        if se.has_member_("my_q") and int(se.my_q) and depth < 8:
            out += cfs_tasks(prog, se.my_q.deref_(), depth + 1)
        else:
            out.append(prog.pointer("struct task_struct", address - se_off))
    return out


def _rb_nodes(prog: Program, root: int) -> Iterator[int]:
    """In-order walk; ``struct rb_node`` is {__rb_parent_color, rb_right, rb_left}.
    A child pointer back to a node already passed (a corrupt tree) ends the walk."""
    right_off = prog.offsetof("struct rb_node", "rb_right")
    left_off = prog.offsetof("struct rb_node", "rb_left")
    stack: list[int] = []
    seen: set[int] = set()
    node = root
    while stack or node:
        while node:
            if node in seen or len(seen) >= _MAX_NODES:
                why = f"loops back to {node:#x}" if node in seen else "has too many nodes"
                partial(f"rbtree at {root:#x}", why, len(seen))
                return
            seen.add(node)
            stack.append(node)
            node = prog.read_u64(node + left_off)
        node = stack.pop()
        yield node
        node = prog.read_u64(node + right_off)


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
