"""Which ORC flags layout a kernel uses, from its .orc_header hash or its release; one
ORC step across 5.10's IRQ stack switch on memory built for the purpose."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.unwind import Unwinder
from kdumpy.arch.x86_64.machine import X86_64
from kdumpy.arch.x86_64.orc import (
    ORC_REG_BP,
    ORC_REG_PREV_SP,
    TYPE_CALL,
    TYPE_END_OF_STACK,
    TYPE_REGS,
    OrcEntry,
    orc_version,
)
from kdumpy.arch.x86_64.orc_table import normalize_flags


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("4.18.0-240.el8.x86_64", 1),  # RHEL 8
        ("5.10.0-32-cloud-amd64", 1),  # Debian 11
        ("5.14.0-70.13.1.el9_0.x86_64", 1),  # RHEL 9.0
        ("5.14.0-570.12.1.el9_6.x86_64", 3),  # RHEL 9.6: the 6.4 layout backported (>= 517)
        ("6.3.13", 2),  # the signal bit
        ("6.4.0", 3),
        ("6.12.117+deb13-cloud-amd64", 3),
    ],
)
def test_layout_by_release(release, version):
    assert orc_version(release, None) == version


def test_version_1_flags_become_the_newest_layout():
    """4.18..6.2: sp_reg bits 0-3, bp_reg 4-7, type 8-9 (call 0, regs 1), end bit 10."""
    sp_reg, bp_reg = 5, 1  # SP, PREV_SP
    call = sp_reg | bp_reg << 4
    regs = sp_reg | 1 << 8
    end = 1 << 10  # sp_reg UNDEFINED + end: the end of the stack
    out = normalize_flags(np.array([call, regs, end], dtype=np.uint16), 1)
    assert [(int(f) >> 8) & 7 for f in out] == [TYPE_CALL, TYPE_REGS, TYPE_END_OF_STACK]
    assert [int(f) & 0xFF for f in out[:2]] == [call, sp_reg]
    assert [bool(int(f) & 0x800) for f in out] == [False, True, False]  # regs imply signal


class _Memory:
    """Sparse kernel memory of 8-byte words; other reads fault."""

    def __init__(self, words: dict[int, int]) -> None:
        self.words = words

    def u64(self, address: int) -> int:
        try:
            return self.words[address]
        except KeyError:
            raise FaultError(f"{address:#x} not mapped", address) from None


class _OneEntryUnwinder(Unwinder):
    """The ORC walk with one entry for every pc and memory built in the test."""

    def __init__(self, entry: OrcEntry, memory: _Memory) -> None:
        # arch, info: what the Unwinder builds the machine's step from
        prog = SimpleNamespace(memory=memory, arch=X86_64, info=None)
        super().__init__(prog)  # type: ignore[arg-type]
        self.entry = entry
        self.has_orc = True

    def find(self, pc: int) -> OrcEntry | None:
        return self.entry


def test_510_irq_stack_switch_by_rbp():
    """Before 5.12, asm_call_on_stack pushed rbp on the task stack, kept the task's RSP
    in rbp and at the IRQ stack's top word, and switched; ORC's rule at its return
    address is CFA = rbp + 16.  The caller (common_interrupt) lies on the task stack,
    below the IRQ stack: the walk goes down there, and marks it."""
    irq_top, task_rsp = 0xFFFFABB5800B9000, 0xFFFFABB580083EF0
    ret_into_common_interrupt = 0xFFFFFFFF8F4A6D70
    entry = OrcEntry(16, -16, ORC_REG_BP, ORC_REG_PREV_SP, TYPE_CALL, False)
    words = {irq_top - 8: task_rsp, task_rsp: 0x1234, task_rsp + 8: ret_into_common_interrupt}
    u = _OneEntryUnwinder(entry, _Memory(words))
    regs = {"ip": 0xFFFFFFFF8F6010F2, "sp": irq_top - 8, "bp": task_rsp}
    step = u._step(regs, interrupted=False)
    assert step is not None and step.left_irq_stack
    assert step.regs == {"ip": ret_into_common_interrupt, "sp": task_rsp + 16, "bp": 0x1234}
    # An rbp-based CFA below sp without the IRQ stack's link word is corrupt data: stop.
    words[irq_top - 8] = task_rsp + 0x40
    assert u._step(regs, interrupted=False) is None
