"""What happened: the panic message and its kind, read from the kernel log.

The kinds follow what triage tools tell apart (crash's ``PANIC:`` line, PyKdump's
``dump_reason``): sysrq, oops (page fault / general protection), BUG, NMI or
watchdog (hard/soft lockup), hung task, OOM, machine check, plain panic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kdumpy.vmcore.dmesg import LogRecord

# (kind, pattern) in priority order: the first that matches any log line wins.
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("machine check", re.compile(r"Machine check|mce: \[Hardware Error\]|MCE: ")),
    ("sysrq", re.compile(r"sysrq triggered crash|(?i:sysrq) ?: Trigger a crash")),
    ("hung task", re.compile(r"hung_task: blocked tasks|INFO: task .* blocked for more than")),
    ("OOM", re.compile(r"Out of memory|System is deadlocked on memory|oom-kill")),
    ("NMI/watchdog", re.compile(
        r"(hard|soft) ?LOCKUP|Watchdog detected hard LOCKUP|watchdog: BUG: soft lockup|"
        r"NMI: Not continuing|Uhhuh\. NMI received|rcu_sched self-detected stall"
    )),
    # "kernel BUG at" is followed by "Oops: invalid opcode", so BUG is tested first;
    # page faults print "BUG: unable to handle ..." / "BUG: kernel NULL pointer ...".
    ("warning", re.compile(r"panic_on_warn set|^WARNING: CPU: ")),
    ("BUG", re.compile(r"kernel BUG at|BUG: (?!unable to handle|kernel NULL pointer|soft lockup)")),
    ("oops", re.compile(
        r"BUG: unable to handle|BUG: kernel NULL pointer dereference|Oops: |"
        r"general protection fault|Unable to handle kernel"
    )),
)  # fmt: skip
_PANIC_LINE = re.compile(r"Kernel panic - not syncing: ?(.*)")


@dataclass(frozen=True)
class PanicInfo:
    message: str  # the panic string, as crash's PANIC: line shows it
    kind: str  # one of the kinds above, or "panic"
    line_index: int  # index of the panic (or first oops) record in the log, -1 if none
    evidence: str  # the log line that decided the kind


def classify(records: list[LogRecord]) -> PanicInfo:
    """Find the panic message and decide the kind of crash."""
    lines = [r.text.decode("utf-8", "replace") for r in records]
    panic_at, message = -1, ""
    for i in range(len(lines) - 1, -1, -1):
        m = _PANIC_LINE.search(lines[i])
        if m:
            panic_at, message = i, lines[i][m.start() :].strip()
            break
    # Look at the lines leading to the panic (an oops earlier in the log counts).
    window = lines[: panic_at + 1] if panic_at >= 0 else lines
    for kind, pattern in _KINDS:
        hits = [i for i, line in enumerate(window) if pattern.search(line)]
        if hits:
            # Without a panic line (panic_on_oops goes straight to kdump), the first
            # line of the report says the most: "BUG: kernel NULL pointer ...".
            if not message:
                message, panic_at = window[hits[0]].strip(), hits[-1]
            return PanicInfo(message, kind, panic_at, window[hits[0]].strip())
    return PanicInfo(message or "(no panic message in the log)", "panic", panic_at, message)
