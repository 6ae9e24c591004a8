"""Bad input and hostile destinations: one line on stderr naming the problem, non-zero exit.

The full-disk cases write to a small tmpfs mounted by the test (root is needed;
skipped otherwise).  Like makedumpfile, a dump cut short by ENOSPC is kept with
``DUMP_DH_COMPRESSED_INCOMPLETE`` (0x8) set in its header, and a retry list such
as ``-d 1,31`` moves on to the next dump level instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from collect_oracle import drgn_program, kdump_page, read_kdump, run_kdumpy, small_fs


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.vm
def test_missing_vmcoreinfo(lab_dump_61, tmp_path):
    # The head of a real vmcore (ELF header, notes) with the VMCOREINFO note renamed.
    with open(lab_dump_61.vmcore, "rb") as f:
        data = bytearray(f.read(1 << 16))
    at = data.find(b"VMCOREINFO\0")
    data[at : at + 10] = b"XMCOREINFO"
    src = tmp_path / "no-vmcoreinfo"
    src.write_bytes(bytes(data))
    proc = run_kdumpy("-l", "-d", "31", str(src), str(tmp_path / "out"))
    _one_line_error(proc, str(src), "VMCOREINFO")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "kdumpy-tmp" in p.name]


@pytest.mark.vm
def test_unknown_compression(lab_dump_61, tmp_path):
    proc = run_kdumpy("--compression", "lz77", str(lab_dump_61.vmcore), str(tmp_path / "out"))
    _one_line_error(proc, "lz77", "compression")
    assert not (tmp_path / "out").exists()


def test_not_a_dump_and_missing_source(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    _one_line_error(run_kdumpy(str(text), str(tmp_path / "o")), str(text), "not a crash dump")
    missing = tmp_path / "missing"
    _one_line_error(run_kdumpy(str(missing), str(tmp_path / "o")), str(missing))
    _one_line_error(run_kdumpy("-d", "40", str(text), str(tmp_path / "o")), "dump level 40")


@pytest.mark.vm
def test_unwritable_destination(lab_dump_61, tmp_path):
    dst = tmp_path / "no-such-dir" / "vmcore"
    _one_line_error(run_kdumpy("-l", str(lab_dump_61.vmcore), str(dst)), str(dst))
    if os.geteuid() == 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
        try:
            proc = run_kdumpy("-l", str(lab_dump_61.vmcore), str(ro / "vmcore"))
            _one_line_error(proc, str(ro / "vmcore"), "Read-only")
        finally:
            subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.vm
def test_full_disk_marks_the_dump_incomplete(lab_dump_61, tmp_path):
    with small_fs(tmp_path / "fs", "8m") as fs:
        dst = fs / "vmcore"
        proc = run_kdumpy("-l", "-d", "31", str(lab_dump_61.vmcore), str(dst))
        _one_line_error(proc, str(dst), "No space left", "incomplete")
        dump = read_kdump(dst)
        assert dump.status & 0x8, "DUMP_DH_COMPRESSED_INCOMPLETE not set"
        assert dump.status & 0x2  # still says lzo
        assert os.stat(dst).st_mode & 0o777 == 0o600
        assert not [p for p in fs.iterdir() if "kdumpy-tmp" in p.name]
        # What did get written is readable: the first kept page matches the source.
        # (Copied off the full tmpfs first: mapping its holes there raises SIGBUS.)
        copy = tmp_path / "incomplete"
        shutil.copyfile(dst, copy)
    # Pages written before the disk filled are intact; the rest are marked lost
    # (descriptor offset 0), which is how readers recognise an incomplete dump.
    src = drgn_program(Path(lab_dump_61.vmcore))
    kept = np.flatnonzero(dump.bitmap2)
    first, last = int(kept[0]), int(kept[-1])
    assert kdump_page(copy, first) == src.read(first * 4096, 4096, True)
    assert kdump_page(copy, last) is None


@pytest.mark.vm
def test_full_disk_retries_the_next_dump_level(lab_dump_61, tmp_path):
    # The filesystem is sized from this dump, not guessed: room for the -d 31 output with a
    # margin, but not for the -d 1 output (how compressible a fresh dump is varies by run).
    sizes = {}
    for level in ("1", "31"):
        probe = tmp_path / f"probe-{level}"
        assert run_kdumpy("-l", "-d", level, str(lab_dump_61.vmcore), str(probe)).returncode == 0
        sizes[level] = probe.stat().st_size
        probe.unlink()
    room = sizes["31"] + max(sizes["31"] // 4, 1 << 20)
    assert room < sizes["1"], f"-d 1 output ({sizes['1']}) would fit in {room} bytes"
    with small_fs(tmp_path / "fs", str(room)) as fs:
        dst = fs / "vmcore"
        proc = run_kdumpy("-l", "-d", "1,31", str(lab_dump_61.vmcore), str(dst))
        assert proc.returncode == 0, proc.stderr.decode()
        dump = read_kdump(dst)
        assert dump.dump_level == 31 and not dump.status & 0x8
        assert len(os.listdir(fs)) == 1


@pytest.mark.vm
def test_output_is_private(lab_dump_61, tmp_path):
    dst = tmp_path / "vmcore"
    old = os.umask(0)
    try:
        assert run_kdumpy("-l", str(lab_dump_61.vmcore), str(dst)).returncode == 0
    finally:
        os.umask(old)
    assert os.stat(dst).st_mode & 0o777 == 0o600
