"""Signal state of a task (``sig``): its handlers (``sighand->action[]``), blocked
mask, and the signals pending on the thread and on its thread group."""

from __future__ import annotations

from typing import NamedTuple

from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

NSIG = 64
SIG_DFL, SIG_IGN = 0, 1
# Signal numbers of x86_64 and arm64 (include/uapi/asm-generic/signal.h and x86's, the
# same numbers), the preferred name first.
_NAMES = ("HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT/IOT", "BUS", "FPE", "KILL", "USR1",
          "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD/CLD", "CONT", "STOP", "TSTP",
          "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO/POLL", "PWR",
          "SYS/UNUSED")  # fmt: skip
SIGRTMIN, SIGRTMAX = 32, 64


def signal_numbers() -> dict[int, list[str]]:
    """Number -> names (``sig -l``); the real-time signals named as crash names them,
    ``SIGRTMIN+n`` up to the middle and ``SIGRTMAX-n`` above it."""
    out = {n: [f"SIG{name}" for name in names.split("/")] for n, names in enumerate(_NAMES, 1)}
    middle = (SIGRTMIN + SIGRTMAX) // 2
    out[SIGRTMIN] = ["SIGRTMIN"]
    for n in range(SIGRTMIN + 1, SIGRTMAX):
        out[n] = [f"SIGRTMIN+{n - SIGRTMIN}" if n <= middle else f"SIGRTMAX-{SIGRTMAX - n}"]
    out[SIGRTMAX] = ["SIGRTMAX"]
    return out


def decode_sigset(sigset: int) -> list[str]:
    """The names of the signals in a signal set (bit n-1 is signal n)."""
    names = signal_numbers()
    return [names[bit + 1][0] if bit < NSIG else f"{bit + 1}"
            for bit in range(sigset.bit_length()) if sigset >> bit & 1]  # fmt: skip


# sa_flags bits (include/uapi/asm-generic/signal-defs.h, x86's SA_RESTORER).
SA_FLAGS = ((0x1, "SA_NOCLDSTOP"), (0x2, "SA_NOCLDWAIT"), (0x4, "SA_SIGINFO"),
            (0x04000000, "SA_RESTORER"), (0x08000000, "SA_ONSTACK"),
            (0x10000000, "SA_RESTART"), (0x40000000, "SA_NODEFER"),
            (0x80000000, "SA_RESETHAND"))  # fmt: skip


class SigAction(NamedTuple):
    """One handler: the ``struct k_sigaction`` address, handler, mask and flags."""

    signal: int
    address: int
    handler: int
    mask: int
    flags: int


def sig_actions(prog: Program, task: Object) -> list[SigAction]:
    """The 64 handlers of ``task``'s thread group."""
    actions = task.sighand.action
    size = prog.sizeof("struct k_sigaction")
    base = int(actions.address_ or 0)
    out = []
    for i in range(NSIG):
        sa = actions[i].sa
        out.append(SigAction(i + 1, base + i * size, int(sa.sa_handler), int(sa.sa_mask.sig[0]),
                             int(sa.sa_flags)))  # fmt: skip
    return out


def flag_names(flags: int) -> str:
    """``SA_RESTORER|SA_RESTART`` for the bits set."""
    return "|".join(name for bit, name in SA_FLAGS if flags & bit)


def pending(prog: Program, sigpending: Object) -> tuple[int, list[int]]:
    """A ``struct sigpending``: the pending set and its queued ``struct sigqueue``\\ s."""
    queued = [int(q) for q in list_for_each_entry("struct sigqueue", sigpending.list, "list")]
    return int(sigpending.signal.sig[0]), queued
