"""``foreach bt`` at scale: the lab's ``tasks`` dump (6.1, 1,000 sleeping processes
forked before the crash), against drgn 0.3.0 with the Debian -dbg vmlinux: the same
tasks, and the same functions on each stack (physical frames; drgn's frames from the
task's saved registers)."""

from __future__ import annotations

import re

import pytest
from analysis_oracle import dbg_vmlinux
from drgn_oracle import frame_functions, open_program

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

pytestmark = pytest.mark.vm
TASK = re.compile(r"^PID: (\d+)\s+TASK: ([0-9a-f]+)", re.M)
FRAME = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at ([0-9a-f]+)$", re.M)


@pytest.fixture(scope="module")
def tasks_dump():
    from kdumpy.lab.dumps import lab_dump

    return lab_dump("6.1", crash="tasks")


def test_foreach_bt_covers_every_task_with_drgns_frames(tasks_dump):
    from drgn.helpers.linux.pid import for_each_task

    with Program.open(tasks_dump.vmcore) as prog:
        out = run_line(Session(prog), "foreach bt")
    blocks = re.split(r"\n(?=PID: )", out)
    ours = {}
    for block in blocks:
        head = TASK.match(block)
        assert head is not None, block[:200]
        ours[int(head[2], 16)] = (int(head[1]), FRAME.findall(block))
    dprog = open_program(str(tasks_dump.vmcore), str(dbg_vmlinux(tasks_dump.kernel)))
    theirs = {t.value_(): t for t in for_each_task(dprog)}
    assert len(theirs) >= 1000 and set(theirs) <= set(ours)  # + the per-CPU idle tasks
    compared = 0
    for address, task in theirs.items():
        pid, frames = ours[address]
        assert pid == task.pid.value_()
        if task.on_cpu.value_():
            continue  # running: drgn unwinds from PRSTATUS like kdumpy, checked elsewhere
        drgn_frames = frame_functions(dprog, dprog.stack_trace(task))
        # by return address: names differ at labels (drgn names pc - 1's function, so
        # entry_SYSCALL_64 where crash and kdumpy say entry_SYSCALL_64_after_hwframe)
        assert [int(pc, 16) for _, pc in frames] == [f[1] for f in drgn_frames], pid
        compared += 1
    assert compared >= 1000
