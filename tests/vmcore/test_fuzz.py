"""Property-based fuzzing of every reader (issue 17, Deliver 4).

Seeds are small valid dumps built here by hand (tests/vmcore/builders.py, not kdumpy's
writers): an ELF vmcore with notes, VMCOREINFO, page tables, a printk ring and a PT_LOAD
ending mid-page (also with PN_XNUM), kdump-compressed files with each compression and
older header versions, a flattened kdump (records shuffled, the sub header written
twice) and a flattened ELF, and a three-file split set.  hypothesis mutates them: format
fields set to edge values (0, -1, page +- 1, 2^31, 2^63 ...), bytes overwritten,
files cut short, split files dropped or repeated.  Then the dump is opened and used
the way the tools do: every range, every page, the notes, VMCOREINFO, the kernel log,
a kernel virtual read through the page tables.

The property: only a one-line :class:`KdumpyError` may come out, never another
exception; no example runs longer than the time limit (a hang fails the test); no
example traces more than 64 MiB.  test_bad_input.py fuzzes real QEMU output the same way.

Fast tier: a few examples per seed, derandomized (a few seconds in all).  Longer:

    KDUMPY_FUZZ=long pytest tests/vmcore -k fuzz      # 1000 random examples per seed
    KDUMPY_FUZZ=5000 pytest tests/vmcore -k fuzz      # any number
"""

from __future__ import annotations

import contextlib
import functools
import signal
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdumpy.errors import KdumpyError
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.dmesg import kernel_log

from .builders import (
    DIRECT_MAP,
    PAGE,
    SUB_HEADER,
    Load,
    chunks,
    elf_vmcore,
    flattened,
    kdump_file,
    kernel_with_log,
    mixed_pages,
    notes_segment,
    page_bytes,
    split_set,
)
from .helpers import consume, fuzz_settings

TIME_LIMIT = 30  # seconds per example: more is a hang
MEMORY_LIMIT = 64 << 20  # traced bytes per example
FUZZ = fuzz_settings(fast_examples=12)

# -- seeds ---------------------------------------------------------------------------------

LOW_END = 0x9FC00
MESSAGES = [(1_000_001_000, b"hello"), (2_000_000_000, b"fuzz\nme"), (3_500_000_000, b"x")]
LOG = b"[    1.000001] hello\n[    2.000000] fuzz\n               me\n[    3.500000] x\n"


@functools.cache
def memory() -> tuple[dict[int, bytes], bytes]:
    """Pages 0-0x9f (the last cut at 0x9fc00) and 0x100-0x13f holding a kernel."""
    kernel, info = kernel_with_log(0x100, MESSAGES)
    pages = mixed_pages(range(0xA0))
    pages[0x9F] = pages[0x9F][: LOW_END % PAGE].ljust(PAGE, b"\0")  # the e820 edge
    pages.update({p: kernel.get(p, page_bytes(p)) for p in range(0x100, 0x140)})
    return pages, notes_segment(info, cpus=2)


def elf_seed(pn_xnum: bool = False) -> bytes:
    pages, notes = memory()
    low = b"".join(pages[p] for p in range(0xA0))[:LOW_END]
    high = b"".join(pages[p] for p in range(0x100, 0x140))
    loads = [Load(0, low, vaddr=DIRECT_MAP), Load(0x100000, high, vaddr=DIRECT_MAP + 0x100000)]
    return elf_vmcore(loads, notes, pn_xnum=pn_xnum)


def kdump_seed(compression: str, version: int = 6) -> bytes:
    pages, notes = memory()
    return kdump_file(pages, 0x140, compression=compression, notes=notes, version=version)


def flat_kdump_seed() -> bytes:
    inner = kdump_seed("lzo")
    recs = chunks(inner, 4096, shuffle=1)
    recs.append((PAGE, inner[PAGE : PAGE + SUB_HEADER.size]))  # the sub header again
    return flattened(recs)


@functools.cache
def seeds() -> dict[str, list[bytes]]:
    return {
        "elf": [elf_seed()],
        "elf-xnum": [elf_seed(pn_xnum=True)],
        **{f"kdump-{c}": [kdump_seed(c)] for c in ("zlib", "lzo", "snappy", "zstd", "none")},
        "kdump-v3": [kdump_seed("zlib", version=3)],
        "flat-kdump": [flat_kdump_seed()],
        "flat-elf": [flattened(chunks(elf_seed(), 8192, shuffle=2, holes=False))],
        "split": split_set(
            memory()[0], 0x140, [0, 0x60, 0x120, 0x140], compression="lzo", notes=memory()[1]
        ),  # fmt: skip
    }


# -- where the format's fields are (offset, width, byte order) ------------------------------


def elf_fields(raw: bytes) -> list[tuple[int, int, str]]:
    fields = [(18, 2, "<"), (32, 8, "<"), (40, 8, "<"), (48, 4, "<"), (54, 2, "<"),
              (56, 2, "<"), (4, 1, "<"), (5, 1, "<")]  # fmt: skip
    phoff, phnum = struct.unpack_from("<Q", raw, 32)[0], struct.unpack_from("<H", raw, 56)[0]
    if phnum == 0xFFFF:
        shoff = struct.unpack_from("<Q", raw, 40)[0]
        fields.append((shoff + 44, 4, "<"))  # sh_info: the real count
        phnum = struct.unpack_from("<I", raw, shoff + 44)[0]
    for i in range(min(phnum, 8)):  # the first few only
        base = phoff + 56 * i
        fields += [(base + f, 8 if f else 4, "<") for f in (0, 8, 16, 24, 32, 40)]
    note_off = struct.unpack_from("<Q", raw, phoff + 8)[0]
    note_size = struct.unpack_from("<Q", raw, phoff + 32)[0]
    pos = note_off
    while pos + 12 <= min(note_off + note_size, len(raw)):
        namesz, descsz = struct.unpack_from("<II", raw, pos)
        fields += [(pos, 4, "<"), (pos + 4, 4, "<")]
        pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return fields


def kdump_fields(raw: bytes) -> list[tuple[int, int, str]]:
    fields = [(8, 4, "<")] + [(0x1A8 + 4 * i, 4, "<") for i in range(10)]
    bs = struct.unpack_from("<i", raw, 0x1AC)[0]
    fields += [(bs + off, 8 if off not in (8, 12) else 4, "<")
               for off in (0, 8, 12, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96)]  # fmt: skip
    sub_blocks, bitmap_blocks = struct.unpack_from("<iI", raw, 0x1B0)
    bitmaps = (1 + sub_blocks) * bs
    descs = bitmaps + bitmap_blocks * bs
    # A few bitmap bytes; bounded by the file, not by the (mutated) header's claims.
    end = min(bitmaps + bitmap_blocks * bs, len(raw))
    fields += [(at, 1, "<") for at in range(bitmaps, end, max(1, (end - bitmaps) // 16))][:16]
    fields += [(descs + 24 * i + f, w, "<") for i in range(0, 0x140, 7)
               for f, w in ((0, 8), (8, 4), (12, 4))]  # fmt: skip
    return fields


def flat_fields(raw: bytes) -> list[tuple[int, int, str]]:
    fields = [(16, 8, ">"), (24, 8, ">")]
    pos = 4096
    while pos + 16 <= len(raw):
        offset, size = struct.unpack_from(">qq", raw, pos)
        fields += [(pos, 8, ">"), (pos + 8, 8, ">")]
        if size <= 0:
            break
        pos += 16 + size
    return fields


def fields_of(raw: bytes) -> list[tuple[int, int, str]]:
    # The fields of a file already mutated: whatever is still readable.
    with contextlib.suppress(struct.error, OverflowError, ValueError):
        if raw[:4] == b"\x7fELF":
            return elf_fields(raw)
        if raw[:8] == b"KDUMP   ":
            return kdump_fields(raw)
        if raw[:12] == b"makedumpfile":
            return flat_fields(raw)
    return []


# -- mutations -----------------------------------------------------------------------------

EDGES = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, PAGE - 1, PAGE, PAGE + 1, 0xFFFF, 1 << 16, 1 << 20,
         0x9FC00, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**46, 2**52, 2**62, 2**63 - 1, 2**63,
         2**64 - 1]  # fmt: skip

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("field"), st.integers(0, 1 << 16), st.sampled_from(EDGES)),
        st.tuples(st.just("field"), st.integers(0, 1 << 16), st.integers(0, 2**64 - 1)),
        st.tuples(st.just("bytes"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(b"")),
        st.tuples(st.just("file"), st.integers(0, 7), st.sampled_from(["drop", "dup", "swap"])),
    ),
    max_size=5,
)


def mutate(files: list[bytes], ops: list[tuple]) -> list[bytes]:
    """Apply ``ops`` (seed-independent: indices are taken modulo what the seed has)."""
    out = [bytearray(f) for f in files]
    for kind, where, what in ops:
        if kind == "file":
            i = where % len(out)
            if what == "drop" and len(out) > 1:
                del out[i]
            elif what == "dup":
                out.append(bytearray(out[i]))
            elif what == "swap":
                out[i], out[-1] = out[-1], out[i]
            continue
        target = out[where % len(out)]
        if not target:
            continue
        if kind == "field":
            fields = fields_of(bytes(target))
            if fields:
                at, width, order = fields[where % len(fields)]
                endian = "big" if order == ">" else "little"
                target[at : at + width] = (what % (1 << (8 * width))).to_bytes(width, endian)
        elif kind == "bytes":
            at = where % len(target)
            target[at : at + len(what)] = what
        elif kind == "cut":
            del target[where % len(target) :]
    return [bytes(f) for f in out]


# -- the property --------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"reader still busy after {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def exercise(paths: list[Path]) -> None:
    """Open and use a dump; only a one-line KdumpyError may come out, in bounded time
    and memory."""
    tracemalloc.start()
    try:
        with time_limit(TIME_LIMIT), open_dump(paths if len(paths) > 1 else paths[0]) as dump:
            consume(dump)
            if dump.has_vmcoreinfo:
                sym = dump.vmcoreinfo.symbol("init_uts_ns")
                if sym is not None:
                    dump.read_virt(sym, 64)
                _ = dump.translator.page_offset
    except KdumpyError as exc:
        assert "\n" not in str(exc), str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"{peak} bytes traced"


@pytest.mark.parametrize("seed", sorted(seeds()))
def test_seed_is_valid(tmp_path: Path, seed: str) -> None:
    """Unmutated, every seed opens and gives back its memory and its log."""
    pages, _ = memory()
    paths = []
    for i, data in enumerate(seeds()[seed]):
        paths.append(tmp_path / f"{seed}.{i}")
        paths[-1].write_bytes(data)
    with open_dump(paths if len(paths) > 1 else paths[0]) as dump:
        assert consume(dump) == len(pages)
        assert dump.read_pfn(0x120) == pages[0x120]
        assert dump.read_pfn(0x9F) == pages[0x9F]
        assert dump.vmcoreinfo.osrelease == "6.1.0-test"
        assert dump.translator.page_offset == DIRECT_MAP
        assert kernel_log(dump) == LOG


@pytest.mark.parametrize("seed", sorted(seeds()))
@FUZZ
@given(ops=OPS)
def test_fuzz_reader(tmp_path_factory: pytest.TempPathFactory, seed: str, ops: list) -> None:
    files = mutate(seeds()[seed], ops)
    d = tmp_path_factory.mktemp("fuzz", numbered=True)
    paths = []
    for i, data in enumerate(files):
        paths.append(d / f"{seed}.{i}")
        paths[-1].write_bytes(data)
    exercise(paths)
