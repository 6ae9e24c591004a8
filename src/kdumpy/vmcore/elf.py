"""ELF crash dumps: /proc/vmcore copies, makedumpfile -E output, QEMU dump-guest-memory.

Physical memory is found through the PT_LOAD program headers (``p_paddr``,
``p_offset``, ``p_filesz``); ``p_memsz > p_filesz`` tails are memory that existed but
was left out (makedumpfile -E), and a truncated file loses what lies past its end.
/proc/vmcore adds a kernel-text PT_LOAD that repeats part of the direct map; extents
are de-duplicated by physical address so every byte has one source.

Segments need not be page aligned: x86's e820 low RAM usually ends at 0x9fc00.  A page
that a segment covers only in part is in the dump, zero-filled where no segment has
data, as makedumpfile's ``readpage_elf`` reads it (and its 1st bitmap counts it).

Work is proportional to the program headers and the bytes in the file, never to
``p_memsz``: memory that was left out costs nothing to describe.
"""

import bisect
import struct
from functools import cached_property
from typing import Literal, NamedTuple

from kdumpy.arch.select import SUPPORTED, Mapping, elf_machine_name, from_elf_machine
from kdumpy.errors import DumpFormatError, PageNotPresent
from kdumpy.vmcore.base import Buffer, Dump, Extent, merge_ranges
from kdumpy.vmcore.notes import parse_notes
from kdumpy.vmcore.source import ByteSource, FileSource

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF
DUMP_ELF_INCOMPLETE = 0x1  # makedumpfile's e_flags mark for a cut-short dump
MAX_PHYS_ADDR = 1 << 52  # the widest physical address space kdumpy reads (52 bits)

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")


class Segment(NamedTuple):
    """One program header."""

    type: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int


def _elf_kind(head: bytes) -> str:
    """``"ppc64 big-endian"``, ``"i386 32-bit"``: what an ELF file kdumpy does not read is.

    ``e_machine`` sits at offset 18 in both ELF classes, in the file's byte order."""
    bits = {1: "32-bit", 2: "64-bit"}.get(head[4], f"ELF class {head[4]}")
    if head[5] not in (1, 2):
        return f"{bits} ELF with byte order {head[5]}"
    order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
    machine = elf_machine_name(int.from_bytes(head[18:20], order))
    return f"{machine} {bits} {order}-endian"


def parse_elf_header(src: ByteSource) -> tuple[list[Segment], int, int]:
    """Program headers, ``e_flags`` and ``e_machine`` of a 64-bit little-endian ELF file."""
    head = src.read(0, _EHDR.size)
    if len(head) < _EHDR.size or head[:4] != ELF_MAGIC:
        raise DumpFormatError(f"{src.path}: not an ELF file (bad magic or truncated header)")
    if head[4] != 2 or head[5] != 1:
        raise DumpFormatError(f"{src.path}: {_elf_kind(head)} dump: {SUPPORTED}")
    fields = _EHDR.unpack(head)
    machine, flags = fields[2], fields[7]
    phoff, shoff, phentsize, phnum = fields[5], fields[6], fields[9], fields[10]
    if phentsize != _PHDR.size:
        raise DumpFormatError(f"{src.path}: bad ELF program header size {phentsize}")
    if phnum == PN_XNUM:
        # More than 65534 program headers: the real count is in section header 0.
        sh0 = src.read(shoff, _SHDR.size)
        if len(sh0) < _SHDR.size:
            raise DumpFormatError(f"{src.path}: ELF section header 0 is past the end of the file")
        phnum = _SHDR.unpack(sh0)[7]
    table = src.read(phoff, phnum * _PHDR.size) if phnum * _PHDR.size <= src.stored else b""
    if len(table) < phnum * _PHDR.size:
        raise DumpFormatError(
            f"{src.path}: ELF program headers ({phnum} at offset {phoff}) "
            "run past the end of the file"
        )
    segments = []
    for i in range(phnum):
        ptype, _flags, off, vaddr, paddr, filesz, memsz, _align = _PHDR.unpack_from(
            table, i * _PHDR.size
        )
        if ptype == PT_LOAD and (filesz > memsz or paddr + memsz > MAX_PHYS_ADDR):
            raise DumpFormatError(
                f"{src.path}: impossible PT_LOAD {i}: paddr {paddr:#x} filesz {filesz:#x} "
                f"memsz {memsz:#x}"
            )
        segments.append(Segment(ptype, off, vaddr, paddr, filesz, memsz))
    return segments, flags, machine


class ElfDump(Dump):
    """A dump in ELF format, read through a :class:`ByteSource` (mmap or flattened)."""

    def __init__(self, src: ByteSource, format: str = "elf") -> None:
        self.src = src
        self.path = src.path
        segments, flags, machine = parse_elf_header(src)
        self.machine = machine
        self.arch = from_elf_machine(machine, src.path)
        self.segments = segments
        self.loads = [s for s in segments if s.type == PT_LOAD]
        self.incomplete = bool(flags & DUMP_ELF_INCOMPLETE)
        self.notes = []
        for seg in segments:
            if seg.type == PT_NOTE:
                data = src.read(seg.offset, seg.filesz) if seg.filesz <= src.stored else b""
                if len(data) < seg.filesz:
                    raise DumpFormatError(f"{src.path}: ELF note segment is truncated")
                self.notes.extend(parse_notes(data, src.path))
        # QEMU's dump-guest-memory without paging writes p_vaddr == p_paddr everywhere.
        self.format = format
        if format == "elf" and any(n.name == "QEMU" for n in self.notes):
            self.format = "qemu-elf"
        self.page_size = self._guess_page_size()
        self._shift = self.page_size.bit_length() - 1
        self.extents = self._build_extents()
        # Parallel lists: the hot small-read path avoids attribute lookups.
        self._extent_starts = [e.start for e in self.extents]
        self._extent_ends = [e.end for e in self.extents]
        self._extent_offsets = [e.offset for e in self.extents]
        # makedumpfile's max_mapnr: the highest PT_LOAD end, rounded up to a page.
        end = max((s.paddr + s.memsz for s in self.loads), default=0)
        self.max_pfn = (end + self.page_size - 1) >> self._shift

    def _guess_page_size(self) -> int:
        if self.has_vmcoreinfo:
            size = self.vmcoreinfo.page_size
            if size and size & (size - 1) == 0 and 512 <= size <= 1 << 16:
                return size
        return 4096

    def _build_extents(self) -> list[Extent]:
        """File-backed physical extents, clipped to the file (and to the records of a
        flattened one) and de-duplicated."""
        raw: list[Extent] = []
        for seg in self.loads:
            for a, b in self.src.covered(seg.offset, seg.filesz):
                raw.append(Extent(seg.paddr + (a - seg.offset), seg.paddr + (b - seg.offset), a))
        raw.sort(key=lambda e: (e.start, -e.end))
        out: list[Extent] = []
        for ext in raw:
            start = ext.start
            if out and start < out[-1].end:
                start = out[-1].end  # overlap: the earlier extent already provides it
            if start < ext.end:
                out.append(Extent(start, ext.end, ext.offset + (start - ext.start)))
        return out

    def stated_mappings(self) -> list[Mapping]:
        return [Mapping(s.vaddr, s.paddr, s.memsz) for s in self.loads]

    def file_extents(self) -> list[Extent] | None:
        # Only a plain file: a flattened stream's offsets are not the file's.
        return self.extents if self.format in ("elf", "qemu-elf") else None

    def ram_ranges(self) -> list[tuple[int, int]]:
        # makedumpfile's 1st bitmap: from paddr's page to the page holding the last byte
        return self._ram_ranges

    @cached_property
    def _ram_ranges(self) -> list[tuple[int, int]]:
        return merge_ranges([self._pages(g.paddr, g.paddr + g.memsz) for g in self.loads])

    def pfn_ranges(self) -> list[tuple[int, int]]:
        return self._pfn_ranges

    @cached_property
    def _pfn_ranges(self) -> list[tuple[int, int]]:
        return merge_ranges([self._pages(e.start, e.end) for e in self.extents])

    def _pages(self, start: int, end: int) -> tuple[int, int]:
        """The pfns ``[first, end)`` whose pages physical bytes ``[start, end)`` touch."""
        return start >> self._shift, (end + self.page_size - 1) >> self._shift

    def read_pfns(self, start_pfn: int, count: int) -> tuple[Buffer, Buffer]:
        if start_pfn < 0 or count < 0:
            raise PageNotPresent(f"{self.path}: no page frames at {start_pfn} (+{count})")
        lo, hi = start_pfn << self._shift, (start_pfn + count) << self._shift
        present = bytearray(count)
        stop_pfn = start_pfn + count
        ranges = self.pfn_ranges()
        k = max(0, bisect.bisect_right(self._dumpable_starts, start_pfn) - 1)
        while k < len(ranges) and ranges[k][0] < stop_pfn:
            start, end = ranges[k]
            if end > start_pfn:
                a, b = max(start, start_pfn) - start_pfn, min(end, stop_pfn) - start_pfn
                present[a:b] = b"\x01" * (b - a)
            k += 1
        i = max(0, bisect.bisect_right(self._extent_starts, lo) - 1)
        # Fast path: one extent holds the whole range -> a view of the mapping, no copy.
        if i < len(self.extents):
            ext = self.extents[i]
            if ext.start <= lo and hi <= ext.end:
                view = self.src.view(ext.offset + (lo - ext.start), hi - lo)
                if view.nbytes == hi - lo:
                    return view, present
        out = bytearray(hi - lo)  # what no extent holds reads as zero
        while i < len(self.extents) and self.extents[i].start < hi:
            ext = self.extents[i]
            a, b = max(lo, ext.start), min(hi, ext.end)
            if a < b:
                data = self.src.view(ext.offset + (a - ext.start), b - a)
                out[a - lo : a - lo + data.nbytes] = data
            i += 1
        return out, present

    def read_phys(self, paddr: int, size: int) -> bytes:
        if paddr < 0:
            raise PageNotPresent(f"{self.path}: negative physical address {paddr}")
        # Small reads (page-table entries, struct fields) go straight to the extent.
        starts = self._extent_starts
        i = bisect.bisect_right(starts, paddr) - 1
        if i >= 0 and paddr + size <= self._extent_ends[i]:
            data = self.src.read(self._extent_offsets[i] + (paddr - starts[i]), size)
            if len(data) == size:
                return data
        return super().read_phys(paddr, size)

    def close(self) -> None:
        self.src.close()


def open_elf(path: str) -> ElfDump:
    """Open an ELF dump file."""
    src = FileSource(path)
    try:
        return ElfDump(src)
    except BaseException:
        src.close()
        raise
