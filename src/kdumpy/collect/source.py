"""The dump being collected from, with what the writers need to know about it.

Wraps a reader from :mod:`kdumpy.vmcore` (``open_dump``): the crashed kernel's
``utsname`` (read from ``init_uts_ns`` in memory, as makedumpfile does), crash time,
CPU count, ``phys_base``, the ELF notes re-serialised byte for byte, and bulk page
reads.  For an ELF source (``/proc/vmcore`` or a copy of it) a batch of pages is read
through a mapping of just its file range (most pages kept) or with ``preadv`` into a
fresh buffer (few kept), never through a mapping of the whole file, so the resident
set stays the size of one batch however large the dump is.
"""

from __future__ import annotations

import mmap
import os
import struct
from types import TracebackType

from kdumpy.collect.memmap import MemMap
from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.base import Buffer, Dump
from kdumpy.vmcore.notes import NT_PRSTATUS, Note

BITMAP_FLOOR = 64 << 20  # both bitmaps of 1 TiB of RAM: allowed whatever the input's size
UTS_LEN = 65
UTS_NAME_OFFSET_BEFORE_5_11 = 4  # sizeof(struct kref) ahead of uts_namespace.name


def serialize_notes(notes: list[Note]) -> tuple[bytes, int, int]:
    """ELF note segment bytes, and the offset and size of the VMCOREINFO descriptor."""
    out = bytearray()
    vi_off = vi_size = 0
    for note in notes:
        name = note.name.encode("ascii") + b"\0"
        out += struct.pack("<III", len(name), len(note.desc), note.type)
        out += name.ljust((len(name) + 3) & ~3, b"\0")
        if note.name == "VMCOREINFO" and not vi_size:
            vi_off, vi_size = len(out), len(note.desc)
        out += note.desc.ljust((len(note.desc) + 3) & ~3, b"\0")
    return bytes(out), vi_off, vi_size


class DumpSource:
    """An opened source dump; use :func:`open_source`."""

    def __init__(self, dump: Dump) -> None:
        self.dump = dump
        self.path = dump.path
        if not dump.has_vmcoreinfo:
            raise DumpFormatError(
                f"{dump.path}: dump has no VMCOREINFO note (cannot find the kernel's "
                "page tables, struct pages or page size)"
            )
        self.info = dump.vmcoreinfo
        self.page_size = dump.page_size
        self.warnings: tuple[str, ...] = dump.warnings
        self.notes, self.vmcoreinfo_offset, self.vmcoreinfo_size = serialize_notes(dump.notes)
        self.nr_cpus = sum(1 for n in dump.notes if n.name == "CORE" and n.type == NT_PRSTATUS)
        self.phys_base = self.info.number(dump.arch.phys_base_number) or 0
        self.crash_time = self.info.crash_time or 0
        self.input_level = dump.input_dump_level
        self._fd = -1
        self._extents = dump.file_extents()
        # read_batch only maps or preads the file's own bytes then: worker threads may
        # call it at once (the dump readers keep caches and a file position).
        self.concurrent_reads = self._extents is not None
        self.max_mapnr = dump.max_pfn
        if self._extents is not None:
            self._fd = os.open(dump.path, os.O_RDONLY)
            self.max_mapnr = self._supported_max_pfn()
        # makedumpfile's 1st bitmap: the memory that existed, up to max_mapnr
        self.ram_ranges = [(s, min(e, self.max_mapnr)) for s, e in dump.ram_ranges()
                           if s < self.max_mapnr]  # fmt: skip
        self.total_pages = sum(e - s for s, e in self.ram_ranges)
        self.utsname = self._read_utsname()

    def _supported_max_pfn(self) -> int:
        """max_mapnr of an ELF source, clipped to the memory the dump supports.

        As makedumpfile does (``get_max_mapnr``, then ``get_mem_map``), max_mapnr is the
        end of the highest PT_LOAD, clipped to the last section that has a memory map:
        PT_LOADs may declare more memory (``p_memsz``) than the file holds (makedumpfile
        -E leaves excluded pages out, and mem_section still describes them), or hold
        memory no memory map describes (QEMU's dump of the firmware ROM below 4 GiB).
        Without a usable mem_section the file alone says what exists.  What is cut off
        is treated as absent (one warning); and the bitmaps, whose size follows
        max_mapnr, may not outgrow the file (beyond :data:`BITMAP_FLOOR`), so time and
        output follow the input's bytes.
        """
        declared = self.dump.max_pfn
        ranges = self.dump.pfn_ranges()
        held = ranges[-1][1] if ranges else 0
        try:
            described = MemMap(self.dump, declared, self.read_phys).described_end()
        except KdumpyError:
            described = 0  # no usable mem_section
        limit = min(declared, described) if described else min(declared, held)
        shift = self.page_size.bit_length() - 1
        if limit < declared:
            self.warnings += (
                f"{self.path}: PT_LOADs declare memory up to {declared << shift:#x}, but the "
                f"file holds or mem_section describes memory only up to {limit << shift:#x}; "
                "the rest is treated as absent",
            )
        size = os.fstat(self._fd).st_size
        if limit // 4 > max(BITMAP_FLOOR, size):
            raise DumpFormatError(
                f"{self.path}: data at physical address {(limit - 1) << shift:#x} would need "
                f"{limit // 4} bytes of bitmaps, more than this {size}-byte file supports"
            )
        return limit

    def _read_utsname(self) -> tuple[str, str, str, str, str, str]:
        """``init_uts_ns.name`` from memory; OSRELEASE and the dump's machine if it cannot be read.

        VMCOREINFO has carried OFFSET(uts_namespace.name) only since Linux 5.11; before,
        ``name`` followed a 4-byte ``struct kref``, the offset makedumpfile and crash
        assume when the entry is missing.
        """
        sym = self.info.symbol("init_uts_ns")
        off = self.info.offset("uts_namespace.name")
        if off is None:
            off = UTS_NAME_OFFSET_BEFORE_5_11
        fields = ["Linux", "", self.info.osrelease or "", "", self.dump.arch.uname, ""]
        if sym is not None:
            try:
                raw = self.dump.read_virt(sym + off, 6 * UTS_LEN)
                fields = [
                    raw[i * UTS_LEN : (i + 1) * UTS_LEN]
                    .split(b"\0", 1)[0]
                    .decode("ascii", "replace")
                    for i in range(6)
                ]
            except KdumpyError:
                pass
        return (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5])

    def effective_level(self, level: int) -> int:
        """Re-filtering keeps what was already excluded: ``level | the input's level``."""
        return level | self.input_level

    def read_pages(self, start_pfn: int, count: int, select: bytearray) -> Buffer:
        """Data of the pages ``select`` marks (one byte per pfn from ``start_pfn``) back to
        back, ``page_size`` bytes each."""
        pages, rows = self.read_batch(start_pfn, count, select)
        if rows is None:
            return pages
        view, ps = memoryview(pages).cast("B"), self.page_size
        return b"".join(view[i * ps : (i + 1) * ps] for i in range(count) if rows[i])

    def read_batch(
        self, start_pfn: int, count: int, select: bytearray
    ) -> tuple[Buffer, bytearray | None]:
        """The pages ``select`` marks (one byte per pfn from ``start_pfn``, nonzero:
        wanted) without a gathering copy: ``(pages, rows)``, where ``pages`` holds whole
        pages back to back and ``rows`` marks the wanted ones among them (None: all).
        Mostly kept batches come as a read-only mapping of their file range."""
        wanted = count - select.count(0)
        if self._extents is None:
            pages, _present = self.dump.read_pfns(start_pfn, count)
            return pages, None if wanted == count else select
        if wanted * 2 >= count:
            mapped = self.map_phys(start_pfn * self.page_size, count * self.page_size)
            if mapped is not None:
                return mapped, None if wanted == count else select
        out = bytearray(wanted * self.page_size)
        view = memoryview(out)
        # Every selected page is in the file.  Runs of consecutive pfns: one pread each.
        ps, row, i = self.page_size, 0, select.find(1)
        while i >= 0:
            j = select.find(0, i)
            j = count if j < 0 else j
            self._pread_into(view[row * ps : (row + j - i) * ps], (start_pfn + i) * ps)
            row += j - i
            i = select.find(1, j)
        return out, None

    def map_phys(self, lo: int, size: int) -> memoryview | None:
        """Physical memory ``lo..lo+size`` (a batch's pages, or its struct pages) as a
        read-only view of a mapping of just its file range, or None unless one ELF extent
        holds it all.  The mapping lives as long as the view (one batch); mapped,
        /proc/vmcore is read without a copy per page, which is why makedumpfile maps it too."""
        if self._extents is None:
            return None
        ext = next((e for e in self._extents if e.start <= lo < e.end), None)
        if ext is None or lo + size > ext.end:
            return None
        offset = ext.offset + (lo - ext.start)
        base = offset - offset % mmap.ALLOCATIONGRANULARITY
        try:
            window = mmap.mmap(self._fd, offset - base + size, mmap.MAP_SHARED | mmap.MAP_POPULATE,
                               mmap.PROT_READ, offset=base)  # fmt: skip
        except (OSError, ValueError):
            return None  # a file that cannot be mapped is read with preadv
        return memoryview(window)[offset - base : offset - base + size]

    def read_phys(self, paddr: int, size: int) -> bytes:
        """Physical memory (struct pages, page tables) without mapping the whole file."""
        if self._extents is None:
            return self.dump.read_phys(paddr, size)
        for ext in self._extents:
            if ext.start <= paddr and paddr + size <= ext.end:
                data = os.pread(self._fd, size, ext.offset + (paddr - ext.start))
                if len(data) == size:
                    return data
                break
        return self.dump.read_phys(paddr, size)

    def read_phys_into(self, paddr: int, buf: memoryview) -> bool:
        """Fill ``buf`` with physical memory at ``paddr`` straight from the file (one
        copy); False unless one ELF extent holds it all (then use read_phys)."""
        if self._extents is None:
            return False
        end = paddr + buf.nbytes
        for ext in self._extents:
            if ext.start <= paddr and end <= ext.end:
                return os.preadv(self._fd, [buf], ext.offset + (paddr - ext.start)) == buf.nbytes
        return False

    def _pread_into(self, buf: memoryview, paddr: int) -> None:
        """Fill ``buf`` with physical memory at ``paddr`` from the ELF extents (holes stay 0)."""
        assert self._extents is not None
        end = paddr + buf.nbytes
        if not any(ext.start <= paddr and end <= ext.end for ext in self._extents):
            # A page the extents only partly cover (an e820 range ending mid-page): the rest
            # reads as zero, as makedumpfile's reader fills it, never as stale buffer bytes.
            buf[:] = bytes(buf.nbytes)
        for ext in self._extents:
            a, b = max(paddr, ext.start), min(end, ext.end)
            if a >= b:
                continue
            got = os.preadv(self._fd, [buf[a - paddr : b - paddr]], ext.offset + (a - ext.start))
            if got != b - a:
                raise DumpFormatError(f"{self.path}: short read at physical address {a:#x}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.dump.close()

    def __enter__(self) -> DumpSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_source(path: str) -> DumpSource:
    """Open ``path`` with :func:`kdumpy.vmcore.open_dump` and check it can be collected."""
    dump = open_dump(path)
    try:
        return DumpSource(dump)
    except BaseException:
        dump.close()
        raise
