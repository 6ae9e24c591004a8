"""Every reader path without a VM (issue 16's fast tier for vmcore).

The dumps are built here by hand (tests/vmcore/builders.py) around a small kernel:
page tables, ``init_uts_ns``, ``mem_section``, a printk ring, PRSTATUS notes and
VMCOREINFO.  Oracles: the built memory itself; drgn 0.3.0 with libkdumpfile, which
reads kdump-compressed files of every compression on its own; makedumpfile 1.7.2,
which converts a kdump file back to ELF (``-d 0 -E``), rearranges a flattened stream
(``-R``) and prints the kernel log (``--dump-dmesg``) from the same files.  The VM
tests (test_interop.py, test_elf.py) run the same readers on real kernels' dumps.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.errors import DumpFormatError, PageNotPresent
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.dmesg import kernel_log
from kdumpy.vmcore.elf import ElfDump
from kdumpy.vmcore.source import FileSource

from .builders import (
    DIRECT_MAP,
    PAGE,
    START_KERNEL_MAP,
    KdumpLayout,
    Load,
    chunks,
    elf_vmcore,
    flattened,
    kdump_file,
    kernel_with_log,
    memory_loads,
    mixed_pages,
    note,
    notes_segment,
    split_set,
)
from .helpers import batches, consume, pfns

MESSAGES = [(5_000_000, b"Linux version 6.1.0-test"), (1_250_000_000, b"sysrq: Trigger a crash")]
LOG = b"[    0.005000] Linux version 6.1.0-test\n[    1.250000] sysrq: Trigger a crash\n"
RAM = range(0x100, 0x180)


@pytest.fixture(scope="module")
def kernel() -> tuple[dict[int, bytes], bytes]:
    """Memory (pages by pfn: a kernel at 0x100 and pages of every kind) and notes."""
    structures, info = kernel_with_log(0x100, MESSAGES)
    memory = mixed_pages(RAM)
    memory.update(structures)
    return memory, notes_segment(info, cpus=2)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def assert_memory(dump, memory: dict[int, bytes]) -> None:  # noqa: ANN001
    """The dump holds exactly ``memory``: same pfns, same bytes."""
    held = {p for s, e in dump.pfn_ranges() for p in range(s, e)}
    assert held == set(memory)
    for start, pages, present in batches(dump, batch=48):
        assert present.all()
        for i in range(len(pages)):
            assert pages[i].tobytes() == memory[start + i], f"pfn {start + i:#x}"


def tool(*args: str, stdin: Path | None = None) -> None:
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is not installed")
    with open(stdin or "/dev/null", "rb") as inp:
        proc = subprocess.run(args, stdin=inp, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr[-500:]


# -- ELF -----------------------------------------------------------------------------------


def test_elf_structure(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    memory, notes = kernel
    path = write(tmp_path / "vmcore", elf_vmcore(memory_loads(memory), notes))
    with open_dump(path) as dump:
        assert dump.format == "elf" and dump.page_size == PAGE
        assert [n.name for n in dump.notes] == ["CORE", "CORE", "VMCOREINFO"]
        assert [p.pid for p in dump.prstatus] == [100, 101]
        assert dump.prstatus[0].regs["ip"] == 0xFFFFFFFF81000000
        assert dump.vmcoreinfo.osrelease == "6.1.0-test"
        assert dump.max_pfn == RAM.stop and not dump.incomplete
        assert_memory(dump, memory)
        assert kernel_log(dump) == LOG


def test_elf_reads_agree_at_every_size(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    """read_phys and read_pfns, within a page, across pages, across PT_LOADs."""
    memory, notes = kernel
    loads = memory_loads({p: memory[p] for p in RAM if p % 32 != 31})  # four PT_LOADs
    flat = b"".join(memory[p] if p % 32 != 31 else bytes(PAGE) for p in RAM)
    path = write(tmp_path / "vmcore", elf_vmcore(loads, notes))
    with open_dump(path) as dump:
        assert len(dump.loads) == 4
        base = RAM.start * PAGE
        for at, size in [(8, 8), (PAGE - 4, 8), (3 * PAGE + 100, 5 * PAGE), (0, 31 * PAGE)]:
            assert dump.read_phys(base + at, size) == flat[at : at + size]
        with pytest.raises(PageNotPresent, match="not in the dump"):
            dump.read_phys(base + 30 * PAGE, 2 * PAGE)  # runs into the hole at 0x11f
        pages, present = pfns(dump, 0x11E, 3)
        assert present.tolist() == [True, False, True]
        assert pages[1].tobytes() == bytes(PAGE)


def test_elf_pread_fallback(tmp_path: Path, kernel, monkeypatch) -> None:  # noqa: ANN001
    """Where the kernel refuses mmap (old /proc/vmcore), reads fall back to pread."""
    memory, notes = kernel
    path = write(tmp_path / "vmcore", elf_vmcore(memory_loads(memory), notes))
    import mmap

    def refuse(*args: object, **kw: object) -> None:
        raise OSError("mmap refused")

    monkeypatch.setattr(mmap, "mmap", refuse)
    with open_dump(path) as dump:
        assert_memory(dump, memory)


def test_elf_kernel_text_segment_is_deduplicated(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    """/proc/vmcore repeats the kernel image in its own PT_LOAD (vaddr _text)."""
    memory, notes = kernel
    loads = memory_loads(memory)
    text = b"".join(memory[p] for p in range(0x100, 0x110))
    loads.insert(0, Load(0x100000, text, vaddr=START_KERNEL_MAP + 0x100000))
    for load in loads[1:]:
        load.vaddr = DIRECT_MAP + load.paddr
    path = write(tmp_path / "vmcore", elf_vmcore(loads, notes))
    with open_dump(path) as dump:
        assert len(dump.loads) == 2
        assert dump.extents == sorted(dump.extents, key=lambda e: e.start)
        pairs = zip(dump.extents, dump.extents[1:], strict=False)
        assert all(a.end <= b.start for a, b in pairs)
        assert_memory(dump, memory)
        assert dump.translator.page_offset == DIRECT_MAP  # from the PT_LOADs' vaddr
        assert dump.translator.phys_base == 0


def test_elf_pn_xnum_qemu_and_incomplete(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    memory, notes = kernel
    qemu = notes + note("QEMU", 0, bytes(8 + 8 * 18))
    path = write(tmp_path / "q", elf_vmcore(memory_loads(memory), qemu, pn_xnum=True,
                                            machine=3, flags=1))  # fmt: skip
    with open_dump(path) as dump:
        assert dump.format == "qemu-elf" and dump.incomplete and dump.machine == 3
        assert len(dump.qemu_cpu_states) == 1
        assert_memory(dump, memory)


# -- kdump-compressed ----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zlib", "lzo", "snappy", "zstd", "none"])
def test_kdump_every_compression(tmp_path: Path, kernel, compression: str) -> None:  # noqa: ANN001
    """Our reader and libkdumpfile (through drgn) both give back the built memory."""
    memory, notes = kernel
    path = write(tmp_path / "k", kdump_file(memory, RAM.stop, compression=compression,
                                            notes=notes))  # fmt: skip
    with open_dump(path) as dump:
        assert dump.format == "kdump" and dump.compression == compression
        assert dump.header.release == "6.1.0-test" and dump.dump_level == 1
        assert [p.pid for p in dump.prstatus] == [100, 101]
        assert_memory(dump, memory)
        assert kernel_log(dump) == LOG
        assert dump.read_virt(START_KERNEL_MAP + 0x120000, 16) == memory[0x120][:16]
    drgn = pytest.importorskip("drgn")
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    for pfn in list(memory)[::7]:
        assert prog.read(pfn * PAGE, PAGE, True) == memory[pfn]


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_kdump_older_header_versions(tmp_path: Path, kernel, version: int) -> None:  # noqa: ANN001
    """Fields appear version by version: VMCOREINFO's location from v3, notes from v4;
    max_mapnr_64 only in v6 (older versions use the 32-bit field)."""
    memory, notes = kernel
    path = write(tmp_path / "k", kdump_file(memory, RAM.stop, notes=notes, version=version))
    with open_dump(path) as dump:
        assert_memory(dump, memory)
        assert dump.has_vmcoreinfo == (version >= 3)
        assert len(dump.prstatus) == (2 if version >= 4 else 0)


def test_kdump_filtered_and_incomplete(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    """The 1st bitmap says what existed, the 2nd what was dumped; zeroed descriptors
    (the disk filled up) are absent pages of an incomplete dump."""
    memory, notes = kernel
    kept = {p: memory[p] for p in memory if p % 3}
    layout = KdumpLayout(0, 0, 0, 0)
    data = kdump_file(kept, RAM.stop, ram=RAM, notes=notes, compression="lzo",
                      incomplete_after=60, layout=layout, dump_level=31)  # fmt: skip
    path = write(tmp_path / "k", data)
    written = dict(list(sorted(kept.items()))[:60])
    with open_dump(path) as dump:
        assert dump.incomplete and dump.dump_level == 31
        assert dump.ram_ranges() == [(RAM.start, RAM.stop)]
        assert_memory(dump, written)
        last = max(written)
        with pytest.raises(PageNotPresent):
            dump.read_pfn(next(p for p in sorted(kept) if p > last))
        with pytest.raises(PageNotPresent):
            dump.read_pfn(0x102)  # excluded by the filter (pfn % 3 == 0)


def test_kdump_against_makedumpfile(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    """makedumpfile 1.7.2 reads our lzo file and re-filters it into a zlib one: what it
    decoded is the built memory, and so is what we read of either file."""
    memory, notes = kernel
    src = write(tmp_path / "k", kdump_file(memory, RAM.stop, notes=notes, compression="lzo"))
    out = tmp_path / "k.zlib"
    tool("makedumpfile", "-d", "1", "-c", str(src), str(out))
    with open_dump(src) as ours, open_dump(out) as mdf:
        assert mdf.compression == "zlib" and mdf.ram_ranges() == ours.ram_ranges()
        assert_memory(mdf, memory)


def test_kdump_bad_descriptor_size_is_one_line(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    memory, notes = kernel
    layout = KdumpLayout(0, 0, 0, 0)
    raw = bytearray(kdump_file(memory, RAM.stop, notes=notes, layout=layout))
    index = sorted(layout.descs).index(0x130)
    raw[layout.desc_offset + 24 * index + 8 : layout.desc_offset + 24 * index + 12] = (
        PAGE + 1
    ).to_bytes(4, "little")
    path = write(tmp_path / "k", bytes(raw))
    with open_dump(path) as dump, pytest.raises(DumpFormatError, match="pfn 0x130 has size"):
        dump.read_pfn(0x130)


# -- flattened and split -------------------------------------------------------------------


def test_flattened_kdump_equals_makedumpfile_R(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    """Records shuffled, holes left out, the sub header written twice (the later one
    wins): the stream reads as what ``makedumpfile -R`` rearranges it into."""
    memory, notes = kernel
    inner = kdump_file(memory, RAM.stop, notes=notes, compression="zlib")
    recs = chunks(inner, 3000, shuffle=7)
    recs.append((PAGE + 8, (31).to_bytes(4, "little")))  # dump_level rewritten
    path = write(tmp_path / "flat", flattened(recs))
    out = tmp_path / "rearranged"
    tool("makedumpfile", "-R", str(out), stdin=path)
    with open_dump(path) as dump, open_dump(out) as mdf:
        assert dump.format == "flattened-kdump" and dump.dump_level == mdf.dump_level == 31
        src = dump.parts[0].src
        assert src.read(0, src.size) == out.read_bytes()[: src.size]
        assert_memory(dump, memory)
        assert kernel_log(dump) == LOG


def test_flattened_elf(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    memory, notes = kernel
    elf = elf_vmcore(memory_loads(memory), notes)
    path = write(tmp_path / "flat", flattened(chunks(elf, 5000, shuffle=3, holes=False)))
    with open_dump(path) as dump:
        assert dump.format == "flattened-elf"
        assert_memory(dump, memory)


def test_split_set_in_any_order(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    memory, notes = kernel
    files = split_set(memory, RAM.stop, [0, 0x120, 0x150, RAM.stop], notes=notes,
                      compression="zstd")  # fmt: skip
    paths = [write(tmp_path / f"s{i}", f) for i, f in enumerate(files)]
    with open_dump([paths[2], paths[0], paths[1]]) as dump:
        assert dump.format == "kdump-split" and dump.warnings == ()
        assert [p.start_pfn for p in dump.parts] == [0, 0x120, 0x150]
        assert_memory(dump, memory)
        assert kernel_log(dump) == LOG


# -- the kernel log, against makedumpfile ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["elf", "kdump"])
def test_dmesg_matches_makedumpfile(tmp_path: Path, kernel, fmt: str) -> None:  # noqa: ANN001
    memory, notes = kernel
    data = (elf_vmcore(memory_loads(memory), notes) if fmt == "elf"
            else kdump_file(memory, RAM.stop, notes=notes, compression="lzo"))  # fmt: skip
    path = write(tmp_path / fmt, data)
    out = tmp_path / "dmesg.txt"
    tool("makedumpfile", "--dump-dmesg", str(path), str(out))
    with open_dump(path) as dump:
        assert kernel_log(dump) == out.read_bytes() == LOG


def test_consume_counts_every_page(tmp_path: Path, kernel) -> None:  # noqa: ANN001
    memory, notes = kernel
    path = write(tmp_path / "vmcore", elf_vmcore(memory_loads(memory), notes))
    with ElfDump(FileSource(path)) as dump:
        assert consume(dump) == len(memory)
