"""arm64 unwinding on stacks built for the purpose.

The stacks follow the kernel's conventions (arch/arm64/kernel/stacktrace.c, entry.S,
asm/ptrace.h): a frame record ``{x29, x30}`` per function, linked upwards; exception
entry saves ``struct pt_regs`` (user_pt_regs first: x0..x30, sp, pc, pstate) with its
``stackframe`` record chained in, and since 6.13 a metadata record ``{0, 0, type}``
there instead; return addresses signed with pointer authentication carry a PAC in the
bits ``NUMBER(KERNELPACMASK)`` names.  The expected frames are the ones the test put
there.
"""

from __future__ import annotations

import struct

import pytest

from kdumpy.arch.arm64.registers import ARM64_REGS, REGISTERS, strip_pac
from kdumpy.arch.arm64.unwind import (
    CPU_CONTEXT_SIZE,
    FRAME_META_TYPE_FINAL,
    FRAME_META_TYPE_PT_REGS,
    Arm64Unwinder,
)
from kdumpy.errors import PageNotPresent

PAC_MASK = 0xFF7F_0000_0000_0000  # GENMASK(63, 48) without bit 55: 48-bit VAs
TASK_STACK = 0xFFFF_8000_0800_0000
IRQ_STACK = 0xFFFF_8000_0A00_0000  # above the task stack: the chain goes down to leave it
TEXT = 0xFFFF_8000_8001_0000
STACKFRAME_OFFSET = 0x130  # offsetof(struct pt_regs, stackframe) (taken from BTF in use)
PT_REGS_SIZE = 0x150


class Memory:
    """Sparse little-endian memory: 8-byte words by address."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def put(self, address: int, *values: int) -> None:
        for i, value in enumerate(values):
            self.words[address + 8 * i] = value

    def read(self, address: int, size: int) -> bytes:
        out = b""
        for a in range(address, address + size, 8):
            if a not in self.words:
                raise PageNotPresent(f"test: {a:#x} is not in the dump")
            out += struct.pack("<Q", self.words[a])
        return out


def sign(address: int, pac: int = 0x5A) -> int:
    """A return address as PAC-signed by the kernel: a code in the PAC bits."""
    return (address & ~PAC_MASK) | (pac << 48) & PAC_MASK


def pt_regs(mem: Memory, base: int, pc: int, fp: int, pstate: int, lr: int = 0) -> None:
    regs = [0] * len(ARM64_REGS)
    regs[ARM64_REGS.index("x29")] = fp
    regs[ARM64_REGS.index("x30")] = lr
    regs[ARM64_REGS.index("sp")] = base + PT_REGS_SIZE
    regs[ARM64_REGS.index("pc")] = pc
    regs[ARM64_REGS.index("pstate")] = pstate
    mem.put(base, *regs)


def pcs(frames: list) -> list[int]:  # noqa: ANN001
    return [f.regs["pc"] for f in frames]


def test_strip_pac() -> None:
    assert strip_pac(sign(TEXT + 4), PAC_MASK) == TEXT + 4
    assert strip_pac(0x005A_0000_0040_1000, PAC_MASK) == 0x0000_0000_0040_1000  # user half
    assert strip_pac(TEXT, 0) == TEXT
    assert REGISTERS.fp == "x29" and REGISTERS.pc == "pc" and len(ARM64_REGS) == 34


def test_frame_records_with_signed_return_addresses() -> None:
    mem = Memory()
    # callee <- a <- b <- c: each record's saved x30 is signed, the last record ends (0, 0)
    fp1, fp2, fp3 = TASK_STACK + 0x3E00, TASK_STACK + 0x3E40, TASK_STACK + 0x3F00
    mem.put(fp1, fp2, sign(TEXT + 0x104))
    mem.put(fp2, fp3, sign(TEXT + 0x208))
    mem.put(fp3, 0, sign(TEXT + 0x30C))
    mem.put(fp3 + 16, FRAME_META_TYPE_FINAL)
    unwinder = Arm64Unwinder(pac_mask=PAC_MASK)
    frames = unwinder.walk({"pc": TEXT, "x29": fp1, "sp": fp1 - 0x20}, mem.read)
    assert pcs(frames) == [TEXT, TEXT + 0x104, TEXT + 0x208, TEXT + 0x30C]
    assert [f.slot for f in frames[1:]] == [fp1 + 8, fp2 + 8, fp3 + 8]
    assert frames[1].regs["sp"] == fp1 + 16
    # Without the mask the signed addresses are not kernel text: the walk stops.
    assert len(Arm64Unwinder(pac_mask=0).walk({"pc": TEXT, "x29": fp1}, mem.read)) == 1


def test_exception_frame_before_6_13_by_entry_text() -> None:
    """el1h_64_irq_handler <- el1h_64_irq (entry text) <- pt_regs <- interrupted code."""
    mem = Memory()
    regs_at = TASK_STACK + 0x3C00
    frame = regs_at + STACKFRAME_OFFSET
    interrupted_fp = TASK_STACK + 0x3E00
    entry_pc = TEXT + 0x9000
    pt_regs(mem, regs_at, pc=TEXT + 0x444, fp=interrupted_fp, pstate=0x3C5, lr=sign(TEXT + 0x500))
    mem.put(frame, interrupted_fp, TEXT + 0x444)  # stackframe: {x29, elr}
    handler_fp = TASK_STACK + 0x3B00
    mem.put(handler_fp, frame, sign(entry_pc + 8))
    mem.put(interrupted_fp, 0, 0)
    mem.put(interrupted_fp + 16, FRAME_META_TYPE_FINAL)
    unwinder = Arm64Unwinder(
        pac_mask=PAC_MASK,
        stackframe_offset=STACKFRAME_OFFSET,
        is_exception_entry=lambda pc: entry_pc <= pc < entry_pc + 0x100,
    )
    frames = unwinder.walk({"pc": TEXT + 0x20, "x29": handler_fp}, mem.read)
    assert pcs(frames) == [TEXT + 0x20, entry_pc + 8, TEXT + 0x444]
    exc = frames[2].exc_regs
    assert exc is not None and exc["pstate"] == 0x3C5 and exc["x30"] == TEXT + 0x500
    assert frames[2].slot == regs_at + 8 * 32 and not frames[2].user


def test_exception_frame_since_6_13_by_metadata_record() -> None:
    mem = Memory()
    regs_at = TASK_STACK + 0x3C00
    frame = regs_at + STACKFRAME_OFFSET
    pt_regs(mem, regs_at, pc=TEXT + 0x777, fp=TASK_STACK + 0x3E00, pstate=0x5)
    mem.put(frame, 0, 0, FRAME_META_TYPE_PT_REGS)
    mem.put(TASK_STACK + 0x3E00, 0, 0, FRAME_META_TYPE_FINAL)
    unwinder = Arm64Unwinder(pac_mask=PAC_MASK, stackframe_offset=STACKFRAME_OFFSET)
    frames = unwinder.walk({"pc": TEXT + 0x9008, "x29": frame}, mem.read)
    assert pcs(frames) == [TEXT + 0x9008, TEXT + 0x777]
    assert frames[1].exc_regs is not None


def test_exception_from_user_mode_ends_the_stack() -> None:
    mem = Memory()
    regs_at = TASK_STACK + 0x3EB0
    frame = regs_at + STACKFRAME_OFFSET
    pt_regs(mem, regs_at, pc=0x0000_AAAA_0000_1000, fp=0x0000_FFFF_F000_0000, pstate=0x0)
    mem.put(frame, 0, 0, FRAME_META_TYPE_PT_REGS)
    unwinder = Arm64Unwinder(stackframe_offset=STACKFRAME_OFFSET)
    frames = unwinder.walk({"pc": TEXT, "x29": frame}, mem.read)
    assert len(frames) == 2 and frames[1].user and frames[1].regs["pc"] == 0x0000_AAAA_0000_1000


def test_irq_stack_to_task_stack_and_corrupt_chains() -> None:
    mem = Memory()
    irq_fp = IRQ_STACK + 0x3F00
    task_fp = TASK_STACK + 0x3F00  # lower address, another stack: allowed
    mem.put(irq_fp, task_fp, TEXT + 0x10)
    mem.put(task_fp, 0, TEXT + 0x20)
    frames = Arm64Unwinder().walk({"pc": TEXT, "x29": irq_fp}, mem.read)
    assert pcs(frames) == [TEXT, TEXT + 0x10, TEXT + 0x20]
    # Going down on the same stack is corruption (or a loop): the caller is the last.
    mem.put(task_fp, task_fp - 0x100, TEXT + 0x20)
    mem.put(task_fp - 0x100, task_fp, TEXT + 0x30)
    frames = Arm64Unwinder().walk({"pc": TEXT, "x29": irq_fp}, mem.read)
    assert pcs(frames) == [TEXT, TEXT + 0x10, TEXT + 0x20]
    # A record on a page the dump lacks ends the walk, with what was found so far.
    frames = Arm64Unwinder().walk({"pc": TEXT, "x29": IRQ_STACK + 0x100}, mem.read)
    assert pcs(frames) == [TEXT]


@pytest.mark.parametrize("pac_mask", [0, PAC_MASK])
def test_sleeping_task_from_cpu_context(pac_mask: int) -> None:
    values = [0x19 + i for i in range(10)] + [TASK_STACK + 0x3D00, TASK_STACK + 0x3CF0]
    values.append(sign(TEXT + 0x88) if pac_mask else TEXT + 0x88)
    context = struct.pack("<13Q", *values)
    assert len(context) == CPU_CONTEXT_SIZE
    regs = Arm64Unwinder(pac_mask=pac_mask).task_regs(context)
    assert regs["x19"] == 0x19 and regs["x28"] == 0x22
    assert (regs["x29"], regs["sp"], regs["pc"]) == (
        TASK_STACK + 0x3D00,
        TASK_STACK + 0x3CF0,
        TEXT + 0x88,
    )
