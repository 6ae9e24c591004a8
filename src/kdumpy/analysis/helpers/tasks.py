"""Tasks: iteration, state, CPU, the task running on each CPU."""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

# Kernel task state bits (include/linux/sched.h); stable since 4.14.
TASK_RUNNING = 0x0
TASK_INTERRUPTIBLE = 0x1
TASK_UNINTERRUPTIBLE = 0x2
TASK_STOPPED = 0x4
TASK_TRACED = 0x8
EXIT_DEAD = 0x10
EXIT_ZOMBIE = 0x20
TASK_PARKED = 0x40
TASK_DEAD = 0x80
TASK_WAKING = 0x200
TASK_NOLOAD = 0x400
TASK_NEW = 0x800
TASK_REPORT = 0x7F
TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD

# ps(1) letters by the highest TASK_REPORT bit, as the kernel's task_state_array.
_STATE_CHARS = "RSDTtXZP"
# crash's two-letter ps states for the same bits.
_CRASH_STATES = ("RU", "IN", "UN", "ST", "TR", "DE", "ZO", "PA")


def for_each_process(prog: Program) -> Iterator[Object]:
    """Thread group leaders (``init_task.tasks``), init_task first."""
    init = prog.object("init_task")
    yield init.address_of_()
    yield from list_for_each_entry("struct task_struct", init.tasks, "tasks")


def for_each_thread(task: Object) -> Iterator[Object]:
    """Threads of a task's group (``signal->thread_head``)."""
    yield from list_for_each_entry("struct task_struct", task.signal.thread_head, "thread_node")


def for_each_task(prog: Program) -> Iterator[Object]:
    """Every task of the system except the per-CPU idle tasks (``struct task_struct *``)."""
    for leader in for_each_process(prog):
        if int(leader.pid) == 0:
            continue  # init_task: the idle task of CPU 0
        yield from for_each_thread(leader)


def cpu_rq(prog: Program, cpu: int) -> Object:
    """The run queue of ``cpu`` (``struct rq``, per-CPU ``runqueues``)."""
    return prog.per_cpu("runqueues", cpu)


def cpu_curr(prog: Program, cpu: int) -> Object:
    """The task running on ``cpu`` at the crash (``rq->curr``)."""
    return cpu_rq(prog, cpu).curr


def idle_task(prog: Program, cpu: int) -> Object:
    """The idle task (``swapper/N``) of ``cpu``."""
    return cpu_rq(prog, cpu).idle


def task_cpu(task: Object) -> int:
    """CPU a task last ran on (``thread_info.cpu`` since 5.16, ``task->cpu`` before)."""
    if task.has_member_("cpu"):
        return int(task.cpu)
    return int(task.thread_info.cpu)


def task_state(task: Object) -> int:
    """Raw ``__state`` (``state`` before 5.14)."""
    return int(task.member_("__state" if task.has_member_("__state") else "state"))


def _report_index(task: Object) -> int | None:
    """Index into the kernel's state letters, or None for TASK_IDLE."""
    raw = task_state(task)
    if raw == TASK_IDLE:
        return None
    state = (raw | int(task.exit_state)) & TASK_REPORT
    return state.bit_length()


def task_state_to_char(task: Object) -> str:
    """The ``ps`` letter the kernel would report: R S D T t X Z P I."""
    index = _report_index(task)
    return "I" if index is None else _STATE_CHARS[index]


def task_state_crash(task: Object) -> str:
    """crash's two-letter state (RU IN UN ST TR ZO DE PA ID WA NE)."""
    raw = task_state(task)
    exit_state = int(task.exit_state)
    if exit_state & EXIT_ZOMBIE:
        return "ZO"
    if exit_state & EXIT_DEAD:
        return "DE"
    if raw == TASK_IDLE:
        return "ID"
    if raw & TASK_WAKING:
        return "WA"
    if raw & TASK_NEW:
        return "NE"
    if raw & TASK_DEAD:
        return "DE"
    index = _report_index(task)
    return "ID" if index is None else _CRASH_STATES[index]


def task_comm(task: Object) -> str:
    """The task's name as the kernel holds it (set by any user with PR_SET_NAME: print
    it through :func:`kdumpy.printable.shown`)."""
    return task.comm.string_().decode("utf-8", "backslashreplace")


def is_kthread(task: Object) -> bool:
    """A kernel thread (``PF_KTHREAD``); ps shows it in brackets."""
    PF_KTHREAD = 0x00200000  # noqa: N806 - kernel constant
    return bool(int(task.flags) & PF_KTHREAD)


def active_tasks(prog: Program) -> dict[int, Object]:
    """The task on each online CPU at the crash, by CPU."""
    return {cpu: cpu_curr(prog, cpu) for cpu in prog.online_cpus}


def cpu_of_active_task(prog: Program, task: Object) -> int | None:
    """The CPU ``task`` was running on at the crash, or None if it was not running."""
    address = int(task)
    for cpu in prog.online_cpus:
        if int(cpu_curr(prog, cpu)) == address:
            return cpu
    return None


def task_last_arrival(task: Object) -> int:
    """When ``task`` last started running on a CPU (``sched_info.last_arrival``, ns of
    its run queue's clock): what ``ps -l`` sorts by."""
    return int(task.sched_info.last_arrival)


def task_saved_sp(task: Object) -> int:
    """The kernel stack pointer a sleeping task saved when it was switched out
    (x86_64 ``thread.sp``, arm64 ``thread.cpu_context.sp``): ``ps -s``'s KSTACKP.  A
    task running at the crash has none here (its registers are in the CPU's note)."""
    thread = task.thread
    if thread.has_member_("sp"):
        return int(thread.sp)
    return int(thread.cpu_context.sp)


# A chain of parents longer than this is a cycle in a corrupt dump (pid_max is 4M).
_MAX_ANCESTORS = 1 << 22


def task_ancestors(task: Object) -> list[Object]:
    """``task`` and its parents (``task->parent``) up to the idle task of CPU 0, whose
    parent is itself; the oldest first.  A cycle ends the chain where it closes."""
    chain = [task]
    seen = {int(task)}
    while len(chain) < _MAX_ANCESTORS:
        parent = chain[-1].parent
        if int(parent) in seen:
            break
        seen.add(int(parent))
        chain.append(parent)
    return chain[::-1]


def panic_task(prog: Program) -> Object | None:
    """The task that panicked: the one running on the panic CPU."""
    cpu = prog.panic_cpu
    if cpu is None:
        return None
    return cpu_curr(prog, cpu)


def find_task(prog: Program, pid: int) -> Object | None:
    """The task with this pid (pid 0: CPU 0's idle task)."""
    if pid == 0:
        return idle_task(prog, 0)
    for task in for_each_task(prog):
        if int(task.pid) == pid:
            return task
    return None
