"""Random access to the bytes of a dump file.

A dump reader sees its file through a :class:`ByteSource`: a plain file is mapped
with ``mmap`` (like makedumpfile maps /proc/vmcore) so bulk page reads are slices of
the mapping, not read syscalls; a flattened file (``makedumpfile -F``) is indexed
once and then read at random (see :mod:`kdumpy.vmcore.flattened`).
"""

from __future__ import annotations

import contextlib
import mmap
import os

from kdumpy.errors import DumpFormatError


class ByteSource:
    """The logical bytes of a dump; reads past the end come back short.

    ``size`` is the logical size (a flattened stream may place a record far out, leaving
    holes, which read as zero); ``stored`` is how many bytes of data the source really
    holds.  Sizes read from a dump are checked against ``stored`` before anything is
    allocated for them, so a crafted header cannot turn a hole into a huge allocation.
    """

    path: str
    size: int
    stored: int

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end of the data)."""
        raise NotImplementedError

    def view(self, offset: int, size: int) -> memoryview:
        """Like :meth:`read` but as a memoryview (a zero-copy view when possible)."""
        return memoryview(self.read(offset, size))

    def covered(self, offset: int, size: int) -> list[tuple[int, int]]:
        """``[start, end)`` ranges within ``offset .. offset+size`` that hold data."""
        end = min(offset + size, self.size)
        return [(offset, end)] if 0 <= offset < end else []

    def close(self) -> None:
        """Release the mapping and the file."""


class FileSource(ByteSource):
    """A regular file (or /proc/vmcore), memory-mapped read-only.

    If the kernel refuses the mapping (/proc/vmcore before Linux 3.11, some
    filesystems), reads fall back to ``pread``, like makedumpfile's ``--non-mmap``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - lives as long as the source
        except OSError as exc:
            raise DumpFormatError(f"{self.path}: cannot open: {exc.strerror}") from None
        self.size = self.stored = os.fstat(self._file.fileno()).st_size
        self._map: mmap.mmap | None = None
        if self.size == 0:
            self._file.close()
            raise DumpFormatError(f"{self.path}: empty file")
        try:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self._view = memoryview(self._map)
        except (OSError, ValueError):
            self._view = memoryview(b"")

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size <= 0 or offset >= self.size:
            return b""
        if self._map is None:
            return self._pread(offset, size)
        return self._map[offset : offset + size]

    def _pread(self, offset: int, size: int) -> bytes:
        size = min(size, self.size - offset)
        try:
            return os.pread(self._file.fileno(), size, offset)
        except OSError as exc:
            raise DumpFormatError(f"{self.path}: read error at {offset}: {exc.strerror}") from None

    def view(self, offset: int, size: int) -> memoryview:
        """A zero-copy view of the mapping (shorter at the end of the file)."""
        offset = max(0, min(offset, self.size))
        if self._map is None:
            return memoryview(self._pread(offset, max(0, size)) if offset < self.size else b"")
        return self._view[offset : offset + max(0, size)]

    def close(self) -> None:
        if self._map is not None:
            # views (and arrays over them) handed to callers may still reference the mapping; then
            # it is unmapped when the last of them is collected.
            with contextlib.suppress(BufferError):
                self._view.release()
                self._map.close()
            self._map = None
        self._file.close()
