"""The classes a page can get from the decision chain, and a block carried between batches."""

from __future__ import annotations

KEEP = 0
FREE = 1
CACHE = 2
CACHE_PRIVATE = 3
USER = 4
HWPOISON = 5
OFFLINE = 6
CLASS_NAMES = ("kept", "free", "cache", "cache_private", "user", "hwpoison", "offline")


class Pending:
    """A multi-page exclusion that continues past the batch it started in."""

    __slots__ = ("end_pfn", "cls")

    def __init__(self, end_pfn: int = 0, cls: int = KEEP) -> None:
        self.end_pfn = end_pfn
        self.cls = cls
