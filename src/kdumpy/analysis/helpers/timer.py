"""The timer wheel (``timer``): each CPU's ``timer_bases[]``, each base's buckets of
``struct timer_list``.  Bases are named by how many there are: 3 since 6.9
(``BASE_LOCAL``, ``BASE_GLOBAL``, ``BASE_DEF``), 2 before (``BASE_STD``, ``BASE_DEF``)::

    for name, base, timers in timer_bases(prog, cpu):
        for timer in timers: print(int(timer.expires), prog.describe(int(timer.function)))
"""

from __future__ import annotations

from kdumpy.analysis.helpers.lists import hlist_for_each_entry
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.types import ArrayType
from kdumpy.errors import KdumpyError

_NAMES = {3: ("BASE_LOCAL", "BASE_GLOBAL", "BASE_DEF"), 2: ("BASE_STD", "BASE_DEF"),
          1: ("BASE_STD",)}  # fmt: skip


def jiffies(prog: Program) -> int:
    return int(prog.object("jiffies"))


def nr_bases(prog: Program) -> int:
    """``NR_BASES`` with ``CONFIG_NO_HZ_COMMON`` (every distribution): 3 since 6.9, the
    release that also added ``struct timer_events``; 2 before.  Needed where BTF has
    no per-CPU variables (Debian 11's 5.10) and the array length is only a guess."""
    try:
        prog.type("struct timer_events")
        return 3
    except KdumpyError:
        return 2


def timer_bases(prog: Program, cpu: int) -> list[tuple[str, Object, list[Object]]]:
    """``(name, struct timer_base, timers)`` of a CPU's bases, timers bucket by bucket
    (the wheel's order, as crash shows them)."""
    bases = prog.per_cpu(prog.object("timer_bases"), cpu)
    t = bases.type_.strip()
    count = min(t.length, nr_bases(prog)) if isinstance(t, ArrayType) else 1
    names = _NAMES.get(count, tuple(f"BASE_{i}" for i in range(count)))
    out = []
    for i in range(count):
        base = bases[i] if isinstance(t, ArrayType) else bases
        vectors = base.vectors
        size = vectors.type_.strip().length  # type: ignore[attr-defined]
        timers: list[Object] = []
        for bucket in range(size):
            timers += hlist_for_each_entry("struct timer_list", vectors[bucket], "entry")
        out.append((names[i], base, timers))
    return out
