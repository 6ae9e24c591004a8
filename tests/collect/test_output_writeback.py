"""FileSink syncs the dump file on a thread of its own as it writes (and starts its
writeback while a sync is in flight), so the disk works while later pages are compressed
and the final fsync has little left to wait for.

Oracle: the kernel's own count of the file's dirty pages (the ``cachestat`` system call,
Linux 6.5+): left alone they stay dirty for ``dirty_expire_centisecs`` (30 s by default),
synced or written back early they are clean within seconds.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from kdumpy.collect import _pagepack, output
from kdumpy.collect.output import WRITEBACK_EVERY, DiskFullError, FileSink
from kdumpy.errors import KdumpyError

SYS_CACHESTAT = 451  # the same number on x86_64 and arm64


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("cache", "dirty", "writeback", "evicted", "recently_evicted")]  # fmt: skip


def _dirty_pages(fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    stat = _Stat()
    if libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(_Range(0, 0)), ctypes.byref(stat), 0):
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            pytest.skip("this kernel has no cachestat (Linux 6.5+)")
        raise OSError(err, os.strerror(err))
    return int(stat.dirty)


def _write(sink: FileSink, nbytes: int) -> None:
    chunk = os.urandom(1 << 20)
    for off in range(0, nbytes, len(chunk)):
        sink.write_at(off, chunk)


def _wait_until_clean(sink: FileSink, most: int) -> int:
    """The file's dirty pages, once at most ``most`` or after 20 s."""
    deadline = time.monotonic() + 20
    dirty = _dirty_pages(sink.fd)
    while dirty > most and time.monotonic() < deadline:
        time.sleep(0.1)
        dirty = _dirty_pages(sink.fd)
    return dirty


def test_written_pages_go_to_disk_before_the_fsync(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    try:
        _write(sink, 8 * WRITEBACK_EVERY)
        written = 8 * WRITEBACK_EVERY // os.sysconf("SC_PAGE_SIZE")
        # All but the last WRITEBACK_EVERY bytes were synced or had their writeback started.
        dirty = _wait_until_clean(sink, written // 4)
        assert dirty <= written // 4, f"{dirty} of {written} pages still dirty"
        sink.commit()
    finally:
        sink.abort()
    assert (tmp_path / "vmcore").stat().st_size == 8 * WRITEBACK_EVERY


class SlowDisk:
    """os.fdatasync as FileSink's sync thread calls it, held until :meth:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: int = 0) -> None:
        self.syncs: list[int] = []
        self.gate = threading.Event()
        self.called = threading.Event()  # a sync reached the disk
        self.error = error
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            self.syncs.append(fd)
            self.called.set()
            self.gate.wait(20)
            if self.error:
                raise OSError(self.error, os.strerror(self.error))
            real(fd)

        monkeypatch.setattr(output.os, "fdatasync", fdatasync)

    def release(self) -> None:
        self.gate.set()


def test_one_sync_in_flight_and_writeback_started_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a capture kernel the writer never waits for the disk: a step that finds
    the sync still running starts the file's writeback instead."""
    calls: list[int] = []
    monkeypatch.setattr(output, "start_writeback", calls.append)
    disk = SlowDisk(monkeypatch)
    sink = FileSink(tmp_path / "a", drop_cache=False)
    _write(sink, 3 * WRITEBACK_EVERY + (1 << 20))  # returns while the first sync is held
    assert disk.called.wait(20)
    assert disk.syncs == [sink.fd]
    assert calls == [sink.fd] * 2
    disk.release()
    sink.commit()
    assert (tmp_path / "a").stat().st_size == 3 * WRITEBACK_EVERY + (1 << 20)


def test_a_capture_kernel_waits_for_the_previous_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a capture kernel the page cache must stay small: the step after a sync that has
    not finished waits for it, and no writeback is started on the side."""
    calls: list[int] = []
    monkeypatch.setattr(output, "start_writeback", calls.append)
    monkeypatch.setattr(output, "DROP_CACHE_EVERY", 1 << 20)
    disk = SlowDisk(monkeypatch)
    sink = FileSink(tmp_path / "b", drop_cache=True)
    sink.write_at(0, bytes(1 << 20))  # the first sync starts (and is held)
    writer = threading.Thread(target=sink.write_at, args=(1 << 20, bytes(1 << 20)))
    writer.start()
    writer.join(0.5)
    assert writer.is_alive(), "the second step did not wait for the first sync"
    disk.release()
    writer.join(20)
    assert not writer.is_alive()
    fd = sink.fd
    sink.commit()
    assert disk.syncs == [fd] * 2
    assert calls == []


def test_a_full_disk_met_by_a_sync_is_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync that fails on its thread fails the next step (or the commit) on the writer's."""
    disk = SlowDisk(monkeypatch, error=errno.ENOSPC)
    disk.release()
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    with pytest.raises(DiskFullError, match="No space left on device while syncing"):
        for _ in range(20):  # the first sync fails at once; a later step reports it
            _write(sink, WRITEBACK_EVERY)
            time.sleep(0.05)
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_an_error_left_by_the_last_sync_fails_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = SlowDisk(monkeypatch, error=errno.EIO)
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    _write(sink, WRITEBACK_EVERY)
    disk.release()
    with pytest.raises(KdumpyError, match="vmcore: fdatasync failed: Input/output error"):
        sink.commit()
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_seen_by_writeback_is_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output, "start_writeback", full)
    disk = SlowDisk(monkeypatch)  # the first step's sync is still running at the second
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    with pytest.raises(DiskFullError, match="No space left on device while writing back"):
        _write(sink, 2 * WRITEBACK_EVERY)
    disk.release()
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_cannot_be_written_back_early_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early start is advice: an error other than a full disk is left to the fsync."""

    def refuse(fd: int) -> None:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(output, "start_writeback", refuse)
    disk = SlowDisk(monkeypatch)
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    _write(sink, 3 * WRITEBACK_EVERY)
    disk.release()
    sink.commit()
    assert (tmp_path / "vmcore").stat().st_size == 3 * WRITEBACK_EVERY


def test_the_native_call_is_sync_file_range(tmp_path: Path) -> None:
    """The extension's start_writeback reaches the kernel: a pipe has no page cache to
    write back, and sync_file_range says so (ESPIPE)."""
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as err:
            _pagepack.start_writeback(w)
        assert err.value.errno == errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)
