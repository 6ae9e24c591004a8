"""``crashkernel=``: every syntax the kernel accepts, and the size it picks for a RAM size.

Mirrors kernel/crash_reserve.c (``parse_crashkernel_mem``/``_simple``/``_suffix``):

* ``size[KMG][@offset]``
* ``start-[end]:size[,start-[end]:size...][@offset]``: start inclusive, end exclusive,
  RAM rounded up to 128 MiB first; no matching range reserves nothing;
* ``size,high`` / ``size,low`` / ``size,cma`` (simple sizes only).

When several ``crashkernel=`` parameters are given, the last one of each kind wins; a
plain one makes the kernel ignore ``,high`` and ``,low``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kdumpy.errors import KdumpyError

MiB = 1 << 20
GiB = 1 << 30
RAM_ROUND = 128 * MiB
SUFFIXES = ("high", "low", "cma")
# kdump-utils' default for x86_64 and s390x (kdump_get_arch_recommend_crashkernel, v1.0.61).
DEFAULT_X86_64 = "2G-64G:256M,64G-:512M"
# x86_64 reserves this much below 4G on its own when only ,high is given.
X86_DEFAULT_LOW = 256 * MiB

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


def parse_crashkernel(value: str) -> Crashkernel:
    """Parse the value of one ``crashkernel=`` parameter."""
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


def reservation(cmdline: str, system_ram: int) -> Reservation:
    """The reservation an x86_64 kernel makes for this command line and RAM size."""
    from kdumpy.service.cmdline import split_cmdline

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
        low = last["low"].size if "low" in last else X86_DEFAULT_LOW
        return Reservation(last["high"].size or 0, high=True, low=low or 0, cma=cma)
    return Reservation(cma=cma)


def add_size(value: str, delta: int) -> str:
    """Add ``delta`` bytes to every size in a crashkernel value, keeping ranges and suffixes."""
    spec = parse_crashkernel(value)

    def fmt(n: int) -> str:
        return f"{n // GiB}G" if n % GiB == 0 else f"{n // MiB}M"

    if spec.size is not None:
        out = fmt(spec.size + delta)
        if spec.offset is not None:
            out += "@" + fmt(spec.offset)
        return out + (f",{spec.suffix}" if spec.suffix else "")
    parts = [
        f"{fmt(r.start)}-{fmt(r.end) if r.end is not None else ''}:{fmt(r.size + delta)}"
        for r in spec.ranges
    ]
    return ",".join(parts) + (f"@{fmt(spec.offset)}" if spec.offset is not None else "")


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
