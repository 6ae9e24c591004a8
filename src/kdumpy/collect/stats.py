"""The collector's summary: pages excluded by class, bytes written, time (like makedumpfile's)."""

from __future__ import annotations

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


class Summary:
    """What a collection did; :meth:`format` renders makedumpfile's report table."""

    def __init__(
        self,
        dump_level: int = 0,
        total_pages: int = 0,  # pages in the source's RAM (1st bitmap)
        output: str = "",
        outputs: list[str] | None = None,
        warnings: tuple[str, ...] = (),  # the input's (e.g. a split set with a file missing)
    ) -> None:
        self.dump_level = dump_level
        self.total_pages = total_pages
        self.excluded = {n: 0 for n in CLASS_NAMES[1:]}
        self.zero_pages = 0
        self.dumpable_pages = 0  # pages with a descriptor (2nd bitmap)
        self.written_pages = 0
        self.bytes_written = 0
        self.seconds = 0.0
        self.incomplete = False
        self.output = output
        self.outputs = [] if outputs is None else outputs
        self.warnings = warnings

    @property
    def remaining_pages(self) -> int:
        return self.dumpable_pages - (self.zero_pages if self.dump_level & 1 else 0)

    def format(self) -> str:
        """makedumpfile's ``Original pages / Excluded pages / Remaining pages`` table."""
        lines = ["", f"Original pages  : 0x{self.total_pages:016x}"]
        excluded = self.total_pages - self.remaining_pages
        lines.append(f"  Excluded pages   : 0x{excluded:016x}")
        for key in ("zero", "cache", "cache_private", "user", "free", "hwpoison", "offline"):
            count = self.zero_pages if key == "zero" else self.excluded.get(key, 0)
            lines.append(f"    {_LABELS[key]:<24}: 0x{count:016x}")
        lines.append(f"  Remaining pages  : 0x{self.remaining_pages:016x}")
        if self.total_pages:
            percent = 100 * self.remaining_pages // self.total_pages
            lines.append(f"  (The number of pages is reduced to {percent}%.)")
        lines.append("--------------------------------------------------")
        lines.append(f"Total pages     : 0x{self.total_pages:016x}")
        lines.append(f"Write bytes     : {self.bytes_written}")
        lines.append(f"Dump level      : {self.dump_level}")
        lines.append(f"Time            : {self.seconds:.3f} s")
        if self.incomplete:
            lines.append("The dump is INCOMPLETE (ran out of space).")
        return "\n".join(lines)
