"""`p` with C expressions (members through . and ->, [index], unary * and &, casts,
parentheses) against drgn 0.3.0 with the DWARF vmlinux, which computes the same
values through its own API (see EXPRESSIONS in drgn_extra_oracle.py); the printed
lines against crash 8.0.2 (gdb) on the 6.1 dump; and bad input as one-line errors,
including a page that a filtered dump left out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_oracle import dbg_vmlinux
from test_kmem import extra_answers

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line
from kdumpy.lab.cache import cache_root

pytestmark = pytest.mark.vm


def printed_value(out: str) -> str:
    """What follows ``$N = `` on the first line of a ``p`` answer."""
    m = re.match(r"^(?:\S+ = )?\$\d+ = (.*)$", out.splitlines()[0])
    assert m, out
    return m[1]


def c_string(text: str) -> str:
    """The C string in ``"abc\\000\\000"`` (or gdb's ``"abc", '\\000' <repeats 5
    times>``): octal escapes undone, up to the first NUL."""
    m = re.match(r'^"((?:[^"\\]|\\[0-7]{3}|\\.)*)"', text)
    assert m, text
    return re.sub(r"\\([0-7]{3})", lambda e: chr(int(e[1], 8)), m[1]).split("\0")[0]


def test_expressions_match_drgn(session, lab_dump):
    exprs = extra_answers(lab_dump)["exprs"]
    assert len(exprs) >= 20
    for expr, want in exprs.items():
        out = run_line(session, f"p {expr}")
        value = printed_value(out)
        if want["kind"] == "pointer":
            m = re.match(r"^\(.+\) (0x[0-9a-f]+)", value)
            assert m, (expr, out)
            assert int(m[1], 16) == want["value"], expr
        elif want["kind"] == "string":
            assert c_string(value) == want["value"], expr
        else:
            assert int(value.split()[0]) == want["value"], (expr, out)


def test_plain_symbol_is_named_like_crash(session):
    assert re.match(r"^jiffies = \$\d+ = \d+\n$", run_line(session, "p jiffies"))
    assert re.match(r"^\$\d+ = 0\n$", run_line(session, "p init_task.pid"))
    out = run_line(session, "p &init_task")
    assert re.match(r"^\$\d+ = \(struct task_struct \*\) 0x[0-9a-f]+ <init_task>\n$", out)


# Printed by crash exactly as by kdumpy (T: the crashed task's address).
SAME_AS_CRASH = (
    "jiffies", "init_task.pid", "init_task.comm", "init_task.comm[1]", "&init_task",
    "&init_task.comm", "init_task.tasks.next", "init_uts_ns.name.release", "init_mm.pgd",
    "(*init_task.real_parent).pid", "((struct task_struct *){T:#x})->comm",
    "(struct task_struct *){T:#x}", "init_task.se.load", "nr_cpu_ids",
    "*init_task.tasks.next", "init_task.thread.sp",
)  # fmt: skip


@pytest.mark.skipif(shutil.which("crash") is None, reason="crash is not installed")
def test_printed_like_crash(lab_dump_61):
    task = extra_answers(lab_dump_61)["task"]
    lines = [f"p {e.replace('{T:#x}', f'{task:#x}')}" for e in SAME_AS_CRASH]
    vmcore, vmlinux = str(lab_dump_61.vmcore), str(dbg_vmlinux(lab_dump_61.kernel))
    script = "\n".join(lines) + "\nq\n"
    crash = ["crash", "-s", vmlinux, vmcore]
    theirs = subprocess.run(crash, input=script, capture_output=True, text=True, timeout=600).stdout
    args = [a for line in lines for a in ("-c", line)]
    kdumpy = [sys.executable, "-m", "kdumpy", "crash", vmcore, *args]
    ours = subprocess.run(kdumpy, capture_output=True, text=True, timeout=600, check=True).stdout
    theirs = "".join(ln for ln in theirs.splitlines(True) if ln.strip() and "WARNING" not in ln)
    assert ours == theirs


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("init_task.no_such_member", "struct task_struct has no member 'no_such_member'"),
        ("*(unsigned long *)0x10", "invalid kernel virtual address: 0x10 (not mapped)"),
        ("((struct task_struct *)0x8)->pid", "invalid kernel virtual address: 0x"),
        ("no_such_symbol_here", "symbol not found: no_such_symbol_here"),
        ("(struct no_such_struct *)0", "no type named 'struct no_such_struct'"),
        ("init_task.comm[", "cannot parse"),
        ("init_task ++", "cannot parse"),
        ("*init_task.pid", "cannot dereference"),
        ("init_task.pid.x", "has no member 'x'"),
    ],
)
def test_bad_expressions_are_one_line(session, expr, message):
    out = run_line(session, f"p {expr}")
    assert out.startswith("p: ") and out.count("\n") == 1, out
    assert message in out


@pytest.fixture(scope="module")
def filtered_61(lab_dump_61) -> Path:
    """The 6.1 dump through makedumpfile -l -d 31 (free pages left out), cached."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    vmcore = Path(lab_dump_61.vmcore)
    out = cache_root() / "derived" / f"{vmcore.name}-{vmcore.stat().st_size}.d31.kdump"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        subprocess.run(["makedumpfile", "-l", "-d", "31", str(vmcore), str(tmp)],
                       check=True, capture_output=True, timeout=600)  # fmt: skip
        tmp.rename(out)
    return out


def test_page_left_out_of_the_dump_is_one_line(filtered_61):
    with Program.open(filtered_61) as prog:
        page_offset = int(prog.object("page_offset_base"))
        # A RAM page that makedumpfile dropped (free memory, most of this 1 GiB guest).
        start, end = max(prog.dump.ram_ranges(), key=lambda r: r[1] - r[0])
        pfn = next(p for p in range(end - 1, start, -1) if not prog.dump.is_dumpable(p))
        address = page_offset + pfn * prog.dump.page_size
        out = run_line(Session(prog), f"p *(unsigned long *){address:#x}")
    assert out == (
        f"p: invalid kernel virtual address: {address:#x} "
        "(page not in the dump: excluded or not RAM)\n"
    )
