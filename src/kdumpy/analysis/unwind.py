"""Kernel stack unwinding on x86_64: ORC, or frame pointers when the kernel has no ORC.

The walk follows the kernel's own ``unwind_next_frame`` (arch/x86/kernel/unwind_orc.c):
find the ORC entry of the current instruction (``ip - 1`` for a return address, so a
call at the very end of a function still resolves to it), compute the caller's stack
pointer from the entry's base register, then read the return address (call frames) or
a whole ``struct pt_regs`` / iret frame (exception, interrupt and syscall entries).
Starting points: the PRSTATUS registers of a CPU (active tasks), or the
``inactive_task_frame`` that ``__switch_to_asm`` left at ``task->thread.sp``.
Interrupt handlers run on the CPU's IRQ stack: ``call_on_irqstack()`` saves the task's
stack pointer at its top, and ORC's SP_INDIRECT rule reads it back (before 5.12,
``asm_call_on_stack`` keeps it in rbp too, and ORC's rule is rbp-based), so the walk
goes on into the interrupted task (its first frame there has ``left_irq_stack``).
Kernels built without ORC (``CONFIG_UNWINDER_FRAME_POINTER``) are walked by their frame
pointers (:mod:`kdumpy.analysis.unwind_fp`).
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from kdumpy.analysis.helpers.modules import module_orc_tables
from kdumpy.analysis.helpers.tasks import cpu_of_active_task
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.symbols import Symbol
from kdumpy.arch.x86_64 import orc as O
from kdumpy.arch.x86_64.orc import OrcEntry, OrcTable, orc_version
from kdumpy.arch.x86_64.unwind_fp import IRET_FRAME_OFFSET, PT_REGS, PT_REGS_SIZE, fp_step
from kdumpy.errors import KdumpyError

MAX_FRAMES = 256
_SCAN_WORDS = 256  # how far up the stack (in words) a return address is searched for
_ORC_REG_NAMES = {
    O.ORC_REG_DX: "dx",
    O.ORC_REG_DI: "di",
    O.ORC_REG_R10: "r10",
    O.ORC_REG_R13: "r13",
}


@dataclass
class Frame:
    """One stack frame.

    ``pc`` is where the function was executing (a return address unless
    ``interrupted``); ``sp`` the stack pointer in it; ``slot`` where ``pc`` was found
    on the stack (crash prints it in brackets); ``regs`` the exception frame that
    interrupted this function, when it was entered through pt_regs.
    """

    pc: int
    sp: int
    slot: int
    interrupted: bool
    symbol: Symbol | None
    regs: dict[str, int] | None = None
    user_regs: dict[str, int] | None = field(default=None)
    left_irq_stack: bool = False  # the callee ran on the IRQ stack, this frame does not

    @property
    def name(self) -> str:
        return self.symbol.name if self.symbol else f"{self.pc:#x}"

    def location(self) -> str:
        return self.symbol.describe(self.pc) if self.symbol else f"{self.pc:#x}"


class _Step(NamedTuple):
    """One unwound frame: the caller's registers and how they were found."""

    regs: dict[str, int]
    interrupted: bool  # the caller's pc is where it stopped, not a return address
    slot: int
    exc_regs: dict[str, int] | None  # the pt_regs/iret frame crossed, if any
    user: bool  # that frame came from user mode: the end of the kernel stack
    left_irq_stack: bool = False


class Unwinder:
    """ORC tables of vmlinux and modules, and the walk itself."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    @cached_property
    def version(self) -> int:
        header = None
        start = self.prog.symbols.address_of("__start_orc_header")
        if start is not None:
            try:
                header = self.prog.read(start, 20)
            except FaultError:
                header = None
        return orc_version(self.prog.info.osrelease, header)

    @cached_property
    def tables(self) -> list[tuple[int, int, OrcTable]]:
        """``(lo, hi, table)`` per text range: vmlinux, then each module."""
        out: list[tuple[int, int, OrcTable]] = []
        sym = self.prog.symbols.address_of
        ip_start, ip_stop = sym("__start_orc_unwind_ip"), sym("__stop_orc_unwind_ip")
        entries = sym("__start_orc_unwind")
        if ip_start and ip_stop and entries and ip_stop > ip_start:
            table = OrcTable.read(
                self.prog.memory, ip_start, (ip_stop - ip_start) // 4, entries, self.version, ""
            )
            hi = sym("_etext") or table.end
            out.append((table.start, max(hi, table.end), table))
        with contextlib.suppress(KdumpyError):
            out += module_orc_tables(self.prog, self.version)
        return out

    @cached_property
    def has_orc(self) -> bool:
        """Whether vmlinux has ORC tables; without them, frame pointers are followed."""
        return self.prog.symbols.address_of("__start_orc_unwind_ip") is not None

    def find(self, pc: int) -> OrcEntry | None:
        for lo, hi, table in self.tables:
            if lo <= pc <= hi:
                return table.find(pc)
        return None

    # -- starting points ------------------------------------------------------------------
    def unwind_regs(self, regs: dict[str, int]) -> list[Frame]:
        """Frames from a full register set (PRSTATUS of a CPU, or pt_regs)."""
        return self._walk(dict(regs), interrupted=True, slot=regs.get("sp", 0))

    def unwind_task(self, task: Object) -> list[Frame]:
        """Frames of a task that is not running: start at its ``inactive_task_frame``."""
        prog = self.prog
        sp = int(task.thread.sp)
        frame_type = prog.type("struct inactive_task_frame")
        frame = prog.object_at(frame_type, sp)
        regs = {m: int(frame.member_(m)) for m in frame.member_names_() if m != "ret_addr"}
        regs["ip"] = int(frame.ret_addr)
        regs["sp"] = sp + frame_type.size
        slot = sp + prog.offsetof(frame_type, "ret_addr")
        return self._walk(regs, interrupted=False, slot=slot)

    # -- the walk ---------------------------------------------------------------------------
    def _symbol(self, pc: int, interrupted: bool) -> Symbol | None:
        return self.prog.find_symbol(pc if interrupted else pc - 1)

    def _walk(self, regs: dict[str, int], interrupted: bool, slot: int) -> list[Frame]:
        frames: list[Frame] = []
        pending_regs: dict[str, int] | None = None
        left_irq = False
        seen: set[tuple[int, int]] = set()
        while len(frames) < MAX_FRAMES:
            pc, sp = regs.get("ip", 0), regs.get("sp", 0)
            if not pc or (pc, sp) in seen:
                break
            seen.add((pc, sp))
            symbol = self._symbol(pc, interrupted)
            frames.append(Frame(pc, sp, slot, interrupted, symbol, pending_regs, None, left_irq))
            try:
                step = self._step(regs, interrupted)
            except FaultError:
                break
            if step is None:
                break
            regs, interrupted, slot, pending_regs, done, left_irq = step
            if done:
                frames[-1].user_regs = pending_regs
                break
        return frames

    def _step(self, regs: dict[str, int], interrupted: bool) -> _Step | None:
        """Unwind one frame, or None at the end of the stack."""
        if not self.has_orc:
            return self._step_fp(regs)
        pc = regs["ip"]
        entry = self.find(pc if interrupted else pc - 1)
        if entry is not None and entry.type == O.TYPE_END_OF_STACK:
            return None
        if entry is None or entry.type == O.TYPE_UNDEFINED:
            # Code objtool left without ORC data (STACK_FRAME_NON_STANDARD functions
            # such as __crash_kexec, BPF, modules without tables).
            return self._step_stack_scan(regs, interrupted) or self._step_frame_pointer(regs)
        cfa = self._cfa(entry, regs)
        if cfa is None:
            return None
        mem = self.prog.memory
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
            return _Step(new, True, slot, exc_regs, True)  # entered from user mode: the end
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
        return _Step(new, entry.signal, slot, exc_regs, False, left_irq)

    def _cfa(self, entry: OrcEntry, regs: dict[str, int]) -> int | None:
        mem = self.prog.memory
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
        mem = self.prog.memory
        if entry.bp_reg == O.ORC_REG_PREV_SP:
            return mem.u64(cfa + entry.bp_offset)
        if entry.bp_reg == O.ORC_REG_BP:
            return mem.u64(regs.get("bp", 0) + entry.bp_offset)
        return new.get("bp", regs.get("bp", 0))

    def _step_stack_scan(self, regs: dict[str, int], interrupted: bool) -> _Step | None:
        """Find the return address into the caller by scanning the stack for a value
        just after a direct ``call`` whose target is the current function."""
        pc, sp = regs["ip"], regs["sp"]
        func = self._symbol(pc, interrupted)
        if func is None or sp & 7:
            return None
        mem = self.prog.memory
        for i, value in enumerate(self._stack_words(sp, _SCAN_WORDS)):
            if value >> 63 == 0 or self.prog.find_symbol(value) is None:
                continue
            try:
                code = mem.read(value - 5, 5)
            except FaultError:
                continue
            if code[0] != 0xE8:
                continue
            target = (value + struct.unpack("<i", code[1:])[0]) & ((1 << 64) - 1)
            if target == func.address:
                slot = sp + 8 * i
                return _Step(
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
                words += struct.unpack(f"<{n}Q", self.prog.memory.read(sp, 8 * n))
            except FaultError:
                break
            sp += 8 * n
        return words

    def _step_fp(self, regs: dict[str, int]) -> _Step | None:
        """A frame-pointer kernel: follow rbp (through pt_regs the entry code marked)."""
        step = fp_step(regs, self.prog.memory.read)
        if step is None:
            return None
        interrupted = step.exc_regs is not None
        return _Step(step.regs, interrupted, step.slot, step.exc_regs, step.user)

    def _step_frame_pointer(self, regs: dict[str, int]) -> _Step | None:
        """No ORC data for this code (BPF, a module without tables): assume a frame
        pointer, like the kernel's ``orc_fp_entry``."""
        bp = regs.get("bp", 0)
        if not bp or bp < regs.get("sp", 0) or bp - regs.get("sp", 0) > 1 << 16:
            return None
        mem = self.prog.memory
        new = {"ip": mem.u64(bp + 8), "sp": bp + 16, "bp": mem.u64(bp)}
        if self.prog.find_symbol(new["ip"]) is None:
            return None
        return _Step(new, False, bp + 8, None, False)


def unwinder(prog: Program) -> Unwinder:
    """The program's unwinder (built once)."""
    cached = getattr(prog, "_unwinder", None)
    if cached is None:
        cached = Unwinder(prog)
        prog._unwinder = cached  # type: ignore[attr-defined]
    return cached


def stack_trace(prog: Program, task: Object) -> list[Frame]:
    """The backtrace of a task: from its CPU's PRSTATUS if it was running, else from
    its saved context."""
    cpu = cpu_of_active_task(prog, task)
    u = unwinder(prog)
    if cpu is not None and cpu in prog.cpu_prstatus:
        return u.unwind_regs(prog.cpu_prstatus[cpu].regs)
    return u.unwind_task(task)


def panic_cpu_trace(prog: Program) -> tuple[int, list[Frame]] | None:
    """The panic CPU and its frames from its PRSTATUS registers: symbols, ORC (or frame
    pointers) and memory only, for kernels whose types are missing."""
    cpu = prog.panic_cpu
    if cpu is None or cpu not in prog.cpu_prstatus:
        return None
    return cpu, unwinder(prog).unwind_regs(prog.cpu_prstatus[cpu].regs)
