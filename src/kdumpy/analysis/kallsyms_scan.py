"""Finding the kernel's kallsyms tables in its image when VMCOREINFO does not say where.

Linux < 6.0 (RHEL 8 and 9, Debian 11, Ubuntu 20.04/22.04, Amazon Linux 2) exports no
kallsyms addresses in VMCOREINFO, but its tables are in ``.rodata`` all the same, as
``scripts/kallsyms`` laid them out (every label aligned to 8 bytes on 64-bit, to 4 in 7.x):

======================  ===================================================================
up to 6.3               [addresses | offsets, relative_base], num_syms, names, markers,
                        [seqs_of_names (6.2, 6.3)], token_table, token_index
6.4 and later           num_syms, names, markers, token_table, token_index,
                        addresses | offsets, [relative_base (until 6.x)], seqs_of_names
======================  ===================================================================

``num_syms`` and ``markers`` are ``unsigned long`` up to 4.19 and ``unsigned int`` since;
a name's length is one byte before 6.1 and may take two since.

The search, in the image from ``_stext`` on:

1. the token table: bytes used literally in names are their own tokens, so the table holds
   ``"0\\0" ... "9\\0"`` in a row at index 48; 48 tokens back is its start, and the
   ``u16[256]`` token index right after it must give every token's offset;
2. the markers: an increasing array starting at 0 that ends just before the token table
   (or before ``seqs_of_names``, 3 bytes a symbol);
3. ``num_syms`` and the names: the names end where the markers begin, every 256th entry
   starts where its marker says, and ``num_syms`` is the word before the names;
4. the addresses, wherever the layouts put them, in every encoding; the one that gives
   ``_stext`` its VMCOREINFO address wins, and the other addresses VMCOREINFO gives
   (``init_uts_ns``, ``swapper_pg_dir``, ...) must agree.

Anything that does not check out is a one-line error, never a guess.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kdumpy.analysis.kallsyms import (
    Encoding,
    Kallsyms,
    candidate_addresses,
    entry_starts,
)
from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.tables import le_array, u32_matches, u32s
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

Image = bytes | bytearray  # the kernel image as read from the dump
DIGITS = b"".join(bytes([c]) + b"\0" for c in b"0123456789")
_ALIGNS = (8, 4)
_MAX_SYMS = 2_000_000
# A marker step covers 256 names: at least one length and one token byte each, at most
# 0x3FFF tokens and a two-byte length.
_MIN_STEP, _MAX_STEP = 2 * 256, 256 * (0x3FFF + 2)


def _align(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


@dataclass(frozen=True)
class TokenTable:
    start: int  # offset of kallsyms_token_table in the image
    table: bytes
    index: tuple[int, ...]  # kallsyms_token_index
    index_end: int  # offset just past the index
    align: int  # of every label


@dataclass(frozen=True)
class Markers:
    start: int  # offset of kallsyms_markers
    values: list[int]
    width: int  # 4 or 8
    align: int


@dataclass(frozen=True)
class Names:
    start: int  # offset of kallsyms_names
    count: int  # kallsyms_num_syms
    starts: bytes  # offset of each entry in the names (little-endian uint32)
    end: int  # offset just past the names
    long_lengths: bool


def find_token_tables(image: Image) -> Iterator[TokenTable]:
    """Every place in ``image`` that is a token table followed by its index."""
    at = image.find(DIGITS)
    while at >= 0:
        for align in _ALIGNS:
            found = _token_table_at(image, at, align)
            if found is not None:
                yield found
                break
        at = image.find(DIGITS, at + 1)


def _token_table_at(image: Image, digits: int, align: int) -> TokenTable | None:
    """The token table whose entry 48 ("0") is at ``digits``, if it checks out."""
    start = digits
    for _ in range(48):  # tokens are never empty: one NUL ends each
        if start < 2 or image[start - 1] != 0:
            return None
        start = image.rfind(b"\0", 0, start - 1) + 1
        if digits - start > 48 * 256:
            return None
    if start % align:
        return None
    offsets, pos = [], start
    for _ in range(256):
        end = image.find(b"\0", pos, pos + 256)
        if end <= pos:
            return None
        offsets.append(pos - start)
        pos = end + 1
    index_at = _align(pos, align)
    if index_at + 512 > len(image):
        return None
    index = struct.unpack_from("<256H", image, index_at)
    if list(index) != offsets:
        return None
    return TokenTable(start, bytes(image[start:pos]), index, index_at + 512, align)


def find_markers(image: Image, tokens: TokenTable) -> Iterator[Markers]:
    """Increasing arrays from 0 that end just before the token table, or
    ``3 * num_syms`` bytes earlier (seqs_of_names in between), closest first."""
    before, align = tokens.start, tokens.align
    # A small window first (markers and a 6.2 seqs_of_names of up to ~300k symbols), the
    # largest layout only if that finds nothing: it bounds the memory of the search.
    for window, width in ((1 << 20, 4), (1 << 20, 8), (3 * _MAX_SYMS + (1 << 16), 4)):
        lo = max(0, before - window)
        lo += -lo % 8
        for phase in range(0, 8, max(width, align)):
            start = lo + phase
            region = bytes(image[start : start + (before - start) // width * width])
            yield from _marker_runs(region, width, start, before, align)


def _zero_words(region: bytes, width: int) -> list[int]:
    """Indices of the all-zero words of ``region`` (``width`` bytes each)."""
    zeros = u32_matches(region, [0])
    if width == 4:
        return zeros
    pairs = set(zeros)
    return [j // 2 for j in zeros if j % 2 == 0 and j + 1 in pairs]


def _marker_runs(region: bytes, width: int, lo: int, before: int, align: int) -> Iterator[Markers]:
    values = le_array("I" if width == 4 else "Q", region)
    n = len(values)
    for first in reversed(_zero_words(region, width)):
        if first + 1 >= n or not _MIN_STEP <= values[first + 1] <= _MAX_STEP:
            continue
        last = first + 1
        while last + 1 < n and _MIN_STEP <= values[last + 1] - values[last] <= _MAX_STEP:
            last += 1
        count = last - first + 1
        begin, end = lo + width * first, lo + width * (last + 1)
        gap = before - _align(end, align)
        # Nothing between markers and token table, or seqs_of_names (3 bytes a
        # symbol, 256 symbols a marker).
        if begin % align == 0 and (gap == 0 or 768 * (count - 1) < gap <= 768 * count + align):
            yield Markers(begin, list(values[first : last + 1]), width, align)


def find_names(image: Image, markers: Markers) -> Names | None:
    """The names stream that ends where ``markers`` begins, and its ``num_syms`` (the
    word before it: ``unsigned long`` up to 4.19, ``unsigned int`` since)."""
    align = markers.align
    nmark = len(markers.values)
    last = int(markers.values[-1])
    lo_count, hi_count = 256 * (nmark - 1) + 1, 256 * nmark
    # The names are at least ``last`` + the last 1..256 entries long.
    hi = markers.start - last - 2
    lo = max(align, markers.start - last - _MAX_STEP)
    lo += -lo % align
    if hi < lo:
        return None
    # The words that may be num_syms (the word before the names), found in C.
    region = bytes(image[lo - align : lo - align + align * ((hi - lo) // align + 1)])
    hits = u32_matches(region, range(lo_count, hi_count + 1))
    if align == 8:  # an unsigned long: its high half is zero
        words = u32s(region)
        hits = [j // 2 for j in hits if j % 2 == 0 and words[j + 1] == 0]
    for i in reversed(hits):
        start, count = lo + align * i, int.from_bytes(region[align * i : align * i + 4], "little")
        for long_lengths in (True, False):
            names = _walk_names(image, start, count, markers, long_lengths)
            if names is not None:
                return names
    return None


def _walk_names(
    image: Image, start: int, count: int, markers: Markers, long_lengths: bool
) -> Names | None:
    data = bytes(image[start : markers.start])
    try:
        starts, end = entry_starts(data, count, long_lengths)
    except DumpFormatError:
        return None
    if _align(start + end, markers.align) != markers.start:
        return None
    if list(u32s(starts)[::256]) != markers.values:
        return None
    return Names(start, count, starts, start + end, long_lengths)


def _address_candidates(
    image: Image, base: int, names: Names, tokens: TokenTable
) -> Iterator[tuple[str, Encoding, int | None]]:
    """``(encoding, addresses, seqs_of_names offset)`` for every place and encoding the
    layouts allow."""
    count, align = names.count, tokens.align

    def u64(at: int) -> int | None:
        return struct.unpack_from("<Q", image, at)[0] if 0 <= at <= len(image) - 8 else None

    def s32s(at: int) -> bytes | None:
        if at < 0 or at + 4 * count > len(image):
            return None
        return bytes(image[at : at + 4 * count])

    def u64s(at: int) -> Encoding | None:
        if at < 0 or at + 8 * count > len(image):
            return None
        return Encoding("absolute", bytes(image[at : at + 8 * count]))

    num_syms = names.start - align
    # Up to 6.3: [offsets, relative_base | addresses], num_syms, names.
    relbase_at = num_syms - 8
    offsets_at = (relbase_at - 4 * count) & ~(align - 1)
    offsets, relbase = s32s(offsets_at), u64(relbase_at)
    if offsets is not None and relbase is not None:
        for name, addrs in candidate_addresses(offsets, relbase, base + offsets_at).items():
            yield name, addrs, None
    absolute = u64s((num_syms - 8 * count) & ~(align - 1))
    if absolute is not None:
        yield "absolute", absolute, None
    # 6.4 on: token_index, offsets, [relative_base], seqs_of_names.
    after = _align(tokens.index_end, align)
    offsets = s32s(after)
    if offsets is not None:
        relbase_at = _align(after + 4 * count, align)
        relbase = u64(relbase_at)
        for name, addrs in candidate_addresses(offsets, relbase, base + after).items():
            seqs = relbase_at + 8 if name != "place-relative" else relbase_at
            yield name, addrs, seqs
    absolute = u64s(after)
    if absolute is not None:
        yield "absolute", absolute, _align(after + 8 * count, align)


def scan_kallsyms(
    image: Image, base: int, anchors: dict[str, int], source: str = "dump"
) -> Kallsyms:
    """The kallsyms of the kernel whose image (from virtual address ``base``) is
    ``image``, validated against ``anchors`` (symbol -> address; ``_stext`` required)."""
    if "_stext" not in anchors:
        raise DumpFormatError(f"{source}: no SYMBOL(_stext) in VMCOREINFO to check kallsyms by")
    seen_tables = False
    for tokens in find_token_tables(image):
        seen_tables = True
        for markers in find_markers(image, tokens):
            names = find_names(image, markers)
            if names is None:
                continue
            k = _build(image, base, names, tokens, markers, anchors)
            if k is not None:
                return k
    what = "tables that check out" if seen_tables else "token table"
    raise DumpFormatError(
        f"{source}: VMCOREINFO has no kallsyms tables and the kernel image has no kallsyms "
        f"{what} (unknown layout?); pass the vmlinux or System.map"
    )


def _build(
    image: Image,
    base: int,
    names: Names,
    tokens: TokenTable,
    markers: Markers,
    anchors: dict[str, int],
) -> Kallsyms | None:
    raw = bytes(image[names.start : names.end])
    k = Kallsyms(raw, names.starts, tokens.table, tokens.index, long_lengths=names.long_lengths)
    where = {name: k.index_of(name) for name in anchors}
    stext = where["_stext"]
    if stext is None:
        return None
    for _name, encoding, seqs_at in _address_candidates(image, base, names, tokens):
        if not all(i is None or encoding.address(i) == anchors[n] for n, i in where.items()):
            continue
        k.addresses = encoding.addresses()
        seqs_places = [seqs_at] if seqs_at is not None else []
        markers_end = markers.start + markers.width * len(markers.values)
        seqs_places.append(_align(markers_end, markers.align))
        for at in seqs_places:
            if at >= 0 and k.use_seqs_of_names(bytes(image[at : at + 3 * names.count])):
                break
        return k
    return None


# The image is read from _stext on until the token table is found and enough follows it
# for the 6.4+ layout's addresses (4 or 8 bytes a symbol); kernels are far smaller.  A
# first try reads 2 MiB past the table (6.4+ offsets and seqs_of_names of up to ~290k
# symbols; older layouts need nothing past it): half the reading on a 5.10 kernel.
_CHUNK = 4 << 20
_FIRST_AFTER = 2 << 20
_AFTER_TABLE = 16 << 20
_MAX_IMAGE = 256 << 20
# A VMCOREINFO without PAGESIZE (none seen) is read in the smallest page any kernel uses.
_DEFAULT_PAGE = 4096


def read_kernel_image(
    read: Callable[[int, int], bytes], start: int, page_size: int, after: int = _AFTER_TABLE
) -> bytearray:
    """The kernel image from ``start`` (physical) on, in chunks, ``after`` bytes past the
    first token table candidate; stops early at a chunk the dump has none of.

    A filtered dump (dump level 1 and up) leaves out the image's all-zero pages, e.g. in
    .rodata before the kallsyms tables: a chunk with some pages missing is read page by
    page, the missing ones as the zeros they were."""
    data = bytearray()
    want = _MAX_IMAGE
    while len(data) < want:
        at = start + len(data)
        try:
            data += read(at, _CHUNK)
        except KdumpyError:
            chunk = _read_pages(read, at, page_size)
            if chunk is None:
                break
            data += chunk
        if want == _MAX_IMAGE:
            found = data.find(DIGITS, max(0, len(data) - _CHUNK - len(DIGITS)))
            if found >= 0:
                want = min(_MAX_IMAGE, found + after)
    return data  # no copy: the scan only reads it


def _read_pages(read: Callable[[int, int], bytes], start: int, page_size: int) -> bytes | None:
    """One chunk page by page, missing pages as zeros; None when the dump has none of it."""
    pages = []
    present = False
    for at in range(start, start + _CHUNK, page_size):
        try:
            pages.append(read(at, page_size))
            present = True
        except KdumpyError:
            pages.append(bytes(page_size))
    return b"".join(pages) if present else None


def kallsyms_from_image(
    read_phys: Callable[[int, int], bytes], vtop: Callable[[int], int], info: VmcoreInfo
) -> Kallsyms:
    """Scan the dump's kernel image for its kallsyms (VMCOREINFO without them)."""
    stext = info.symbol("_stext")
    if stext is None:
        raise DumpFormatError(
            f"{info.source}: VMCOREINFO has neither kallsyms tables nor SYMBOL(_stext); "
            "pass the vmlinux or System.map"
        )
    anchors = {n: a for n in ANCHORS if (a := info.symbol(n)) is not None}
    start, page = vtop(stext), info.page_size or _DEFAULT_PAGE
    try:
        image = read_kernel_image(read_phys, start, page, _FIRST_AFTER)
        return scan_kallsyms(image, stext, anchors, info.source)
    except DumpFormatError:  # tables further on than the first read: read all of it
        image = read_kernel_image(read_phys, start, page)
        return scan_kallsyms(image, stext, anchors, info.source)


# VMCOREINFO symbols that are kernel-image addresses (mem_section is dynamic on most).
ANCHORS = ("_stext", "init_uts_ns", "swapper_pg_dir", "init_top_pgt", "node_online_map",
           "vmap_area_list", "prb", "printk_rb_static", "clear_seq", "node_data")  # fmt: skip
