"""Readers are bounded by construction (issue 17, findings 3, 6, 13 and Deliver 3).

Each crafted file is built here (tests/vmcore/builders.py, not kdumpy's writers) to make
one reader do as much work as it can per input byte: a decompression bomb behind every
descriptor, a 1 MiB page size, overlapping flattened records, an ELF header claiming
64 TiB of memory.  Memory is measured with tracemalloc (numpy, bytes and the
compression libraries' outputs are all traced) and time with a monotonic clock; the
bounds are generous multiples of what the readers need, far below what the old code
took (6.3 GB for a 4 MB file, minutes for 1 MB of flattened records).
"""

from __future__ import annotations

import functools
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore import open_dump

from .builders import (
    DESC,
    FLAGS,
    PAGE,
    KdumpLayout,
    Load,
    elf_vmcore,
    flattened,
    kdump_file,
    mixed_pages,
    notes_segment,
    page_bytes,
    vmcoreinfo,
)
from .helpers import batches, consume, pfns

BLOCK_SIZE_AT = 0x1AC


def measure(func: Callable[[], object]) -> tuple[float, int]:
    """(seconds, peak traced bytes) of a call: timed alone, then run again traced (tracing
    slows Python down several times)."""
    t0 = time.monotonic()
    func()
    seconds = time.monotonic() - t0
    tracemalloc.start()
    try:
        func()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return seconds, peak


def use(path: Path) -> None:
    """Open and read everything; a one-line KdumpyError is an acceptable outcome."""
    try:
        with open_dump(path) as dump:
            consume(dump)
    except KdumpyError as exc:
        assert "\n" not in str(exc)


def repoint(raw: bytes, layout: KdumpLayout, pfn: int, data: bytes, flags: int) -> bytes:
    """Append ``data`` and make ``pfn``'s descriptor point at it with ``flags``."""
    index = sorted(layout.descs).index(pfn)
    out = bytearray(raw)
    struct.pack_into("<qII", out, layout.desc_offset + DESC.size * index, len(out), len(data),
                     flags)  # fmt: skip
    return bytes(out) + data


# -- decompression is capped at the page size ---------------------------------------------


@functools.cache
def _bombs() -> dict[str, tuple[int, bytes]]:
    import cramjam
    import lzo
    import zstandard

    zeros = bytes(16 << 20)
    snappy_huge = b"\xff\xff\xff\xff\x0f" + bytes(cramjam.snappy.compress_raw(bytes(64)))[1:]
    return {
        "zlib": (FLAGS["zlib"], zlib.compress(zeros, 9)[: PAGE - 1]),
        "zlib-whole": (FLAGS["zlib"], zlib.compress(bytes(1 << 20), 9)),
        "zstd-declared": (FLAGS["zstd"], zstandard.ZstdCompressor(level=3).compress(zeros)),
        "zstd-undeclared": (
            FLAGS["zstd"],
            zstandard.ZstdCompressor(level=3, write_content_size=False).compress(zeros),
        ),
        "snappy": (FLAGS["snappy"], snappy_huge),
        "lzo": (FLAGS["lzo"], bytes(lzo.compress(bytes(1 << 20), 1, False))[: PAGE - 1]),
    }


@pytest.mark.parametrize("name", sorted(_bombs()))
def test_decompression_bomb_is_one_page_at_most(tmp_path: Path, name: str) -> None:
    """A descriptor whose data inflates far past a page: a one-line error naming the
    page, and never more than a few pages of memory (the old zlib and zstd calls
    inflated all of it: 16 MiB here)."""
    flags, bomb = _bombs()[name]
    assert len(bomb) < PAGE
    layout = KdumpLayout(0, 0, 0, 0)
    pages = mixed_pages(range(8))
    raw = kdump_file(pages, 8, compression="zlib", layout=layout)
    path = tmp_path / name
    path.write_bytes(repoint(raw, layout, 5, bomb, flags))

    def read() -> None:
        with open_dump(path) as dump, pytest.raises(DumpFormatError) as exc:
            dump.read_pfn(5)
        assert str(exc.value).startswith(f"{path}: page pfn 0x5: ")
        assert "\n" not in str(exc.value)

    _, peak = measure(read)
    assert peak < 2 << 20, f"{name}: {peak} bytes traced"


def test_block_size_is_a_page_size(tmp_path: Path) -> None:
    """A 1 MiB block size (so 1 MiB "pages", 4 GiB per 4096-page batch) is refused;
    64 KiB, the largest Linux page size, is read."""
    raw = bytearray(kdump_file(mixed_pages(range(4)), 4))
    struct.pack_into("<i", raw, BLOCK_SIZE_AT, 1 << 20)
    path = tmp_path / "1m"
    path.write_bytes(raw)
    with pytest.raises(DumpFormatError, match="impossible kdump block size 1048576"):
        open_dump(path)
    big = 1 << 16
    pages = mixed_pages(range(6), size=big)
    path.write_bytes(kdump_file(pages, 6, block_size=big, compression="zstd"))
    with open_dump(path) as dump:
        assert dump.page_size == big
        assert all(dump.read_pfn(p) == pages[p] for p in pages)


def test_iter_pages_batches_are_bounded_in_bytes(tmp_path: Path) -> None:
    big = 1 << 16
    pages = mixed_pages(range(600), size=big)
    path = tmp_path / "64k"
    path.write_bytes(kdump_file(pages, 600, block_size=big, compression="none"))
    with open_dump(path) as dump:
        sizes = [p.nbytes for _, p, _ in batches(dump, batch=4096)]
    assert max(sizes) <= 16 << 20 and sum(sizes) == 600 * big


# -- flattened: linear in the records, however they overlap ------------------------------


def overlapping_stream(n: int) -> bytes:
    """A kdump file's flattened stream followed by ``n`` small records, each overlapping
    the next sixteen (one chain of overlaps: the old reader's worst case)."""
    inner = kdump_file(mixed_pages(range(16)), 16)
    recs = [(0, inner)] + [(64 * 1024 + 4 * i, bytes([i & 255]) * 64) for i in range(n)]
    return flattened(recs)


def test_flattened_overlaps_are_linear(tmp_path: Path) -> None:
    """1 MiB of overlapping records opens in well under a second (it took minutes)."""
    path = tmp_path / "flat"
    path.write_bytes(overlapping_stream(13000))
    assert path.stat().st_size > 1 << 20
    seconds, _ = measure(lambda: use(path))
    assert seconds < 3.0
    with open_dump(path) as dump:
        src = dump.parts[0].src
        # The last writer of each byte wins: record i covers 64K+4i .. +64, and record
        # i+1 overwrites all but its first 4 bytes.
        assert src.read(64 * 1024 + 4 * 100, 8) == bytes([100]) * 4 + bytes([101]) * 4


# -- ELF: nothing scales with p_memsz ------------------------------------------------------


def test_elf_memsz_costs_nothing(tmp_path: Path) -> None:
    """A PT_LOAD claiming 64 TiB of left-out memory (makedumpfile -E tails are legal)
    opens, lists its ranges and reads its pages in milliseconds."""
    pages = mixed_pages(range(0x100, 0x110))
    data = b"".join(pages[p] for p in sorted(pages))
    loads = [Load(0x100000, data, memsz=(1 << 46) - 0x100000)]
    path = tmp_path / "huge.elf"
    path.write_bytes(elf_vmcore(loads, notes_segment(vmcoreinfo())))

    def run() -> None:
        with open_dump(path) as dump:
            assert dump.max_pfn == 1 << 34
            assert dump.ram_ranges() == [(0x100, 1 << 34)]
            assert dump.pfn_ranges() == [(0x100, 0x110)]
            consume(dump)

    seconds, peak = measure(run)
    assert seconds < 1.0 and peak < 4 << 20


def test_elf_beyond_physical_address_space(tmp_path: Path) -> None:
    loads = [Load(0x100000, bytes(PAGE), memsz=1 << 52)]
    path = tmp_path / "beyond.elf"
    path.write_bytes(elf_vmcore(loads))
    with pytest.raises(DumpFormatError, match="impossible PT_LOAD 1") as exc:
        open_dump(path)
    assert str(exc.value).startswith(str(path))


def test_flattened_elf_holes_are_not_memory(tmp_path: Path) -> None:
    """A flattened ELF whose PT_LOAD claims 1 TiB of file, with one record far out to
    stretch the logical size: only bytes some record wrote are memory."""
    pages = mixed_pages(range(4))
    elf = elf_vmcore([Load(0, b"".join(pages[p] for p in range(4)), memsz=1 << 40)])
    raw = bytearray(elf)
    struct.pack_into("<Q", raw, 64 + 56 + 32, 1 << 40)  # PT_LOAD 1's p_filesz
    struct.pack_into("<Q", raw, 64 + 56 + 40, 1 << 40)  # and p_memsz
    path = tmp_path / "flat.elf"
    path.write_bytes(flattened([(0, bytes(raw)), ((1 << 41), b"x")]))

    def run() -> None:
        with open_dump(path) as dump:
            assert dump.format == "flattened-elf"
            assert dump.pfn_ranges() == [(0, 4)]
            assert dump.read_pfn(3) == pages[3]
            consume(dump)

    seconds, peak = measure(run)
    assert seconds < 1.0 and peak < 4 << 20


# -- sizes in kdump headers are checked against the file ---------------------------------


@pytest.mark.parametrize(
    ("field", "at", "value", "message"),
    [
        ("bitmap_blocks", 0x1B4, struct.pack("<I", 1 << 30), "bitmaps .* larger than the file"),
        ("size_note", 4096 + 0x38, struct.pack("<Q", 1 << 40), "ELF notes .* past the end"),
        ("offset_note", 4096 + 0x30, struct.pack("<q", -5), "ELF notes .* past the end"),
        ("size_vmcoreinfo", 4096 + 0x28, struct.pack("<Q", 1 << 40), "VMCOREINFO .* past"),
    ],
)
def test_kdump_header_sizes_checked(
    tmp_path: Path, field: str, at: int, value: bytes, message: str
) -> None:
    raw = bytearray(kdump_file(mixed_pages(range(8)), 8, notes=notes_segment(vmcoreinfo())))
    if field == "size_vmcoreinfo":  # only read when the notes lack VMCOREINFO
        struct.pack_into("<Q", raw, 4096 + 0x38, 0)
    raw[at : at + len(value)] = value
    path = tmp_path / field
    for candidate in (path, tmp_path / f"{field}.flat"):
        data = bytes(raw) if candidate == path else flattened([(0, bytes(raw))])
        candidate.write_bytes(data)
        with pytest.raises(DumpFormatError, match=message) as exc:
            open_dump(candidate)
        assert str(exc.value).startswith(str(candidate)) and "\n" not in str(exc.value)


# -- the budget: time and memory per input byte -----------------------------------------


def _kdump_shared_frame(n: int) -> bytes:
    """n pages, every descriptor pointing at the same small zstd frame: one
    decompression per 24 input bytes, the most work a kdump file can ask for."""
    import zstandard

    frame = zstandard.ZstdCompressor(level=1).compress(bytes(PAGE))
    layout = KdumpLayout(0, 0, 0, 0)
    raw = bytearray(kdump_file({p: bytes(PAGE) for p in range(n)}, n, layout=layout))
    raw += frame
    for i in range(n):
        struct.pack_into("<qII", raw, layout.desc_offset + DESC.size * i,
                         len(raw) - len(frame), len(frame), FLAGS["zstd"])  # fmt: skip
    return bytes(raw)


def _kdump_zero_pages(n: int) -> bytes:
    """The most pages per byte a kdump file can honestly hold: n shared zero pages."""
    return kdump_file({p: bytes(PAGE) for p in range(n)}, n)


def _elf_partial_pages(n: int) -> bytes:
    """n sub-page PT_LOADs, each making one page of the dump (56 header bytes + 8)."""
    loads = [Load(p * PAGE + 8, bytes(range(8))) for p in range(n)]
    return elf_vmcore(loads, page_size=16)


def _flat_small_records(n: int) -> bytes:
    """A kdump file written one byte per record, then over again, n records in all."""
    inner = kdump_file({p: page_bytes(p, size=512) for p in range(8)}, 8, compression="lzo",
                       block_size=512)  # fmt: skip
    offsets = [i % len(inner) for i in range(max(n, len(inner)))]
    return flattened([(o, inner[o : o + 1]) for o in offsets])


CRAFTED = {
    "kdump-shared-frame": (_kdump_shared_frame, 1000),
    "kdump-zero-pages": (_kdump_zero_pages, 2000),
    "elf-partial-pages": (_elf_partial_pages, 500),
    "flat-small-records": (_flat_small_records, 4000),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_budget_per_input_byte(tmp_path: Path, name: str) -> None:
    """Opening and reading everything in a crafted file of N bytes costs at most
    16 MiB (one batch) + 64 bytes per input byte of memory, and 2 s + 50 µs per input
    byte of time (generous: the machine is shared); and 4x the input costs no more than
    4x (plus the fixed part)."""
    build, n = CRAFTED[name]
    results = []
    for scale in (1, 4):
        path = tmp_path / f"{name}-{scale}"
        path.write_bytes(build(n * scale))
        size = path.stat().st_size
        seconds, peak = measure(lambda path=path: use(path))
        results.append((size, seconds, peak))
        assert peak <= (16 << 20) + 64 * size, f"{name}: {peak} bytes for {size}"
        assert seconds <= 2.0 + 50e-6 * size, f"{name}: {seconds:.2f} s for {size}"
    (s1, t1, m1), (s4, t4, m4) = results
    assert m4 <= (16 << 20) + m1 * 4 * s4 / s1
    assert t4 <= 2.0 + t1 * 4 * s4 / s1


def test_descriptor_offset_near_2_63(tmp_path: Path) -> None:
    """Found by test_fuzz: offset + size overflowed int64, passed the file-size check
    and crashed numpy with a shape mismatch.  The page is absent instead."""
    layout = KdumpLayout(0, 0, 0, 0)
    pages = mixed_pages(range(8))
    raw = bytearray(kdump_file(pages, 8, compression="zlib", layout=layout))
    index = sorted(layout.descs).index(3)
    struct.pack_into("<q", raw, layout.desc_offset + DESC.size * index, 2**63 - 1)
    path = tmp_path / "far"
    path.write_bytes(raw)
    with open_dump(path) as dump:
        assert dump.pfn_ranges() == [(0, 3), (4, 8)]
        pages_read, present = pfns(dump, 0, 8)
        assert present.tolist() == [True] * 3 + [False] + [True] * 4
        assert pages_read[4].tobytes() == pages[4]
