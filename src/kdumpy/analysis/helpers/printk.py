"""The kernel log, as ``dmesg`` and crash's ``log`` show it.

Records come from :mod:`kdumpy.vmcore.dmesg` (the printk ring buffer reader); here
they are only formatted: ``[seconds.micros] text``, continuation lines of a
multi-line record printed as they are (like ``dmesg`` and drgn's ``get_dmesg``,
unlike makedumpfile which indents them).
"""

from __future__ import annotations

import time

from kdumpy.analysis.program import Program
from kdumpy.printable import LINES, escape_text
from kdumpy.vmcore.dmesg import LogRecord, records


def log_records(prog: Program) -> list[LogRecord]:
    """The kernel log, oldest first: ``LogRecord(ts_nsec, text, caller_id, seq, level)``."""
    return list(records(prog.dump))


def format_log(
    recs: list[LogRecord],
    timestamps: bool = True,
    levels: bool = False,
    boot_epoch: int | None = None,
) -> str:
    """The log text, escaped for a terminal (a record's own newlines and tabs kept);
    ``timestamps=False`` drops the ``[time]`` prefixes; ``levels`` puts crash's
    ``<level>`` before each text (``log -m``); ``boot_epoch`` shows times as dates from
    that boot time (``log -T``: ``[Thu Dec  3 08:39:14 UTC 2026]``)."""
    out = []
    for rec in recs:
        text = escape_text(rec.text.decode("utf-8", "backslashreplace"), LINES)
        if levels and rec.level is not None:
            text = f"<{rec.level:x}>{text}"
        secs, rem = divmod(rec.ts_nsec, 1_000_000_000)
        if not timestamps:
            out.append(text + "\n")
        elif boot_epoch is not None:
            out.append(f"[{crash_date(boot_epoch + secs)}] {text}\n")
        else:
            out.append(f"[{secs:5d}.{rem // 1000:06d}] {text}\n")
    return "".join(out)


def crash_date(epoch: float) -> str:
    """A time as crash prints it (``sys`` DATE, ``log -T``): ``Thu Dec  3 08:37:06 UTC
    2026``.  crash pads the day of the month with a space (C's ``%e``), so a two-digit
    ``%d`` would differ from crash on the first nine days of each month."""
    t = time.gmtime(epoch)
    return time.strftime(f"%a %b {t.tm_mday:2d} %H:%M:%S UTC %Y", t)


def kernel_log_text(prog: Program) -> str:
    return format_log(log_records(prog))
