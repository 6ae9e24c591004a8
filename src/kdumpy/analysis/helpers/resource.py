"""Resource limits of a task (``ps -r``): ``signal->rlim``, shared by its threads."""

from __future__ import annotations

from typing import NamedTuple

from kdumpy.analysis.objects import Object, ObjectError
from kdumpy.analysis.types import ArrayType

# include/uapi/asm-generic/resource.h, in RLIMIT_* order (RLIM_NLIMITS is 16 since 2.6.25).
RLIMIT_NAMES = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK",
                "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")  # fmt: skip
RLIM_INFINITY = (1 << 64) - 1  # ~0UL on 64-bit kernels
# A dump's type could claim a long array; the kernel has never had more than this.
_MAX_LIMITS = 64


class Rlimit(NamedTuple):
    """One limit: its name, and the soft (current) and hard (maximum) values, None
    when unlimited."""

    name: str
    cur: int | None
    max: int | None


def task_rlimits(task: Object) -> list[Rlimit]:
    """Every resource limit of ``task``, in the kernel's order (a number the names do not
    cover is ``(unknown)``, as crash says)."""
    rlim = task.signal.rlim
    t = rlim.type_.strip()
    if not isinstance(t, ArrayType):
        raise ObjectError(f"signal_struct.rlim is {t.spelling()}, not an array")
    count = min(t.length, _MAX_LIMITS)
    out = []
    for i in range(count):
        cur, hard = int(rlim[i].rlim_cur), int(rlim[i].rlim_max)
        out.append(Rlimit(RLIMIT_NAMES[i] if i < len(RLIMIT_NAMES) else "(unknown)",
                          None if cur == RLIM_INFINITY else cur,
                          None if hard == RLIM_INFINITY else hard))  # fmt: skip
    return out
