"""ps's views (-p -c -t -l -m -C -a -g -r -s -H) against drgn 0.3.0's crash mode, on
the lab dump of every lab kernel (and arm64-6.1's), and against crash 8.0.2 itself
where it reads the dump (5.10; on 6.1 the few tasks it finds).

kdumpy reads each dump alone (kallsyms, BTF); drgn reads it with Debian's -dbg
vmlinux, in a subprocess (``drgn_ps_oracle.py``, cached).  Both run the same command
lines; the rows must agree: pids, task addresses, CPUs, times, strings, limits.  Where
crash 8.0.2 (whose meaning kdumpy follows) and drgn's crash mode differ, the test says
so and compares what is the same, or compares with drgn's own objects:

* states: crash's two letters here, drgn's one letter there (mapped);
* ``-t`` RUN TIME: crash counts jiffies at HZ, drgn the coarse ktime: within a second;
* ``-s`` KSTACKP: crash's is the saved ``thread.sp`` (``--`` for a task running at the
  crash), drgn's crash mode the first frame's sp: compared with drgn's ``thread.sp``;
* ``-g``: crash shows the idle tasks as one thread group (tgid 0), drgn each alone;
* ``-a`` of a kernel thread: crash's "no user stack", drgn's "(no mm)".
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from analysis_oracle import both as oracle_both
from analysis_oracle import dbg_vmlinux, drgn_answers

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line
from kdumpy.lab.dumps import lab_dump as make_lab_dump

pytestmark = pytest.mark.vm

ORACLE = Path(__file__).with_name("drgn_ps_oracle.py")
HEAD = re.compile(r'^( *)PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: "(.*)"$')
# drgn's one-letter states (task_state_to_char) as crash 8.0.2 spells them.
CRASH_STATE = {"R": "RU", "S": "IN", "D": "UN", "I": "ID", "T": "ST", "t": "TR", "Z": "ZO",
               "X": "DE", "P": "PA", "N": "NE", "W": "WA"}  # fmt: skip


@pytest.fixture(scope="module")
def drgn(lab_dump):
    return drgn_answers(lab_dump, ORACLE, "drgnps1")


def both(session: Session, drgn: dict, key: str) -> tuple[str, str]:
    """As analysis_oracle's, but every ps line is on every kernel: a missing one fails."""
    assert key in drgn, sorted(drgn)
    return oracle_both(session, drgn, key)


def heads(text: str) -> list[tuple[int, int, str, int, str]]:
    """``(indent, pid, task, cpu, comm)`` of each task header line."""
    out = []
    for line in text.splitlines():
        if m := HEAD.match(line):
            out.append((len(m[1]), int(m[2]), m[3], int(m[4]), m[5]))
    return out


def blocks(text: str) -> list[str]:
    return [b for b in text.split("\n\n") if b.strip()]


def by_task(text: str) -> dict[str, str]:
    """Blocks keyed by the task address of their first header."""
    return {heads(b)[0][2]: b for b in blocks(text)}


@pytest.mark.parametrize("key", ["ps_p", "ps_p_sleep"])
def test_parents_match_drgn(session, drgn, key):
    """Each task's ancestry from the idle task down, one more space a generation."""
    ours, theirs = both(session, drgn, key)
    assert heads(ours) == heads(theirs)
    assert len(heads(ours)) >= (50 if key == "ps_p" else 3)


@pytest.mark.parametrize("key", ["ps_c", "ps_c_kthreadd"])
def test_children_match_drgn(session, drgn, key):
    """Each task's children (here in pid order, there in the children list's; the
    idle tasks: see below)."""
    ours, theirs = both(session, drgn, key)
    mine, their = by_task(ours), by_task(theirs)
    assert list(mine) == list(their)
    for task, block in mine.items():
        # crash scans every task's parent: the other CPUs' idle tasks, whose parent is
        # CPU 0's, are its children here; the kernel links no idle task to a parent's
        # children list, which drgn walks
        kids = [h for h in heads(block)[1:] if h[1]]
        assert sorted(kids) == sorted(heads(their[task])[1:]), task
        if kids:
            assert "(no children)" not in block and "(no children)" not in their[task]
    if key == "ps_c_kthreadd":
        assert len(heads(ours)) >= 20


def _seconds(text: str) -> int:
    days, _, clock = text.rpartition(" days, ")
    h, m, s = map(int, clock.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def test_times_match_drgn(session, drgn):
    """Start time, user and system time the same; run time within a second (jiffies
    here, as crash; the coarse ktime in drgn); oldest first here."""
    ours, theirs = both(session, drgn, "ps_t")
    mine, their = by_task(ours), by_task(theirs)
    assert set(mine) == set(their) and len(mine) >= 50
    starts = []
    for task, block in mine.items():
        a = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:])
        b = dict(line.strip().split(": ", 1) for line in their[task].splitlines()[1:])
        assert {k: a[k] for k in ("START TIME", "UTIME", "STIME")} == {
            k: b[k] for k in ("START TIME", "UTIME", "STIME")
        }, task
        assert abs(_seconds(a["RUN TIME"]) - _seconds(b["RUN TIME"])) <= 1, task
        starts.append(int(a["START TIME"]))
    assert starts == sorted(starts)


def _stamped(text: str) -> list[tuple[str, str, tuple]]:
    """``(stamp, state, header)`` of each ``[stamp] [state]  PID: ...`` row."""
    out = []
    for line in text.splitlines():
        if m := re.match(r"^\[ *([^\]]+)\] \[(\w+)\]  (.*)$", line):
            out.append((m[1], CRASH_STATE.get(m[2], m[2]), heads(m[3])[0][1:4]))
    return out


@pytest.mark.parametrize("key", ["ps_l", "ps_m"])
def test_last_run_matches_drgn(session, drgn, key):
    """Every task's last-run stamp (``-m``: the time since, by its CPU's run queue
    clock) and state; latest first (equal stamps may be in either order)."""
    ours, theirs = both(session, drgn, key)
    mine, their = _stamped(ours), _stamped(theirs)
    assert sorted(mine) == sorted(their) and len(mine) >= 50
    if key == "ps_l":
        stamps = [int(s) for s, _, _ in mine]
        assert stamps == sorted(stamps, reverse=True)
    else:  # the same order as -l's
        assert [h for *_, h in mine] == [h for *_, h in _stamped(run_line(session, "ps -l"))]


@pytest.mark.parametrize("key", ["ps_l_C", "ps_m_C"])
def test_cpu_blocks_match_drgn(session, drgn, key):
    ours, theirs = both(session, drgn, key)

    def cpus(text: str) -> dict[str, list]:
        return {b.splitlines()[0]: sorted(_stamped(b)) for b in text.split("\n\n") if b.strip()}

    assert cpus(ours) == cpus(theirs)
    assert all(cpus(ours).values())


def test_arguments_match_drgn(session, drgn):
    """Every user task's arguments and environment, read from its own memory."""
    ours, theirs = both(session, drgn, "ps_a")
    mine, their = by_task(ours), by_task(theirs)
    assert list(mine) == list(their)
    users = 0
    for task, block in mine.items():
        if "(no mm)" in their[task]:
            assert block.splitlines()[1] == "ps: no user stack", task
            continue
        users += 1
        a = [line.strip() for line in block.splitlines()[1:]]
        b = [line.strip() for line in their[task].splitlines()[1:]]
        assert a == b, task
    assert users >= 5


def test_thread_groups_match_drgn(session, drgn):
    """Each thread group once, led by its leader (the idle tasks: see the module
    docstring)."""
    ours, theirs = both(session, drgn, "ps_g")
    mine, their = by_task(ours), by_task(theirs)
    leaders = {t: heads(b) for t, b in mine.items() if heads(b)[0][1]}
    assert leaders == {t: heads(b) for t, b in their.items() if heads(b)[0][1]}
    for task in leaders:
        assert ("(no threads)" in mine[task]) == ("(no threads)" in their[task]), task
    assert len(leaders) >= 40
    idle = [b for b in mine.values() if heads(b)[0][1] == 0]
    assert len(idle) == 1 and all(h[1] == 0 for h in heads(idle[0]))


def test_rlimits_match_drgn(session, drgn):
    """Every task's resource limits, current and maximum."""
    ours, theirs = both(session, drgn, "ps_r")
    mine, their = by_task(ours), by_task(theirs)
    assert list(mine) == list(their) and len(mine) >= 50
    for task, block in mine.items():
        assert [r.split() for r in block.splitlines()[1:]] == [
            r.split() for r in their[task].splitlines()[1:]
        ], task
    assert "NOFILE" in ours


def _rows(text: str, header: bool = True) -> list[tuple[str, ...]]:
    """ps rows: the ``>`` mark, pid, CPU, pointer, state, %MEM, VSZ, RSS, name (the
    PPID of an idle task is its real parent here, 0 in drgn: left out)."""
    out = []
    for line in text.splitlines()[1 if header else 0 :]:
        mark, words = line.startswith(">"), line.lstrip("> ").split()
        out.append((str(mark), words[0], words[2], words[3],
                    CRASH_STATE.get(words[4], words[4]), *words[5:]))  # fmt: skip
    return out


def test_kstackp_is_drgns_saved_stack_pointer(session, drgn):
    """``-s``: the same rows, the pointer column crash's KSTACKP: the stack pointer
    each sleeping task saved (drgn's ``thread.sp``), ``--`` for a running one."""
    ours, theirs = both(session, drgn, "ps_s")
    assert ours.splitlines()[0].split()[3] == "KSTACKP"
    mine, their = _rows(ours), _rows(theirs)
    assert [r[:3] + r[4:] for r in mine] == [r[:3] + r[4:] for r in their]
    tasks = [
        w
        for w in (line.lstrip("> ").split()[3] for line in run_line(session, "ps").splitlines()[1:])
    ]
    saved = drgn["saved_sp"]
    for row, task in zip(mine, tasks, strict=True):
        want = "--" if row[0] == "True" else f"{saved[task.lstrip('0')]:016x}"
        assert row[3] == want, task
    assert sum(r[3] != "--" for r in mine) >= 50


@pytest.mark.parametrize("key", ["ps_H", "ps_H_u"])
def test_no_header_matches_drgn(session, drgn, key):
    ours, theirs = both(session, drgn, key)
    assert _rows(ours, header=False) == _rows(theirs, header=False)
    assert not ours.startswith("   PID")


@pytest.fixture(scope="module")
def arm64():
    """The arm64-6.1 lab dump (its kallsyms has no data symbols: the -dbg vmlinux gives
    them) and drgn's answers there: user memory through TTBR0's tables, the saved
    ``cpu_context.sp``."""
    dump = make_lab_dump("arm64-6.1")
    with Program.open(dump.vmcore, dbg_vmlinux(dump.kernel)) as prog:
        yield Session(prog), drgn_answers(dump, ORACLE, "drgnps1")


@pytest.mark.parametrize(
    "check",
    [test_arguments_match_drgn, test_rlimits_match_drgn, test_times_match_drgn,
     test_kstackp_is_drgns_saved_stack_pointer, test_thread_groups_match_drgn],
    ids=lambda f: f.__name__.removeprefix("test_"),
)  # fmt: skip
def test_arm64_matches_drgn(arm64, check):
    check(*arm64)


def test_foreach_passes_ps_options_like_drgn(session, drgn):
    """``foreach IN ps -l``: drgn's ``ps -l`` rows of the tasks in that state."""
    answer = drgn["ps_l"]
    ours = run_line(session, "foreach IN ps -l")
    assert not session.failed, ours
    theirs = [row for row in _stamped(answer["out"]) if row[1] == "IN"]
    assert sorted(_stamped(ours)) == sorted(theirs) and len(theirs) >= 10


# -- crash 8.0.2 itself, where it reads the dump (5.10 whole; on 6.1 it finds the idle
# tasks and init only: "active task ... not found in PID hash") ----------------------------
CRASH_READS = ("5.10", "6.1")
CRASH_LINES = ("ps -s", "ps -t", "ps -r", "ps -a", "ps -g", "ps -c", "ps -p", "ps -l", "ps -m",
               "ps -m -C 1")  # fmt: skip
MARK = "@@@kdumpy@@@"


@pytest.fixture(scope="module")
def crash(lab_dump) -> dict[str, str]:
    """crash 8.0.2's text of each line of CRASH_LINES (one run, with the -dbg vmlinux)."""
    series = lab_dump.vmcore.name.split("-1G")[0]
    if series not in CRASH_READS or not shutil.which("crash"):
        pytest.skip(f"crash 8.0.2 cannot read {series}")
    vmlinux = str(dbg_vmlinux(lab_dump.kernel))
    script = "".join(f"!echo {MARK}{line}\n{line}\n" for line in CRASH_LINES) + "q\n"
    out = subprocess.run(["crash", "-s", vmlinux, str(lab_dump.vmcore)], input=script,
                         capture_output=True, text=True, timeout=900).stdout  # fmt: skip
    return {name: text for name, _, text in (p.partition("\n") for p in out.split(MARK)[1:])}


def _crash_sees(crash: dict[str, str]) -> set[str]:
    """The task addresses crash found (its ps -p lists every task once, last in a block)."""
    return {heads(b)[-1][2] for b in blocks(crash["ps -p"])}


def test_kstackp_and_times_match_crash(session, crash):
    """``-s``: pid, CPU, KSTACKP (``--`` when running), state; ``-t``: every field, the
    run time counted as crash counts it."""
    seen = _crash_sees(crash)
    ours = {line.lstrip("> ").split()[3]: line for line in run_line(session, "ps").splitlines()[1:]}
    mine = [r for r, task in zip(_rows(run_line(session, "ps -s")), ours, strict=True)
            if task.lstrip("0") in seen]  # fmt: skip
    assert [(r[1], *r[2:5]) for r in mine] == [(r[1], *r[2:5]) for r in _rows(crash["ps -s"])]
    assert len(mine) >= 3
    mine_t, theirs_t = by_task(run_line(session, "ps -t")), by_task(crash["ps -t"])
    assert set(theirs_t) <= set(mine_t)
    for task, block in theirs_t.items():
        assert block.splitlines()[1:] == mine_t[task].splitlines()[1:], task


@pytest.mark.parametrize("line", ["ps -r", "ps -a", "ps -g", "ps -p"])
def test_views_match_crash(session, crash, line):
    """Each task's block: the same lines (trailing spaces aside), the same headers."""
    seen = _crash_sees(crash)
    last = line == "ps -p"  # a -p block starts at the idle task: key it by its last task

    def keyed(text: str) -> dict[str, str]:
        return {heads(b)[-1 if last else 0][2]: b for b in blocks(text)}

    mine = {t: b for t, b in keyed(run_line(session, line)).items() if t in seen}
    theirs = keyed(crash[line])
    assert list(mine) == list(theirs) and mine
    for task, block in theirs.items():
        a, b = mine[task].splitlines(), block.splitlines()
        assert heads(mine[task]) == heads(block), task
        assert [x.rstrip() for x in a if not HEAD.match(x)] == [
            x.rstrip() for x in b if not HEAD.match(x)
        ], task


def test_children_match_crash(session, crash):
    """crash counts a task a child of its ``parent``, the idle tasks included (the one
    difference: crash lists CPU 0's idle task, its own parent, among its children)."""
    seen = _crash_sees(crash)
    mine = {t: b for t, b in by_task(run_line(session, "ps -c")).items() if t in seen}
    theirs = by_task(crash["ps -c"])
    assert list(mine) == list(theirs)
    for task, block in theirs.items():
        kids = [h for h in heads(block)[1:] if h[2] != task and h[2] in seen]
        assert [h for h in heads(mine[task])[1:] if h[2] in seen] == kids, task


@pytest.mark.parametrize("line", ["ps -l", "ps -m", "ps -m -C 1"])
def test_last_run_matches_crash(session, crash, line):
    seen = _crash_sees(crash)
    mine = [r for r in _stamped(run_line(session, line)) if r[2][1] in seen]
    theirs = _stamped(crash[line])
    assert sorted(mine) == sorted(theirs) and theirs
