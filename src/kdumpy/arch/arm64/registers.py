"""arm64 registers: ``NT_PRSTATUS`` (``user_pt_regs``) and the pointer-authentication mask.

``pr_reg`` is ``struct user_pt_regs``: x0..x30, sp, pc, pstate (34 x u64, 272 bytes;
arch/arm64/include/uapi/asm/ptrace.h).  x29 is the frame pointer, x30 the link register.
"""

from __future__ import annotations

from kdumpy.arch.base import RegisterLayout

ARM64_REGS = (*(f"x{i}" for i in range(31)), "sp", "pc", "pstate")
REGISTERS = RegisterLayout(ARM64_REGS, pc="pc", sp="sp", fp="x29")
MASK64 = (1 << 64) - 1
PSTATE_MODE_MASK = 0xF  # M[3:0]: EL0t = 0 (user), EL1t/EL1h = 4/5 (kernel)


def strip_pac(address: int, pac_mask: int) -> int:
    """A code address with its pointer-authentication code removed.

    A signed pointer keeps bit 55 (which half of the address space it is in) and
    carries the PAC in the bits ``NUMBER(KERNELPACMASK)`` names: a kernel pointer
    (bit 55 set) gets them set again, a user one cleared (drgn's
    ``demangle_cfi_registers_aarch64``).
    """
    if not pac_mask:
        return address
    if address & (1 << 55):
        return (address | pac_mask) & MASK64
    return address & ~pac_mask & MASK64


def is_user_mode(pstate: int) -> bool:
    """Whether a saved ``pstate`` is EL0's: the exception came from user space."""
    return pstate & PSTATE_MODE_MASK == 0
