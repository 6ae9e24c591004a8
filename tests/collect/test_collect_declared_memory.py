"""ELF PT_LOADs that declare far more memory than the file holds (issue 17, finding 13).

A crafted header may claim a terabyte of RAM in ``p_memsz`` with a few MiB of data;
collect's time, memory and output must follow the file (and the mem_section it
carries), not the claim.  Like makedumpfile, memory that no memory map describes is
left out (max_mapnr clipped to the last memory map, even where the file holds data), with
one warning; without a memory map to clip to, data placed so high that its bitmaps would
outgrow the file is refused in one line.  The inputs are the hand-built fakecore vmcore
with its headers edited.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from fakecore import PAGE, FakeMachine

TIB = 1 << 40
_PHDR = struct.Struct("<IIQQQQQQ")


def _phdrs(data: bytes) -> list[list[int]]:
    phnum = struct.unpack_from("<H", data, 56)[0]
    return [list(_PHDR.unpack_from(data, 64 + i * _PHDR.size)) for i in range(phnum)]


def declare_memsz(path: Path, memsz: int) -> Path:
    """The last PT_LOAD claims ``memsz`` bytes of memory (its data unchanged)."""
    data = bytearray(path.read_bytes())
    phdrs = _phdrs(data)
    phdrs[-1][6] = memsz
    _PHDR.pack_into(data, 64 + (len(phdrs) - 1) * _PHDR.size, *phdrs[-1])
    path.write_bytes(bytes(data))
    return path


def add_load(path: Path, paddr: int, page: bytes) -> Path:
    """One more PT_LOAD holding ``page`` at physical address ``paddr`` (appended)."""
    data = bytearray(path.read_bytes())
    phdrs = _phdrs(data)
    note = next(p for p in phdrs if p[0] == 4)
    notes = bytes(data[note[2] : note[2] + note[5]])
    note[2] = 64 + (len(phdrs) + 1) * _PHDR.size  # the notes follow the program headers
    phdrs.append([1, 7, len(data), paddr, paddr, len(page), len(page), 0])
    head = b"".join(_PHDR.pack(*p) for p in phdrs) + notes
    first_data = min(p[2] for p in phdrs if p[0] == 1)
    assert 64 + len(head) <= first_data
    struct.pack_into("<H", data, 56, len(phdrs))
    data[64 : 64 + len(head)] = head
    path.write_bytes(bytes(data) + page)
    return path


def collect(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[bytes], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy", "collect", "--message-level", "4", *args],
        capture_output=True,
        timeout=timeout,
    )
    return proc, time.monotonic() - start


def peak_rss_kib(*args: str) -> int:
    """The child's own peak RSS (GNU time: a fork of pytest would report pytest's)."""
    with tempfile.NamedTemporaryFile("r") as report:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, sys.executable, "-m",
                        "kdumpy", "collect", "--message-level", "0", *args],
                       check=True, timeout=120)  # fmt: skip
        return int(report.read().split()[-1])


@pytest.fixture
def terabyte_claim(tmp_path: Path) -> Path:
    machine = FakeMachine(pages=2048)
    for pfn in range(1500, 1600):
        machine.put(pfn * PAGE, pfn.to_bytes(4, "little") * 64)
    return declare_memsz(machine.write(tmp_path / "claims-1TiB.elf"), TIB)


def test_declared_terabyte_costs_what_the_file_holds(terabyte_claim: Path, tmp_path: Path):
    """Before: -d 31 ran for a minute and wrote 64 MiB of bitmaps for an 8 MiB file."""
    size = terabyte_claim.stat().st_size
    out = tmp_path / "out"
    proc, seconds = collect("-l", "-d", "31", str(terabyte_claim), str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    warnings = [line for line in proc.stderr.decode().splitlines() if "warning" in line]
    assert len(warnings) == 1 and "treated as absent" in warnings[0], proc.stderr.decode()
    assert str(terabyte_claim) in warnings[0]
    # Time and output follow the input's bytes: startup plus a few ms per MiB of input.
    assert seconds < 5 + 1.0 * size / 2**20, seconds
    assert out.stat().st_size < size
    if Path("/usr/bin/time").exists():  # memory near an interpreter's with numpy
        assert peak_rss_kib("-l", "-d", "31", str(terabyte_claim), str(tmp_path / "o2")) < 120_000


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="no makedumpfile")
@pytest.mark.parametrize("level", ["0", "1"])
def test_declared_terabyte_same_as_makedumpfile(terabyte_claim: Path, tmp_path: Path, level: str):
    """makedumpfile clips max_mapnr to the last memory map the same way: same bytes."""
    ours, theirs = tmp_path / "kdumpy", tmp_path / "makedumpfile"
    proc, _ = collect("-l", "-d", level, str(terabyte_claim), str(ours))
    assert proc.returncode == 0, proc.stderr.decode()
    subprocess.run(["makedumpfile", "--message-level", "0", "-l", "-d", level,
                    str(terabyte_claim), str(theirs)], check=True, timeout=120)  # fmt: skip
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="no makedumpfile")
def test_data_far_above_the_memory_map_is_left_out(tmp_path: Path):
    """A page of data at 2 TiB, where no memory map describes memory: makedumpfile clips
    max_mapnr to the last memory map even when the file holds data beyond it, so that
    page is left out, and so does kdumpy (one warning, the same file, in moments).
    Before: refused (its 128 MiB of bitmaps outgrow this 8 MiB file); before that,
    minutes of work and a 128 MiB output."""
    src = add_load(FakeMachine(pages=2048).write(tmp_path / "far.elf"), 2 * TIB, b"\x5a" * PAGE)
    out, theirs = tmp_path / "out", tmp_path / "makedumpfile"
    proc, seconds = collect("-l", "-d", "1", str(src), str(out), timeout=60)
    err = proc.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 0 and len(lines) == 1 and "Traceback" not in err, err
    assert str(src) in lines[0] and "treated as absent" in lines[0]
    assert seconds < 30
    subprocess.run(["makedumpfile", "--message-level", "0", "-l", "-d", "1", str(src),
                    str(theirs)], check=True, capture_output=True)  # fmt: skip
    assert out.read_bytes() == theirs.read_bytes()
