"""Corrupt kernel lists (issue 17, finding 14): a list that loops back into itself, or
runs into a NULL or unmapped pointer, ends the walk at that point; commands print what
they found and one WARNING line, in bounded time and memory.  Before, a cyclic task
list ran ``ps`` for 34 s and 575 MB (the 1,000,000-entry cap), and a cyclic run queue
list never ended.  Each machine below is the standard one with one pointer changed."""

from __future__ import annotations

import signal
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from synthetic import build_machine, open_program

from kdumpy.analysis.commands import Session, run_line
from kdumpy.analysis.helpers.pid import find_task_by_pid, for_each_pid
from kdumpy.analysis.report import build_report, format_report


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging when the old code would loop (for ever, or 1M times)."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"still walking after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def tampered(change):
    data, machine = build_machine(tamper=change)
    return open_program(data), machine


def ps_pids(out: str) -> list[int]:
    return [int(line[1:].split()[0]) for line in out.splitlines()[1:] if line[:1] in " >"]


def _next(k, m, pid: int, member: str) -> int:
    """Address of ``task->member.next`` of a task of the machine."""
    return m.tasks[pid].address + k.offsetof("struct task_struct", f"{member}.next")


def test_cyclic_task_list_gives_a_partial_ps_and_one_warning():
    # kthreadd's next process is systemd again: init_task -> 1 -> 2 -> 1 -> ...
    def loop(k, m):
        k.mem.u64(_next(k, m, 2, "tasks"), m.tasks[1].address + k.offsetof(
            "struct task_struct", "tasks"))  # fmt: skip

    prog, _m = tampered(loop)
    tracemalloc.start()
    start = time.perf_counter()
    with deadline(10):
        out = run_line(Session(prog), "ps")
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ps_pids(out) == [0, 0, 1, 2]
    warnings = [line for line in out.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 1 and "loops back to" in warnings[0]
    assert elapsed < 2 and peak < 20 << 20, (elapsed, peak)


@pytest.mark.parametrize("bad", [0, 0xFFFFC9FFDEAD0000], ids=["null", "unmapped"])
def test_task_list_into_nowhere_gives_the_tasks_before_it(bad):
    prog, _m = tampered(lambda k, m: k.mem.u64(_next(k, m, 20, "tasks"), bad))
    out = run_line(Session(prog), "ps")
    assert ps_pids(out) == [0, 0, 1, 2, 20]
    assert ("NULL pointer" if not bad else "unreadable node") in out.splitlines()[-1]


def test_cyclic_thread_list():
    # Thread 1401's thread_node points at itself: 1400, 1401, 1401, ...
    def loop(k, m):
        k.mem.u64(_next(k, m, 1401, "thread_node"), _next(k, m, 1401, "thread_node"))

    prog, _m = tampered(loop)
    with deadline(10):
        out = run_line(Session(prog), "ps")
    assert ps_pids(out).count(1401) == 1 and "WARNING: list at" in out


def test_cyclic_rt_run_queue():
    # migration/1's rt.run_list points at itself: the old walk never ended.
    def loop(k, m):
        node = m.tasks[20].address + k.offsetof("struct task_struct", "rt.run_list")
        k.mem.u64(node, node)

    prog, _m = tampered(loop)
    with deadline(10):
        out = run_line(Session(prog), "runq")
    assert out.count("migration/1") == 1 and "WARNING: list at" in out


def test_cyclic_cfs_tree():
    # The leftmost queued task's rb_left points back at the tree's root.
    def loop(k, m):
        se = k.offsetof("struct task_struct", "se.run_node")
        leftmost, root = m.tasks[300].address + se, m.tasks[45].address + se
        k.mem.u64(leftmost + k.offsetof("struct rb_node", "rb_left"), root)

    prog, _m = tampered(loop)
    with deadline(10):
        out = run_line(Session(prog), "runq")
    assert "WARNING: rbtree at" in out and "loops back" in out
    assert "PID: 1234   TASK:" in out  # the running task is still shown


def test_cyclic_pid_xarray():
    # A leaf node's last slot points back at the root node.
    def loop(k, m):
        root = k.mem.read_u64(k.symbols["init_pid_ns"][0] + k.offsetof(
            "struct pid_namespace", "idr.idr_rt.xa_head"))  # fmt: skip
        leaf = k.mem.read_u64(root - 2 + k.offsetof("struct xa_node", "slots[0]")) - 2
        k.mem.u64(leaf + k.offsetof("struct xa_node", "slots[63]"), root)

    prog, m = tampered(loop)
    with deadline(10), pytest.warns(UserWarning, match="pid XArray loops back"):
        pids = [int(p.numbers[0].nr) for p in for_each_pid(prog)]
        task = find_task_by_pid(prog, 1300)
    assert sorted(pids) == sorted(m.tasks)
    assert task is not None and int(task) == m.tasks[1300].address


def test_report_on_a_cyclic_task_list_is_partial_with_a_warning():
    def loop(k, m):
        k.mem.u64(_next(k, m, 1234, "tasks"), m.tasks[300].address + k.offsetof(
            "struct task_struct", "tasks"))  # fmt: skip

    prog, _m = tampered(loop)
    with deadline(10):
        report = build_report(prog)
    assert len(report["warnings"]) == 1 and "loops back" in report["warnings"][0]
    assert report["crashing_task"]["pid"] == 1234
    assert "Warning:   list at" in format_report(report)
