"""kdump-compressed dumps (makedumpfile -c/-l/-p/-z, QEMU kdump-*), single or split.

A page's data is found through two bitmaps and a descriptor table: the 1st bitmap
says the page existed, the 2nd that it has a descriptor; the descriptor index of a
pfn is the number of 2nd-bitmap bits set below it (counted from the file's
``start_pfn`` in a split set).  Counting uses a prefix table with one entry per 4096
pfns, like makedumpfile's ``pfn_to_pos``; bitmaps stay in the file mapping.
Descriptors with offset 0 (an incomplete dump) or whose data lies past the end of a
truncated file are treated as absent pages, so what is valid stays readable.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from kdumpy.arch.select import from_uname
from kdumpy.errors import DumpFormatError, PageNotPresent
from kdumpy.vmcore.base import Dump
from kdumpy.vmcore.compression import (
    COMPRESSED_INCOMPLETE,
    COMPRESSION_NAMES,
    DecompressionError,
    decompress_page,
)
from kdumpy.vmcore.diskdump_format import (
    DISK_DUMP_HEADER,
    PAGE_DESC_SIZE,
    DiskDumpHeader,
    KdumpSubHeader,
    parse_disk_dump_header,
    parse_sub_header,
)
from kdumpy.vmcore.notes import Note, parse_notes
from kdumpy.vmcore.source import ByteSource

BLOCK_PFNS = 4096  # pfns per prefix-count entry (BITMAP_SECT_LEN)
# page_desc_t as numpy reads it (diskdump_format.PAGE_DESC is the same record for struct)
PAGE_DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
assert PAGE_DESC.itemsize == PAGE_DESC_SIZE
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
_CHUNK_PFNS = 1 << 22  # bitmap scan granularity, bounds temporary memory
_PAGE_CACHE = 64


@dataclass
class _Part:
    """One file of the dump (the only one unless it is a split set)."""

    src: ByteSource
    header: DiskDumpHeader
    sub: KdumpSubHeader
    start_pfn: int
    end_pfn: int
    desc_offset: int
    descs: np.ndarray  # this file's PAGE_DESC records (fewer if the file is truncated)
    first_index: int = 0  # global 2nd-bitmap rank of start_pfn


def _array(src: ByteSource, offset: int, size: int) -> np.ndarray:
    """Bytes of ``src`` as a uint8 array (a zero-copy view of a mapped file)."""
    return np.frombuffer(src.view(offset, size), dtype=np.uint8)


def _popcount(bitmap: np.ndarray) -> int:
    return int(_POPCOUNT[bitmap].sum())


def _same_dump(header: DiskDumpHeader) -> DiskDumpHeader:
    """The header as every file of a split set has it (one may be marked incomplete)."""
    return header._replace(status=header.status & ~COMPRESSED_INCOMPLETE)


def _read_area(src: ByteSource, offset: int, size: int, what: str) -> bytes:
    """``size`` bytes the sub-header locates, or a one-line error if they are not there."""
    data = src.read(offset, size) if offset >= 0 and size <= src.stored else b""
    if len(data) < size:
        raise DumpFormatError(
            f"{src.path}: {what} ({size} bytes at offset {offset}) past the end of the file"
        )
    return data


class KdumpDump(Dump):
    """Reader for kdump-compressed files (``sources`` = one file or a split set)."""

    def __init__(self, sources: list[ByteSource], format: str = "kdump") -> None:
        self.format = format
        self.path = sources[0].path
        self._sources = sources
        parts = [self._read_headers(src) for src in sources]
        first = parts[0]
        self.header = first.header
        chosen = from_uname(first.header.machine, self.path)
        if chosen is not None:
            self.arch = chosen
        self.sub_header = first.sub
        self.page_size = first.header.block_size
        self._shift = self.page_size.bit_length() - 1
        self.incomplete = any(p.header.status & COMPRESSED_INCOMPLETE for p in parts)
        self.compression = COMPRESSION_NAMES.get(first.header.status & 0x27, "none")
        self.dump_level = first.sub.dump_level
        self.input_dump_level = self.dump_level
        self.max_pfn = first.sub.max_mapnr or first.header.max_mapnr
        self._load_bitmaps(first)
        self._build_prefix()
        self.parts = self._check_set(parts)
        for part in self.parts:
            part.first_index = self._rank(part.start_pfn)
            part.descs = self._read_descs(part)
        self._part_starts = [p.start_pfn for p in self.parts]
        self.warnings = self._missing_ranges()
        self.notes = self._read_notes(first)
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def stated_phys_base(self) -> int | None:
        return self.sub_header.phys_base or None

    # -- headers -------------------------------------------------------------------------
    def _read_headers(self, src: ByteSource) -> _Part:
        header = parse_disk_dump_header(src.read(0, DISK_DUMP_HEADER.size), src.path)
        bs = header.block_size
        sub = parse_sub_header(src.read(bs, 104), header.header_version, src.path)
        if header.signature == b"DISKDUMP":
            sub = KdumpSubHeader()
        if header.bitmap_blocks * bs > src.stored:
            raise DumpFormatError(
                f"{src.path}: bitmaps ({header.bitmap_blocks} blocks of {bs}) are larger "
                "than the file"
            )
        desc_offset = (1 + header.sub_hdr_size + header.bitmap_blocks) * bs
        start, end = (sub.start_pfn, sub.end_pfn) if sub.split else (0, 0)
        return _Part(src, header, sub, start, end, desc_offset, np.zeros(0, dtype=PAGE_DESC))

    def _check_set(self, parts: list[_Part]) -> list[_Part]:
        """The files in pfn order, their ranges clipped to the dump.

        A split set needs the same header in every file (the incomplete flag aside) and
        split flags set; its files' ranges may not overlap.  Gaps are allowed: a file
        of the set may be missing (see :meth:`_missing_ranges`).
        """
        for part in parts:
            if part.end_pfn == 0 or part.end_pfn > self.max_pfn:
                part.end_pfn = self.max_pfn
            part.start_pfn = min(part.start_pfn, part.end_pfn)
        if len(parts) == 1:
            return parts
        key = parts[0].header
        for part in parts:
            if not part.sub.split:
                raise DumpFormatError(f"{part.src.path}: not a split dump file")
            if _same_dump(part.header) != _same_dump(key):
                raise DumpFormatError(
                    f"{part.src.path}: header differs from {parts[0].src.path}: "
                    "not part of the same split dump"
                )
        ordered = sorted(parts, key=lambda p: (p.start_pfn, p.end_pfn))
        for prev, part in zip(ordered, ordered[1:], strict=False):
            if part.start_pfn < prev.end_pfn:
                raise DumpFormatError(
                    f"{part.src.path}: split file starts at pfn {part.start_pfn:#x}, inside "
                    f"{prev.src.path} (which ends at {prev.end_pfn:#x})"
                )
        return ordered

    def _missing_ranges(self) -> tuple[str, ...]:
        """One warning naming the pfn ranges with dumpable pages that no file holds."""
        gaps, edge = [], 0
        for part in self.parts:
            if part.start_pfn > edge:
                gaps.append((edge, part.start_pfn))
            edge = max(edge, part.end_pfn)
        if edge < self.max_pfn:
            gaps.append((edge, self.max_pfn))
        lost = [(a, b, self._rank(b) - self._rank(a)) for a, b in gaps]
        lost = [g for g in lost if g[2]]
        if not lost:
            return ()
        where = ", ".join(f"{a:#x}-{b - 1:#x}" for a, b, _ in lost)
        pages = sum(n for _, _, n in lost)
        return (
            f"{self.path}: {pages} dumped pages are in no file of the split set (page "
            f"frames {where}): a file of the set is missing, they read as absent",
        )

    def _read_descs(self, part: _Part) -> np.ndarray:
        """This file's page descriptors: as many as the 2nd bitmap counts in its range,
        fewer if the file is truncated (never more than it holds)."""
        want = self._rank(part.end_pfn) - part.first_index
        avail = max(0, part.src.size - part.desc_offset) // PAGE_DESC.itemsize
        count = min(want, avail, part.src.stored // PAGE_DESC.itemsize)
        return _array(part.src, part.desc_offset, count * PAGE_DESC.itemsize).view(PAGE_DESC)

    def _load_bitmaps(self, part: _Part) -> None:
        bs = part.header.block_size
        off = (1 + part.header.sub_hdr_size) * bs
        total = part.header.bitmap_blocks * bs
        need = (self.max_pfn + 7) // 8
        one_bitmap_blocks = -(-need // bs)
        if part.header.bitmap_blocks >= 2 * one_bitmap_blocks:
            half = total // 2  # dump_is_partial(): two bitmaps, the 2nd is the dumpable one
            self.bitmap1 = _array(part.src, off, half)
            self.bitmap2 = _array(part.src, off + half, half)
        else:
            self.bitmap1 = self.bitmap2 = _array(part.src, off, total)
        if self.bitmap2.size < need or self.bitmap1.size < need:
            raise DumpFormatError(
                f"{part.src.path}: bitmaps ({part.header.bitmap_blocks} blocks) are too small "
                f"for {self.max_pfn} pages, or the file is truncated"
            )
        self.bitmap1 = self.bitmap1[:need]
        self.bitmap2 = self.bitmap2[:need]
        step = _CHUNK_PFNS // 8
        for lo in range(0, need, step):
            b1, b2 = self.bitmap1[lo : lo + step], self.bitmap2[lo : lo + step]
            bad = np.flatnonzero(b2 & ~b1)
            if bad.size:
                pfn = (lo + int(bad[0])) * 8
                raise DumpFormatError(
                    f"{part.src.path}: 2nd bitmap marks pages near pfn {pfn:#x} that the "
                    "1st bitmap says do not exist"
                )

    def _build_prefix(self) -> None:
        """``prefix[k]`` = set 2nd-bitmap bits below pfn ``k * BLOCK_PFNS``."""
        per_block = BLOCK_PFNS // 8
        counts: list[np.ndarray] = []
        step = per_block * 1024
        for lo in range(0, self.bitmap2.size, step):
            chunk = self.bitmap2[lo : lo + step]
            pad = (-chunk.size) % per_block
            pc = _POPCOUNT[chunk]
            if pad:
                pc = np.concatenate([pc, np.zeros(pad, dtype=np.uint16)])
            counts.append(pc.reshape(-1, per_block).sum(axis=1, dtype=np.int64))
        blocks = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        self._prefix = np.concatenate([[0], np.cumsum(blocks)]).astype(np.int64)

    def _rank(self, pfn: int) -> int:
        """Number of dumpable pfns below ``pfn`` in the whole machine."""
        pfn = min(pfn, self.max_pfn)
        block = pfn // BLOCK_PFNS
        lo = block * (BLOCK_PFNS // 8)
        rank = int(self._prefix[block])
        full = (pfn - block * BLOCK_PFNS) // 8
        rank += _popcount(self.bitmap2[lo : lo + full])
        rem = pfn & 7
        if rem:
            rank += bin(int(self.bitmap2[lo + full]) & ((1 << rem) - 1)).count("1")
        return rank

    def _read_notes(self, part: _Part) -> list[Note]:
        sub, src = part.sub, part.src
        notes = []
        if sub.size_note:
            notes = parse_notes(_read_area(src, sub.offset_note, sub.size_note, "ELF notes"),
                                src.path)  # fmt: skip
        if sub.size_vmcoreinfo and not any(n.name == "VMCOREINFO" for n in notes):
            off, size = sub.offset_vmcoreinfo, sub.size_vmcoreinfo
            notes.append(Note("VMCOREINFO", 0, _read_area(src, off, size, "VMCOREINFO"), off))
        return notes

    @cached_property
    def eraseinfo(self) -> str | None:
        texts = []
        for part in self.parts:
            off, size = part.sub.offset_eraseinfo, part.sub.size_eraseinfo
            if size:
                data = _read_area(part.src, off, size, "eraseinfo")
                texts.append(data.decode("ascii", "replace"))
        return "".join(texts) or super().eraseinfo

    # -- pages ---------------------------------------------------------------------------
    def _bits(self, bitmap: np.ndarray, start: int, count: int) -> np.ndarray:
        """Bits ``start .. start+count-1`` of a bitmap as bools (0 past its end)."""
        lo, hi = start // 8, (start + count + 7) // 8
        bits = np.unpackbits(bitmap[lo:hi], bitorder="little").astype(bool)
        bits = bits[start - lo * 8 : start - lo * 8 + count]
        if bits.size < count:
            bits = np.concatenate([bits, np.zeros(count - bits.size, dtype=bool)])
        return bits

    def _descriptors(
        self, start_pfn: int, count: int
    ) -> tuple[np.ndarray, list[tuple[_Part, int, np.ndarray, np.ndarray]]]:
        """For each pfn: has-descriptor mask, and per part (part, pfn slice, records)."""
        has = self._bits(self.bitmap2, start_pfn, count)
        out = []
        i = max(0, bisect.bisect_right(self._part_starts, start_pfn) - 1)
        end_pfn = start_pfn + count
        while i < len(self.parts) and self.parts[i].start_pfn < end_pfn:
            part = self.parts[i]
            a, b = max(start_pfn, part.start_pfn), min(end_pfn, part.end_pfn)
            if a < b:
                sel = has[a - start_pfn : b - start_pfn]
                first = self._rank(a) - part.first_index
                n = int(sel.sum())
                records = part.descs[first : first + n]
                out.append((part, a, sel, records))
            i += 1
        return has, out

    def _valid(self, part: _Part, records: np.ndarray) -> np.ndarray:
        """Descriptors whose data really is in the file."""
        off, size = records["offset"], records["size"].astype(np.int64)
        # off <= file size - size, not off + size <= file size: a crafted offset near
        # 2**63 would overflow the sum into a negative number and pass.
        return (off > 0) & (size > 0) & (off <= part.src.size - size)

    def read_pfns(self, start_pfn: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        if start_pfn < 0 or count < 0:
            raise PageNotPresent(f"{self.path}: no page frames at {start_pfn} (+{count})")
        pages = np.zeros((count, self.page_size), dtype=np.uint8)
        present = np.zeros(count, dtype=bool)
        _, groups = self._descriptors(start_pfn, count)
        for part, a, sel, records in groups:
            rows = (a - start_pfn) + np.flatnonzero(sel)[: records.size]
            valid = self._valid(part, records)
            self._fill(part, rows[valid], records[valid], pages, start_pfn)
            present[rows[valid]] = True
        return pages, present

    def _fill(
        self, part: _Part, rows: np.ndarray, records: np.ndarray, pages: np.ndarray, base: int
    ) -> None:
        """Copy or decompress the data of ``records`` into ``pages[rows]``.

        Works on whole columns rather than per-record numpy scalars (which cost more than
        the decompression itself); data shared by several descriptors (makedumpfile's
        single zero page) is read once; decompressed pages go straight into ``pages``.
        """
        ps = self.page_size
        sizes, flags, offsets = records["size"], records["flags"], records["offset"]
        raw = flags == 0
        bad = np.flatnonzero((sizes > ps) | (raw & (sizes != ps)))
        if bad.size:
            pfn = base + int(rows[bad[0]])
            raise DumpFormatError(
                f"{part.src.path}: page descriptor of pfn {pfn:#x} has size "
                f"{int(sizes[bad[0]])}" + (" > page size" if sizes[bad[0]] > ps else "")
            )
        # Uncompressed pages: one copy per distinct offset.
        raw_rows, raw_offsets = rows[raw], offsets[raw]
        if raw_rows.size:
            order = np.argsort(raw_offsets, kind="stable")
            cuts = np.flatnonzero(np.diff(raw_offsets[order])) + 1
            for group in np.split(order, cuts):
                pages[raw_rows[group]] = _array(part.src, int(raw_offsets[group[0]]), ps)
        # Compressed pages: one library call each, stored through a flat view.
        packed = ~raw
        if not packed.any():
            return
        src = part.src
        flat = memoryview(pages.reshape(-1))  # type: ignore[arg-type]
        for row, off, size, flag in zip(
            rows[packed].tolist(),
            offsets[packed].tolist(),
            sizes[packed].tolist(),
            flags[packed].tolist(),
            strict=True,
        ):
            try:
                data = decompress_page(flag, src.read(off, size), ps)
            except DecompressionError as exc:
                raise DumpFormatError(f"{src.path}: page pfn {base + row:#x}: {exc}") from None
            flat[row * ps : (row + 1) * ps] = data

    def read_pfn(self, pfn: int) -> bytes:
        page = self._cache.get(pfn)
        if page is None:
            page = super().read_pfn(pfn)
            self._cache[pfn] = page
            if len(self._cache) > _PAGE_CACHE:
                self._cache.popitem(last=False)
        return page

    def read_phys(self, paddr: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            pfn, off = paddr >> self._shift, paddr & (self.page_size - 1)
            chunk = min(size, self.page_size - off)
            try:
                out += self.read_pfn(pfn)[off : off + chunk]
            except PageNotPresent:
                raise PageNotPresent(
                    f"{self.path}: physical address {paddr:#x} is not in the dump"
                ) from None
            paddr += chunk
            size -= chunk
        return bytes(out)

    def _runs(self, bitmap: np.ndarray, check_descs: bool) -> list[tuple[int, int]]:
        """Runs of set bits (optionally only pfns with a valid descriptor)."""
        runs: list[tuple[int, int]] = []
        for lo in range(0, self.max_pfn, _CHUNK_PFNS):
            count = min(_CHUNK_PFNS, self.max_pfn - lo)
            if check_descs:
                bits = np.zeros(count, dtype=bool)
                for part, a, sel, records in self._descriptors(lo, count)[1]:
                    idx = np.flatnonzero(sel)[: records.size]
                    bits[a - lo + idx] = self._valid(part, records)
            else:
                bits = self._bits(bitmap, lo, count)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], bits.view(np.int8), [0]])))
            for s, e in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
                if runs and runs[-1][1] == lo + s:
                    runs[-1] = (runs[-1][0], lo + e)
                else:
                    runs.append((lo + s, lo + e))
        return runs

    def ram_ranges(self) -> list[tuple[int, int]]:
        return self._ram_ranges

    @cached_property
    def _ram_ranges(self) -> list[tuple[int, int]]:
        return self._runs(self.bitmap1, False)

    def pfn_ranges(self) -> list[tuple[int, int]]:
        return self._pfn_ranges

    @cached_property
    def _pfn_ranges(self) -> list[tuple[int, int]]:
        return self._runs(self.bitmap2, True)

    def close(self) -> None:
        for src in self._sources:
            src.close()
