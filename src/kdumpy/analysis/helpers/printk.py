"""The kernel log, as ``dmesg`` and crash's ``log`` show it.

Records come from :mod:`kdumpy.vmcore.dmesg` (the printk ring buffer reader); here
they are only formatted: ``[seconds.micros] text``, continuation lines of a
multi-line record printed as they are (like ``dmesg`` and drgn's ``get_dmesg``,
unlike makedumpfile which indents them).
"""

from __future__ import annotations

from kdumpy.analysis.program import Program
from kdumpy.printable import LINES, escape_text
from kdumpy.vmcore.dmesg import LogRecord, records


def log_records(prog: Program) -> list[LogRecord]:
    return list(records(prog.dump))


def format_log(recs: list[LogRecord], timestamps: bool = True) -> str:
    """The log text, escaped for a terminal (a record's own newlines and tabs kept);
    ``timestamps=False`` drops the ``[time]`` prefixes (``log -m`` style prefixes are
    not kept by the ring buffer reader)."""
    out = []
    for rec in recs:
        text = escape_text(rec.text.decode("utf-8", "backslashreplace"), LINES)
        if timestamps:
            secs, rem = divmod(rec.ts_nsec, 1_000_000_000)
            out.append(f"[{secs:5d}.{rem // 1000:06d}] {text}\n")
        else:
            out.append(text + "\n")
    return "".join(out)


def kernel_log_text(prog: Program) -> str:
    return format_log(log_records(prog))
