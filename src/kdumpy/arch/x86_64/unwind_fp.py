"""Frame-pointer unwinding on x86_64, for kernels built without ORC tables.

Ubuntu's kernels (20.04 to 24.04) are built with ``CONFIG_UNWINDER_FRAME_POINTER``: every
function keeps ``rbp`` pointing at its frame header, ``[rbp]`` = the caller's ``rbp`` and
``[rbp + 8]`` = the return address.  The kernel's entry code marks the frames it builds
for interrupts and exceptions: it points ``rbp`` at the saved ``struct pt_regs`` with bit
0 set (``ENCODE_FRAME_POINTER``), so a saved ``rbp`` with bit 0 set means "the next frame
is a pt_regs at this address minus 1" (``decode_frame_pointer`` in
arch/x86/kernel/unwind_frame.c).  The walk crosses from the IRQ stack to the interrupted
task that way.  A system call's first kernel frame has a zero saved ``rbp`` (the entry
code clears it), with the user's pt_regs right above it: that is the end of the stack.

The step is a function of the registers and a memory reader, so it can be tested on
stacks built for the purpose.
"""

import struct
from collections.abc import Callable
from typing import NamedTuple

from kdumpy.errors import KdumpyError

# struct pt_regs on x86_64 (arch/x86/include/asm/ptrace.h), in memory order.
PT_REGS = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
    "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss",
)  # fmt: skip
PT_REGS_SIZE = 8 * len(PT_REGS)
IRET_FRAME_OFFSET = 8 * PT_REGS.index("ip")
KERNEL_HALF = 1 << 63
# Kernel stacks are THREAD_SIZE (16 KiB) on x86_64, IRQ stacks too; a frame chain moves
# up within one, and goes to another only through a pt_regs or a saved frame pointer
# that lands in a different one.
STACK_SIZE = 16 << 10

ReadFn = Callable[[int, int], bytes]


class FpStep(NamedTuple):
    """The caller's registers, where its pc was found, and the exception frame
    crossed to reach it (None for an ordinary call frame)."""

    regs: dict[str, int]
    slot: int
    exc_regs: dict[str, int] | None
    user: bool  # that exception frame came from user mode: the end of the kernel stack


def read_pt_regs(read: ReadFn, address: int) -> dict[str, int]:
    values = struct.unpack(f"<{len(PT_REGS)}Q", read(address, PT_REGS_SIZE))
    return dict(zip(PT_REGS, values, strict=True))


def _is_user_frame(regs: dict[str, int]) -> bool:
    """A pt_regs saved on entry from user mode: user CS and SS, a user pc."""
    return regs["cs"] & 3 == 3 and regs["ss"] & 3 == 3 and regs["ip"] < KERNEL_HALF


def _regs_step(read: ReadFn, address: int) -> FpStep:
    regs = read_pt_regs(read, address)
    return FpStep(regs, address + IRET_FRAME_OFFSET, dict(regs), regs["cs"] & 3 == 3)


def fp_step(regs: dict[str, int], read: ReadFn) -> FpStep | None:
    """Unwind one frame by the frame pointer, or None at the end of the stack (or at
    a frame pointer that cannot be one).  Memory errors propagate, except above the
    last frame, where a missing page just ends the stack."""
    bp, sp = regs.get("bp", 0), regs.get("sp", 0)
    if bp & 1:  # this frame was built by the entry code: a pt_regs
        return _regs_step(read, bp & ~1)
    if bp == 0:
        # The entry code cleared rbp: a system call's (or a new task's) first frame,
        # with the pt_regs saved on entry where its stack pointer is.
        try:
            user = read_pt_regs(read, sp) if sp else None
        except KdumpyError:
            return None
        if user is None or not _is_user_frame(user):
            return None
        return FpStep(user, sp + IRET_FRAME_OFFSET, dict(user), True)
    if bp & 7 or bp < KERNEL_HALF:
        return None
    if sp and bp < sp and (bp ^ sp) & ~(STACK_SIZE - 1) == 0:
        return None  # below the stack pointer on the same stack: not a frame
    next_bp, ip = struct.unpack("<QQ", read(bp, 16))
    if ip < KERNEL_HALF:
        return None
    climbs = next_bp > bp or next_bp & 1 or next_bp == 0
    if not climbs and (next_bp ^ bp) & ~(STACK_SIZE - 1) == 0:
        return None  # a chain climbs its stack: corrupt, or a loop
    return FpStep({"ip": ip, "sp": bp + 16, "bp": next_bp}, bp + 8, None, False)
