"""FileSink drops the dump's pages from the page cache as it writes (fdatasync, then
posix_fadvise DONTNEED, on the sync thread every DROP_CACHE_EVERY bytes, and at commit):
a capture kernel's small reservation must not fill with a multi-gigabyte dump's dirty
and cached pages.

Oracles: the bytes the test wrote (the file is unchanged by the advice), makedumpfile's
file from the same vmcore, and util-linux's ``fincore`` for what stays resident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fakecore import PAGE, FakeMachine

from kdumpy.collect import output
from kdumpy.collect.collector import PAGE_BATCH, collect
from kdumpy.collect.options import CollectOptions
from kdumpy.collect.output import FileSink
from kdumpy.vmcore.kdump_writer import FLUSH_BYTES


class Calls:
    """os.fdatasync and os.posix_fadvise as FileSink calls them (the real ones still run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple] = []
        real_sync, real_advise = os.fdatasync, os.posix_fadvise

        def fdatasync(fd: int) -> None:
            self.log.append(("fdatasync", fd))
            real_sync(fd)

        def posix_fadvise(fd: int, offset: int, length: int, advice: int) -> None:
            self.log.append(("fadvise", fd, offset, length, advice))
            real_advise(fd, offset, length, advice)

        monkeypatch.setattr(output.os, "fdatasync", fdatasync)
        monkeypatch.setattr(output.os, "posix_fadvise", posix_fadvise)

    def drops(self) -> int:
        """DONTNEED calls over the whole file while writing, each right after an
        fdatasync (commit's own follows its fsync)."""
        n = 0
        for prev, call in zip(self.log, self.log[1:], strict=False):
            if call[0] == "fadvise" and prev[0] == "fdatasync":
                assert call[2:] == (0, 0, os.POSIX_FADV_DONTNEED), self.log
                n += 1
        return n


def _resident_pages(path: Path) -> int | None:
    if shutil.which("fincore") is None:
        return None
    out = subprocess.run(["fincore", "-b", "-n", "-o", "PAGES", str(path)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return int(out.stdout.split()[0])


def test_writes_are_dropped_every_few_mib_and_the_file_is_unchanged(tmp_path, monkeypatch):
    calls = Calls(monkeypatch)
    monkeypatch.setattr(output, "DROP_CACHE_EVERY", 1 << 20)
    dest = tmp_path / "vmcore"
    sink = FileSink(dest, drop_cache=True)
    expected = bytearray()
    chunk = bytes(range(256)) * 1024  # 256 KiB
    for i in range(12):  # 3 MiB by pwrite, then 3 MiB by pwritev
        data = bytes([i]) + chunk[1:]
        sink.write_at(len(expected), data)
        expected += data
    for i in range(12):
        parts = [bytes([i, 0xAA]) * 512, chunk[: 256 * 1024 - 1024]]
        sink.writev_at(len(expected), parts)
        expected += b"".join(parts)
    sink.write_at(0, b"HEADER")  # a rewrite of block 0, as mark_incomplete does
    expected[:6] = b"HEADER"
    sink.commit()
    assert calls.drops() == 6  # 6 MiB written, one sync and drop per MiB (on their thread)
    assert calls.log[-1] == ("fadvise", calls.log[-1][1], 0, 0, os.POSIX_FADV_DONTNEED)
    # Dropped at commit; tmpfs keeps its pages whatever the advice (no backing store).
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(dest)], capture_output=True, text=True)
    resident = _resident_pages(dest)  # before reading it back, which caches it again
    if resident is not None and fs.stdout.strip() != "tmpfs":
        assert resident == 0, resident
    assert dest.read_bytes() == expected
    assert sink.bytes_written == len(expected) + 6


def test_collect_output_is_makedumpfiles_while_pages_are_dropped(tmp_path, monkeypatch):
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    machine = FakeMachine(pages=4096)
    for pfn in range(1600, 4096):  # ~10 MiB of pages that do not compress
        machine.put(pfn * PAGE, os.urandom(PAGE))
    vmcore = machine.write(tmp_path / "src")
    calls = Calls(monkeypatch)
    monkeypatch.setattr(output, "DROP_CACHE_EVERY", 256 << 10)
    monkeypatch.setattr(output, "VMCORE", str(vmcore))  # as if this were a capture kernel
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    collect(str(vmcore), str(ours), CollectOptions(dump_levels=[1], compression="lzo"))
    subprocess.run(["makedumpfile", "-l", "--message-level", "0", "-d", "1", str(vmcore),
                    str(theirs)], check=True, capture_output=True)  # fmt: skip
    assert ours.read_bytes() == theirs.read_bytes()
    # The writer hands the sink a batch of pages (PAGE_BATCH: 2 MiB that do not compress)
    # or more than FLUSH_BYTES at a time; a drop follows each once 256 KiB are unsynced.
    batch = PAGE_BATCH * PAGE
    assert calls.drops() >= ours.stat().st_size // (max(batch, FLUSH_BYTES) + (256 << 10)) >= 2


def test_outside_a_capture_kernel_pages_are_synced_but_stay_cached(tmp_path, monkeypatch):
    """On a running system (no /proc/vmcore) the file is synced as it is written but its
    pages are not dropped: the machine has memory, and the dump is often read right away."""
    calls = Calls(monkeypatch)
    monkeypatch.setattr(output, "DROP_CACHE_EVERY", 1 << 20)
    monkeypatch.setattr(output, "VMCORE", str(tmp_path / "no-vmcore"))
    sink = FileSink(tmp_path / "vmcore")
    sink.write_at(0, bytes(output.WRITEBACK_EVERY))
    sink.commit()
    assert [c[0] for c in calls.log] == ["fdatasync"]
    assert (tmp_path / "vmcore").stat().st_size == output.WRITEBACK_EVERY
