"""The flattened format (``makedumpfile -F``): a stream of (offset, size, data) records.

A 4096-byte header (``"makedumpfile"``, big-endian type 1 and version) is followed by
records with big-endian ``int64 offset, int64 size`` headers, ended by ``-1, -1``.
The records are indexed once; reads then find the records covering a range.  Areas
no record wrote read as zero (holes), and where records overlap the later one wins,
as with ``makedumpfile -R`` (the sub header is re-written for eraseinfo).  A stream
cut short (no end marker) keeps every complete record.
"""

from __future__ import annotations

import bisect
import heapq
import struct

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.source import ByteSource

FLAT_SIGNATURE = b"makedumpfile\0"
FLAT_HEADER_SIZE = 4096
TYPE_FLAT_HEADER = 1
_RECORD = struct.Struct(">qq")


class FlattenedSource(ByteSource):
    """The rearranged bytes of a flattened file, without rearranging it on disk."""

    def __init__(self, raw: ByteSource) -> None:
        self.raw = raw
        self.path = raw.path
        head = raw.read(0, 32)
        if len(head) < 32 or head[:13] != FLAT_SIGNATURE:
            raise DumpFormatError(f"{self.path}: not a flattened makedumpfile stream")
        ftype = struct.unpack_from(">q", head, 16)[0]
        if ftype != TYPE_FLAT_HEADER:
            raise DumpFormatError(f"{self.path}: unknown flattened header type {ftype}")
        self.complete = False
        records = self._scan()
        self._starts, self._ends, self._sources = self._disjoint(records)
        self.size = self._ends[-1] if self._ends else 0
        self.stored = sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def _scan(self) -> list[tuple[int, int, int]]:
        """(logical offset, size, raw offset) of each complete record, in stream order."""
        records = []
        pos = FLAT_HEADER_SIZE
        while pos + _RECORD.size <= self.raw.size:
            offset, size = _RECORD.unpack(self.raw.read(pos, _RECORD.size))
            if offset == -1 and size == -1:
                self.complete = True
                break
            if offset < 0 or size <= 0 or offset + size > 1 << 62:
                raise DumpFormatError(
                    f"{self.path}: bad flattened record at byte {pos} "
                    f"(offset {offset}, size {size})"
                )
            pos += _RECORD.size
            if pos + size > self.raw.size:
                break  # truncated stream: keep what is complete
            records.append((offset, size, pos))
            pos += size
        return records

    @staticmethod
    def _disjoint(
        records: list[tuple[int, int, int]],
    ) -> tuple[list[int], list[int], list[int]]:
        """Cut overlapping records into disjoint pieces where the last write wins.

        A sweep over the sorted record boundaries with a heap of the records covering
        the current point, latest first: O(n log n) in the number of records, and at
        most 2n pieces, however the records overlap.
        """
        bounds = sorted({p for off, size, _ in records for p in (off, off + size)})
        order = sorted(range(len(records)), key=lambda i: records[i][0])
        starts: list[int] = []
        ends: list[int] = []
        raws: list[int] = []
        active: list[tuple[int, int]] = []  # (-stream index, end): the latest on top
        j = 0
        last = -1  # record of the previous piece, to join its continuation
        for a, b in zip(bounds, bounds[1:], strict=False):
            while j < len(order) and records[order[j]][0] <= a:
                i = order[j]
                heapq.heappush(active, (-i, records[i][0] + records[i][1]))
                j += 1
            while active and active[0][1] <= a:
                heapq.heappop(active)  # ended; a covered-up ended record goes later
            if not active:
                last = -1
                continue
            i = -active[0][0]
            off, _, raw = records[i]
            if i == last and ends[-1] == a:
                ends[-1] = b
            else:
                starts.append(a)
                ends.append(b)
                raws.append(raw + (a - off))
            last = i
        return starts, ends, raws

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.view(offset, size))

    def view(self, offset: int, size: int) -> memoryview:
        if offset < 0 or size <= 0 or offset >= self.size:
            return memoryview(b"")
        size = min(size, self.size - offset)
        end = offset + size
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        if self._starts and self._starts[i] <= offset and end <= self._ends[i]:
            return self.raw.view(self._sources[i] + offset - self._starts[i], size)
        out = bytearray(size)  # holes read as zero
        while i < len(self._starts) and self._starts[i] < end:
            a, b = max(offset, self._starts[i]), min(end, self._ends[i])
            if a < b:
                data = self.raw.view(self._sources[i] + a - self._starts[i], b - a)
                out[a - offset : a - offset + len(data)] = data
            i += 1
        return memoryview(out)

    def covered(self, offset: int, size: int) -> list[tuple[int, int]]:
        """The parts of ``offset .. offset+size`` some record wrote (not the holes)."""
        end = offset + size
        out: list[tuple[int, int]] = []
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while i < len(self._starts) and self._starts[i] < end:
            a, b = max(offset, self._starts[i]), min(end, self._ends[i])
            if a < b:
                if out and out[-1][1] == a:
                    out[-1] = (out[-1][0], b)
                else:
                    out.append((a, b))
            i += 1
        return out

    def close(self) -> None:
        self.raw.close()
