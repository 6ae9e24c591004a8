"""Choosing tasks from a command's words, and the line that heads each task's output."""

from __future__ import annotations

from kdumpy.analysis.commands import parse_number
from kdumpy.analysis.commands.base import CommandError, Session
from kdumpy.analysis.helpers.tasks import find_task, for_each_task, idle_task, task_comm, task_cpu
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.printable import shown


def all_tasks(prog: Program) -> list[Object]:
    """Idle tasks of each CPU first, then every other task (crash's order)."""
    idle = [idle_task(prog, cpu) for cpu in prog.online_cpus]
    return idle + sorted(for_each_task(prog), key=lambda t: int(t.pid))


def task_line(task: Object) -> str:
    """``PID: 1234    TASK: ffff...  CPU: 1   COMMAND: "bash"``, as bt, files and foreach
    head each task."""
    return (
        f"PID: {int(task.pid):<7} TASK: {int(task):x}  CPU: {task_cpu(task):<3} "
        f'COMMAND: "{shown(task_comm(task))}"\n'
    )


def task_from_arg(session: Session, arg: str) -> Object:
    """A task by pid (decimal) or by task_struct address (hex)."""
    prog = session.prog
    if arg.isdigit() and len(arg) < 8:
        task = find_task(prog, int(arg))
        if task is None:
            raise CommandError(f"invalid task or pid value: {arg}")
        return task
    address = parse_number(arg)
    for task in [*all_tasks(prog)]:
        if int(task) == address:
            return task
    raise CommandError(f"invalid task or pid value: {arg}")
