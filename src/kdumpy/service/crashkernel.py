"""``crashkernel=``: every syntax the kernel accepts, and the size it picks for a RAM size.

Mirrors kernel/crash_reserve.c (``parse_crashkernel_mem``/``_simple``/``_suffix``):

* ``size[KMG][@offset]``
* ``start-[end]:size[,start-[end]:size...][@offset]``: start inclusive, end exclusive,
  RAM rounded up to 128 MiB first; no matching range reserves nothing;
* ``size,high`` / ``size,low`` / ``size,cma`` (simple sizes only).

When several ``crashkernel=`` parameters are given, the last one of each kind wins; a
plain one makes the kernel ignore ``,high`` and ``,low``.

The second half is kdump-utils' arithmetic on these values (kdump-lib.sh), which decides
what kdumpy writes to the boot loader: sizes added in bytes and written in the largest
exact unit (``_crashkernel_add``), the machine's size in GiB from /proc/iomem
(``get_system_size``) and the table lookup that gives "0M" when no range matches
(``get_recommend_size``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from kdumpy.arch.kdump_select import kdump_machine
from kdumpy.errors import KdumpyError
from kdumpy.service.cmdline import split_cmdline

MiB = 1 << 20
GiB = 1 << 30
RAM_ROUND = 128 * MiB
SUFFIXES = ("high", "low", "cma")

_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([KkMmGgTtPpEe]?)")


class CrashkernelError(KdumpyError):
    """A crashkernel= value the kernel would reject."""


@dataclass(frozen=True)
class MemRange:
    start: int
    end: int | None  # exclusive; None is unlimited
    size: int


@dataclass(frozen=True)
class Crashkernel:
    """One parsed ``crashkernel=`` value."""

    text: str
    size: int | None = None  # simple form
    ranges: tuple[MemRange, ...] = ()
    offset: int | None = None
    suffix: str | None = None  # "high", "low", "cma"

    def size_for(self, system_ram: int) -> int:
        """The size the kernel reserves for ``system_ram`` bytes (0: nothing)."""
        if self.size is not None:
            return self.size
        total = -(-system_ram // RAM_ROUND) * RAM_ROUND
        for r in self.ranges:
            if r.size >= total:
                raise CrashkernelError(f"crashkernel={self.text}: invalid size (not below RAM)")
            if total >= r.start and (r.end is None or total < r.end):
                return r.size
        return 0


def memparse(text: str) -> tuple[int, str]:
    """Parse a kernel memory value (``0x`` hex, octal, decimal, K/M/G/T/P/E); return the rest."""
    match = _NUMBER.match(text)
    if match is None:
        raise ValueError(f"memory value expected at {text!r}")
    digits = match.group(1)
    if digits[:2].lower() == "0x":
        number = int(digits, 16)
    elif len(digits) > 1:
        number = int(digits, 8) if digits[0] == "0" else int(digits)
    else:
        number = int(digits)
    return number << _UNITS[match.group(2).upper()], text[match.end() :]


def parse_crashkernel(value: str, auto_table: str | None = None) -> Crashkernel:
    """Parse the value of one ``crashkernel=`` parameter.

    ``auto`` is a RHEL 8 kernel extension (never upstream): with ``auto_table`` (the range
    table that kernel used, ``KdumpMachine.crashkernel_auto`` in :mod:`kdumpy.arch.kdump`) it
    reads as that table, without it it is an error, as on every other kernel (nothing is reserved).
    """
    if value == "auto":
        if auto_table is None:
            raise CrashkernelError(
                "crashkernel=auto: only RHEL 8 kernels understand it and this kernel reserves "
                "nothing for it; run kdumpy reset-crashkernel to write the explicit default"
            )
        return replace(_parse(auto_table), text="auto")
    try:
        return _parse(value)
    except ValueError as exc:
        raise CrashkernelError(f"crashkernel={value}: {exc}") from None


def _parse(value: str) -> Crashkernel:
    head, comma, tail = value.rpartition(",")
    if comma and tail in SUFFIXES:
        size, rest = memparse(head)
        if rest:
            raise ValueError(f"unexpected {rest!r} before ,{tail}")
        return Crashkernel(value, size=size, suffix=tail)
    if ":" in value:
        return _parse_ranges(value)
    size, rest = memparse(value)
    offset = None
    if rest.startswith("@"):
        offset, rest = memparse(rest[1:])
    if rest:
        raise ValueError(f"unrecognized {rest!r}")
    return Crashkernel(value, size=size, offset=offset)


def _parse_ranges(value: str) -> Crashkernel:
    body, _, offset_text = value.partition("@")
    ranges = []
    for item in body.split(","):
        bounds, colon, size_text = item.partition(":")
        start_text, dash, end_text = bounds.partition("-")
        if not colon or not dash:
            raise ValueError(f"range {item!r} is not start-[end]:size")
        start, rest = memparse(start_text)
        end = None
        if end_text:
            end, rest2 = memparse(end_text)
            if rest2 or end <= start:
                raise ValueError(f"bad range end in {item!r}")
        size, rest3 = memparse(size_text)
        if rest or rest3:
            raise ValueError(f"bad range {item!r}")
        ranges.append(MemRange(start, end, size))
    offset = None
    if offset_text:
        offset, rest = memparse(offset_text)
        if rest:
            raise ValueError(f"bad offset {offset_text!r}")
    return Crashkernel(value, ranges=tuple(ranges), offset=offset)


@dataclass(frozen=True)
class Reservation:
    """What the kernel reserves, from all crashkernel= parameters of a command line."""

    size: int = 0
    offset: int | None = None
    high: bool = False  # may sit above 4G
    low: int = 0  # extra low (below 4G) reservation with ,high
    cma: int = 0

    @property
    def total(self) -> int:
        return self.size + self.low


def reservation(cmdline: str, system_ram: int, arch: str = "x86_64") -> Reservation:
    """The reservation a kernel of ``uname -m`` = *arch* makes for this command line and RAM
    size (with ,high alone, the machine's default low part below 4G as well)."""
    last: dict[str | None, Crashkernel] = {}
    for param in split_cmdline(cmdline):
        if param.startswith("crashkernel="):
            parsed = parse_crashkernel(param.partition("=")[2])
            last[parsed.suffix] = parsed
    cma = (last["cma"].size or 0) if "cma" in last else 0
    if None in last:
        plain = last[None]
        return Reservation(plain.size_for(system_ram), plain.offset, cma=cma)
    if "high" in last:
        low = last["low"].size if "low" in last else kdump_machine(arch).crashkernel_default_low
        return Reservation(last["high"].size or 0, high=True, low=low or 0, cma=cma)
    return Reservation(cma=cma)


def add_size(value: str, delta: int) -> str:
    """Add ``delta`` bytes to every size in a crashkernel value (kdump-utils' _crashkernel_add)."""
    return crashkernel_add(value, str(delta))


# kdump-utils' arithmetic (kdump-lib.sh: is_memsize, to_bytes, memsize_add, _crashkernel_add,
# get_system_size, get_recommend_size): sizes are written in the largest unit that divides
# them exactly, so nothing below a MiB is lost and T/P/E appear when they fit.
UNIT_NAMES = ("", "K", "M", "G", "T", "P", "E")
_MEMSIZE = re.compile(r"([+-]?[0-9]+)([KkMmGgTtPpEe]?)")
_ALWAYS_LAST = ("high", "low", "cma")
# The end kdump-utils gives an open range ("64G-" reads as "64G-102400T").
OPEN_END = 102400 << 40


def to_bytes(text: str) -> int:
    """A kdump-utils memory size (decimal, optional sign, one unit letter K..E) in bytes."""
    match = _MEMSIZE.fullmatch(text)
    if match is None:
        raise CrashkernelError(f"{text!r} is not a memory size")
    return _fits(int(match.group(1)) << _UNITS[match.group(2).upper()])


def _fits(n: int) -> int:
    """Sizes past 63 bits wrap in bash's arithmetic and the kernel's: refuse them."""
    if abs(n) >= 1 << 63:
        raise CrashkernelError(f"{n} bytes is too large a memory size")
    return n


def format_memsize(n: int) -> str:
    """Bytes in the largest unit (K..E) that divides them exactly, like memsize_add."""
    unit = 0
    while abs(n) >= 1024 and n % 1024 == 0 and unit < len(UNIT_NAMES) - 1:
        n //= 1024
        unit += 1
    return f"{n}{UNIT_NAMES[unit]}"


def memsize_add(a: str, b: str) -> str:
    return format_memsize(_fits(to_bytes(a) + to_bytes(b)))


def _is_memrange(text: str) -> bool:
    start, dash, end = text.rpartition("-")
    if not dash:
        return False
    try:
        to_bytes(start)
        if end:
            to_bytes(end)
    except CrashkernelError:
        return False
    return True


def crashkernel_add(value: str, delta: str) -> str:
    """Add ``delta`` (a memory size, may be negative) to every size of a crashkernel value.

    Ranges, ``@offset`` and ``,high``/``,low``/``,cma`` are kept as written; only the sizes
    change (kdump-utils' _crashkernel_add; ``,cma`` is the kernel's newer suffix).
    """
    body, tail = value, ""
    if "@" in value:
        body, _, offset = value.rpartition("@")
        tail = "@" + offset
    elif value.rpartition(",")[2] in _ALWAYS_LAST:
        body, _, suffix = value.rpartition(",")
        tail = "," + suffix
    out = []
    for entry in body.split(","):
        if not entry:
            continue
        if ":" in entry:
            bounds, size = entry.rpartition(":")[0], entry.partition(":")[2]
            if not _is_memrange(bounds):
                raise CrashkernelError(f"crashkernel={value}: bad range {bounds!r}")
            out.append(f"{bounds}:{memsize_add(size, delta)}")
        else:
            out.append(memsize_add(entry, delta))
    if not out:
        raise CrashkernelError(f"crashkernel={value}: no size")
    return ",".join(out) + tail


def system_size_gib(iomem: str) -> int:
    """kdump-utils' get_system_size: the "System RAM" ranges of /proc/iomem summed, in whole
    MiB, rounded up to 128 MiB (as kernel/crash_reserve.c rounds) and then down to GiB."""
    total = 0
    for line in iomem.splitlines():
        match = _IOMEM_RAM.fullmatch(line)
        if match:
            total += int(match.group(2), 16) - int(match.group(1), 16) + 1
    mib = total // MiB
    return -(-mib // 128) * 128 // 1024


_IOMEM_RAM = re.compile(r"\s*([0-9a-fA-F]+)-([0-9a-fA-F]+) : System RAM")


def recommend_size(system_gib: int, table: str) -> str:
    """The size a range table gives a machine of ``system_gib`` GiB, as written in the table;
    "0M" when no range covers it (kdump-utils' get_recommend_size: start inclusive, end
    exclusive, an open end unlimited)."""
    memory = system_gib * GiB
    for entry in table.split(","):
        bounds, colon, size = entry.partition(":")
        start_text, dash, end_text = bounds.partition("-")
        if not colon or not dash:
            raise CrashkernelError(f"crashkernel={table}: range {entry!r} is not start-[end]:size")
        start = to_bytes(start_text)
        end = to_bytes(end_text) if end_text else OPEN_END
        if start <= memory < end:
            return size
    return "0M"


def system_ram_from_iomem(iomem: str) -> int:
    """Sum the top-level "System RAM" ranges of /proc/iomem (root sees real addresses)."""
    total = 0
    for line in iomem.splitlines():
        if line.startswith(" ") or not line.rstrip().endswith(": System RAM"):
            continue
        start, _, end = line.split(":", 1)[0].strip().partition("-")
        total += int(end, 16) - int(start, 16) + 1
    return total


def format_size(n: int) -> str:
    """Bytes as kdump's usual M/G notation (rounded up to MiB)."""
    mib = -(-n // MiB)
    return f"{mib // 1024}G" if mib and mib % 1024 == 0 else f"{mib}M"
