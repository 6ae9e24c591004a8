"""Dump level bits (makedumpfile ``-d``): which kinds of pages to leave out."""

from __future__ import annotations

from kdumpy.errors import KdumpyError

EXCLUDE_ZERO = 0x01  # pages filled with zeros
EXCLUDE_CACHE = 0x02  # page cache without private data
EXCLUDE_CACHE_PRIVATE = 0x04  # page cache, private or not
EXCLUDE_USER = 0x08  # anonymous and hugetlbfs pages of user processes
EXCLUDE_FREE = 0x10  # free pages owned by the buddy allocator
MAX_DUMP_LEVEL = 31


def parse_dump_levels(text: str) -> list[int]:
    """``"31"`` or a retry list ``"11,31"`` (the next level is tried after ENOSPC)."""
    levels = []
    for part in text.split(","):
        try:
            level = int(part.strip(), 10)
        except ValueError:
            raise KdumpyError(f"dump level {part.strip()!r} is not a number") from None
        if not 0 <= level <= MAX_DUMP_LEVEL:
            raise KdumpyError(f"dump level {level} is out of range 0..{MAX_DUMP_LEVEL}")
        levels.append(level)
    if not levels:
        raise KdumpyError("empty dump level")
    return levels
