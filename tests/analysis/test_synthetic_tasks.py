"""Tasks, ps, bt, set, foreach and the pid IDR on the synthetic machine, each row
checked against what the machine put in memory (tests/analysis/synthetic)."""

from __future__ import annotations

import pytest
from synthetic import HOSTILE_COMM

from kdumpy.analysis.helpers.mm import task_rss_vsz
from kdumpy.analysis.helpers.pid import find_task_by_pid, for_each_pid, pid_task
from kdumpy.analysis.helpers.tasks import (
    active_tasks,
    cpu_of_active_task,
    find_task,
    for_each_process,
    for_each_task,
    for_each_thread,
    idle_task,
    is_kthread,
    panic_task,
    task_comm,
    task_cpu,
    task_state_crash,
    task_state_to_char,
)
from kdumpy.analysis.unwind import stack_trace

TOTAL_KB = 262144 * 4


def _comm(task) -> str:
    return task.comm.decode("utf-8", "backslashreplace")


def test_task_iteration_and_fields(prog, machine):
    tasks = {int(t.pid): t for t in for_each_task(prog)}
    assert set(tasks) == set(machine.tasks)
    for pid, t in tasks.items():
        want = machine.tasks[pid]
        assert int(t) == want.address
        assert task_comm(t) == _comm(want)
        assert task_state_crash(t) == want.state
        assert task_cpu(t) == want.cpu
        assert int(t.real_parent.pid) == want.ppid
        assert is_kthread(t) == want.kthread
        assert task_rss_vsz(prog, t) == (want.rss_kb, want.vsz_kb)
    leaders = [int(t.pid) for t in for_each_process(prog)]
    assert leaders[0] == 0 and 1401 not in leaders and 1400 in leaders
    threads = [int(t.pid) for t in for_each_thread(tasks[1400])]
    assert threads == [1400, 1401]


def test_state_letters(prog):
    letters = {int(t.pid): task_state_to_char(t) for t in for_each_task(prog)}
    assert letters[1] == "S" and letters[300] == "R" and letters[1400] == "D"
    assert letters[1600] == "Z"


def test_cpus_idle_and_panic_task(prog, machine):
    assert prog.online_cpus == [0, 1] and prog.nr_cpu_ids == 2
    assert prog.panic_cpu == 1
    assert int(panic_task(prog)) == machine.panic_task.address
    assert {c: int(t) for c, t in active_tasks(prog).items()} == {
        0: machine.idle[0].address,
        1: machine.panic_task.address,
    }
    assert [int(idle_task(prog, c)) for c in (0, 1)] == [t.address for t in machine.idle]
    assert cpu_of_active_task(prog, panic_task(prog)) == 1
    assert int(find_task(prog, 0)) == machine.idle[0].address
    assert int(find_task(prog, 1300)) == machine.tasks[1300].address
    assert find_task(prog, 4242) is None


def test_pid_idr_indexes_every_task(prog, machine):
    pids = {int(p.numbers[0].nr): p for p in for_each_pid(prog)}
    assert set(pids) == set(machine.tasks)
    for pid, p in pids.items():
        assert int(pid_task(prog, p)) == machine.tasks[pid].address
    assert int(find_task_by_pid(prog, 1401)) == machine.tasks[1401].address
    assert find_task_by_pid(prog, 999) is None


def _row(line: str) -> list[str]:
    return line[1:].split(None, 8)


def test_ps_rows(crash, machine):
    lines = crash("ps").splitlines()
    assert lines[0].split() == ["PID", "PPID", "CPU", "TASK", "ST", "%MEM", "VSZ", "RSS", "COMM"]
    rows = lines[1:]
    assert len(rows) == 2 + len(machine.tasks)
    active = {machine.idle[0].address, machine.panic_task.address}
    tasks = [*machine.idle, *sorted(machine.tasks.values(), key=lambda t: t.pid)]
    for line, want in zip(rows, tasks, strict=True):
        pid, ppid, cpu, task, st, mem, vsz, rss, comm = _row(line)
        assert (line[0] == ">") == (want.address in active)
        assert (int(pid), int(ppid), int(cpu), int(task, 16), st) == (
            want.pid, want.ppid, want.cpu, want.address, want.state)  # fmt: skip
        assert (int(vsz), int(rss)) == (want.vsz_kb, want.rss_kb)
        assert float(mem) == pytest.approx(100 * want.rss_kb / TOTAL_KB, abs=0.051)
        name = _comm(want) if want.comm != HOSTILE_COMM else r"\x1b[2J\x1b]0;pwn\x07"
        assert comm == (f"[{name}]" if want.kthread or want.pid == 0 else name)


def test_ps_filters(crash):
    kernel = {_row(r)[0] for r in crash("ps -k").splitlines()[1:]}
    user = {_row(r)[0] for r in crash("ps -u").splitlines()[1:]}
    assert kernel == {"0", "2", "20", "45", "46"}
    assert "1234" in user and not kernel & user
    assert [_row(r)[0] for r in crash("ps kdumpy-dstate 1").splitlines()[1:]] == [
        "1", "1400", "1401"]  # fmt: skip


def _frames(text: str) -> list[tuple[str, int, int]]:
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            _n, slot, name, _at, pc = line.split()
            out.append((name, int(pc, 16), int(slot.strip("[]"), 16)))
    return out


def _want(task) -> list[tuple[str, int, int]]:
    return [(f.function, f.pc, f.slot) for f in task.frames]


def test_bt_of_the_panic_task_from_its_cpu_registers(crash, machine):
    out = crash("bt")
    task = machine.panic_task
    assert out.splitlines()[0] == (f'PID: 1234    TASK: {task.address:x}  CPU: 1   COMMAND: "bash"')
    assert _frames(out) == _want(task)
    # The syscall's user registers end the trace, as crash prints them.
    assert f"RIP: {task.user_regs['ip']:016x}  RSP: {task.user_regs['sp']:016x}" in out
    assert "RDI: 0000000000000001" in out and "CS: 0033  SS: 002b" in out


@pytest.mark.parametrize("pid", [1, 2, 20, 45, 46, 300, 1300, 1400, 1401, 1600, 666])
def test_bt_of_each_sleeping_task(crash, machine, pid):
    """ORC all the way (1, 300 ...), a stack scan past a function without ORC (45),
    frame pointers past one reached by an indirect call (46), module ORC (1400)."""
    assert _frames(crash(f"bt {pid}")) == _want(machine.tasks[pid])


def test_bt_a_and_by_address(crash, machine):
    out = crash("bt -a")
    assert _frames(out) == _want(machine.idle[0]) + _want(machine.panic_task)
    assert _frames(crash(f"bt {machine.tasks[45].address:x}")) == _want(machine.tasks[45])


def test_stack_trace_names_module_frames(prog, machine):
    frames = stack_trace(prog, find_task(prog, 1400))
    assert [f.location() for f in frames[2:4]] == ["synth_wait+0x10 [synthmod]",
                                                   "synth_write+0x10 [synthmod]"]  # fmt: skip


def test_bt_f_shows_each_frames_stack_words(crash, prog, machine):
    out = crash("bt -f 1300").splitlines()
    frames = machine.tasks[1300].frames
    # Frame 0's words run from above its return-address slot to the caller's slot.
    first = out.index(next(line for line in out if line.lstrip().startswith("#0"))) + 1
    start, end = frames[0].slot + 8, frames[1].slot + 8
    words = prog.read(start, end - start)
    expected = [int.from_bytes(words[i : i + 8], "little") for i in range(0, len(words), 8)]
    shown = []
    for line in out[first:]:
        if line.lstrip().startswith("#"):
            break
        shown += [int(w, 16) for w in line.split(":")[1].split()]
    assert shown == expected and shown[-1] == frames[1].pc


def test_bt_e_finds_the_user_exception_frame(crash, machine):
    task = machine.tasks[1300]
    out = crash("bt -e 1300")
    assert f"USER-MODE EXCEPTION FRAME AT: {task.regs_at:x}" in out
    assert f"RIP: {task.user_regs['ip']:016x}" in out
    assert out.count("EXCEPTION FRAME") == 1


def test_bt_errors_are_one_line(crash):
    assert crash("bt -l") == (
        "bt: -l: source lines need the vmlinux with debug info (kdumpy crash VMLINUX DUMP)\n"
    )
    usage = "bt [-a|-c cpus|-p] [-e] [-f|-F] [-l] [-s [-x|-d]] [pid | task ...]"
    assert crash("bt -z") == f"bt: unknown option -z (usage: {usage})\n"
    assert crash("bt 4242") == "bt: invalid task or pid value: 4242\n"


def test_set_changes_the_context_for_bt(prog, machine):
    from kdumpy.analysis.commands import Session, run_line

    session = Session(prog)
    assert 'COMMAND: "bash"' in run_line(session, "set")
    out = run_line(session, "set 1300")
    assert out == (f'    PID: 1300\nCOMMAND: "sleep"\n   TASK: {machine.tasks[1300].address:x}\n'
                   "    CPU: 0\n  STATE: IN\n")  # fmt: skip
    assert run_line(session, "bt").splitlines()[0].startswith("PID: 1300 ")
    assert "STATE: RU (ACTIVE)" in run_line(session, "set 1234")


def test_foreach_filters_by_state(crash, machine):
    ps = crash("foreach UN ps").splitlines()
    assert [_row(r)[0] for r in ps] == ["1400", "1401"]
    bts = crash("foreach ZO bt")
    assert _frames(bts) == _want(machine.tasks[1600])
    files = crash("foreach IN files")
    pids = [int(line.split()[1]) for line in files.splitlines() if line.startswith("PID:")]
    assert pids == [1, 2, 46, 666, 1300] and files.count("ROOT:") == 5
    assert crash("foreach net") == "foreach: foreach supports bt, files, ps, vm and sig\n"


def test_foreach_ps_has_a_row_per_task_even_when_pids_repeat(crash, machine):
    """Every CPU's idle task has pid 0: each still gets its own row (a row looked up
    again by pid repeated the last idle task)."""
    tasks = [*machine.idle, *sorted(machine.tasks.values(), key=lambda t: t.pid)]
    rows = crash("foreach ps").splitlines()
    assert [int(row[1:].split()[3], 16) for row in rows] == [t.address for t in tasks]
