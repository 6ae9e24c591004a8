"""Lab crash ``irq``: Alt+SysRq+C on the guest's PS/2 keyboard, sent over QMP, must crash
the kernel inside the keyboard's interrupt handler.

Oracle: the first kernel's serial console (the SysRq handler's message, and a Call Trace
whose <IRQ> section holds the handler and whose <TASK> section the interrupted task).
"""

from __future__ import annotations

import os

import pytest

from kdumpy.lab.userspace import CRASH_QMP

KERNELS = os.environ.get("KDUMPY_LAB_KERNELS", "6.1,6.12,7").split(",")


@pytest.mark.vm
@pytest.mark.parametrize("kernel", KERNELS)
def test_keyboard_sysrq_crashes_in_irq_context(kernel):
    from kdumpy.lab.dumps import lab_dump

    dump = lab_dump(kernel, crash="irq")
    assert dump.panic_message == "sysrq triggered crash"
    console = dump.serial_log.read_text(errors="replace").replace("\r", "")
    first = console[: console.index("kdumpy.role=capture")]
    pressed = first.index(CRASH_QMP["irq"][0])
    trace = first[first.index("Call Trace:", pressed) :]
    irq = trace[trace.index("<IRQ>") : trace.index("</IRQ>")]
    for handler in ("sysrq_handle_crash", "i8042_interrupt", "common_interrupt"):
        assert f" {handler}+0x" in irq, irq
    task = trace[trace.index("<TASK>", trace.index("</IRQ>")) : trace.index("</TASK>")]
    assert "asm_common_interrupt+0x" in task and "RIP: 0010:" in task, task
