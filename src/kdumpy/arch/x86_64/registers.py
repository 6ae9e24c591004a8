"""x86_64 registers: the ``NT_PRSTATUS`` layout, ``struct pt_regs`` and QEMU's CPU note."""

from __future__ import annotations

import struct

from kdumpy.arch.base import QemuCpuState, RegisterLayout

# struct user_regs_struct (arch/x86/include/asm/user_64.h): the order of pr_reg.
X86_64_REGS = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10",
    "r9", "r8", "ax", "cx", "dx", "si", "di", "orig_ax",
    "ip", "cs", "flags", "sp", "ss", "fs_base", "gs_base",
    "ds", "es", "fs", "gs",
)  # fmt: skip
REGISTERS = RegisterLayout(X86_64_REGS, pc="ip", sp="sp", fp="bp")

# QEMU's QEMUCPUState (target/i386/arch_dump.c), "QEMU" note, x86_64.
QEMU_GPRS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)  # fmt: skip
QEMU_SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt")
QEMU_SEGMENT = struct.Struct("<IIIIQ")  # selector, limit, flags, pad, base


def parse_qemu_cpu_state(desc: bytes) -> QemuCpuState | None:
    """QEMU's x86_64 CPU state note descriptor (owner ``QEMU``), or None if too short."""
    if len(desc) < 8:
        return None
    version, size = struct.unpack_from("<II", desc, 0)
    desc = desc[: max(8, min(size, len(desc)))]
    pos = 8
    if len(desc) < pos + 8 * len(QEMU_GPRS):
        return QemuCpuState(version, {})
    regs = dict(zip(QEMU_GPRS, struct.unpack_from(f"<{len(QEMU_GPRS)}Q", desc, pos), strict=True))
    pos += 8 * len(QEMU_GPRS)
    segments: dict[str, dict[str, int]] = {}
    for seg in QEMU_SEGMENTS:
        if pos + QEMU_SEGMENT.size > len(desc):
            break
        selector, limit, flags, _pad, base = QEMU_SEGMENT.unpack_from(desc, pos)
        segments[seg] = {"selector": selector, "limit": limit, "flags": flags, "base": base}
        pos += QEMU_SEGMENT.size
    cr: tuple[int, ...] = ()
    if pos + 40 <= len(desc):
        cr = struct.unpack_from("<5Q", desc, pos)
        pos += 40
    kgs = struct.unpack_from("<Q", desc, pos)[0] if pos + 8 <= len(desc) else None
    return QemuCpuState(version, regs, segments, cr, kgs)
