"""Bad input: truncated, corrupted and inconsistent dumps give one-line KdumpyErrors
naming the file, and what is still valid stays readable.

The damaged files are made here from real tool output (QEMU dump-guest-memory at the
reset vector; makedumpfile output of a lab dump for the ``vm`` cases), then cut or
patched at the byte offsets the format defines.  The fuzz tests mutate those same
files with hypothesis: every outcome must be a result or a KdumpyError, nothing else.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdumpy.errors import DumpFormatError, KdumpyError, PageNotPresent
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.dmesg import kernel_log

from .helpers import fuzz_settings, pfns

# disk_dump_header field offsets (x86_64).
STATUS, BLOCK_SIZE, SUB_HDR_SIZE, BITMAP_BLOCKS = 0x1A8, 0x1AC, 0x1B0, 0x1B4


def _patch(src: Path, dst: Path, at: int, data: bytes) -> Path:
    raw = bytearray(src.read_bytes())
    raw[at : at + len(data)] = data
    dst.write_bytes(bytes(raw))
    return dst


def _layout(path: Path) -> tuple[int, int, int]:
    """(block size, bitmap offset, descriptor offset) of a kdump file."""
    head = path.read_bytes()[:0x1B8]
    bs, sub, bitmap_blocks = struct.unpack_from("<iiI", head, BLOCK_SIZE)
    return bs, (1 + sub) * bs, (1 + sub + bitmap_blocks) * bs


def _one_line_error(exc: pytest.ExceptionInfo, path: Path) -> None:
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(path))


def test_bad_magic_and_empty(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00" * 8192)
    with pytest.raises(DumpFormatError, match="not a crash dump") as exc:
        open_dump(bad)
    _one_line_error(exc, bad)
    empty = tmp_path / "empty"
    empty.touch()
    with pytest.raises(DumpFormatError, match="empty file"):
        open_dump(empty)
    with pytest.raises(DumpFormatError, match="cannot open"):
        open_dump(tmp_path / "missing")


@pytest.mark.parametrize("cut", [4, 100, 5000])
def test_truncated_kdump_headers(qemu_dumps, tmp_path: Path, cut: int) -> None:  # noqa: ANN001
    short = tmp_path / "short"
    short.write_bytes(qemu_dumps["plain"].read_bytes()[:cut])
    with pytest.raises(DumpFormatError) as exc:
        open_dump(short)
    _one_line_error(exc, short)


def test_truncated_kdump_keeps_what_is_valid(qemu_dumps, tmp_path: Path) -> None:  # noqa: ANN001
    full = qemu_dumps["plain"].read_bytes()
    short = tmp_path / "short"
    short.write_bytes(full[: len(full) - 1500])  # the last pages' data is lost
    with open_dump(short) as dump, open_dump(qemu_dumps["elf"]) as elf:
        kept = dump.pfn_ranges()
        with open_dump(qemu_dumps["plain"]) as whole:
            all_pages = sum(e - s for s, e in whole.pfn_ranges())
        have = sum(e - s for s, e in kept)
        assert 0 < have < all_pages
        for start, end in kept:
            pages, present = pfns(dump, start, end - start)
            ref, _ = pfns(elf, start, end - start)
            assert present.all() and np.array_equal(pages, ref)
        last = kept[-1][1]
        with pytest.raises(PageNotPresent):
            dump.read_pfn(
                next(p for s, e in whole_ranges(qemu_dumps) for p in range(s, e) if p >= last)
            )


def whole_ranges(qemu_dumps) -> list[tuple[int, int]]:  # noqa: ANN001
    with open_dump(qemu_dumps["plain"]) as whole:
        return whole.pfn_ranges()


def test_impossible_header_values(qemu_dumps, tmp_path: Path) -> None:  # noqa: ANN001
    src = qemu_dumps["plain"]
    cases = {
        "block": (BLOCK_SIZE, struct.pack("<i", 3), "impossible kdump block size 3"),
        "sub": (SUB_HDR_SIZE, struct.pack("<i", -5), "impossible kdump sub-header size"),
        "bitmap": (BITMAP_BLOCKS, struct.pack("<I", 1), "bitmaps .* too small"),
        "version": (8, struct.pack("<i", 1000), "impossible kdump header version"),
    }
    for name, (at, data, message) in cases.items():
        bad = _patch(src, tmp_path / name, at, data)
        with pytest.raises(DumpFormatError, match=message) as exc:
            open_dump(bad)
        _one_line_error(exc, bad)


def test_bitmaps_disagree(qemu_dumps, tmp_path: Path) -> None:  # noqa: ANN001
    """A 2nd-bitmap bit for a page the 1st bitmap says does not exist."""
    src = qemu_dumps["plain"]
    bs, bitmap_at, desc_at = _layout(src)
    half = (desc_at - bitmap_at) // 2
    with open_dump(src) as dump:
        hole = dump.ram_ranges()[0][1]  # first pfn after the first RAM range
    byte = bitmap_at + half + hole // 8
    raw = src.read_bytes()
    bad = _patch(src, tmp_path / "bits", byte, bytes([raw[byte] | 1 << (hole % 8)]))
    with pytest.raises(DumpFormatError, match="2nd bitmap marks pages") as exc:
        open_dump(bad)
    _one_line_error(exc, bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("size", 5000, "has size 5000 > page size"),
        ("flags", 0x40, "unknown compression flags 0x40"),
        ("data", b"\xff" * 16, "zlib data is corrupt"),
    ],
)
def test_bad_page_descriptor(qemu_dumps, tmp_path: Path, field: str, value, message: str) -> None:  # noqa: ANN001
    src = qemu_dumps["plain"]
    _, _, desc_at = _layout(src)
    with open_dump(src) as dump:
        descs = dump.parts[0].descs
        index = int(np.flatnonzero(descs["flags"] == 1)[0])  # a zlib-compressed page
        rec = descs[index]
        pfn = next(p for s, e in dump.pfn_ranges() for p in range(s, e) if dump._rank(p) == index)
    at = desc_at + 24 * index
    if field == "size":
        bad = _patch(src, tmp_path / "d", at + 8, struct.pack("<I", value))
    elif field == "flags":
        bad = _patch(src, tmp_path / "d", at + 12, struct.pack("<I", value))
    else:
        bad = _patch(src, tmp_path / "d", int(rec["offset"]), value)
    with open_dump(bad) as dump:
        with pytest.raises(DumpFormatError, match=message) as exc:
            dump.read_pfn(pfn)
        _one_line_error(exc, bad)
        assert f"{pfn:#x}" in str(exc.value)


def test_bad_flattened_streams(qemu_dumps, tmp_path: Path) -> None:  # noqa: ANN001
    src = qemu_dumps["zlib"]
    raw = src.read_bytes()
    bad = _patch(src, tmp_path / "rec", 4096, struct.pack(">qq", 0, -7))
    with pytest.raises(DumpFormatError, match="bad flattened record") as exc:
        open_dump(bad)
    _one_line_error(exc, bad)
    # Cut short (no end marker): complete records are kept, the rest reads as absent.
    cut = tmp_path / "cut"
    cut.write_bytes(raw[: len(raw) * 3 // 4])
    with open_dump(cut) as dump, open_dump(qemu_dumps["elf"]) as elf:
        ranges = dump.pfn_ranges()
        assert ranges and ranges != whole_ranges(qemu_dumps)
        start, end = ranges[0]
        assert np.array_equal(pfns(dump, start, end - start)[0], pfns(elf, start, end - start)[0])


def test_bad_elf(qemu_dumps, tmp_path: Path) -> None:  # noqa: ANN001
    src = qemu_dumps["elf"]
    head = src.read_bytes()[: 1 << 16]
    (phoff,) = struct.unpack_from("<Q", head, 32)
    small = tmp_path / "head.elf"
    small.write_bytes(head)
    cases = {
        "phoff": (32, struct.pack("<Q", 1 << 40), "program headers .* run past the end"),
        "filesz": (phoff + 56 + 32, struct.pack("<Q", 1 << 50), "impossible PT_LOAD"),
        "class": (4, b"\x01", "only 64-bit little-endian"),
        "machine": (18, struct.pack("<H", 21), "ppc64 dump: kdumpy reads only"),
    }
    for name, (at, data, message) in cases.items():
        bad = _patch(small, tmp_path / name, at, data)
        with pytest.raises(DumpFormatError, match=message) as exc:
            open_dump(bad)
        _one_line_error(exc, bad)
    # The note segment (PT_NOTE is program header 0) claims more than it has.
    note_off, note_size = struct.unpack_from("<QQ", head, phoff + 8)[0], None
    note_size = struct.unpack_from("<Q", head, phoff + 32)[0]
    bad = _patch(small, tmp_path / "note", note_off + 4, struct.pack("<I", note_size * 4))
    with pytest.raises(DumpFormatError, match="runs past the note segment") as exc:
        open_dump(bad)
    _one_line_error(exc, bad)


def test_truncated_elf_keeps_what_is_valid(qemu_dumps, tmp_path: Path) -> None:  # noqa: ANN001
    src = qemu_dumps["elf"]
    cut = tmp_path / "cut.elf"
    cut.write_bytes(src.read_bytes()[: 8 << 20])
    with open_dump(cut) as dump, open_dump(src) as whole:
        assert dump.ram_ranges() == whole.ram_ranges()  # what existed is still known
        kept = dump.pfn_ranges()
        assert sum(e - s for s, e in kept) < sum(e - s for s, e in whole.pfn_ranges())
        for start, end in kept:
            assert np.array_equal(
                pfns(dump, start, end - start)[0], pfns(whole, start, end - start)[0]
            )
        with pytest.raises(PageNotPresent, match="not in the dump"):
            dump.read_phys(((kept[-1][1] + 1) << 12) - 8, 8)  # end of the first lost page


def test_split_set_errors(qemu_dumps, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(DumpFormatError, match="not a split dump file"):
        open_dump([qemu_dumps["plain"], qemu_dumps["plain"]])
    with pytest.raises(DumpFormatError, match="split sets must be kdump"):
        open_dump([qemu_dumps["plain"], qemu_dumps["elf"]])


# -- fuzzing ----------------------------------------------------------------------------


def exercise(path: Path) -> None:
    """Open and use a dump the way the tools do; only KdumpyError may come out."""
    try:
        with open_dump(path) as dump:
            dump.ram_ranges()
            for start, end in dump.pfn_ranges()[:4]:
                pfns(dump, start, min(end - start, 32))
            _ = dump.prstatus, dump.qemu_cpu_states, dump.device_dumps, dump.eraseinfo
            if dump.has_vmcoreinfo:
                _ = dump.vmcoreinfo.osrelease
                kernel_log(dump)
    except KdumpyError:
        pass


def _head(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _mutations() -> st.SearchStrategy:
    return st.lists(
        st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)), max_size=6
    )


FUZZ = fuzz_settings(fast_examples=60)


@FUZZ
@given(edits=_mutations(), cut=st.integers(0, 1 << 20))
def test_fuzz_kdump(qemu_dumps, tmp_path_factory, edits, cut: int) -> None:  # noqa: ANN001
    raw = bytearray(_head(qemu_dumps["plain"], max(cut, 64)))
    for at, data in edits:
        raw[at : at + len(data)] = data
    path = tmp_path_factory.mktemp("fuzz") / "k"
    path.write_bytes(bytes(raw))
    exercise(path)


@FUZZ
@given(edits=_mutations(), cut=st.integers(0, 1 << 16))
def test_fuzz_flattened(qemu_dumps, tmp_path_factory, edits, cut: int) -> None:  # noqa: ANN001
    raw = bytearray(_head(qemu_dumps["zlib"], 4096 + cut * 4))
    for at, data in edits:
        raw[at : at + len(data)] = data
    path = tmp_path_factory.mktemp("fuzz") / "f"
    path.write_bytes(bytes(raw))
    exercise(path)


@FUZZ
@given(edits=_mutations())
def test_fuzz_elf(qemu_dumps, tmp_path_factory, edits) -> None:  # noqa: ANN001
    raw = bytearray(_head(qemu_dumps["elf"], 1 << 17))
    for at, data in edits:
        at %= 2048  # the headers and notes
        raw[at : at + len(data)] = data
    path = tmp_path_factory.mktemp("fuzz") / "e"
    path.write_bytes(bytes(raw))
    exercise(path)


@pytest.mark.vm
@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 3 << 12), st.binary(min_size=1, max_size=8)), max_size=4
    )
)
def test_fuzz_real_kernel_headers(lab_dump, mdf, tmp_path_factory, edits) -> None:  # noqa: ANN001
    """makedumpfile's real header, notes and VMCOREINFO (a 6.x kernel's), mutated; the
    file is cut after the descriptors, so page reads hit a truncated file."""
    (src,) = mdf(lab_dump.vmcore, "kdump-l-d31", ["-l", "-d", "31"])
    raw = bytearray(_head(src, 1 << 20))
    for at, data in edits:
        raw[at : at + len(data)] = data
    path = tmp_path_factory.mktemp("fuzz") / "r"
    path.write_bytes(bytes(raw))
    exercise(path)
