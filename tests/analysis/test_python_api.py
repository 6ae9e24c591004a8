"""The Python API (issue 14, Deliver 3) on the synthetic machine: ``kdumpy.open``, the
code every command prints with ``--python`` (run, it gives the command's rows), the
tree and array walks against the values the machine put in memory, and ``py`` /
``kdumpy crash --python SCRIPT`` with hostile dump text."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

import kdumpy
from kdumpy.analysis.api import (
    __all__ as API_NAMES,
)
from kdumpy.analysis.api import (
    find_task,
    rbtree_inorder_for_each_entry,
    script_namespace,
    xa_for_each,
    xa_load,
)
from kdumpy.analysis.commands import COMMANDS, Session, load_commands, run_line
from kdumpy.analysis.scripting import run_code
from kdumpy.cli import main as cli_main

FRAME = re.compile(r"#(\d+) \[([0-9a-f]+)\] (\S+) at ([0-9a-f]+)")
PID_LINE = re.compile(r"PID: (\d+)")


def _run_python(prog, code: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert run_code(code, "<test>", script_namespace(prog), out, err), err.getvalue()
    return out.getvalue()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- how each command's rows and its Python's rows are read for comparison -----------------


def _ps_rows(cmd: str, py: str) -> tuple[list, list]:
    ours = []
    for line in _lines(cmd):
        if line.startswith("   PID"):
            continue
        f = line.lstrip(">").split(None, 8)  # PID PPID CPU TASK ST %MEM VSZ RSS COMM
        comm = f[8].removeprefix("[").removesuffix("]") if f[8].startswith("[") else f[8]
        ours.append((*f[:5], f[6], f[7], comm))
    theirs = [tuple(line.split(None, 7)) for line in _lines(py)]
    theirs = [(p, pp, c, t.zfill(16), st, v, r, comm) for p, pp, c, t, st, v, r, comm in theirs]
    return ours, theirs


def _frames(cmd: str, py: str) -> tuple[list, list]:
    def rows(text: str) -> list:
        out = []
        for line in _lines(text):
            if m := FRAME.search(line):
                out.append(m.groups())
            elif m := PID_LINE.search(line):
                out.append(m[1])
        return out

    return rows(cmd), rows(py)


def _words(cmd: str, py: str) -> tuple[list, list]:
    """bt -f/-F: frames and, between them, the stack words in order."""
    ours, theirs = [], []
    for line in _lines(cmd):
        if FRAME.search(line):
            ours.append(FRAME.search(line).groups())
        elif re.match(r"    [0-9a-f]+: ", line):
            ours += line.split(": ", 1)[1].split()
    for line in _lines(py):
        if FRAME.search(line):
            theirs.append(FRAME.search(line).groups())
        elif line.startswith("    "):
            theirs.append(line.strip())
    return ours, theirs


def _eframes(cmd: str, py: str) -> tuple[list, list]:
    at = re.compile(r"(USER|KERNEL)-MODE EXCEPTION FRAME AT: ([0-9a-f]+)")
    return at.findall(cmd), at.findall(py)


def _same_text(cmd: str, py: str) -> tuple[str, str]:
    return cmd, py


def _stripped_lines(cmd: str, py: str) -> tuple[list, list]:
    return [line.strip() for line in _lines(cmd)], [line.strip() for line in _lines(py)]


def _sys(cmd: str, py: str) -> tuple[dict, dict]:
    keys = ("CPUS", "DATE", "UPTIME", "LOAD AVERAGE", "TASKS", "NODENAME", "RELEASE")
    ours = {k.strip(): v for k, _, v in (line.partition(": ") for line in _lines(cmd))}
    theirs = {k.strip(): v for k, _, v in (line.partition(": ") for line in _lines(py))}
    pid_py = re.search(r"PID: (\d+) .* TASK: ([0-9a-f]+)", py)
    assert pid_py is not None
    return (
        {**{k: ours[k] for k in keys}, "PID": ours["PID"], "TASK": ours["TASK"]},
        {**{k: theirs[k] for k in keys}, "PID": pid_py[1], "TASK": pid_py[2]},
    )


def _first_tokens(n: int):
    def compare(cmd: str, py: str) -> tuple[list, list]:
        rows = [line.split()[:n] for line in _lines(cmd) if re.match(r"[0-9a-f]{16} ", line)]
        return rows, [line.split()[:n] for line in _lines(py)]

    return compare


def _files(cmd: str, py: str) -> tuple[list, list]:
    rows = [line.split() for line in _lines(cmd) if re.match(r"\s*\d+ [0-9a-f]{16} ", line)]
    return rows, [line.split() for line in _lines(py)]


def _runq(cmd: str, py: str) -> tuple[list, list]:
    ours = re.findall(r"CPU (\d+) RUNQUEUE: ([0-9a-f]+)|\[\s*(\d+)\] PID: (\d+)\s+TASK: (\w+)", cmd)
    theirs = re.findall(r"CPU (\d+) RUNQUEUE: ([0-9a-f]+)|\[\s*(\d+)\] PID: (\d+) TASK: (\w+)", py)
    return ours, theirs


def _set(cmd: str, py: str) -> tuple[list, list]:
    f = {k.strip(): v for k, _, v in (line.partition(": ") for line in _lines(cmd))}
    pid, _comm, task, cpu, state = py.split()
    return [f["PID"], f["TASK"], f["CPU"], f["STATE"]], [pid, task, cpu, state]


def _p(cmd: str, py: str) -> tuple[str, str]:
    value = re.sub(r"^.*?\$\d+ = (\([^)]*\) )?", "", cmd, count=1, flags=re.S)
    return value, py


def _struct_value(cmd: str, py: str) -> tuple[str, str]:
    return cmd.split(" ", 2)[2], py  # "struct NAME {...}" -> "{...}"


def _rd(cmd: str, py: str) -> tuple[list, list]:
    ours = []
    for line in _lines(cmd):
        address, _, rest = line.partition(":  ")
        ours += rest.split("   ")[0].split() if "   " in rest else rest.split()
    return ours, [line.split(": ", 1)[1] for line in _lines(py)]


def _rd_symbolic(cmd: str, py: str) -> tuple[list, list]:
    ours = [w for line in _lines(cmd) for w in line.split(":  ", 1)[1].split()]
    return ours, [line.split(": ", 1)[1] for line in _lines(py)]


def _dis(cmd: str, py: str) -> tuple[list, list]:
    insn = re.compile(r"^(0x[0-9a-f]+) <([^>]+)>:\s*(\S+)")
    return (
        [insn.match(line).groups() for line in _lines(cmd) if insn.match(line)],
        [insn.match(line).groups() for line in _lines(py) if insn.match(line)],
    )


def _kmem(cmd: str, py: str) -> tuple[list, list]:
    total = re.search(r"TOTAL MEM\s+(\d+)", cmd)[1]
    free = re.search(r"FREE\s+(\d+)", cmd)[1]
    # kmem's equivalent prints the total and the free page counts, in that order
    return [total, free], re.findall(r"\d+", py)[:2]


def _help(cmd: str, py: str) -> tuple[bool, bool]:
    return "for_each_task" in py, True


CASES = {
    "ps": _ps_rows, "ps -u": _ps_rows, "ps -k": _ps_rows, "ps 1300 bash": _ps_rows,
    "bt": _frames, "bt 1300": _frames, "bt -a": _frames, "bt 1300 1400": _frames,
    "bt -f 1300": _words, "bt -F": _words, "bt -e 1300": _eframes,
    "foreach bt": _frames, "foreach UN bt": _frames, "foreach ps": _ps_rows,
    "foreach files": _files,
    "log": _same_text, "log -t": _same_text, "log -m": _same_text, "log -T": _same_text,
    "log -Tm": _same_text,
    "sys": _sys, "mod": _first_tokens(4), "files": _files, "files 1234": _files,
    "runq": _runq, "set 1300": _set,
    "p jiffies": _p, "p init_task.comm": _p, "p avenrun": _p, "p &init_task": _p,
    "p init_task.tasks": _p, "p (int)jiffies": _p, "p init_task.se.load": _p,
    "struct list_head": _stripped_lines, "struct -o task_struct": _stripped_lines,
    "union qstr": _stripped_lines, "struct task_struct init_task": _struct_value,
    "struct task_struct.pid,comm init_task": _stripped_lines,
    "whatis struct list_head": _stripped_lines,
    "rd jiffies 4": _rd, "rd -32 init_task 8": _rd, "rd -s init_task 16": _rd_symbolic,
    "dis sysrq_handle_crash": _dis, "dis do_syscall_64 3": _dis,
    "sym jiffies": _stripped_lines, "kmem -i": _kmem, "help": _help,
}  # fmt: skip


@pytest.fixture(scope="module")
def ready() -> None:
    load_commands()


@pytest.mark.parametrize("line", sorted(CASES))
def test_python_equivalent_gives_the_commands_rows(prog, ready, line):
    session = Session(prog)
    cmd = run_line(session, line)
    assert not session.failed, cmd
    code = run_line(session, f"{line} --python")
    assert not session.failed, code
    compile(code, line, "exec")
    ours, theirs = CASES[line](cmd, _run_python(prog, code))
    assert ours, f"{line}: nothing to compare"
    assert ours == theirs


def test_every_command_declares_its_python(ready):
    missing = sorted(name for name, cmd in COMMANDS.items() if cmd.python is None and not cmd.raw)
    assert missing == []
    quit_code = run_line(Session(None), "q --python")  # type: ignore[arg-type]
    compile(quit_code, "q", "exec")
    assert "SystemExit" in quit_code


def test_python_code_quotes_what_the_user_typed(prog, ready):
    """A symbol name with quotes becomes a Python string, not code."""
    code = run_line(Session(prog), "rd 'a\"b' --python")
    compile(code, "rd", "exec")
    assert "prog.symbol_address('a\"b')" in code


# -- the API itself ---------------------------------------------------------------------------


def test_import_kdumpy_does_not_import_analysis():
    probe = "import sys, kdumpy; print('kdumpy.analysis' in sys.modules, callable(kdumpy.open))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.split() == ["False", "True"]


def test_kdumpy_open_reads_a_dump_file(synthetic_vmcore, machine):
    with kdumpy.open(synthetic_vmcore) as prog:
        task = find_task(prog, 1300)
        assert int(task) == machine.tasks[1300].address
    with pytest.raises(kdumpy.errors.KdumpyError, match="no such file"):
        kdumpy.open(synthetic_vmcore.with_name("nothing-here"))


def test_api_names_are_importable_and_documented():
    import kdumpy.analysis.api as api

    for name in API_NAMES:
        obj = getattr(api, name)
        assert obj.__doc__ or not callable(obj), name
    assert {"open", "for_each_task", "xa_for_each", "rbtree_inorder_for_each_entry",
            "for_each_page_cache_page", "cgroup_path", "stack_trace"} <= set(API_NAMES)  # fmt: skip


def test_rbtree_walk_in_order_of_the_cfs_tree(prog, machine):
    rq = prog.per_cpu("runqueues", 1)
    entities = rbtree_inorder_for_each_entry(
        "struct sched_entity", rq.cfs.tasks_timeline, "run_node"
    )
    se = prog.offsetof("struct task_struct", "se")
    pids = [int(prog.pointer("struct task_struct", int(e) - se).pid) for e in entities]
    assert pids == machine.runq[1]["cfs"][1:]  # the running task is not in the tree


def test_xarray_indexes_are_the_pid_numbers(prog, machine):
    idr = prog.object("init_pid_ns").idr.idr_rt
    entries = list(xa_for_each(idr))
    numbers = {index: int(prog.pointer("struct pid", int(e)).numbers[0].nr) for index, e in entries}
    assert set(numbers) == {t.pid for t in machine.tasks.values()}
    assert all(index == nr for index, nr in numbers.items())
    assert int(xa_load(idr, 1300)) == int(entries[[i for i, _ in entries].index(1300)][1])
    assert xa_load(idr, 1299) is None and xa_load(idr, 1 << 20) is None


# -- py and --python SCRIPT ---------------------------------------------------------------------


def test_py_one_line_block_and_names_kept(prog, ready):
    session = Session(prog)
    assert run_line(session, "py 6 * 7") == "42\n"
    assert run_line(session, "py pids = sorted(int(t.pid) for t in for_each_task(prog))") == ""
    block = "py\nfor p in pids[:2]:\n    print(p, p > 1 | 0)\n"  # | and > are Python's
    assert run_line(session, block) == "1 False\n2 True\n"


def test_py_escapes_dump_text_and_fails_in_one_line(prog, ready, machine):
    session = Session(prog)
    out = run_line(session, "py print(task_comm(find_task(prog, 666)))")
    assert "\x1b" not in out and out == "\\x1b[2J\\x1b]0;pwn\\x07\n"
    assert run_line(session, "py prog.object('no_such_symbol')") == (
        "<py>: symbol not found: no_such_symbol\n"
    )
    assert session.failed
    out = run_line(session, "py 1/0")
    assert out.startswith("Traceback") and "ZeroDivisionError" in out and "scripting" not in out
    assert run_line(session, "py") == (
        "py: give Python code: py CODE, or py and a block in the shell\n"
    )


def test_crash_python_script(synthetic_vmcore, tmp_path, machine, capsys):
    """``kdumpy crash --python SCRIPT DUMP`` (the CLI's main, in this process)."""
    script = tmp_path / "tasks.py"
    script.write_text("for t in for_each_task(prog):\n    print(int(t.pid), task_comm(t))\n")
    argv = ["crash", "--python", str(script), str(synthetic_vmcore)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out  # the hostile task name, escaped
    assert {int(line.split()[0]) for line in out.splitlines()} == set(machine.tasks)
    script.write_text("prog.object('no_such_symbol')\n")
    assert cli_main(argv) == 1
    assert capsys.readouterr().err == f"{script}: symbol not found: no_such_symbol\n"
    argv[2] = str(tmp_path / "missing.py")
    assert cli_main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.py: cannot read" in err


def test_batch_py_block_ends_at_an_empty_line(synthetic_vmcore, tmp_path, capsys):
    script = tmp_path / "cmds"
    script.write_text("py\nx = 2\nprint(x * 21)\n\nsym jiffies\n")
    assert cli_main(["crash", str(synthetic_vmcore), "-i", str(script)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "42" and lines[1].endswith(" jiffies")
