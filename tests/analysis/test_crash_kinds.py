"""Crashes of every kind the lab can cause (6.1 guest): BUG, oops, WARN with
panic_on_warn, OOM panic, hung task panic, killing init.

Oracles: drgn + DWARF for the panic task's stack (as far as drgn can unwind: it has
no debug info for the crashing module and stops there), and the kernel itself: the
"Call Trace:" it printed on the serial console just before dying must appear, in
order, in kdumpy's backtrace.
"""

from __future__ import annotations

import re

import pytest
from analysis_oracle import drgn_answers

from kdumpy.analysis import Program
from kdumpy.analysis.helpers.printk import log_records
from kdumpy.analysis.helpers.tasks import panic_task
from kdumpy.analysis.panic import classify
from kdumpy.analysis.unwind import stack_trace

KINDS = {
    "bug": "BUG",
    "null": "oops",
    "warn": "warning",
    "oom": "OOM",
    "hung": "hung task",
    "init": "panic",
}
_TRACE_LINE = re.compile(r"^\[\s*\d+\.\d+\]\s+(\?\s+)?([\w.]+)\+0x[0-9a-f]+/0x[0-9a-f]+")
_RIP_LINE = re.compile(r"RIP: 0010:([\w.]+)\+0x")


@pytest.fixture(scope="module", params=[pytest.param(k, marks=pytest.mark.vm) for k in KINDS])
def crash_dump(request):
    from kdumpy.lab.dumps import lab_dump

    return request.param, lab_dump("6.1", crash=request.param)


@pytest.fixture(scope="module")
def prog(crash_dump):
    with Program.open(crash_dump[1].vmcore) as p:
        yield p


def console_call_trace(serial_log: str) -> tuple[str | None, list[str]]:
    """The kernel's own last report before it died: RIP function and Call Trace
    functions (reliable entries only: '?' marks guesses)."""
    lines = serial_log.replace("\r", "").splitlines()
    panic = next((i for i, ln in enumerate(lines) if "Kernel panic - not syncing" in ln), None)
    traces = [i for i, ln in enumerate(lines) if "Call Trace:" in ln]
    # panic() prints its message, then the stack; with panic_on_oops the oops report
    # is the last thing printed.
    start = min(i for i in traces if i > panic) if panic is not None else traces[-1]
    rip = None
    for ln in lines[max(0, start - 30) : start]:
        m = _RIP_LINE.search(ln)
        rip = m.group(1) if m else rip
    names = []
    for ln in lines[start + 1 :]:
        if "</TASK>" in ln or "RIP: 0033" in ln:
            break
        m = _TRACE_LINE.match(ln)
        if m and not m.group(1):
            names.append(m.group(2))
    return rip, names


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needle)


def test_kind_of_crash(crash_dump, prog):
    method, _dump = crash_dump
    assert classify(log_records(prog)).kind == KINDS[method]


def test_backtrace_contains_the_kernels_own_call_trace(crash_dump, prog):
    _method, dump = crash_dump
    rip, kernel_trace = console_call_trace(dump.serial_log.read_text(errors="replace"))
    ours = [f.name for f in stack_trace(prog, panic_task(prog))]
    expected = [n for n in kernel_trace if not n.startswith("dump_stack")]
    assert expected, "no Call Trace on the console"
    assert is_subsequence(expected, ours), (expected, ours)
    if rip is not None and "Kernel panic" not in dump.serial_log.read_text(errors="replace"):
        assert ours[0] == rip  # panic_on_oops: the dump starts at the faulting instruction


def test_backtrace_matches_drgn_as_far_as_drgn_unwinds(crash_dump, prog):
    _method, dump = crash_dump
    oracle = drgn_answers(dump)
    ours = stack_trace(prog, panic_task(prog))
    theirs = oracle["crashed"]["trace"]
    compared = 0
    for frame, (name, pc, start, size) in zip(ours, theirs, strict=False):
        assert frame.pc == pc
        if name.startswith("0x"):
            # drgn has no symbols for the crashing module; kallsyms of the module do.
            assert frame.symbol is not None and frame.symbol.module, frame
            compared += 1
            break
        assert frame.name == name or start <= frame.symbol.address < start + size
        compared += 1
    assert compared >= 1


def test_taint_flags_match_the_console(crash_dump, prog):
    """The kernel prints its taint letters in every oops/panic header
    ("Tainted: G           OE"); kdumpy reads tainted_mask from the dump."""
    from kdumpy.analysis.helpers.system import taint_letters

    _method, dump = crash_dump
    text = dump.serial_log.read_text(errors="replace")
    headers = re.findall(r"Comm: .*? (Not tainted|Tainted: [A-Z ]+?)\s+\d+\.\d+", text)
    assert headers, "no CPU/Comm header on the console"
    last = headers[-1]
    expected = set() if last == "Not tainted" else set(last.removeprefix("Tainted: ")) - {" ", "G"}
    # Taints can be added after the last header was printed (e.g. WARN sets W while
    # the kernel dies); the header's letters must all be there.
    assert expected <= set(taint_letters(prog))


def test_runqueues_and_free_memory_match_drgn(crash_dump, prog):
    from kdumpy.analysis.helpers.mm import global_zone_page_state
    from kdumpy.analysis.helpers.runqueue import runqueue_tasks

    oracle = drgn_answers(crash_dump[1])
    for cpu, queued in oracle["runq"].items():
        _rq, _curr, rt, cfs = runqueue_tasks(prog, int(cpu))
        assert sorted(int(t.pid) for _, t in cfs) == queued["fair"]
        assert sorted(int(t.pid) for _, t in rt) == queued["rt"]
    assert global_zone_page_state(prog, "NR_FREE_PAGES") == oracle["nr_free_pages"]
