"""The timer wheel (``timer``): each CPU's ``timer_bases[]``, each base's buckets of
``struct timer_list``; and the high-resolution timers (``timer -r``): each CPU's
``hrtimer_bases``, each clock base's red-black tree of ``struct hrtimer``.  Wheel bases
are named by how many there are: 3 since 6.9 (``BASE_LOCAL``, ``BASE_GLOBAL``,
``BASE_DEF``), 2 before (``BASE_STD``, ``BASE_DEF``)::

    for name, base, timers in timer_bases(prog, cpu):
        for timer in timers: print(int(timer.expires), prog.describe(int(timer.function)))
"""

from __future__ import annotations

from typing import NamedTuple

from kdumpy.analysis.helpers.lists import hlist_for_each_entry
from kdumpy.analysis.helpers.rbtree import rbtree_inorder_for_each_entry
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


class HrtimerClockBase(NamedTuple):
    """One clock base of a CPU's ``hrtimer_cpu_base``, its timers by expiry."""

    number: int  # the clock base's index (0: monotonic, 1: real ...)
    base: Object  # struct hrtimer_clock_base
    get_time: int  # the clock's read function (0 since 6.18, which dropped it)
    offset: int  # ns from the monotonic clock to this one
    timers: list[Object]  # struct hrtimer *, soonest first


def hrtimer_bases(prog: Program, cpu: int) -> tuple[Object, list[HrtimerClockBase]]:
    """A CPU's ``struct hrtimer_cpu_base`` and its clock bases (8 since 4.16: the
    monotonic, real, boot and TAI clocks, hard and soft), each timer tree in order."""
    cpu_base = prog.per_cpu(prog.object("hrtimer_bases"), cpu)
    bases = cpu_base.clock_base
    count = bases.type_.strip().length  # type: ignore[attr-defined]
    out = []
    for i in range(count):
        base = bases[i]
        get_time = int(base.get_time) if base.has_member_("get_time") else 0
        timers = list(rbtree_inorder_for_each_entry("struct hrtimer", base.active.rb_root,
                                                    "node.node"))  # fmt: skip
        out.append(HrtimerClockBase(int(base.index), base, get_time, ktime_ns(base.offset),
                                    timers))  # fmt: skip
    return cpu_base, out


def ktime_ns(kt: Object) -> int:
    """A ``ktime_t`` (an s64 of nanoseconds) as an int."""
    value = int(kt)
    return value - (1 << 64) if value >> 63 else value


# The HZ values kernels are built with (kernel/Kconfig.hz).
_HZ_CHOICES = (100, 250, 300, 1000)


def kernel_hz(prog: Program) -> int:
    """The kernel's HZ: from ``tick_nsec`` where it exists (it went in 6.15); else the
    choice of kernel/Kconfig.hz nearest to the jiffies counted per second of monotonic
    time (``tk_core``'s clock base, ``timekeeper_data[0]`` since 6.17)."""
    if prog.has_symbol("tick_nsec"):
        tick_nsec = int(prog.object("tick_nsec", "unsigned long"))
        if 0 < tick_nsec <= 1_000_000_000:
            return round(1_000_000_000 / tick_nsec)
    if prog.has_symbol("tk_core"):
        tk = prog.object("tk_core").timekeeper
    else:
        tk = prog.object("timekeeper_data")[0].timekeeper
    mono = ktime_ns(tk.tkr_mono.base)
    jiffies = int(prog.object("jiffies_64", "unsigned long long"))
    if mono < 1_000_000_000:
        raise KdumpyError("no HZ: tick_nsec is gone and the uptime is under a second")

    # INITIAL_JIFFIES is 300 s before the 32-bit wrap, whatever HZ: try each
    def error(hz: int) -> float:
        ticks = (jiffies - ((-300 * hz) & 0xFFFFFFFF)) & ((1 << 64) - 1)
        return abs(ticks - mono * hz / 1e9)

    return min(_HZ_CHOICES, key=error)


def crash_ktime_now(prog: Program) -> int:
    """The monotonic time in ns at the crash as crash reckons it for ``timer -r``:
    the jiffies since boot (``jiffies_64`` less INITIAL_JIFFIES, 300 s before the
    32-bit wrap) times the nanoseconds of a tick."""
    hz = kernel_hz(prog)
    ticks = int(prog.object("jiffies_64", "unsigned long long")) - ((-300 * hz) & 0xFFFFFFFF)
    return (ticks & ((1 << 64) - 1)) * (1_000_000_000 // hz)
