"""Lab crash ``irq``: Alt+SysRq+C on the guest's PS/2 keyboard, sent over QMP, must crash
the kernel inside the keyboard's interrupt handler.

Oracle: the first kernel's serial console (the SysRq handler's message, and a Call Trace
whose <IRQ> section holds the handler, followed by the interrupted task).
"""

from __future__ import annotations

import pytest
from lab_kernels import LAB_KERNELS

from kdumpy.lab.userspace import CRASH_QMP


@pytest.mark.vm
@pytest.mark.parametrize("kernel", LAB_KERNELS)
def test_keyboard_sysrq_crashes_in_irq_context(kernel):
    from kdumpy.lab.dumps import lab_dump

    dump = lab_dump(kernel, crash="irq")
    assert dump.panic_message == "sysrq triggered crash"
    console = dump.serial_log.read_text(errors="replace").replace("\r", "")
    first = console[: console.index("kdumpy.role=capture")]
    pressed = first.index(CRASH_QMP["irq"][0])
    trace = first[first.index("Call Trace:", pressed) :]
    irq = trace[trace.index("<IRQ>") : trace.index("</IRQ>")]
    for handler in ("sysrq_handle_crash", "i8042_interrupt"):
        assert f" {handler}+0x" in irq, irq
    # The interrupted task follows </IRQ> (a <TASK> ... </TASK> section from 5.16 on).
    task = trace[trace.index("</IRQ>") :]
    task = task[: task.index("</TASK>")] if "</TASK>" in task else task
    # common_interrupt switches stacks inside itself from 5.12 on (its frame is on the
    # IRQ stack); before, through asm_call_irq_on_stack (its frame is the task's).
    assert " common_interrupt+0x" in irq + task, trace
    assert "asm_common_interrupt+0x" in task and "RIP: 0010:" in task, task
