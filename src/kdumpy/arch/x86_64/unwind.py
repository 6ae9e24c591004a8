"""x86_64 stack unwinding steps: ORC, with frame pointers and a stack scan where the
kernel has no ORC data (the walk itself, and where the tables come from, are
:mod:`kdumpy.analysis.unwind`'s).

One step follows the kernel's own ``unwind_next_frame`` (arch/x86/kernel/unwind_orc.c):
find the ORC entry of the current instruction (``ip - 1`` for a return address, so a
call at the very end of a function still resolves to it), compute the caller's stack
pointer from the entry's base register, then read the return address (call frames) or
a whole ``struct pt_regs`` / iret frame (exception, interrupt and syscall entries).
Interrupt handlers run on the CPU's IRQ stack: ``call_on_irqstack()`` saves the task's
stack pointer at its top, and ORC's SP_INDIRECT rule reads it back (before 5.12,
``asm_call_on_stack`` keeps it in rbp too, and ORC's rule is rbp-based), so the walk
goes on into the interrupted task (its first frame there has ``left_irq_stack``).
Kernels built without ORC (``CONFIG_UNWINDER_FRAME_POINTER``) are walked by their frame
pointers (:mod:`kdumpy.arch.x86_64.unwind_fp`).  Registers are ``user_regs_struct``'s
names: ``ip``, ``sp``, ``bp``...
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kdumpy.arch.stack import (
    FunctionSymbol,
    KernelView,
    TaskAccess,
    UnwindContext,
    UnwindStep,
)
from kdumpy.arch.x86_64 import orc as O
from kdumpy.arch.x86_64.orc import OrcEntry
from kdumpy.arch.x86_64.unwind_fp import IRET_FRAME_OFFSET, PT_REGS, PT_REGS_SIZE, fp_step
from kdumpy.errors import KdumpyError

_SCAN_WORDS = 256  # how far up the stack (in words) a return address is searched for
_ORC_REG_NAMES = {
    O.ORC_REG_DX: "dx",
    O.ORC_REG_DI: "di",
    O.ORC_REG_R10: "r10",
    O.ORC_REG_R13: "r13",
}


Step = UnwindStep  # one unwound frame (the layer's, named as this module always has)


def inactive_task_frame_regs(members: dict[str, int], ret_addr: int, sp: int) -> dict[str, int]:
    """A sleeping task's registers from the ``struct inactive_task_frame`` that
    ``__switch_to_asm`` left at ``thread.sp`` (its members, then its return address
    as the pc and the stack pointer just above it)."""
    regs = dict(members)
    regs["ip"] = ret_addr
    regs["sp"] = sp
    return regs


class OrcStepper:
    """One frame at a time: ORC where the code has it, frame pointers otherwise."""

    def __init__(
        self,
        memory: KernelView,
        find_symbol: Callable[[int], FunctionSymbol | None],
        find_entry: Callable[[int], OrcEntry | None],
        has_orc: Callable[[], bool],
    ) -> None:
        self.memory = memory
        self.find_symbol = find_symbol
        self.find_entry = find_entry
        self.has_orc = has_orc

    @classmethod
    def for_context(cls, ctx: UnwindContext) -> OrcStepper:
        return cls(ctx.memory, ctx.find_symbol, ctx.find_orc_entry, ctx.has_orc)

    def task_start(self, task: TaskAccess) -> tuple[dict[str, int], int]:
        """A sleeping task starts at the ``inactive_task_frame`` at ``thread.sp``."""
        sp = task.member_value("thread.sp")
        size, offsets = task.struct_layout("struct inactive_task_frame")
        members = {
            name: int(struct.unpack("<Q", task.read(sp + off, 8))[0])
            for name, off in offsets.items()
            if name != "ret_addr"
        }
        ret_addr = int(struct.unpack("<Q", task.read(sp + offsets["ret_addr"], 8))[0])
        return inactive_task_frame_regs(members, ret_addr, sp + size), sp + offsets["ret_addr"]

    def step(self, regs: dict[str, int], interrupted: bool) -> Step | None:
        """Unwind one frame, or None at the end of the stack."""
        if not self.has_orc():
            return self._step_fp(regs)
        pc = regs["ip"]
        entry = self.find_entry(pc if interrupted else pc - 1)
        if entry is not None and entry.type == O.TYPE_END_OF_STACK:
            return None
        if entry is None or entry.type == O.TYPE_UNDEFINED:
            # Code objtool left without ORC data (STACK_FRAME_NON_STANDARD functions
            # such as __crash_kexec, BPF, modules without tables).
            return self._step_stack_scan(regs, interrupted) or self._step_frame_pointer(regs)
        cfa = self._cfa(entry, regs)
        if cfa is None:
            return None
        mem = self.memory
        new: dict[str, int] = {}
        exc_regs = None
        if entry.type == O.TYPE_CALL:
            slot = cfa - 8
            new = {"ip": mem.u64(slot), "sp": cfa}
        elif entry.type == O.TYPE_REGS:
            values = struct.unpack(f"<{len(PT_REGS)}Q", mem.read(cfa, PT_REGS_SIZE))
            new = dict(zip(PT_REGS, values, strict=True))
            exc_regs = dict(new)
            slot = cfa + IRET_FRAME_OFFSET
        else:  # iret frame only
            ip, cs, flags, sp, ss = struct.unpack("<5Q", mem.read(cfa, 40))
            new = {"ip": ip, "cs": cs, "flags": flags, "sp": sp, "ss": ss}
            exc_regs = dict(new)
            slot = cfa
        new["bp"] = self._bp(entry, regs, new, cfa)
        if exc_regs is not None and exc_regs.get("cs", 0) & 3:
            return Step(new, True, slot, exc_regs, True)  # entered from user mode: the end
        # Within one stack the caller's frame lies above; stop on corrupt data.  Three
        # ways lead to another stack, which may be anywhere: a pt_regs/iret frame;
        # SP_INDIRECT, the ORC rule after call_on_irqstack() in common_interrupt and
        # friends (5.12+), whose CFA comes from the task's RSP saved at the IRQ stack's
        # top; and before 5.12, asm_call_on_stack's CFA from rbp, which holds the task's
        # RSP that it also saved at the IRQ stack's top (where sp points on return).
        left_irq = entry.sp_reg == O.ORC_REG_SP_INDIRECT or (
            entry.sp_reg == O.ORC_REG_BP and mem.u64(regs["sp"]) == regs.get("bp")
        )
        if new["sp"] <= regs["sp"] and exc_regs is None and not left_irq:
            return None
        return Step(new, entry.signal, slot, exc_regs, False, left_irq)

    def _cfa(self, entry: OrcEntry, regs: dict[str, int]) -> int | None:
        mem = self.memory
        reg = entry.sp_reg
        if reg == O.ORC_REG_SP:
            return regs["sp"] + entry.sp_offset
        if reg == O.ORC_REG_BP:
            return regs.get("bp", 0) + entry.sp_offset
        if reg == O.ORC_REG_SP_INDIRECT:
            return mem.u64(regs["sp"]) + entry.sp_offset
        if reg == O.ORC_REG_BP_INDIRECT:
            return mem.u64(regs.get("bp", 0) + entry.sp_offset)
        name = _ORC_REG_NAMES.get(reg)
        if name is not None and name in regs:
            return regs[name]
        return None

    def _bp(self, entry: OrcEntry, regs: dict[str, int], new: dict[str, int], cfa: int) -> int:
        mem = self.memory
        if entry.bp_reg == O.ORC_REG_PREV_SP:
            return mem.u64(cfa + entry.bp_offset)
        if entry.bp_reg == O.ORC_REG_BP:
            return mem.u64(regs.get("bp", 0) + entry.bp_offset)
        return new.get("bp", regs.get("bp", 0))

    def _step_stack_scan(self, regs: dict[str, int], interrupted: bool) -> Step | None:
        """Find the return address into the caller by scanning the stack for a value
        just after a direct ``call`` whose target is the current function."""
        pc, sp = regs["ip"], regs["sp"]
        func = self.find_symbol(pc if interrupted else pc - 1)
        if func is None or sp & 7:
            return None
        mem = self.memory
        for i, value in enumerate(self._stack_words(sp, _SCAN_WORDS)):
            if value >> 63 == 0 or self.find_symbol(value) is None:
                continue
            try:
                code = mem.read(value - 5, 5)
            except KdumpyError:
                continue
            if code[0] != 0xE8:
                continue
            target = (value + struct.unpack("<i", code[1:])[0]) & ((1 << 64) - 1)
            if target == func.address:
                slot = sp + 8 * i
                return Step(
                    {"ip": value, "sp": slot + 8, "bp": regs.get("bp", 0)}, False, slot, None, False
                )
        return None

    def _stack_words(self, sp: int, count: int) -> list[int]:
        """Up to ``count`` words from ``sp`` on, stopping at an unreadable page (the
        guard page above a vmapped stack)."""
        words: list[int] = []
        while len(words) < count:
            page_end = (sp | 0xFFF) + 1
            n = min(count - len(words), (page_end - sp) // 8)
            try:
                words += struct.unpack(f"<{n}Q", self.memory.read(sp, 8 * n))
            except KdumpyError:
                break
            sp += 8 * n
        return words

    def _step_fp(self, regs: dict[str, int]) -> Step | None:
        """A frame-pointer kernel: follow rbp (through pt_regs the entry code marked)."""
        step = fp_step(regs, self.memory.read)
        if step is None:
            return None
        interrupted = step.exc_regs is not None
        return Step(step.regs, interrupted, step.slot, step.exc_regs, step.user)

    def _step_frame_pointer(self, regs: dict[str, int]) -> Step | None:
        """No ORC data for this code (BPF, a module without tables): assume a frame
        pointer, like the kernel's ``orc_fp_entry``."""
        bp = regs.get("bp", 0)
        if not bp or bp < regs.get("sp", 0) or bp - regs.get("sp", 0) > 1 << 16:
            return None
        mem = self.memory
        new = {"ip": mem.u64(bp + 8), "sp": bp + 16, "bp": mem.u64(bp)}
        if self.find_symbol(new["ip"]) is None:
            return None
        return Step(new, False, bp + 8, None, False)
