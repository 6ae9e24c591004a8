"""Writing the kdump-compressed format (makedumpfile's layout, header version 6).

Layout (format.md 1.1): ``disk_dump_header`` in block 0, ``kdump_sub_header`` at
``block_size`` followed by a copy of the vmcore's ELF notes, the 1st bitmap (pages
that exist) and the 2nd bitmap (pages with a descriptor), each a whole number of
blocks, the page descriptors (24 bytes, one per set bit of the 2nd bitmap) and then
the page data.  With dump level bit 1 the first data record is one shared zero page
that every all-zero page's descriptor points at.

Writes go to a *sink* (anything with ``write_at(offset, data)``): a file, or the
flattened stream of :mod:`kdumpy.vmcore.flat_writer`.  Page data is flushed before
the descriptors that point at it, so a dump cut short by a full disk has no
descriptor pointing at data that was never written; :meth:`KdumpWriter.mark_incomplete`
then sets ``DUMP_DH_COMPRESSED_INCOMPLETE`` in the header, as makedumpfile does.
"""

from typing import Any, NamedTuple, Protocol, TypeAlias

from kdumpy.vmcore.compression import COMPRESSED_INCOMPLETE
from kdumpy.vmcore.diskdump_format import (
    DISK_DUMP_HEADER,
    KDUMP_SIGNATURE,
    KDUMP_SUB_HEADER,
    PAGE_DESC,
)

Buffer: TypeAlias = Any  # bytes, memoryview or any other object with the buffer protocol
HEADER_VERSION = 6
UINT_MAX = 0xFFFFFFFF
FLUSH_BYTES = 1 << 20  # page data buffered before a write (makedumpfile: 64 KiB)


class Sink(Protocol):
    """Destination of a dump: positioned writes."""

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...

    def writev_at(self, offset: int, parts: list[Buffer]) -> None:
        """Write ``parts`` back to back at ``offset``."""
        ...


def _blocks(size: int, block: int) -> int:
    return (size + block - 1) // block


class KdumpLayout(NamedTuple):
    """File offsets of every part, from the page size, max_mapnr, notes and page count."""

    block_size: int
    max_mapnr: int
    size_note: int
    num_dumpable: int  # of the whole dump (split files keep the global data offset)

    @property
    def sub_hdr_size(self) -> int:
        return _blocks(KDUMP_SUB_HEADER.size + self.size_note, self.block_size)

    @property
    def bitmap_len(self) -> int:
        """Bytes of one bitmap (whole blocks)."""
        return _blocks(_blocks(self.max_mapnr, 8), self.block_size) * self.block_size

    @property
    def bitmap_blocks(self) -> int:
        return 2 * self.bitmap_len // self.block_size

    @property
    def offset_note(self) -> int:
        return self.block_size + KDUMP_SUB_HEADER.size

    @property
    def offset_bitmap1(self) -> int:
        return (1 + self.sub_hdr_size) * self.block_size

    @property
    def offset_bitmap2(self) -> int:
        return self.offset_bitmap1 + self.bitmap_len

    @property
    def offset_desc(self) -> int:
        return self.offset_bitmap1 + 2 * self.bitmap_len

    @property
    def offset_data(self) -> int:
        return self.offset_desc + PAGE_DESC.size * self.num_dumpable


class KdumpHeader:
    """What goes into the two headers besides the layout; ``incomplete`` is set by the
    writer when the disk fills.  (A plain class, not a dataclass: the collector's start-up
    is part of the machine's downtime, and dataclasses cost milliseconds to import.)"""

    def __init__(
        self,
        # sysname nodename release version machine domainname
        utsname: tuple[str, str, str, str, str, str],
        timestamp: int,
        compression_flag: int,
        nr_cpus: int,
        phys_base: int,
        dump_level: int,
        notes: bytes,
        offset_vmcoreinfo_in_notes: int = 0,  # of the VMCOREINFO descriptor, within ``notes``
        size_vmcoreinfo: int = 0,
        split: bool = False,
        start_pfn: int = 0,
        end_pfn: int = 0,
        status_extra: int = 0,
    ) -> None:
        self.utsname = utsname
        self.timestamp = timestamp
        self.compression_flag = compression_flag
        self.nr_cpus = nr_cpus
        self.phys_base = phys_base
        self.dump_level = dump_level
        self.notes = notes
        self.offset_vmcoreinfo_in_notes = offset_vmcoreinfo_in_notes
        self.size_vmcoreinfo = size_vmcoreinfo
        self.split = split
        self.start_pfn = start_pfn
        self.end_pfn = end_pfn
        self.status_extra = status_extra
        self.incomplete = False


def pack_disk_dump_header(layout: KdumpLayout, header: KdumpHeader) -> bytes:
    """``struct disk_dump_header`` (464 bytes)."""
    uts = b"".join(s.encode("ascii", "replace")[:64].ljust(65, b"\0") for s in header.utsname)
    status = header.compression_flag | header.status_extra
    if header.incomplete:
        status |= COMPRESSED_INCOMPLETE
    return DISK_DUMP_HEADER.pack(
        KDUMP_SIGNATURE, HEADER_VERSION, uts, header.timestamp, 0, status,
        layout.block_size, layout.sub_hdr_size, layout.bitmap_blocks,
        min(layout.max_mapnr, UINT_MAX), 0, 0, 0, 0, header.nr_cpus,
    )  # fmt: skip


def pack_sub_header(layout: KdumpLayout, header: KdumpHeader) -> bytes:
    """``struct kdump_sub_header`` (104 bytes, version 6 fields)."""
    off_vi = layout.offset_note + header.offset_vmcoreinfo_in_notes if header.size_vmcoreinfo else 0
    return KDUMP_SUB_HEADER.pack(
        header.phys_base & 0xFFFFFFFFFFFFFFFF, header.dump_level, int(header.split),
        min(header.start_pfn, UINT_MAX), min(header.end_pfn, UINT_MAX),
        off_vi, header.size_vmcoreinfo, layout.offset_note, layout.size_note,
        0, 0, header.start_pfn, header.end_pfn, layout.max_mapnr,
    )  # fmt: skip


class KdumpWriter:
    """Writes one kdump-compressed file through a sink, in makedumpfile's order."""

    def __init__(self, sink: Sink, layout: KdumpLayout, header: KdumpHeader, zero_page: bool):
        self.sink = sink
        self.layout = layout
        self.header = header
        self.zero_page = zero_page
        self.zero_offset = layout.offset_data
        self.desc_pos = layout.offset_desc
        self.data_pos = layout.offset_data + (layout.block_size if zero_page else 0)
        self._descs: list[Buffer] = []
        self._desc_count = 0
        self._data: list[Buffer] = []
        self._data_len = 0
        self.pages_written = 0

    def write_headers(self) -> None:
        """Main header, the notes copy, the sub header (and the shared zero page)."""
        lay = self.layout
        self.sink.write_at(0, pack_disk_dump_header(lay, self.header))
        self.sink.write_at(lay.offset_note, self.header.notes)
        self.sink.write_at(lay.block_size, pack_sub_header(lay, self.header))
        if self.zero_page:
            self.sink.write_at(self.zero_offset, bytes(lay.block_size))

    def write_bitmap(self, which: int, start_pfn: int, packed: Buffer) -> None:
        """Bitmap 1 or 2 bytes (bit ``i % 8`` of byte ``i / 8`` for pfn ``start_pfn + i``)
        for pfns from ``start_pfn`` (a multiple of 8)."""
        base = self.layout.offset_bitmap1 if which == 1 else self.layout.offset_bitmap2
        self.sink.write_at(base + start_pfn // 8, packed)

    @property
    def next_data_offset(self) -> int:
        """File offset of the next page data :meth:`add_pages` receives."""
        return self.data_pos + self._data_len

    def add_pages(self, desc: Buffer, data: list[Buffer], nbytes: int) -> None:
        """Descriptors and data of the next dumpable pages in pfn order.

        ``desc`` holds their page descriptors (:data:`PAGE_DESC` records) with absolute
        offsets: the first page's data at :attr:`next_data_offset`, a zero page at
        :attr:`zero_offset`; ``data`` the pages' stored bytes back to back, ``nbytes``.
        """
        self._descs.append(desc)
        self._data.extend(data)
        self._data_len += nbytes
        count = memoryview(desc).nbytes // PAGE_DESC.size
        self._desc_count += count
        self.pages_written += count
        if self._data_len >= FLUSH_BYTES or self._desc_count >= 1 << 15:
            self.flush()

    def flush(self) -> None:
        """Write buffered data, then the descriptors pointing at it."""
        if self._data:
            self.sink.writev_at(self.data_pos, self._data)
            self.data_pos += self._data_len
            self._data, self._data_len = [], 0
        if self._descs:
            descs = b"".join(self._descs)
            self._descs, self._desc_count = [], 0
            self.sink.write_at(self.desc_pos, descs)
            self.desc_pos += len(descs)

    @property
    def end_offset(self) -> int:
        """Where the file ends once everything buffered is written."""
        return self.data_pos + self._data_len

    def mark_incomplete(self) -> None:
        """Re-write the main header with ``DUMP_DH_COMPRESSED_INCOMPLETE`` (after ENOSPC)."""
        self.header.incomplete = True
        self._descs, self._data, self._data_len, self._desc_count = [], [], 0, 0
        self.sink.write_at(0, pack_disk_dump_header(self.layout, self.header))
