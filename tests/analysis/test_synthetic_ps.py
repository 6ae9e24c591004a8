"""ps's views (-p -c -t -l -m -C -a -g -r -s -H) on the synthetic machine, each row
checked against what the machine put in memory (tests/analysis/synthetic), and the
code ``ps --python`` prints, run, against the same values."""

from __future__ import annotations

import ast
import io
import re

import pytest

from kdumpy.analysis.api import script_namespace
from kdumpy.analysis.commands import Session, run_line
from kdumpy.analysis.helpers.tasks import find_task
from kdumpy.analysis.helpers.usermem import mm_cmdline, mm_environ
from kdumpy.analysis.scripting import run_code

HEAD = re.compile(r'^( *)PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: "(.*)"$')


def heads(text: str) -> list[tuple[int, int, int]]:
    """``(indent, pid, task)`` of each task header line."""
    return [(len(m[1]), int(m[2]), int(m[3], 16)) for m in map(HEAD.match, text.splitlines()) if m]


def blocks(text: str) -> list[str]:
    return [b for b in text.split("\n\n") if b.strip()]


def everyone(machine) -> list:
    """Every task in ps's order: the idle tasks by CPU, then by pid."""
    return [*machine.idle, *(machine.tasks[p] for p in sorted(machine.tasks))]


def test_parents_from_the_idle_task_down(crash, machine):
    out = crash("ps -p 1300")
    chain = [machine.idle[0], machine.tasks[1], machine.tasks[1234], machine.tasks[1300]]
    assert heads(out) == [(i, t.pid, t.address) for i, t in enumerate(chain)]
    # every task: one block each, each ending in that task, each starting at CPU 0's idle
    every = blocks(crash("ps -p"))
    assert len(every) == len(everyone(machine))
    for block, task in zip(every, everyone(machine), strict=True):
        assert heads(block)[-1][1:] == (task.pid, task.address)
        assert heads(block)[0][2] == machine.idle[0].address


def test_children_are_the_tasks_whose_parent_it_is(crash, machine):
    out = crash("ps -c 1 1300")
    one, sleep = blocks(out)
    kids = [t for t in everyone(machine) if t.ppid == 1 and t.pid]
    assert heads(one) == [(0, 1, machine.tasks[1].address), *((2, t.pid, t.address) for t in kids)]
    assert [p for _, p, _ in heads(one)][1:] == [300, 666, 1234, 1400, 1401]
    assert heads(sleep) == [(0, 1300, machine.tasks[1300].address)]
    assert sleep.splitlines()[-1] == "  (no children)"


def test_times_run_start_user_system(crash, machine):
    out = crash("ps -t")
    rows = blocks(out)
    started = sorted(everyone(machine), key=lambda t: t.start_time)  # oldest first
    assert [heads(b)[0][2] for b in rows] == [t.address for t in started]
    for block, task in zip(rows, started, strict=True):
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:])
        # RUN TIME: jiffies since boot less the start in whole seconds, at HZ
        run = (machine.uptime_jiffies - task.start_time // 10**9 * machine.hz) // machine.hz
        h, m, s = run // 3600, run // 60 % 60, run % 60
        assert fields == {"RUN TIME": f"{h:02}:{m:02}:{s:02}", "START TIME": str(task.start_time),
                          "UTIME": str(task.utime), "STIME": str(task.stime)}  # fmt: skip
    assert blocks(crash("ps -t 1400")) == [b for b in rows if "PID: 1400 " in b]


def test_last_run_latest_first_and_ties_in_task_order(crash, machine):
    rows = crash("ps -l").splitlines()
    want = sorted(everyone(machine), key=lambda t: -t.last_arrival)  # stable on ties
    width = len(str(max(t.last_arrival for t in want)))
    assert len(rows) == len(want)
    for row, task in zip(rows, want, strict=True):
        assert row.startswith(f"[{task.last_arrival:>{width}}] [{task.state}]  PID: {task.pid} ")
        assert f"TASK: {task.address:x} " in row
    ties = [heads(r.split("]  ", 1)[1])[0][1] for r in rows if r.startswith("[6500000000000]")]
    assert ties == [46, 1300]


def _ns(ns: int) -> str:
    secs, ms = divmod(ns // 10**6, 1000)
    return f"{secs // 86400} {secs // 3600 % 24:02}:{secs // 60 % 60:02}:{secs % 60:02}.{ms:03}"


def test_elapsed_since_last_run_by_its_cpus_clock(crash, machine):
    clocks = {0: 7_000_000_000_000, 1: 6_997_500_000_000}  # the run queues' clocks
    rows = crash("ps -m").splitlines()
    want = sorted(everyone(machine), key=lambda t: -t.last_arrival)
    for row, task in zip(rows, want, strict=True):
        assert row.startswith(f"[{_ns(clocks[task.cpu] - task.last_arrival)}] [{task.state}]  ")
    bash = next(r for r in rows if 'COMMAND: "bash"' in r)
    assert bash.startswith("[0 01:02:03.456] [RU]")


def test_cpu_blocks_with_l_and_m(crash, machine):
    out = crash("ps -l -C 1,0")
    cpu0, cpu1 = out.split("\n\n")  # blocks in CPU order whatever the list's order
    assert cpu0.splitlines()[0] == "CPU: 0" and cpu1.splitlines()[0] == "CPU: 1"
    for n, block in ((0, cpu0), (1, cpu1)):
        want = sorted((t for t in everyone(machine) if t.cpu == n), key=lambda t: -t.last_arrival)
        got = [heads(line.split("]  ", 1)[1])[0][2] for line in block.splitlines()[1:]]
        assert got == [t.address for t in want]
    assert crash("ps -m -C all").split("\n\n")[0] == crash("ps -m -C 0").rstrip("\n")
    assert "is only applicable with -l and -m" in crash("ps -C 0")
    assert "invalid" in crash("ps -l -C 7")


def test_arguments_and_environment_from_user_memory(crash, machine, prog):
    out = crash("ps -a 1 2 1234")
    systemd, kthreadd, bash = blocks(out)
    argv, envp = machine.user_args[1]
    assert systemd.splitlines()[1] == "ARG: " + " ".join(a.decode() for a in argv)
    env = [line.strip() for line in systemd.split("ENV: ", 1)[1].splitlines()]
    assert env == ["HOME=/", "TERM=linux", "EVIL=\\x1b[2J"]  # the escape is shown, not sent
    assert kthreadd.splitlines()[1] == "ps: no user stack"
    # bash's user pages are not in the dump: crash's message, naming the address
    assert re.fullmatch(r"ps: cannot access user stack address: 7ffc0002efe8", bash.splitlines()[1])
    # sizes from the dump are bounded: a short limit reads the start and says so
    mm = find_task(prog, 1).mm
    assert mm_cmdline(prog, mm, limit=20) == ([argv[0][:20]], True)
    assert mm_environ(prog, mm) == (envp, False)


def test_thread_groups(crash, machine):
    out = crash("ps -g")
    groups = {heads(b)[0][1]: [p for _, p, _ in heads(b)[1:]] for b in blocks(out)}
    assert groups[1400] == [1401] and 1401 not in groups
    assert groups[0] == [0]  # the idle tasks are one group, led by CPU 0's
    assert blocks(out)[1].splitlines()[-1] == "  (no threads)"
    # a thread names its group; by name, only the leader stands for it
    assert crash("ps -g 1401") == crash("ps -g 1400") == crash("ps -g kdumpy-dstate")


def test_resource_limits(crash, machine):
    out = crash("ps -r 1").splitlines()
    assert heads(out[0])[0][1] == 1
    assert out[1].split() == ["RLIMIT", "CURRENT", "MAXIMUM"]
    names = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK",
             "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"]  # fmt: skip
    unlimited = (1 << 64) - 1
    rows = [line.split() for line in out[2:] if line]
    assert [r[0] for r in rows] == names
    for row, (cur, hard) in zip(rows, machine.rlimits[1], strict=True):
        assert row[1:] == ["(unlimited)" if v == unlimited else str(v) for v in (cur, hard)]
    assert out[5] == "       STACK     8388608     (unlimited)"  # crash's centred columns


def test_kstackp_is_the_saved_stack_pointer(crash, machine):
    out = crash("ps -s").splitlines()
    assert out[0].split()[3] == "KSTACKP"
    active = {machine.idle[0].address, machine.panic_task.address}
    for row, task in zip(out[1:], everyone(machine), strict=True):
        pointer = row.lstrip(">").split()[3]
        assert pointer == ("--" if task.address in active else f"{task.saved_sp:016x}")
        assert task.address in active or task.saved_sp


def test_no_header(crash):
    assert crash("ps -H").splitlines() == crash("ps").splitlines()[1:]
    assert crash("ps -H -s 1").splitlines() == crash("ps -s 1").splitlines()[1:]


@pytest.mark.parametrize(
    "line", ["ps -p -c", "ps -a -S", "ps -t -A", "ps -G -l", "ps -S 1", "ps -C 1 -m 1"]
)
def test_exclusive_views_are_refused_in_one_line(crash, line):
    out = crash(line)
    assert out.count("\n") == 1 and out.startswith("ps: ")


def _python_rows(prog, line: str) -> list[str]:
    """The lines the code ``line --python`` prints, run on the same dump."""
    code = run_line(Session(prog), f"{line} --python")
    out, err = io.StringIO(), io.StringIO()
    assert run_code(code, line, script_namespace(prog), out, err), err.getvalue()
    return out.getvalue().splitlines()


def test_python_equivalents_give_the_same_values(prog, crash, machine):
    rows = _python_rows(prog, "ps -r 1")
    assert rows[0] == "1 systemd"
    unlimited = (1 << 64) - 1
    assert [r.split() for r in rows[1:]][7] == ["NOFILE", "1024", "524288"]
    assert [r.split()[1:] for r in rows[1:]] == [
        ["None" if v == unlimited else str(v) for v in pair] for pair in machine.rlimits[1]
    ]
    rows = _python_rows(prog, "ps -l")
    want = sorted(everyone(machine), key=lambda t: -t.last_arrival)
    assert [int(r.split()[0]) for r in rows] == [t.last_arrival for t in want]
    assert [int(r.split()[2]) for r in rows] == [t.pid for t in want]
    rows = _python_rows(prog, "ps -a 1")
    pid, argv_envp = rows[0].split(" ", 1)
    assert pid == "1"
    assert list(ast.literal_eval(f"({argv_envp.replace('] [', '], [')})")) == [
        list(v) for v in machine.user_args[1]
    ]
    rows = _python_rows(prog, "ps -p 1300")
    assert [int(r.split()[0]) for r in rows] == [0, 1, 1234, 1300]
    rows = _python_rows(prog, "ps -s -u")
    sleep = next(r.split() for r in rows if r.startswith("1300 "))
    assert sleep[3] == f"{machine.tasks[1300].saved_sp:x}"


def test_foreach_passes_options_to_ps(crash, machine):
    """``foreach [STATE] ps -option``: ps's view, over the tasks foreach chose."""
    blocked = [t for t in everyone(machine) if t.state == "UN"]
    rows = crash("foreach UN ps -l").splitlines()
    want = sorted(blocked, key=lambda t: -t.last_arrival)
    assert [heads(r.split("]  ", 1)[1])[0][2] for r in rows] == [t.address for t in want]
    out = crash("foreach UN ps -s").splitlines()
    assert out[0].split()[3] == "KSTACKP"
    assert [r.split()[3] for r in out[1:]] == [f"{t.saved_sp:016x}" for t in blocked]
    assert crash("foreach IN ps -H").splitlines() == [
        r for r in crash("ps -H").splitlines() if r.split()[4] == "IN"
    ]
    assert [h[1] for h in heads(crash("foreach UN ps -p"))] == [0, 1, 1400, 0, 1, 1401]


def test_foreach_passes_options_to_bt_and_sig(crash, machine):
    out = crash("foreach UN bt -f")
    assert [h[1] for h in heads(out)] == [1400, 1401]
    assert out == crash("bt -f 1400") + "\n" + crash("bt -f 1401")
    # only systemd has signal handlers here: its group, once
    assert crash("foreach sig -g") == crash("sig -g 1")


def test_foreach_passes_options_to_files(crash, machine):
    """``foreach files -c`` is files -c per task; ``-R REF`` keeps only the tasks whose
    files (or root or cwd) refer to REF, as crash's ``foreach files -R`` does."""

    def blocks(text: str) -> list[str]:  # one task's block each, trailing newlines aside
        return [b.strip("\n") for b in text.split("\n\n") if b.strip()]

    tasks = everyone(machine)
    each_c = [crash(f"files -c {t.address:x}") for t in tasks]
    assert sorted(blocks(crash("foreach files -c"))) == sorted(b for o in each_c for b in blocks(o))
    each_r = [crash(f"files -R pts {t.address:x}") for t in tasks]
    referring = [o for o in each_r if o]
    assert referring and len(referring) < len(tasks)  # the filter did keep some, not all
    assert sorted(blocks(crash("foreach files -R pts"))) == sorted(
        b for o in referring for b in blocks(o)
    )
    assert sorted(blocks(crash("foreach UN files -c -R pts"))) == sorted(
        b for t in tasks if t.state == "UN" for b in blocks(crash(f"files -c -R pts {t.address:x}"))
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [("foreach bt -a", "bt: -a is not applicable"),
     ("foreach files -x", "files: -x is not applicable"), ("foreach vm -p", "vm takes no options"),
     ("foreach ps 12", "ps: unexpected argument 12"), ("foreach UN ps -p -c", "mutually-exclusive"),
     ("foreach ps -q", "unknown option -q")],
)  # fmt: skip
def test_foreach_refuses_options_it_cannot_pass(crash, line, error):
    out = crash(line)
    assert out.startswith("foreach: ") and error in out and out.count("\n") == 1
