"""System-wide facts for ``sys`` and the report: uptime, load, memory, tasks."""

from __future__ import annotations

from dataclasses import dataclass

from kdumpy.analysis.helpers.printk import crash_date, log_records
from kdumpy.analysis.helpers.tasks import cpu_rq, for_each_task, panic_task
from kdumpy.analysis.helpers.zones import for_each_pgdat
from kdumpy.analysis.objects import Object
from kdumpy.analysis.panic import PanicInfo, classify
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError
from kdumpy.vmcore.dmesg import LogRecord

FSHIFT = 11  # fixed-point shift of avenrun (include/linux/sched/loadavg.h)


@dataclass(frozen=True)
class SystemInfo:
    release: str
    version: str
    machine: str
    nodename: str
    cpus: int
    date: str
    uptime: str
    load_average: str
    tasks: int
    memory: int  # bytes of RAM
    panic: PanicInfo


def uptime_seconds(prog: Program) -> float:
    """Seconds since boot at the crash: the newest log record's time stamp."""
    return _newest_time(log_records(prog))


def _newest_time(recs: list[LogRecord]) -> float:
    return recs[-1].ts_nsec / 1e9 if recs else 0.0


def boot_epoch(prog: Program) -> int | None:
    """When the kernel booted (seconds since the epoch), as crash counts it for
    ``log -T``: the crash time less the whole seconds of uptime, uptime from
    ``jiffies_64`` (:func:`uptime_jiffies`), else from the newest log record; None
    without a crash time."""
    crash_time = prog.info.crash_time
    if not crash_time:
        return None
    try:
        ticks, hz = uptime_jiffies(prog)
        uptime = ticks // hz
    except KdumpyError:
        uptime = int(uptime_seconds(prog))
    return int(crash_time) - uptime


def kernel_hz(prog: Program) -> int:
    """The kernel's HZ: from ``tick_nsec`` (the length of a tick), or, where the
    kernel has no such symbol (7.x), the CONFIG_HZ choice (100, 250, 300 or 1000)
    nearest to the jiffies counted per second of the run queues' clock since boot."""
    if prog.has_symbol("tick_nsec"):
        tick_nsec = int(prog.object("tick_nsec", "unsigned long"))
        if not 0 < tick_nsec <= 1_000_000_000:
            raise KdumpyError(f"tick_nsec is {tick_nsec}: cannot tell HZ")
        return round(1_000_000_000 / tick_nsec)
    uptime = max(int(cpu_rq(prog, cpu).clock) for cpu in prog.online_cpus) / 1e9
    jiffies = int(prog.object("jiffies_64", "unsigned long long"))

    def error(hz: int) -> float:  # INITIAL_JIFFIES depends on HZ: a wrong one is far off
        return abs(_since_boot(jiffies, hz) / hz - uptime)

    best = min(_HZ_CHOICES, key=error)
    if error(best) > 1 + uptime / 10:
        raise KdumpyError("cannot tell HZ: no tick_nsec, and jiffies do not match the clock")
    return best


_HZ_CHOICES = (100, 250, 300, 1000)


def _since_boot(jiffies: int, hz: int) -> int:
    """``jiffies_64`` less INITIAL_JIFFIES (300 s before the 32-bit wrap)."""
    return (jiffies - ((-300 * hz) & 0xFFFFFFFF)) & ((1 << 64) - 1)


def uptime_jiffies(prog: Program) -> tuple[int, int]:
    """``(jiffies since boot, HZ)`` at the crash, as crash counts them: ``jiffies_64``
    less INITIAL_JIFFIES, at the kernel's HZ (:func:`kernel_hz`)."""
    hz = kernel_hz(prog)
    return _since_boot(int(prog.object("jiffies_64", "unsigned long long")), hz), hz


def task_run_seconds(prog: Program, task: Object) -> int:
    """How long ``task`` had existed at the crash, in whole seconds, as ``ps -t``'s
    RUN TIME: the uptime in jiffies less ``start_time`` (ns since boot) in whole
    seconds at HZ, never below zero."""
    ticks, hz = uptime_jiffies(prog)
    started = int(task.start_time) // 1_000_000_000 * hz
    return max(0, ticks - started) // hz


def format_uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} days, {text}" if days else text


def load_average(prog: Program) -> str:
    try:
        values = [int(v) for v in prog.object("avenrun").value_()]
    except KdumpyError:
        return "unknown"
    parts = []
    for v in values:
        v += (1 << FSHIFT) // 200  # round to 1/100 as /proc/loadavg (and crash) do
        whole, frac = v >> FSHIFT, ((v & ((1 << FSHIFT) - 1)) * 100) >> FSHIFT
        parts.append(f"{whole}.{frac:02d}")
    return ", ".join(parts)


def ram_bytes(prog: Program) -> int:
    """Memory size as crash reports it: the pages every node spans (holes included).

    On x86_64 that is ``max_pfn`` pages, RAM starting at 0; arm64's RAM starts at
    ``PHYS_OFFSET`` (1 GiB on QEMU's virt machine), where ``max_pfn`` alone doubled a
    1 GiB guest.  Without the node data, ``max_pfn``; without either (Debian 12 arm64's
    kallsyms has no data symbols), the RAM the dump holds."""
    try:
        spanned = sum(int(pgdat.node_spanned_pages) for _, pgdat in for_each_pgdat(prog))
        if spanned:
            return spanned * prog.dump.page_size
    except KdumpyError:
        pass
    try:
        return int(prog.object("max_pfn")) * prog.dump.page_size
    except KdumpyError:
        return sum(end - start for start, end in prog.dump.ram_ranges()) * prog.dump.page_size


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size * 0.995:
            text = f"{n / size:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{n} bytes"


def system_info(prog: Program) -> SystemInfo:
    """What ``sys`` shows: release, node name, CPUs, date, uptime, load, tasks, memory,
    and the panic found in the log."""
    uts = prog.object("init_uts_ns").name
    crash_time = prog.info.crash_time
    date = crash_date(crash_time) if crash_time else "unknown"
    idle = len(prog.online_cpus)
    recs = log_records(prog)  # read once: the uptime and the panic both come from it
    return SystemInfo(
        release=uts.release.string_().decode("utf-8", "backslashreplace"),
        version=uts.version.string_().decode("utf-8", "backslashreplace"),
        machine=uts.machine.string_().decode("utf-8", "backslashreplace"),
        nodename=uts.nodename.string_().decode("utf-8", "backslashreplace"),
        cpus=prog.nr_cpu_ids,
        date=date,
        uptime=format_uptime(_newest_time(recs)),
        load_average=load_average(prog),
        tasks=sum(1 for _ in for_each_task(prog)) + idle,
        memory=ram_bytes(prog),
        panic=classify(recs),
    )


def taint_letters(prog: Program) -> str:
    """The taint flags as the kernel prints them (``print_tainted``), e.g. ``"OE"``."""
    try:
        mask = int(prog.object("tainted_mask"))
    except KdumpyError:
        return ""
    return taint_chars(mask)


def taint_chars(mask: int) -> str:
    """The letters of the taint bits set in ``mask`` (a kernel's or a module's)."""
    return "".join(c for bit, c in enumerate(TAINT_CHARS) if mask >> bit & 1)


# kernel/panic.c taint_flags[], bit order (the "true" letter of each).
TAINT_CHARS = "PFSRMBUDAWCIOELKXTN"
TAINT_NAMES = (
    "PROPRIETARY_MODULE", "FORCED_MODULE", "CPU_OUT_OF_SPEC", "FORCED_RMMOD", "MACHINE_CHECK",
    "BAD_PAGE", "USER", "DIE", "OVERRIDDEN_ACPI_TABLE", "WARN", "CRAP", "FIRMWARE_WORKAROUND",
    "OOT_MODULE", "UNSIGNED_MODULE", "SOFTLOCKUP", "LIVEPATCH", "AUX", "RANDSTRUCT", "TEST",
)  # fmt: skip


def panic_task_summary(prog: Program) -> dict[str, object] | None:
    task = panic_task(prog)
    if task is None:
        return None
    return {
        "pid": int(task.pid),
        "comm": task.comm.string_().decode("utf-8", "backslashreplace"),
        "task": int(task),
    }
