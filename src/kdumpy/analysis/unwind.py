"""Kernel stack unwinding: the walk over frames, the ORC tables of vmlinux and modules,
and the starting points (the PRSTATUS registers of a CPU for active tasks, a sleeping
task's saved context).  Each step is the architecture's (x86_64: ORC, frame pointers
and a stack scan, :mod:`kdumpy.arch.x86_64.unwind`).
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from functools import cached_property

from kdumpy.analysis.helpers.modules import module_orc_tables
from kdumpy.analysis.helpers.tasks import cpu_of_active_task
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.symbols import Symbol
from kdumpy.analysis.types import StructType
from kdumpy.arch.stack_select import Stepper, UnwindContext, UnwindStep, stack_rules
from kdumpy.arch.x86_64.orc import OrcEntry, orc_version
from kdumpy.arch.x86_64.orc_table import OrcTable
from kdumpy.errors import KdumpyError

MAX_FRAMES = 256


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


class Unwinder:
    """ORC tables of vmlinux and modules, and the walk itself."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    @cached_property
    def stepper(self) -> Stepper:
        """The machine's step (built on first use, from the program's memory)."""
        prog = self.prog
        context = UnwindContext(
            memory=prog.memory,
            find_symbol=lambda address: prog.find_symbol(address),
            symbol_address=lambda name: prog.symbols.address_of(name),
            member_offset=self._member_offset,
            vmcoreinfo=prog.info,
            find_orc_entry=lambda pc: self.find(pc),
            has_orc=lambda: self.has_orc,
        )
        return stack_rules(prog.arch).make_stepper(context)

    def _member_offset(self, struct: str, member: str) -> int | None:
        try:
            return self.prog.offsetof(struct, member)
        except KdumpyError:
            return None

    @cached_property
    def pc_name(self) -> str:
        return self.prog.arch.registers.pc

    @cached_property
    def sp_name(self) -> str:
        return self.prog.arch.registers.sp

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
        return self._walk(dict(regs), interrupted=True, slot=regs.get(self.sp_name, 0))

    def unwind_task(self, task: Object) -> list[Frame]:
        """Frames of a task that is not running: from the context the architecture
        saves on a switch (x86_64's ``inactive_task_frame``, arm64's ``cpu_context``)."""
        regs, slot = self.stepper.task_start(_SavedTask(self.prog, task))
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
            pc, sp = regs.get(self.pc_name, 0), regs.get(self.sp_name, 0)
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

    def _step(self, regs: dict[str, int], interrupted: bool) -> UnwindStep | None:
        """Unwind one frame, or None at the end of the stack."""
        return self.stepper.step(regs, interrupted)


class _SavedTask:
    """A task's saved context read through BTF (the architecture's ``TaskAccess``)."""

    def __init__(self, prog: Program, task: Object) -> None:
        self.prog = prog
        self.task = task

    def _member(self, path: str) -> Object:
        obj = self.task
        for part in path.split("."):
            obj = obj.member_(part)
        return obj

    def member_value(self, path: str) -> int:
        return int(self._member(path))

    def member_address(self, path: str) -> int:
        address = self._member(path).address_
        if address is None:
            raise KdumpyError(f"task.{path} is not in memory")
        return address

    def struct_layout(self, name: str) -> tuple[int, dict[str, int]]:
        t = self.prog.type(name).strip()
        if not isinstance(t, StructType):
            raise KdumpyError(f"{name} is not a struct")
        return t.size, {m.name: m.bit_offset // 8 for m in t.members if m.name}

    def read(self, address: int, size: int) -> bytes:
        return self.prog.read(address, size)


_UNWINDERS: weakref.WeakKeyDictionary[Program, Unwinder] = weakref.WeakKeyDictionary()


def unwinder(prog: Program) -> Unwinder:
    """The program's unwinder (built once per program)."""
    cached = _UNWINDERS.get(prog)
    if cached is None:
        cached = _UNWINDERS[prog] = Unwinder(prog)
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
