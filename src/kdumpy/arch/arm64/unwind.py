"""arm64 stack unwinding: frame records, exception frames, sleeping tasks.

Every arm64 distribution kernel keeps frame pointers (reach.md 6.3): x29 points at a
frame record ``{previous x29, saved x30}``, so the caller's pc is the saved link
register, with its pointer-authentication code stripped (:func:`strip_pac`).  The
caller's stack pointer is not recorded; ``fp + 16`` (where the callee's record ends)
stands for it, as crash shows it.

Exception entry saves a ``struct pt_regs`` (``user_pt_regs`` first: x0..x30, sp, pc,
pstate) whose ``stackframe`` member is the frame record x29 points at while the handler
runs.  Two ways to know one is there:

* before 6.13, the frame's pc is in the exception entry code (``__exception_text``,
  ``__irqentry_text``, ``el1h_64_*``), which the caller decides from its symbols;
* since 6.13, the record is ``{0, 0}`` followed by a type word: 2 =
  ``FRAME_META_TYPE_PT_REGS``, 1 = ``FRAME_META_TYPE_FINAL`` (the stack's last frame).

``pt_regs = fp - offsetof(struct pt_regs, stackframe)``, the offset from BTF.  A
pt_regs saved from EL0 (user mode) is the end of the kernel stack.

A sleeping task's registers are ``task->thread.cpu_context``: x19..x28, fp, sp, pc (the
link register ``cpu_switch_to`` returns to).
"""

import struct
from collections.abc import Callable
from typing import NamedTuple

from kdumpy.arch.arm64.registers import ARM64_REGS, MASK64, is_user_mode, strip_pac
from kdumpy.arch.base import ReadFn
from kdumpy.arch.stack import TaskAccess, UnwindContext, UnwindStep
from kdumpy.errors import KdumpyError

FRAME_META_TYPE_FINAL = 1
FRAME_META_TYPE_PT_REGS = 2
USER_PT_REGS = struct.Struct(f"<{len(ARM64_REGS)}Q")  # the head of struct pt_regs
PC_OFFSET = 8 * ARM64_REGS.index("pc")
CPU_CONTEXT = ("x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
               "x29", "sp", "pc")  # fmt: skip
CPU_CONTEXT_SIZE = 8 * len(CPU_CONTEXT)
KERNEL_HALF = 1 << 63


class Step(NamedTuple):
    """The caller's registers, where its pc was found, and the exception frame crossed
    to reach it (None for an ordinary frame record)."""

    regs: dict[str, int]
    slot: int
    exc_regs: dict[str, int] | None
    user: bool  # that exception frame came from EL0: the end of the kernel stack


def _never(pc: int) -> bool:
    return False


class Arm64Unwinder(NamedTuple):
    """One kernel's unwinding facts; :meth:`step` is a function of registers and memory."""

    pac_mask: int = 0  # NUMBER(KERNELPACMASK)
    stackframe_offset: int | None = None  # offsetof(struct pt_regs, stackframe)
    stack_size: int = 16 << 10  # THREAD_SIZE: IRQ and task stacks alike
    is_exception_entry: Callable[[int], bool] = _never  # pc in the entry code (< 6.13)

    def read_pt_regs(self, read: ReadFn, address: int) -> dict[str, int]:
        values = USER_PT_REGS.unpack(read(address, USER_PT_REGS.size))
        regs = dict(zip(ARM64_REGS, values, strict=True))
        regs["x30"] = strip_pac(regs["x30"], self.pac_mask)
        return regs

    def _exception_step(self, read: ReadFn, fp: int) -> Step | None:
        if self.stackframe_offset is None:
            return None
        address = fp - self.stackframe_offset
        regs = self.read_pt_regs(read, address)
        return Step(dict(regs), address + PC_OFFSET, regs, is_user_mode(regs["pstate"]))

    def step(self, regs: dict[str, int], read: ReadFn) -> Step | None:
        """Unwind one frame, or None at the end of the stack (or at a frame pointer
        that cannot be one).  Memory errors propagate."""
        fp, pc = regs.get("x29", 0), regs.get("pc", 0)
        if not fp or fp & 7 or fp < KERNEL_HALF:
            return None
        if self.is_exception_entry(pc):
            return self._exception_step(read, fp)
        next_fp, lr = struct.unpack("<QQ", read(fp, 16))
        if next_fp == 0 and lr == 0:  # 6.13+: a metadata record
            try:
                (kind,) = struct.unpack("<Q", read(fp + 16, 8))
            except KdumpyError:
                return None
            return self._exception_step(read, fp) if kind == FRAME_META_TYPE_PT_REGS else None
        caller = strip_pac(lr, self.pac_mask)
        if caller < KERNEL_HALF:
            return None
        # A chain climbs its stack; it may only go down by moving to another stack
        # (from the IRQ stack back to the task's).  Otherwise the caller is the last.
        climbs = next_fp > fp or (next_fp ^ fp) & ~(self.stack_size - 1) != 0
        return Step({"pc": caller, "x29": next_fp if climbs else 0, "sp": fp + 16}, fp + 8,
                    None, False)  # fmt: skip

    def walk(self, regs: dict[str, int], read: ReadFn, limit: int = 256) -> list[Step]:
        """The frames from ``regs`` on (the first is ``regs`` itself, slot 0), stopping
        at the end of the stack, a repeated frame or an unreadable page."""
        frames = [Step(dict(regs), 0, None, False)]
        seen = {(regs.get("pc", 0), regs.get("x29", 0))}
        while len(frames) < limit:
            try:
                step = self.step(frames[-1].regs, read)
            except KdumpyError:
                break
            if step is None:
                break
            key = (step.regs.get("pc", 0), step.regs.get("x29", 0))
            if key in seen:
                break
            seen.add(key)
            frames.append(step)
            if step.user:
                break
        return frames

    def task_regs(self, cpu_context: bytes) -> dict[str, int]:
        """A sleeping task's registers from ``thread.cpu_context``."""
        values = struct.unpack_from(f"<{len(CPU_CONTEXT)}Q", cpu_context)
        regs = dict(zip(CPU_CONTEXT, values, strict=True))
        regs["pc"] = strip_pac(regs["pc"], self.pac_mask)
        return regs


# Where exception entry code lies: a frame whose pc is in one of these ranges has a
# pt_regs under its frame record (before 6.13's metadata records).
ENTRY_TEXT = (
    ("__entry_text_start", "__entry_text_end"),
    ("__exception_text_start", "__exception_text_end"),
    ("__irqentry_text_start", "__irqentry_text_end"),
)


class Arm64Stepper:
    """:class:`Arm64Unwinder` as the analysis layer's step (see ``kdumpy.arch.base``)."""

    def __init__(self, unwinder: Arm64Unwinder, read: ReadFn) -> None:
        self.unwinder = unwinder
        self.read = read

    @classmethod
    def for_context(cls, ctx: UnwindContext) -> "Arm64Stepper":
        ranges = []
        for start_name, end_name in ENTRY_TEXT:
            start, end = ctx.symbol_address(start_name), ctx.symbol_address(end_name)
            if start is not None and end is not None and start < end:
                ranges.append((start, end))

        def in_entry_text(pc: int) -> bool:
            return any(start <= pc < end for start, end in ranges)

        unwinder = Arm64Unwinder(
            pac_mask=(ctx.vmcoreinfo.number("KERNELPACMASK") or 0) & MASK64,
            stackframe_offset=ctx.member_offset("struct pt_regs", "stackframe"),
            is_exception_entry=in_entry_text,
        )
        return cls(unwinder, ctx.memory.read)

    def step(self, regs: dict[str, int], interrupted: bool) -> UnwindStep | None:
        found = self.unwinder.step(regs, self.read)
        if found is None:
            return None
        exception = found.exc_regs is not None
        return UnwindStep(found.regs, exception, found.slot, found.exc_regs, found.user)

    def task_start(self, task: TaskAccess) -> tuple[dict[str, int], int]:
        """A sleeping task starts from ``thread.cpu_context`` (its pc: the saved LR)."""
        address = task.member_address("thread.cpu_context")
        regs = self.unwinder.task_regs(task.read(address, CPU_CONTEXT_SIZE))
        return regs, address + 8 * CPU_CONTEXT.index("pc")
