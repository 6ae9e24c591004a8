"""The collector's summary: pages excluded by class, bytes written, time (like makedumpfile's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kdumpy.collect.classify import CLASS_NAMES

_LABELS = {
    "zero": "Pages filled with zero",
    "cache": "Non-private cache pages",
    "cache_private": "Private cache pages",
    "user": "User process data pages",
    "free": "Free pages",
    "hwpoison": "Hwpoison pages",
    "offline": "Offline pages",
}


@dataclass
class Summary:
    """What a collection did; :meth:`format` renders makedumpfile's report table."""

    dump_level: int = 0
    total_pages: int = 0  # pages in the source's RAM (1st bitmap)
    excluded: dict[str, int] = field(default_factory=lambda: {n: 0 for n in CLASS_NAMES[1:]})
    zero_pages: int = 0
    dumpable_pages: int = 0  # pages with a descriptor (2nd bitmap)
    written_pages: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    incomplete: bool = False
    output: str = ""
    outputs: list[str] = field(default_factory=list)

    @property
    def remaining_pages(self) -> int:
        return self.dumpable_pages - (self.zero_pages if self.dump_level & 1 else 0)

    def format(self) -> str:
        """makedumpfile's ``Original pages / Excluded pages / Remaining pages`` table."""
        lines = ["", "Original pages  : 0x%016x" % self.total_pages]
        excluded = self.total_pages - self.remaining_pages
        lines.append("  Excluded pages   : 0x%016x" % excluded)
        for key in ("zero", "cache", "cache_private", "user", "free", "hwpoison", "offline"):
            count = self.zero_pages if key == "zero" else self.excluded.get(key, 0)
            lines.append("    %-24s: 0x%016x" % (_LABELS[key], count))
        lines.append("  Remaining pages  : 0x%016x" % self.remaining_pages)
        if self.total_pages:
            lines.append(
                "  (The number of pages is reduced to %d%%.)"
                % (100 * self.remaining_pages // self.total_pages)
            )
        lines.append("Memory Hole     : (not counted)")
        lines.append("--------------------------------------------------")
        lines.append("Total pages     : 0x%016x" % self.total_pages)
        lines.append("Write bytes     : %d" % self.bytes_written)
        lines.append("Dump level      : %d" % self.dump_level)
        lines.append("Time            : %.3f s" % self.seconds)
        if self.incomplete:
            lines.append("The dump is INCOMPLETE (ran out of space).")
        return "\n".join(lines)
