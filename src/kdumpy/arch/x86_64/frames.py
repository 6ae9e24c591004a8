"""x86_64 exception frames as crash shows them: ``struct pt_regs`` in ``bt`` and the
search for them on a stack (``bt -e``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kdumpy.arch.x86_64.unwind_fp import PT_REGS

_KERNEL_CS, _KERNEL_SS, _USER_CS, _USER32_CS, _USER_SS = 0x10, 0x18, 0x33, 0x23, 0x2B
# RFLAGS bits that always read 0 (reserved bits 3, 5, 15 and everything above ID).
_RFLAGS_ZERO = ~((1 << 22) - 1) | 1 << 3 | 1 << 5 | 1 << 15
_AT = {name: i for i, name in enumerate(PT_REGS)}


def regs_block(regs: dict[str, int], where: str = "") -> str:
    """An exception frame's registers in crash's layout, after ``[exception RIP: where]``
    when the frame is in the kernel."""
    r = {k: regs.get(k, 0) for k in PT_REGS}
    rows = [
        ("RIP", "ip"), ("RSP", "sp"), ("RFLAGS", "flags"), None,
        ("RAX", "ax"), ("RBX", "bx"), ("RCX", "cx"), None,
        ("RDX", "dx"), ("RSI", "si"), ("RDI", "di"), None,
        ("RBP", "bp"), ("R8", "r8"), ("R9", "r9"), None,
        ("R10", "r10"), ("R11", "r11"), ("R12", "r12"), None,
        ("R13", "r13"), ("R14", "r14"), ("R15", "r15"), None,
    ]  # fmt: skip
    out: list[str] = [f"    [exception RIP: {where}]\n"] if where else []
    line: list[str] = []
    for item in rows:
        if item is None:
            out.append("    " + "  ".join(line) + "\n")
            line = []
            continue
        label, key = item
        width = 8 if key == "flags" else 16
        line.append(f"{label:>3}: {r[key]:0{width}x}")
    out.append(f"    ORIG_RAX: {r['orig_ax']:016x}  CS: {r['cs']:04x}  SS: {r['ss']:04x}\n")
    return "".join(out)


def from_user_mode(regs: dict[str, int]) -> bool:
    """Whether an exception frame was saved on entry from user mode (CPL 3 in CS)."""
    return bool(regs.get("cs", 0) & 3)


def scan_exception_frames(
    words: Sequence[int], base: int, is_text: Callable[[int], bool]
) -> list[tuple[int, dict[str, int]]]:
    """``(address, registers)`` of every place on a stack (``words`` from ``base``)
    that looks like a
    ``struct pt_regs`` (``bt -e``): an entry from user mode at the top, exceptions
    and interrupts taken in the kernel, and pt_regs kept in locals (crash_setup_regs).
    Plausible means RFLAGS with bit 1 set and no always-zero bit, and either kernel
    segments with a text address and a kernel stack pointer, or user segments with
    user addresses."""
    n = len(PT_REGS)
    at_flags, at_cs = _AT["flags"], _AT["cs"]
    zero = _RFLAGS_ZERO & (1 << 64) - 1
    segments = (_KERNEL_CS, _USER_CS, _USER32_CS)
    found = []
    # Candidates by RFLAGS and CS alone, then the address checks.
    for i in range(len(words) - n + 1):
        flags = words[i + at_flags]
        if not flags & 2 or flags & zero or words[i + at_cs] not in segments:
            continue
        regs = dict(zip(PT_REGS, map(int, words[i : i + n]), strict=True))
        ip, sp, ss = regs["ip"], regs["sp"], regs["ss"]
        if regs["cs"] == _KERNEL_CS:
            if ss not in (_KERNEL_SS, 0) or not (ip >> 63 and sp >> 63):
                continue
            if not is_text(ip):
                continue
        elif not (ss == _USER_SS and 0 < ip < 1 << 47 and sp < 1 << 47):
            continue
        found.append((base + 8 * i, regs))
    return found
