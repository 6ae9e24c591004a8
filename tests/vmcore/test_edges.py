"""Every page of every input, at the edges too (issue 15, item 5).

* An ELF PT_LOAD that ends mid-page (x86's e820 low RAM ends at 0x9fc00) keeps its last
  page, zero-filled past the segment, as makedumpfile's ``readpage_elf`` reads it; a
  sub-page PT_LOAD is one readable page.  makedumpfile 1.7.2 is the oracle where it reads
  the same hand-built file: its 1st bitmap counts the partial page (create_1st_bitmap
  "Account for last page if it has less than page_size data in it") and every page it
  copies equals ours.  Its cyclic 2nd bitmap rounds the segment end down
  (create_bitmap_from_memhole), so 1.7.2 leaves the partial page's data out; kdumpy
  keeps it: the built memory says what it must hold.
* A split set whose first file starts above pfn 0 opens; a set with a file missing
  opens with that range absent and one warning saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdumpy.errors import DumpFormatError, PageNotPresent
from kdumpy.vmcore import open_dump

from .builders import (
    PAGE,
    Load,
    elf_vmcore,
    kernel_memory,
    mixed_pages,
    notes_segment,
    page_bytes,
    split_set,
)
from .helpers import pfns

LOW_END = 0x9FC00  # e820: 0x0 - 0x9fbff usable, 0x9fc00 - 0x9ffff reserved (EBDA)
HIGH = range(0x100, 0x140)


def low_and_high(low_end: int = LOW_END) -> tuple[dict[int, bytes], list[Load], bytes]:
    """Memory (pages by pfn) and PT_LOADs: low RAM up to ``low_end``, 1 MiB up with the
    kernel structures makedumpfile needs; and the notes."""
    kernel, info = kernel_memory(0x110)
    memory = {p: page_bytes(p) for p in range(0xA0)}
    memory.update({p: kernel.get(p, page_bytes(p, "random")) for p in HIGH})
    low = b"".join(memory[p] for p in range(0xA0))[:low_end]
    high = b"".join(memory[p] for p in HIGH)
    return memory, [Load(0, low), Load(HIGH[0] * PAGE, high)], notes_segment(info)


def test_partial_last_page_is_kept(tmp_path: Path) -> None:
    memory, loads, notes = low_and_high()
    path = tmp_path / "vmcore"
    path.write_bytes(elf_vmcore(loads, notes))
    with open_dump(path) as dump:
        assert dump.ram_ranges() == [(0, 0xA0), (0x100, 0x140)]
        assert dump.pfn_ranges() == [(0, 0xA0), (0x100, 0x140)]
        assert dump.read_pfn(0x9F) == memory[0x9F][:0xC00] + bytes(0x400)
        assert dump.read_phys(0x9FBF0, 16) == memory[0x9F][0xBF0:0xC00]
        assert dump.read_phys(0x9FC00, 16) == bytes(16)  # zero-filled past the segment
        pages, present = pfns(dump, 0x9E, 4)
        assert present.tolist() == [True, True, False, False]
        assert pages[0].tobytes() == memory[0x9E]
        with pytest.raises(PageNotPresent):
            dump.read_pfn(0xA0)


def test_sub_page_loads_are_readable(tmp_path: Path) -> None:
    """PT_LOADs smaller than a page, one starting mid-page, two sharing a page."""
    a, b, c = b"A" * 0x100, b"B" * 0x40, b"C" * 0x80
    loads = [Load(0x5000, a), Load(0x7C00, b), Load(0x7E00, c), Load(0x10000, bytes(PAGE))]
    path = tmp_path / "sub"
    path.write_bytes(elf_vmcore(loads))
    with open_dump(path) as dump:
        assert dump.pfn_ranges() == [(0x5, 0x6), (0x7, 0x8), (0x10, 0x11)]
        assert dump.ram_ranges() == dump.pfn_ranges()
        assert dump.read_pfn(5) == a + bytes(PAGE - len(a))
        page7 = bytearray(PAGE)
        page7[0xC00:0xC40], page7[0xE00:0xE80] = b, c
        assert dump.read_pfn(7) == bytes(page7)
        assert dump.read_phys(0x7C20, 0x10) == b"B" * 0x10
        assert dump.read_phys(0x7DF8, 0x10) == bytes(8) + b"C" * 8


def test_partial_first_page_is_kept(tmp_path: Path) -> None:
    loads = [Load(0x3100, b"x" * (PAGE - 0x100 + PAGE))]
    path = tmp_path / "first"
    path.write_bytes(elf_vmcore(loads))
    with open_dump(path) as dump:
        assert dump.pfn_ranges() == [(3, 5)]
        assert dump.read_pfn(3) == bytes(0x100) + b"x" * (PAGE - 0x100)


def test_memsz_tail_ends_mid_page(tmp_path: Path) -> None:
    """makedumpfile -E: filesz stops at a page, memsz runs on to 0x9fc00: the partial
    page existed (1st bitmap) but its data was left out."""
    loads = [Load(0, b"y" * 0x9F000, memsz=LOW_END)]
    path = tmp_path / "tail"
    path.write_bytes(elf_vmcore(loads))
    with open_dump(path) as dump:
        assert dump.ram_ranges() == [(0, 0xA0)]
        assert dump.pfn_ranges() == [(0, 0x9F)]


def makedumpfile(args: list[str], src: Path, dst: Path) -> None:
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    proc = subprocess.run(["makedumpfile", *args, str(src), str(dst)], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("low_end", [LOW_END, 0x9F000 + 8, 0xA0000])
def test_partial_page_against_makedumpfile(tmp_path: Path, low_end: int) -> None:
    memory, loads, notes = low_and_high(low_end)
    src = tmp_path / "vmcore"
    src.write_bytes(elf_vmcore(loads, notes))
    out = tmp_path / "mdf.kdump"
    makedumpfile(["-d", "0", "-l"], src, out)
    with open_dump(src) as ours, open_dump(out) as mdf:
        assert ours.ram_ranges() == mdf.ram_ranges()  # makedumpfile's 1st bitmap
        assert ours.max_pfn == mdf.max_pfn
        kept = set()
        for start, end in mdf.pfn_ranges():
            pages, present = pfns(mdf, start, end - start)
            mine, mine_present = pfns(ours, start, end - start)
            assert present.all() and mine_present.all()
            assert np.array_equal(pages, mine)
            kept.update(range(start, end))
        ours_kept = {p for s, e in ours.pfn_ranges() for p in range(s, e)}
        assert kept <= ours_kept
        # What makedumpfile 1.7.2 leaves out is the partial page alone, which kdumpy keeps.
        partial = {low_end // PAGE} if low_end % PAGE else set()
        assert ours_kept - kept == partial
        for pfn in partial:
            cut = low_end % PAGE
            assert ours.read_pfn(pfn) == memory[pfn][:cut] + bytes(PAGE - cut)


@pytest.mark.parametrize("flags", [["-l"], ["-c"]])
def test_collect_keeps_the_partial_page(tmp_path: Path, flags: list[str]) -> None:
    """kdumpy collect -d 0 keeps pfn 0x9f: its bytes, then zeros past the segment (the
    collector's reader must not leave stale buffer bytes there)."""
    memory, loads, notes = low_and_high()
    src = tmp_path / "vmcore"
    src.write_bytes(elf_vmcore(loads, notes))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "kdumpy", "collect", "-d", "0", *flags,
                           str(src), str(out)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cut = LOW_END % PAGE
    with open_dump(out) as dump:
        assert dump.read_pfn(0x9F) == memory[0x9F][:cut] + bytes(PAGE - cut)
        assert dump.read_pfn(0x9E) == memory[0x9E]


# -- split sets ----------------------------------------------------------------------------


def write_set(tmp_path: Path, files: list[bytes]) -> list[Path]:
    paths = []
    for i, data in enumerate(files):
        paths.append(tmp_path / f"split.{i}")
        paths[-1].write_bytes(data)
    return paths


def test_split_set_starting_above_pfn_zero(tmp_path: Path) -> None:
    """RAM from pfn 0x100; the set's first file starts there, not at 0."""
    memory = mixed_pages(range(0x100, 0x200))
    paths = write_set(tmp_path, split_set(memory, 0x200, [0x100, 0x180, 0x200]))
    with open_dump(paths[::-1]) as dump:
        assert dump.format == "kdump-split"
        assert dump.warnings == ()
        assert dump.pfn_ranges() == [(0x100, 0x200)]
        pages, present = pfns(dump, 0x100, 0x100)
        assert present.all()
        assert pages.tobytes() == b"".join(memory[p] for p in range(0x100, 0x200))


@pytest.mark.parametrize("missing", [0, 1, 2])
def test_split_set_with_a_file_missing(tmp_path: Path, missing: int) -> None:
    bounds = [0, 0x80, 0x100, 0x180]
    memory = mixed_pages(range(0x10, 0x170))
    files = split_set(memory, 0x180, bounds, compression="zstd")
    paths = write_set(tmp_path, files)
    del paths[missing]
    lo, hi = bounds[missing], bounds[missing + 1]
    with open_dump(paths) as dump:
        assert dump.ram_ranges() == [(0x10, 0x170)]  # the bitmaps still say it existed
        pairs = zip(bounds, bounds[1:], strict=False)
        expect = [(max(0x10, a), min(0x170, b)) for a, b in pairs]
        del expect[missing]
        merged = []
        for a, b in expect:
            if merged and merged[-1][1] == a:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        assert dump.pfn_ranges() == merged
        (warning,) = dump.warnings
        count = min(hi, 0x170) - max(lo, 0x10)
        assert warning == (
            f"{paths[0]}: {count} dumped pages are in no file of the split set (page frames "
            f"{lo:#x}-{hi - 1:#x}): a file of the set is missing, they read as absent"
        )
        for pfn in (max(lo, 0x10), min(hi, 0x170) - 1):
            with pytest.raises(PageNotPresent):
                dump.read_pfn(pfn)
        for a, b in expect:
            pages, present = pfns(dump, a, b - a)
            assert present.all()
            assert pages.tobytes() == b"".join(memory[p] for p in range(a, b))


def test_one_file_of_a_split_set_alone(tmp_path: Path) -> None:
    memory = mixed_pages(range(0x100))
    files = split_set(memory, 0x100, [0, 0x40, 0x100])
    (path,) = write_set(tmp_path, files[1:])
    with open_dump(path) as dump:
        assert dump.pfn_ranges() == [(0x40, 0x100)]
        assert len(dump.warnings) == 1 and "0x0-0x3f" in dump.warnings[0]


def test_split_files_that_overlap(tmp_path: Path) -> None:
    memory = mixed_pages(range(0x100))
    a = split_set(memory, 0x100, [0, 0x80])[0]
    b = split_set(memory, 0x100, [0x40, 0x100])[0]
    paths = write_set(tmp_path, [a, b])
    with pytest.raises(DumpFormatError, match="inside .*split.0") as exc:
        open_dump(paths)
    assert str(exc.value).startswith(str(paths[1])) and "\n" not in str(exc.value)


def test_incomplete_split_set_is_said_by_collect_and_refused_by_reassemble(tmp_path: Path) -> None:
    bounds = [0, 0x80, 0x100, 0x180]
    kernel, info = kernel_memory(0x140)  # VMCOREINFO and what the collector reads
    memory = {**mixed_pages(range(0x10, 0x170)), **kernel}
    files = split_set(memory, 0x180, bounds, compression="zstd", notes=notes_segment(info))
    paths = write_set(tmp_path, files)
    del paths[1]
    kdumpy = [sys.executable, "-m", "kdumpy"]
    joined = tmp_path / "joined"
    proc = subprocess.run([*kdumpy, "collect", "--reassemble", *map(str, paths), str(joined)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0 and not joined.exists()
    assert proc.stderr.count("\n") == 1 and "cannot reassemble an incomplete set" in proc.stderr
    out = tmp_path / "refiltered"
    proc = subprocess.run([*kdumpy, "collect", "-d", "0", "-l", *map(str, paths[:1]), str(out)],
                          capture_output=True, text=True)  # fmt: skip
    # One file alone is a set with the others missing: collected, and said once.
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning:") == 1 and "a file of the set is missing" in proc.stderr
