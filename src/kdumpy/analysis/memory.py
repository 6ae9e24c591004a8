"""Kernel virtual memory of a dump, read through a small page cache.

Analysis reads many small fields (a pid here, a list pointer there), so whole pages
are kept after the first access.  The cache is bounded; errors (unmapped addresses,
pages the dump left out) are one-line :class:`~kdumpy.errors.KdumpyError`\\ s.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from kdumpy.errors import KdumpyError, PageNotPresent
from kdumpy.vmcore.base import Dump

PAGE = 4096
_MAX_PAGES = 8192  # 32 MiB of cached pages


class FaultError(KdumpyError):
    """A read of kernel memory failed (unmapped address, or a page the dump left out)."""

    def __init__(self, message: str, address: int) -> None:
        super().__init__(message)
        self.address = address


class KernelMemory:
    """``read(vaddr, size)`` of kernel virtual memory, plus typed little helpers."""

    def __init__(self, dump: Dump) -> None:
        self.dump = dump
        self._pages: OrderedDict[int, bytes] = OrderedDict()

    def _page(self, page: int) -> bytes:
        data = self._pages.get(page)
        if data is None:
            try:
                data = self.dump.read_virt(page, PAGE)
            except PageNotPresent:
                raise FaultError(f"page {page:#x} is not in the dump", page) from None
            except KdumpyError:
                raise FaultError(f"page {page:#x} is not mapped", page) from None
            self._pages[page] = data
            if len(self._pages) > _MAX_PAGES:
                self._pages.popitem(last=False)
        return data

    def read(self, address: int, size: int) -> bytes:
        """``size`` bytes at a kernel virtual address; a one-line :class:`FaultError`
        naming the address when it is unmapped or its page was left out of the dump."""
        if address < 0 or size < 0 or address + size > 1 << 64:
            raise FaultError(f"invalid kernel virtual address: {address:#x}", address)
        try:
            return self._read(address, size)
        except FaultError as exc:
            left_out = "dump" in str(exc)
            why = "page not in the dump: excluded or not RAM" if left_out else "not mapped"
            raise FaultError(
                f"invalid kernel virtual address: {address:#x} ({why})", address
            ) from None

    def _read(self, address: int, size: int) -> bytes:
        page = address & ~(PAGE - 1)
        offset = address - page
        if offset + size <= PAGE:
            return self._page(page)[offset : offset + size]
        if size > 16 * PAGE:
            return self._read_large(address, size)
        out = bytearray()
        while size > 0:
            chunk = min(size, PAGE - offset)
            out += self._page(page)[offset : offset + chunk]
            size -= chunk
            page += PAGE
            offset = 0
        return bytes(out)

    def _read_large(self, address: int, size: int) -> bytes:
        """Big reads (BTF, kallsyms) bypass the cache."""
        try:
            return self.dump.read_virt(address, size)
        except PageNotPresent:
            raise FaultError(f"{address:#x} is not in the dump", address) from None
        except KdumpyError:
            raise FaultError(f"{address:#x} is not mapped", address) from None

    def u8(self, address: int) -> int:
        return self.read(address, 1)[0]

    def u16(self, address: int) -> int:
        return int(struct.unpack("<H", self.read(address, 2))[0])

    def u32(self, address: int) -> int:
        return int(struct.unpack("<I", self.read(address, 4))[0])

    def u64(self, address: int) -> int:
        return int(struct.unpack("<Q", self.read(address, 8))[0])

    def s64(self, address: int) -> int:
        return int(struct.unpack("<q", self.read(address, 8))[0])

    def cstring(self, address: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string (at most ``limit`` bytes)."""
        out = bytearray()
        while len(out) < limit:
            chunk = self.read(
                address + len(out),
                min(limit - len(out), PAGE - ((address + len(out)) & (PAGE - 1))),
            )
            end = chunk.find(b"\0")
            if end >= 0:
                return bytes(out + chunk[:end])
            out += chunk
        return bytes(out)

    def is_valid(self, address: int, size: int = 1) -> bool:
        try:
            self.read(address, size)
            return True
        except FaultError:
            return False

    def phys(self, address: int, size: int) -> bytes:
        """Physical memory (``rd -p``)."""
        try:
            return self.dump.read_phys(address, size)
        except KdumpyError:
            raise FaultError(f"physical address {address:#x} is not in the dump", address) from None

    def vtop(self, address: int) -> int:
        try:
            return self.dump.translator.vtop(address)
        except KdumpyError:
            raise FaultError(f"invalid kernel virtual address: {address:#x}", address) from None
