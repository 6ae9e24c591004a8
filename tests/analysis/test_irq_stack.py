"""The unwinder across the IRQ stack, on a real crash in hard-IRQ context.

Each lab kernel (5.10, 6.1, 6.12, 7) is crashed by Alt+SysRq+C on its emulated PS/2 keyboard
(lab crash ``irq``): the i8042 interrupt handler runs sysrq_handle_crash on the CPU's IRQ
stack, over an idle task.  kdumpy reads the dump alone (no vmlinux) and must find the
whole stack: the handler's frames on the IRQ stack, then, through the stack switch in
common_interrupt, the interrupted task's frames.

Oracles: drgn 0.3.0 with Debian's DWARF vmlinux, and the kernel itself: the Call Trace
it printed on the serial console (``<IRQ>`` ... ``</IRQ>`` ``<TASK>`` ... ``</TASK>``,
with the interrupted context's registers).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
from analysis_oracle import drgn_answers
from lab_kernels import LAB_KERNELS

from kdumpy.analysis import Program
from kdumpy.analysis.helpers.printk import log_records
from kdumpy.analysis.helpers.tasks import panic_task
from kdumpy.analysis.panic import classify
from kdumpy.analysis.unwind import Frame, stack_trace

_TRACE_LINE = re.compile(r"^\[\s*\d+\.\d+\]\s+(\?\s+)?([\w.]+)\+0x[0-9a-f]+/0x[0-9a-f]+$")
_RIP_LINE = re.compile(r"RIP: 0010:([\w.]+)\+0x([0-9a-f]+)/")
_REG = re.compile(r"\b(R[A-Z0-9]{1,2}|EFLAGS): ?(?:0018:)?([0-9a-f]{8,16})\b")
_CONSOLE_REGS = {"RSP": "sp", "EFLAGS": "flags", "RAX": "ax", "RBX": "bx", "RCX": "cx",
                 "RDX": "dx", "RSI": "si", "RDI": "di", "RBP": "bp", "R08": "r8", "R09": "r9",
                 "R10": "r10", "R11": "r11", "R12": "r12", "R13": "r13", "R14": "r14",
                 "R15": "r15"}  # fmt: skip


@dataclass
class ConsoleTrace:
    """What the dying kernel printed: reliable frames (no ``?`` guesses) of its
    ``<IRQ>`` section and of its ``<TASK>`` section, with the interrupted function
    (the RIP line) in place, and the interrupted context's registers."""

    irq: list[str]
    task: list[str]
    rip: str
    regs: dict[str, int]


def console_trace(serial_log: str) -> ConsoleTrace:
    """The sections of the panic's Call Trace.  Before 5.16 the kernel printed no
    ``<TASK>`` marker: the interrupted task's frames follow ``</IRQ>`` up to the end of
    the trace (the first line that is neither a frame, the RIP, its code nor registers)."""
    lines = serial_log.replace("\r", "").splitlines()
    panic = next(i for i, ln in enumerate(lines) if "Kernel panic - not syncing" in ln)
    start = next(i for i in range(panic, len(lines)) if "Call Trace:" in lines[i])
    irq: list[str] = []
    task: list[str] = []
    regs: dict[str, int] = {}
    rip = ""
    section: list[str] | None = None
    for ln in lines[start + 1 :]:
        if ln.endswith("<IRQ>"):
            section = irq
        elif ln.endswith(("</IRQ>", "<TASK>")):
            section = task
        elif ln.endswith("</TASK>"):
            break
        elif (m := _RIP_LINE.search(ln)) and section is task:
            rip = m.group(1)
            task.append(rip)
        elif section is task and rip and (pairs := _REG.findall(ln)):
            regs.update({_CONSOLE_REGS[k]: int(v, 16) for k, v in pairs if k in _CONSOLE_REGS})
        elif m := _TRACE_LINE.match(ln):
            if section is not None and not m.group(1):
                section.append(m.group(2))
        elif not (section is task and " Code: " in ln):
            break
    irq = [name for name in irq if not name.startswith("dump_stack")]
    return ConsoleTrace(irq, task, rip, regs)


@pytest.fixture(scope="module", params=[pytest.param(k, marks=pytest.mark.vm) for k in LAB_KERNELS])
def irq_dump(request):
    from kdumpy.lab.dumps import lab_dump

    return lab_dump(request.param, crash="irq")


@pytest.fixture(scope="module")
def prog(irq_dump):
    with Program.open(irq_dump.vmcore) as p:
        yield p


@pytest.fixture(scope="module")
def frames(prog) -> list[Frame]:
    task = panic_task(prog)
    assert task is not None
    return stack_trace(prog, task)


@pytest.fixture(scope="module")
def console(irq_dump) -> ConsoleTrace:
    trace = console_trace(irq_dump.serial_log.read_text(errors="replace"))
    # The lab really crashed in IRQ context, over a task the console could unwind.
    # common_interrupt switched stacks: from 5.12 inside itself (its frame is on the
    # IRQ stack), before through asm_call_irq_on_stack (its frame is the task's).
    assert "sysrq_handle_crash" in trace.irq and "common_interrupt" in trace.irq + trace.task
    assert trace.rip and len(trace.task) > 2, trace
    return trace


def split_at_irq_exit(frames: list[Frame]) -> tuple[list[str], list[str]]:
    """Our frame names on the IRQ stack, and on the interrupted task's stack."""
    exits = [i for i, f in enumerate(frames) if f.left_irq_stack]
    assert len(exits) == 1, [(f.name, f.left_irq_stack) for f in frames]
    names = [f.name for f in frames]
    return names[: exits[0]], names[exits[0] :]


def test_backtrace_matches_drgn_across_the_irq_stack(irq_dump, frames):
    theirs = drgn_answers(irq_dump)["crashed"]["trace"]
    names = [t[0] for t in theirs]
    # drgn itself crossed into the interrupted task: the comparison covers it.
    assert "common_interrupt" in names
    assert len(names) > names.index("common_interrupt") + 3, names
    assert [hex(f.pc) for f in frames] == [hex(t[1]) for t in theirs]
    for frame, (name, _pc, start, size) in zip(frames, theirs, strict=True):
        # Same function: the same name, or a kallsyms label inside drgn's sized symbol
        # (secondary_startup_64_no_verify inside secondary_startup_64).
        assert frame.symbol is not None, (frame, name)
        assert frame.name == name or start <= frame.symbol.address < start + size, (frame, name)


def test_backtrace_matches_the_consoles_irq_and_task_sections(frames, console):
    on_irq, on_task = split_at_irq_exit(frames)
    # The kernel's trace starts in panic (dump_stack), ours where the CPU stopped
    # (__crash_kexec); from there on, frame for frame.
    first = console.irq[0]
    assert first in on_irq, (console.irq, on_irq)
    assert on_irq[on_irq.index(first) :] == console.irq
    assert on_task == console.task


def test_interrupted_registers_match_the_console(frames, console):
    interrupted = [f for f in frames if f.regs is not None]
    assert interrupted, "no pt_regs frame after the IRQ stack"
    regs = interrupted[0].regs
    assert regs is not None
    assert interrupted[0].name == console.rip
    assert len(console.regs) == len(_CONSOLE_REGS), console.regs
    assert {k: regs[k] for k in console.regs} == console.regs


def kdumpy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kdumpy", *args], capture_output=True, text=True, timeout=300
    )


def test_crash_bt_marks_the_irq_stack_and_the_exception_frame(irq_dump, console):
    result = kdumpy("crash", str(irq_dump.vmcore), "-c", "bt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["PID:", str(drgn_answers(irq_dump)["crashed"]["pid"])]
    marker = lines.index("--- <IRQ stack> ---")
    frame_name = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at [0-9a-f]+$")
    before = [m.group(1) for ln in lines[:marker] if (m := frame_name.match(ln))]
    after = [m.group(1) for ln in lines[marker:] if (m := frame_name.match(ln))]
    assert before[-1] == console.irq[-1] and after[0] == console.task[0], (before, after)
    exc = next(i for i, ln in enumerate(lines) if "[exception RIP: " in ln)
    assert exc > marker
    assert lines[exc].strip().startswith(f"[exception RIP: {console.rip}+0x")
    assert f"RSP: {console.regs['sp']:016x}" in lines[exc + 1]


def test_report_classifies_the_crash_as_sysrq(prog):
    assert classify(log_records(prog)).kind == "sysrq"
