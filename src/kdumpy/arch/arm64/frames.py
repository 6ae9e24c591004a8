"""arm64 exception frames as crash shows them: ``struct pt_regs`` in ``bt`` and the
search for them on a stack (``bt -e``).

The layout (``bt``): PC, LR, SP and PSTATE, then x29 down to x0 three a line, as
crash's ``arm64_print_exception_frame`` prints them.  A frame is recognised on a stack
by its ``pstate``: EL1 (M[3:0] = 4 or 5) with a kernel-text pc and a kernel stack
pointer, or EL0 (M[3:0] = 0, AArch64) with user pc and stack pointer; the high word of
pstate holds no flags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kdumpy.arch.arm64.registers import ARM64_REGS, is_user_mode

_AT = {name: i for i, name in enumerate(ARM64_REGS)}
_USER_TOP = 1 << 52


def regs_block(regs: dict[str, int], where: str = "") -> str:
    """An exception frame's registers in crash's arm64 layout."""
    r = {k: regs.get(k, 0) for k in ARM64_REGS}
    out: list[str] = [f"    [exception PC: {where}]\n"] if where else []
    out.append(f"     PC: {r['pc']:016x}   LR: {r['x30']:016x}\n")
    out.append(f"     SP: {r['sp']:016x}  PSTATE: {r['pstate']:08x}\n")
    names = [f"x{i}" for i in range(29, -1, -1)]
    for i in range(0, len(names), 3):
        row = [f"{n.upper():>3}: {r[n]:016x}" for n in names[i : i + 3]]
        out.append("    " + "  ".join(row) + "\n")
    return "".join(out)


def from_user_mode(regs: dict[str, int]) -> bool:
    """Whether an exception frame was saved on entry from EL0."""
    return is_user_mode(regs.get("pstate", 0))


def scan_exception_frames(
    words: Sequence[int], base: int, is_text: Callable[[int], bool]
) -> list[tuple[int, dict[str, int]]]:
    """``(address, registers)`` of every place on a stack that looks like a pt_regs."""
    n = len(ARM64_REGS)
    at_pstate = _AT["pstate"]
    found = []
    for i in range(len(words) - n + 1):
        pstate = words[i + at_pstate]
        if pstate >> 32 or (pstate & 0x1F) not in (0, 4, 5):
            continue
        regs = dict(zip(ARM64_REGS, map(int, words[i : i + n]), strict=True))
        pc, sp = regs["pc"], regs["sp"]
        if regs["pstate"] & 0xF:
            if not (pc >> 63 and sp >> 63 and is_text(pc)):
                continue
        elif not (0 < pc < _USER_TOP and 0 < sp < _USER_TOP and not pc & 3):
            continue
        found.append((base + 8 * i, regs))
    return found
