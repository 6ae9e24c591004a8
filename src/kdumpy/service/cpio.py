"""A cpio "newc" (SVR4, no CRC) archive writer: the format the kernel unpacks as initramfs.

Each entry is a 110-byte ASCII header (magic ``070701`` and thirteen 8-digit hex
fields), the NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes.
The archive ends with an entry named ``TRAILER!!!``.  Entries are streamed to the
output as they are added, so memory stays bounded by the largest single file.
"""

from __future__ import annotations

import stat
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


class CpioWriter:
    """Write newc entries to a binary stream.  Paths are stored without a leading '/'."""

    def __init__(self, out: BinaryIO, mtime: int = 0) -> None:
        self._out = out
        self._ino = 0
        self._mtime = mtime
        self._names: set[str] = set()

    def _header(self, name: str, mode: int, size: int, nlink: int, rdev: tuple[int, int]) -> None:
        self._ino += 1
        fields = (self._ino, mode, 0, 0, nlink, self._mtime, size, 0, 0, rdev[0], rdev[1])
        encoded = name.encode() + b"\0"
        header = MAGIC + b"".join(b"%08X" % f for f in fields)
        header += b"%08X" % len(encoded) + b"%08X" % 0
        self._out.write(header + encoded + _pad(len(header) + len(encoded)))

    def _claim(self, path: str) -> str:
        name = path.strip("/") or "."
        if name in self._names:
            raise ValueError(f"cpio: {name} added twice")
        self._names.add(name)
        return name

    def __contains__(self, path: str) -> bool:
        return (path.strip("/") or ".") in self._names

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._header(self._claim(path), stat.S_IFDIR | mode, 0, 2, (0, 0))

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._header(self._claim(path), stat.S_IFREG | mode, len(data), 1, (0, 0))
        self._out.write(data + _pad(len(data)))

    def add_symlink(self, path: str, target: str) -> None:
        data = target.encode()
        self._header(self._claim(path), stat.S_IFLNK | 0o777, len(data), 1, (0, 0))
        self._out.write(data + _pad(len(data)))

    def add_chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._header(self._claim(path), stat.S_IFCHR | mode, 0, 1, (major, minor))

    def finish(self) -> None:
        """Write the trailer entry; the archive is complete after this."""
        self._header(TRAILER, 0, 0, 1, (0, 0))
