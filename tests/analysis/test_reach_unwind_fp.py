"""The frame-pointer unwinder on stacks built for the purpose.

No lab kernel is built with frame pointers (Debian uses ORC; Ubuntu does not), so the
stacks are laid out here as an x86_64 CONFIG_FRAME_POINTER kernel lays them out: each
frame ``[rbp] = caller's rbp, [rbp + 8] = return address``; the entry code saves a
``struct pt_regs`` and, for interrupts and exceptions, points rbp at it with bit 0 set;
a system call's first frame has a zero saved rbp with the user's pt_regs above it.
"""

from __future__ import annotations

import struct

import pytest

from kdumpy.analysis.memory import FaultError
from kdumpy.arch.x86_64.unwind_fp import PT_REGS, PT_REGS_SIZE, fp_step

TASK_STACK = 0xFFFFC90000010000  # 16 KiB, top at +0x4000
IRQ_STACK = 0xFFFFC90000104000
TEXT = 0xFFFFFFFF81000000


class Memory:
    """Sparse kernel memory: only written words exist; other reads fault."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def put(self, address: int, *values: int) -> None:
        for i, v in enumerate(values):
            self.words[address + 8 * i] = v

    def put_regs(self, address: int, **regs: int) -> None:
        self.put(address, *(regs.get(name, 0) for name in PT_REGS))

    def read(self, address: int, size: int) -> bytes:
        try:
            return struct.pack(
                f"<{size // 8}Q", *(self.words[address + i] for i in range(0, size, 8))
            )
        except KeyError:
            raise FaultError(f"{address:#x} not mapped", address) from None


def walk(regs: dict[str, int], mem: Memory) -> list[tuple[int, bool]]:
    """``(pc, crossed an exception frame)`` of each frame, and the user regs at the end."""
    frames = [(regs["ip"], False)]
    for _ in range(20):
        step = fp_step(regs, mem.read)
        if step is None:
            return frames
        if step.user:
            frames.append((step.regs["ip"], True))
            return frames
        regs = step.regs
        frames.append((regs["ip"], step.exc_regs is not None))
    raise AssertionError("the walk did not end")


def test_system_call_stack_ends_in_the_users_registers():
    mem = Memory()
    top = TASK_STACK + 0x4000
    regs_at = top - PT_REGS_SIZE
    mem.put_regs(regs_at, ip=0x47B7A0, cs=0x33, ss=0x2B, sp=0x7FFD6CA40BC8, bp=0x7FFD6CA40C30)
    f_do = regs_at - 16  # do_syscall_64: saved rbp 0 (cleared by entry), return to entry
    f_ksys = f_do - 0x38
    f_vfs = f_ksys - 0x40
    mem.put(f_do, 0, TEXT + 0xC0011F)
    mem.put(f_ksys, f_do, TEXT + 0xAA5A03)
    mem.put(f_vfs, f_ksys, TEXT + 0x4C696F)
    start = {"ip": TEXT + 0x4C6644, "sp": f_vfs - 0x20, "bp": f_vfs}
    assert walk(start, mem) == [
        (TEXT + 0x4C6644, False),  # vfs_write
        (TEXT + 0x4C696F, False),  # ksys_write
        (TEXT + 0xAA5A03, False),  # do_syscall_64
        (TEXT + 0xC0011F, False),  # entry_SYSCALL_64_after_hwframe
        (0x47B7A0, True),  # user space
    ]
    last = fp_step({"ip": TEXT + 0xC0011F, "sp": regs_at, "bp": 0}, mem.read)
    assert last is not None and last.user and last.exc_regs["sp"] == 0x7FFD6CA40BC8
    assert last.slot == regs_at + 8 * PT_REGS.index("ip")


def test_interrupt_on_the_irq_stack_crosses_to_the_interrupted_task():
    mem = Memory()
    # The task, idle in a halt, was interrupted: its pt_regs on the task stack, and
    # two frames below them (do_idle <- cpu_startup_entry <- start_secondary).
    t_regs = TASK_STACK + 0x3E00
    t1 = t_regs + PT_REGS_SIZE + 0x10
    t2 = t1 + 0x40
    mem.put_regs(t_regs, ip=TEXT + 0x9F00, cs=0x10, ss=0x18, sp=t1 - 8, bp=t1)
    mem.put(t1, t2, TEXT + 0xE100)
    mem.put(t2, 0, TEXT + 0x5A000)
    # On the IRQ stack (at a higher address), the handler chain; the outermost frame
    # saved rbp = &pt_regs | 1, set by the entry code before it switched stacks.
    h1 = IRQ_STACK + 0x3F00
    h0 = h1 - 0x30
    mem.put(h1, t_regs | 1, TEXT + 0xC00B1E)
    mem.put(h0, h1, TEXT + 0x803F96)
    start = {"ip": TEXT + 0x33A458, "sp": h0 - 0x18, "bp": h0}
    assert walk(start, mem) == [
        (TEXT + 0x33A458, False),  # the crash, in the handler's callee
        (TEXT + 0x803F96, False),  # the handler
        (TEXT + 0xC00B1E, False),  # asm_common_interrupt
        (TEXT + 0x9F00, True),  # where the task was interrupted (pt_regs)
        (TEXT + 0xE100, False),
        (TEXT + 0x5A000, False),  # the first frame: saved rbp 0, no user pt_regs
    ]


def test_exception_frame_below_the_faulting_function():
    """A page fault: the handler chain on the task stack links to the pt_regs."""
    mem = Memory()
    regs_at = TASK_STACK + 0x3000
    caller = regs_at + PT_REGS_SIZE + 0x20
    mem.put_regs(regs_at, ip=TEXT + 0x1234, cs=0x10, ss=0x18, sp=caller - 0x10, bp=caller)
    mem.put(caller, 0, TEXT + 0x2000)
    handler = regs_at - 0x40
    mem.put(handler, regs_at | 1, TEXT + 0xC01000)
    start = {"ip": TEXT + 0x7000, "sp": handler - 8, "bp": handler}
    frames = walk(start, mem)
    assert frames == [
        (TEXT + 0x7000, False),
        (TEXT + 0xC01000, False),  # asm_exc_page_fault
        (TEXT + 0x1234, True),  # the faulting instruction
        (TEXT + 0x2000, False),
    ]


@pytest.mark.parametrize(
    ("bp", "saved"),
    [
        (TASK_STACK + 0x100, TASK_STACK + 0x100),  # a frame that points at itself
        (TASK_STACK + 0x200, TASK_STACK + 0x100),  # a chain that goes down its stack
    ],
)
def test_corrupt_chains_end_instead_of_looping(bp, saved):
    mem = Memory()
    mem.put(bp, saved, TEXT + 0x100)
    assert fp_step({"ip": TEXT, "sp": bp - 8, "bp": bp}, mem.read) is None


def test_frame_pointers_that_cannot_be_frames_end_the_walk():
    mem = Memory()
    assert (
        fp_step({"ip": TEXT, "sp": TASK_STACK + 0x100, "bp": TASK_STACK + 0x104}, mem.read) is None
    )
    assert fp_step({"ip": TEXT, "sp": TASK_STACK + 0x100, "bp": 0x7FFD0000}, mem.read) is None
    assert (
        fp_step({"ip": TEXT, "sp": TASK_STACK + 0x100, "bp": TASK_STACK + 0x80}, mem.read) is None
    )
    with pytest.raises(FaultError):  # an unreadable frame is the caller's to report
        fp_step({"ip": TEXT, "sp": TASK_STACK + 0x100, "bp": TASK_STACK + 0x180}, mem.read)
    # A return address outside the kernel: not a kernel frame.
    mem.put(TASK_STACK + 0x180, TASK_STACK + 0x1C0, 0x401000)
    assert (
        fp_step({"ip": TEXT, "sp": TASK_STACK + 0x100, "bp": TASK_STACK + 0x180}, mem.read) is None
    )
