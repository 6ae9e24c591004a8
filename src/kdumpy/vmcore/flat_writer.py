"""The flattened format (makedumpfile ``-F``) and its rearrangement (``-R``).

A flattened file is a 4096-byte header (``"makedumpfile"``, type 1, version 1,
big-endian) and then records ``(offset, size)`` big-endian + ``size`` bytes, ending with
``(-1, -1)``: every positioned write of the dump becomes one record, so the dump can
be streamed through a pipe (ssh) and rebuilt at the other end (format.md 1.12).
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Protocol

from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore.kdump_writer import Sink

FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER = struct.Struct(">16sqq")
FLAT_HEADER_SIZE = 4096
RECORD = struct.Struct(">qq")
TYPE_FLAT_HEADER = 1
VERSION_FLAT_HEADER = 1
END_FLAG = -1
_READ_CHUNK = 1 << 20


class Stream(Protocol):
    """Where flattened records go: stdout, a pipe, a file."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...

    def flush(self) -> None: ...


class FlatSink:
    """A sink that turns positioned writes into flattened records on a stream."""

    def __init__(self, stream: Stream, name: str = "<stdout>") -> None:
        self.stream = stream
        self.name = name
        self.bytes_written = 0
        self.size = 0
        header = FLAT_HEADER.pack(FLAT_SIGNATURE, TYPE_FLAT_HEADER, VERSION_FLAT_HEADER)
        self._write(header.ljust(FLAT_HEADER_SIZE, b"\0"))

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise KdumpyError(f"{self.name}: write failed: {exc.strerror}") from None
        self.bytes_written += len(data)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        if size == 0:
            return
        self._write(RECORD.pack(offset, size))
        self._write(data)
        self.size = max(self.size, offset + size)

    def writev_at(self, offset: int, parts: list[bytes]) -> None:
        """One record holding ``parts`` back to back."""
        size = sum(len(p) for p in parts)
        if size == 0:
            return
        self._write(RECORD.pack(offset, size))
        for part in parts:
            self._write(part)
        self.size = max(self.size, offset + size)

    def finish(self) -> None:
        """Write the end marker and flush."""
        self._write(RECORD.pack(END_FLAG, END_FLAG))
        try:
            self.stream.flush()
        except OSError as exc:
            raise KdumpyError(f"{self.name}: flush failed: {exc.strerror}") from None


def _read_exact(stream: BinaryIO, size: int, name: str) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = stream.read(size - len(buf))
        if not chunk:
            raise DumpFormatError(
                f"{name}: flattened stream ends early ({len(buf)} of {size} bytes)"
            )
        buf += chunk
    return bytes(buf)


def rearrange(stream: BinaryIO, sink: Sink, name: str = "<stdin>") -> int:
    """Rebuild the dump from a flattened stream into ``sink``; returns the file size."""
    head = _read_exact(stream, FLAT_HEADER_SIZE, name)
    signature, ftype, _version = FLAT_HEADER.unpack_from(head)
    if signature.split(b"\0", 1)[0] != FLAT_SIGNATURE or ftype != TYPE_FLAT_HEADER:
        raise DumpFormatError(f"{name}: not a flattened dump (bad header)")
    size = 0
    while True:
        offset, length = RECORD.unpack(_read_exact(stream, RECORD.size, name))
        if offset < 0 or length <= 0:
            if offset != END_FLAG or length != END_FLAG:
                raise DumpFormatError(
                    f"{name}: bad flattened record (offset {offset}, size {length})"
                )
            return size
        while length > 0:
            chunk = _read_exact(stream, min(length, _READ_CHUNK), name)
            sink.write_at(offset, chunk)
            offset += len(chunk)
            length -= len(chunk)
            size = max(size, offset)
