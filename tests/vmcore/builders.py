"""Hand-built dump files for the fast tier: an oracle independent of kdumpy's writers.

Every format here is written from the format facts (/work/shared/reference/format.md,
makedumpfile's ``diskdump_mod.h``, the kernel's ``fs/proc/vmcore.c``), with ``struct``
and numpy, never through ``kdumpy.vmcore.*_writer``.  A test states the memory it
wants (pages by pfn, with known contents), builds a file in one of the formats, and
checks what the reader gives back against that memory.

* :func:`elf_vmcore`: a /proc/vmcore-like ELF file (PT_NOTE then PT_LOADs; load data at
  page-aligned file offsets as the kernel lays it out), or makedumpfile ``-E`` style
  (``memsz > filesz`` tails), with ``PN_XNUM`` for many program headers.
* :func:`kdump_file`: kdump-compressed (``KDUMP   ``), header versions 1 to 6, every
  compression, shared zero page, incomplete descriptors, ``--split`` parts.
* :func:`flattened`: the ``-F`` stream of any file, records in any order or overlapping.
* :class:`PageTables`: x86_64 4- and 5-level page tables with 4 KiB, 2 MiB and 1 GiB
  mappings, laid out in physical pages for the dump to contain.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

PAGE = 4096
START_KERNEL_MAP = 0xFFFFFFFF80000000

# -- memory contents -----------------------------------------------------------------------


def page_bytes(pfn: int, kind: str = "text", size: int = PAGE) -> bytes:
    """Known, pfn-specific contents: ``text`` compresses, ``random`` does not, ``zero``."""
    if kind == "zero":
        return bytes(size)
    if kind == "random":
        return random.Random(pfn).randbytes(size)
    line = f"pfn {pfn:#x} says hello; ".encode()
    return (line * (size // len(line) + 1))[:size]


def mixed_pages(pfns: Iterable[int], size: int = PAGE) -> dict[int, bytes]:
    """Pages of every kind, chosen by pfn (zero, incompressible, compressible)."""
    kinds = ("text", "zero", "random", "text")
    return {pfn: page_bytes(pfn, kinds[pfn % 4], size) for pfn in pfns}


# -- ELF notes and VMCOREINFO --------------------------------------------------------------


def note(name: str, ntype: int, desc: bytes) -> bytes:
    """One ELF note: 3 u32 (namesz with the NUL, descsz, type), name and desc 4-aligned."""
    raw = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(raw), len(desc), ntype) + pad(raw) + pad(desc)


def vmcoreinfo(entries: dict[str, object] | None = None, page_size: int = PAGE) -> bytes:
    """VMCOREINFO text as the kernel prints it (``KEY=VALUE`` lines)."""
    lines = {"OSRELEASE": "6.1.0-test", "PAGESIZE": page_size}
    lines.update(entries or {})
    return "".join(f"{k}={v}\n" for k, v in lines.items()).encode()


def prstatus(pid: int, ip: int = 0xFFFFFFFF81000000, sp: int = 0xFFFFC90000000000) -> bytes:
    """``struct elf_prstatus`` (x86_64, 336 bytes): pid at 32, 27 registers at 112."""
    regs = [0] * 27
    regs[16], regs[19] = ip, sp  # user_regs_struct: ip is 16th, sp 19th
    head = struct.pack("<iiihxxQQiiii", 0, 0, 0, 11, 0, 0, pid, 0, 0, 0) + bytes(64)
    return head + struct.pack("<27Q", *regs) + bytes(8)


def notes_segment(info: bytes | None = None, cpus: int = 1) -> bytes:
    """The merged PT_NOTE of /proc/vmcore: a PRSTATUS per CPU, then VMCOREINFO."""
    out = b"".join(note("CORE", 1, prstatus(100 + i)) for i in range(cpus))
    return out + (note("VMCOREINFO", 0, info) if info is not None else b"")


# -- ELF -----------------------------------------------------------------------------------

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
PT_LOAD, PT_NOTE = 1, 4


@dataclass
class Load:
    """A PT_LOAD: physical bytes from ``paddr``; ``memsz`` beyond ``data`` was left out."""

    paddr: int
    data: bytes
    memsz: int | None = None
    vaddr: int | None = None


def memory_loads(pages: dict[int, bytes], page_size: int = PAGE) -> list[Load]:
    """One PT_LOAD per run of consecutive pfns."""
    loads: list[Load] = []
    for pfn in sorted(pages):
        if loads and loads[-1].paddr + len(loads[-1].data) == pfn * page_size:
            loads[-1].data += pages[pfn]
        else:
            loads.append(Load(pfn * page_size, pages[pfn]))
    return loads


def elf_vmcore(
    loads: list[Load],
    notes: bytes = b"",
    *,
    machine: int = 62,
    flags: int = 0,
    pn_xnum: bool = False,
    page_size: int = PAGE,
) -> bytes:
    """An ELF64 little-endian core: PT_NOTE then the PT_LOADs, like /proc/vmcore.

    Each load's data starts at a file offset congruent to its paddr modulo the page
    size (the kernel page-aligns /proc/vmcore's segments); ``pn_xnum`` stores the
    program header count in section header 0 as for 65535 or more headers.
    """
    phnum = 1 + len(loads)
    phoff = EHDR.size
    table_end = phoff + phnum * PHDR.size
    shoff = table_end if pn_xnum else 0
    pos = (table_end + (SHDR.size if pn_xnum else 0) + 7) & ~7
    note_off = pos
    pos += len(notes)
    phdrs = [PHDR.pack(PT_NOTE, 0, note_off, 0, 0, len(notes), len(notes), 0)]
    body = bytearray()
    offsets = []
    for load in loads:
        pos = -(-pos // page_size) * page_size + load.paddr % page_size
        offsets.append(pos)
        pos += len(load.data)
    for load, off in zip(loads, offsets, strict=True):
        memsz = len(load.data) if load.memsz is None else load.memsz
        vaddr = load.paddr if load.vaddr is None else load.vaddr
        phdrs.append(PHDR.pack(PT_LOAD, 7, off, vaddr, load.paddr, len(load.data), memsz, 0))
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr = EHDR.pack(ident, 4, machine, 1, 0, phoff, shoff, flags, EHDR.size, PHDR.size,
                     0xFFFF if pn_xnum else phnum, SHDR.size, 1 if pn_xnum else 0, 0)  # fmt: skip
    body += ehdr + b"".join(phdrs)
    if pn_xnum:
        body += SHDR.pack(0, 0, 0, 0, 0, 0, 0, phnum, 0, 0)
    body += bytes(note_off - len(body)) + notes
    for load, off in zip(loads, offsets, strict=True):
        body += bytes(off - len(body)) + load.data
    return bytes(body)


# -- kdump-compressed ----------------------------------------------------------------------

DISK_DUMP_HEADER = struct.Struct("<8si390s6xqqIiiIIIIIIi")  # 464 bytes
SUB_HEADER = struct.Struct("<QiiQQqQqQqQQQQ")  # 104 bytes
DESC = struct.Struct("<qIIQ")  # 24 bytes
FLAGS = {"none": 0, "zlib": 0x1, "lzo": 0x2, "snappy": 0x4, "zstd": 0x20}
INCOMPLETE = 0x8


def compress(kind: str, page: bytes) -> bytes:
    """One page with the library makedumpfile's format calls for (level 1)."""
    if kind == "zlib":
        return zlib.compress(page, 1)
    if kind == "lzo":
        import lzo

        return bytes(lzo.compress(page, 1, False))
    if kind == "snappy":
        import cramjam

        return bytes(cramjam.snappy.compress_raw(page))
    if kind == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=1).compress(page))
    raise ValueError(kind)


def _bitmap(pfns: Iterable[int], max_mapnr: int, block: int) -> bytes:
    """LSB-first bitmap of ``max_mapnr`` bits padded to whole blocks."""
    bits = np.zeros(-(-max(max_mapnr, 1) // (8 * block)) * block * 8, dtype=bool)
    idx = np.fromiter(pfns, dtype=np.int64)
    bits[idx] = True
    return np.packbits(bits, bitorder="little").tobytes()


@dataclass
class KdumpLayout:
    """Where things went in a built kdump file (for tests that patch it)."""

    block_size: int
    bitmap_offset: int
    desc_offset: int
    data_offset: int
    descs: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # pfn: off, size, flags


def kdump_file(
    pages: dict[int, bytes],
    max_mapnr: int,
    *,
    ram: Iterable[int] | None = None,
    compression: str = "zlib",
    notes: bytes = b"",
    version: int = 6,
    block_size: int = PAGE,
    dump_level: int = 1,
    split: tuple[int, int] | None = None,
    incomplete_after: int | None = None,
    signature: bytes = b"KDUMP   ",
    release: str = "6.1.0-test",
    layout: KdumpLayout | None = None,
    phys_base: int = 0,
) -> bytes:
    """A kdump-compressed file holding ``pages`` (the 2nd bitmap) out of ``ram`` (the
    1st bitmap, default: the same pfns).

    Zero pages share one data block when ``dump_level & 1``; a compressed page is kept
    only if smaller than the page.  ``split=(start, end)`` writes one file of a
    ``--split`` set (full bitmaps, descriptors of its range only, data after the whole
    set's descriptor area).  ``incomplete_after=n`` zeroes descriptors from the n-th on
    and sets the incomplete flag, as makedumpfile does when the disk fills up.
    """
    bs = block_size
    ram = sorted(set(pages) | set(ram or ()))
    dumpable = sorted(pages)
    sub_hdr_size = -(-(SUB_HEADER.size + len(notes)) // bs)
    bitmap1 = _bitmap(ram, max_mapnr, bs)
    bitmap2 = _bitmap(dumpable, max_mapnr, bs)
    bitmap_blocks = (len(bitmap1) + len(bitmap2)) // bs
    bitmap_off = (1 + sub_hdr_size) * bs
    desc_off = bitmap_off + bitmap_blocks * bs
    data_off = desc_off + DESC.size * len(dumpable)
    mine = [p for p in dumpable if split is None or split[0] <= p < split[1]]
    descs = bytearray()
    data = bytearray()
    zero_at = None
    if dump_level & 1:
        zero_at = data_off
        data += bytes(bs)
    info = KdumpLayout(bs, bitmap_off, desc_off, data_off)
    flag = FLAGS[compression]
    zero = bytes(bs)
    for n, pfn in enumerate(mine):
        page = pages[pfn]
        if zero_at is not None and page == zero:
            rec = (zero_at, bs, 0)
        else:
            packed = compress(compression, page) if flag else page
            if flag and len(packed) < bs:
                rec = (data_off + len(data), len(packed), flag)
                data += packed
            else:
                rec = (data_off + len(data), bs, 0)
                data += page
        if incomplete_after is not None and n >= incomplete_after:
            rec = (0, 0, 0)
        info.descs[pfn] = rec
        descs += DESC.pack(*rec, 0)
    status = flag | (INCOMPLETE if incomplete_after is not None else 0)
    uts = b"".join(
        s.encode().ljust(65, b"\0") for s in ("Linux", "host", release, "#1", "x86_64", "")
    )
    header = DISK_DUMP_HEADER.pack(signature, version, uts, 0, 0, status, bs, sub_hdr_size,
                                   bitmap_blocks, min(max_mapnr, 0xFFFFFFFF), 0, 0, 0, 0,
                                   1)  # fmt: skip
    note_off = bs + SUB_HEADER.size
    vi = notes.find(b"VMCOREINFO\0")
    vi_off = vi_size = 0
    if vi >= 0:
        namesz, vi_size = struct.unpack_from("<II", notes, vi - 12)
        vi_off = note_off + vi + ((namesz + 3) & ~3)
    start, end = split or (0, 0)
    sub = SUB_HEADER.pack(phys_base, dump_level, int(split is not None), start, end, vi_off,
                          vi_size, note_off, len(notes), 0, 0, start, end, max_mapnr)  # fmt: skip
    out = bytearray(header.ljust(bs, b"\0"))
    out += sub + notes
    out += bytes(bitmap_off - len(out)) + bitmap1 + bitmap2 + descs
    out += bytes(data_off - len(out)) + data
    if layout is not None:
        layout.__dict__.update(info.__dict__)
    return bytes(out)


def split_set(pages: dict[int, bytes], max_mapnr: int, bounds: list[int], **kw) -> list[bytes]:
    """The files of a ``--split`` set, file i holding pfns ``[bounds[i], bounds[i+1])``."""
    return [
        kdump_file(pages, max_mapnr, split=(a, b), **kw)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]


# -- flattened -----------------------------------------------------------------------------


def flattened(records: Iterable[tuple[int, bytes]], *, end: bool = True) -> bytes:
    """A ``makedumpfile -F`` stream of ``(offset, data)`` records, in the order given."""
    head = struct.pack(">16sqq", b"makedumpfile", 1, 1).ljust(4096, b"\0")
    body = b"".join(struct.pack(">qq", off, len(d)) + d for off, d in records)
    return head + body + (struct.pack(">qq", -1, -1) if end else b"")


def chunks(
    data: bytes, size: int, *, shuffle: int | None = None, holes: bool = True
) -> list[tuple[int, bytes]]:
    """``data`` cut into records of ``size`` bytes (shuffled with a seed if asked);
    with ``holes``, all-zero chunks are left out, like the areas makedumpfile never
    writes in a kdump file (the rest of block 0, a split file's gap).  A flattened ELF
    has no holes in its segments: makedumpfile writes every page it copies."""
    recs = [(o, data[o : o + size]) for o in range(0, len(data), size)]
    if holes:
        recs = [r for r in recs if r[1].count(0) < len(r[1])] or recs[:1]
    if recs[-1][0] + len(recs[-1][1]) < len(data):
        recs.append((len(data) - 1, data[-1:]))  # keep the logical size
    if shuffle is not None:
        random.Random(shuffle).shuffle(recs)
    return recs


# -- x86_64 page tables --------------------------------------------------------------------


class PageTables:
    """x86_64 page tables built in physical pages ``base_pfn`` upwards.

    ``map(va, pa, size)`` adds a 4 KiB, 2 MiB or 1 GiB mapping; ``pages()`` gives the
    table pages by pfn for a dump to contain, and ``vmcoreinfo()`` the entries a
    kernel would export for them (``init_top_pgt`` as a kernel-image address).
    """

    def __init__(
        self, base_pfn: int, levels: int = 4, phys_base: int = 0, sme_mask: int = 0
    ) -> None:
        self.levels = levels
        self.phys_base = phys_base
        self.sme_mask = sme_mask  # AMD SME's C-bit, set in every entry as the kernel does
        self.next_pfn = base_pfn
        self.tables: dict[int, np.ndarray] = {}
        self.top = self._new()

    def _new(self) -> int:
        pfn = self.next_pfn
        self.next_pfn += 1
        self.tables[pfn] = np.zeros(512, dtype=np.uint64)
        return pfn

    def map(self, va: int, pa: int, size: int = PAGE) -> None:
        shifts = (48, 39, 30, 21, 12) if self.levels == 5 else (39, 30, 21, 12)
        leaf = {PAGE: 12, 1 << 21: 21, 1 << 30: 30}[size]
        table = self.top
        for shift in shifts:
            idx = (va >> shift) & 511
            if shift == leaf:
                flags = 0x83 if leaf != 12 else 0x3
                self.tables[table][idx] = pa | flags | self.sme_mask
                return
            entry = int(self.tables[table][idx])
            if not entry & 1:
                child = self._new()
                self.tables[table][idx] = (child << 12) | 0x63 | self.sme_mask
                entry = int(self.tables[table][idx])
            table = (entry & ~self.sme_mask) >> 12 & ((1 << 40) - 1)

    def pages(self) -> dict[int, bytes]:
        return {pfn: t.astype("<u8").tobytes() for pfn, t in self.tables.items()}

    def vmcoreinfo(self) -> dict[str, object]:
        top_va = START_KERNEL_MAP + (self.top << 12) - self.phys_base
        return {
            "SYMBOL(init_top_pgt)": f"{top_va:x}",
            "SYMBOL(swapper_pg_dir)": f"{top_va:x}",
            "NUMBER(phys_base)": self.phys_base,
            "NUMBER(pgtable_l5_enabled)": int(self.levels == 5),
            "NUMBER(sme_mask)": self.sme_mask,
        }


# -- a kernel makedumpfile accepts ---------------------------------------------------------

DIRECT_MAP = 0xFFFF888000000000
VMEMMAP = 0xFFFFEA0000000000


def kernel_memory(base_pfn: int, release: str = "6.1.0-test") -> tuple[dict[int, bytes], bytes]:
    """The few kernel structures makedumpfile 1.7.2 reads before it copies pages, placed
    in pfns ``base_pfn .. base_pfn+15``, and the VMCOREINFO describing them.

    4-level page tables map the kernel image (2 MiB at physical 0) and the direct map
    (1 GiB); ``init_uts_ns`` holds the utsname; ``mem_section`` (SPARSEMEM_EXTREME,
    ``include/linux/mmzone.h``) has section 0 present with its memmap at ``vmemmap``.
    Struct pages themselves are absent: enough for ``-d 0`` and ``-d 1``.
    """
    pages: dict[int, bytes] = {}
    uts_pfn, roots_pfn, section_pfn = base_pfn, base_pfn + 1, base_pfn + 5
    uts = b"".join(
        s.encode().ljust(65, b"\0") for s in ("Linux", "host", release, "#1", "x86_64", "")
    )
    pages[uts_pfn] = (bytes(8) + uts).ljust(PAGE, b"\0")  # uts_namespace.name at 8
    roots = bytearray(4 * PAGE)  # NR_SECTION_ROOTS = 2048 pointers
    struct.pack_into("<Q", roots, 0, DIRECT_MAP + section_pfn * PAGE)
    for i in range(4):
        pages[roots_pfn + i] = bytes(roots[i * PAGE : (i + 1) * PAGE])
    section = bytearray(PAGE)
    struct.pack_into("<Q", section, 0, VMEMMAP | 0x3)  # SECTION_MARKED_PRESENT|HAS_MEM_MAP
    pages[section_pfn] = bytes(section)
    tables = PageTables(base_pfn + 6)
    tables.map(START_KERNEL_MAP, 0, 1 << 21)
    tables.map(DIRECT_MAP, 0, 1 << 30)
    pages.update(tables.pages())
    entries: dict[str, object] = {
        "OSRELEASE": release,
        "SYMBOL(init_uts_ns)": f"{START_KERNEL_MAP + uts_pfn * PAGE:x}",
        "OFFSET(uts_namespace.name)": 8,
        "SYMBOL(_stext)": f"{START_KERNEL_MAP + 0x1000:x}",
        "SYMBOL(vmemmap)": f"{VMEMMAP:x}",
        "SYMBOL(mem_section)": f"{DIRECT_MAP + roots_pfn * PAGE:x}",
        "LENGTH(mem_section)": 2048,
        "SIZE(mem_section)": 16,
        "OFFSET(mem_section.section_mem_map)": 0,
        "NUMBER(SECTION_SIZE_BITS)": 27,
        "NUMBER(MAX_PHYSMEM_BITS)": 46,
        "NUMBER(VMALLOC_START)": "0xffffc90000000000",
        "NUMBER(KERNEL_IMAGE_SIZE)": 1 << 30,
        "SIZE(page)": 64,
        "OFFSET(page.flags)": 0,
        "OFFSET(page._refcount)": 52,
        "OFFSET(page.mapping)": 24,
        "OFFSET(page.lru)": 8,
        "OFFSET(page._mapcount)": 48,
        "OFFSET(page.private)": 40,
        "OFFSET(page.compound_head)": 8,
    }
    entries.update(tables.vmcoreinfo())
    return pages, vmcoreinfo(entries)


# -- the lockless printk ring (Linux 5.10+) ------------------------------------------------

PRINTK_VMCOREINFO = {
    "SIZE(printk_ringbuffer)": 88, "OFFSET(printk_ringbuffer.desc_ring)": 0,
    "OFFSET(printk_ringbuffer.text_data_ring)": 48, "SIZE(prb_desc_ring)": 48,
    "OFFSET(prb_desc_ring.count_bits)": 0, "OFFSET(prb_desc_ring.descs)": 8,
    "OFFSET(prb_desc_ring.infos)": 16, "OFFSET(prb_desc_ring.head_id)": 24,
    "OFFSET(prb_desc_ring.tail_id)": 32, "SIZE(prb_desc)": 24,
    "OFFSET(prb_desc.state_var)": 0, "OFFSET(prb_desc.text_blk_lpos)": 8,
    "OFFSET(prb_data_blk_lpos.begin)": 0, "OFFSET(prb_data_blk_lpos.next)": 8,
    "SIZE(printk_info)": 88, "OFFSET(printk_info.seq)": 0, "OFFSET(printk_info.ts_nsec)": 8,
    "OFFSET(printk_info.text_len)": 16, "OFFSET(printk_info.caller_id)": 20,
    "OFFSET(prb_data_ring.size_bits)": 0, "OFFSET(prb_data_ring.data)": 8,
    "SIZE(atomic_long_t)": 8, "OFFSET(atomic_long_t.counter)": 0,
}  # fmt: skip


def printk_ring(
    base_pfn: int, messages: list[tuple[int, bytes]]
) -> tuple[dict[int, bytes], dict[str, object]]:
    """A lockless printk ring with ``(ts_nsec, text)`` records, all finalized, in pfns
    ``base_pfn .. base_pfn+2`` (reached through the kernel image mapping, phys_base 0),
    and its VMCOREINFO entries.  Layout as ``kernel/printk/printk_ringbuffer.h`` has it
    (offsets as the 6.1 kernel exports them): state in the top 2 bits of ``state_var``,
    data blocks led by their 8-byte descriptor id, 8-byte aligned."""
    count_bits, size_bits = 4, 12
    head = bytearray(PAGE)  # prb pointer at 0, struct printk_ringbuffer at 64
    ring = bytearray(PAGE)  # descs at 0, infos at 512
    data = bytearray(1 << size_bits)
    va = lambda pfn, off=0: START_KERNEL_MAP + pfn * PAGE + off  # noqa: E731
    pos = 0
    for ident, (ts, text) in enumerate(messages):
        size = (8 + len(text) + 7) & ~7
        struct.pack_into("<QQQ", ring, 24 * ident, (2 << 62) | ident, pos, pos + size)
        struct.pack_into("<QQHxxI", ring, 512 + 88 * ident, ident, ts, len(text), 1)
        struct.pack_into("<Q", data, pos, ident)
        data[pos + 8 : pos + 8 + len(text)] = text
        pos += size
    assert len(messages) <= 1 << count_bits and pos <= len(data)
    struct.pack_into("<Q", head, 0, va(base_pfn, 64))
    struct.pack_into("<IxxxxQQQQ", head, 64, count_bits, va(base_pfn + 1), va(base_pfn + 1, 512),
                     len(messages) - 1, 0)  # fmt: skip
    struct.pack_into("<IxxxxQ", head, 64 + 48, size_bits, va(base_pfn + 2))
    entries: dict[str, object] = {"SYMBOL(prb)": f"{va(base_pfn):x}", **PRINTK_VMCOREINFO}
    pages = {base_pfn: bytes(head), base_pfn + 1: bytes(ring), base_pfn + 2: bytes(data)}
    return pages, entries


def kernel_with_log(
    base_pfn: int, messages: list[tuple[int, bytes]]
) -> tuple[dict[int, bytes], bytes]:
    """:func:`kernel_memory` plus a printk ring after it (pfns base .. base+18)."""
    pages, info = kernel_memory(base_pfn)
    ring, ring_entries = printk_ring(base_pfn + 16, messages)
    pages.update(ring)
    return pages, info + "".join(f"{k}={v}\n" for k, v in ring_entries.items()).encode()
