"""FileSink starts the dump file's writeback as it writes (outside a capture kernel), so the
disk works while later pages are compressed and the final fsync has little left to wait for.

Oracle: the kernel's own count of the file's dirty pages (the ``cachestat`` system call,
Linux 6.5+): without the early start they stay dirty for ``dirty_expire_centisecs``
(30 s by default), with it they are written within seconds.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from pathlib import Path

import pytest

from kdumpy.collect import _pagepack, output
from kdumpy.collect.output import WRITEBACK_EVERY, DiskFullError, FileSink

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


def test_written_pages_go_to_disk_before_the_fsync(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    try:
        _write(sink, 8 * WRITEBACK_EVERY)
        written = 8 * WRITEBACK_EVERY // os.sysconf("SC_PAGE_SIZE")
        deadline = time.monotonic() + 20
        dirty = _dirty_pages(sink.fd)
        # All but the last WRITEBACK_EVERY bytes had their writeback started.
        while dirty > written // 4 and time.monotonic() < deadline:
            time.sleep(0.1)
            dirty = _dirty_pages(sink.fd)
        assert dirty <= written // 4, f"{dirty} of {written} pages still dirty"
        sink.commit()
    finally:
        sink.abort()
    assert (tmp_path / "vmcore").stat().st_size == 8 * WRITEBACK_EVERY


def test_writeback_started_every_step_and_not_in_a_capture_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(output, "start_writeback", calls.append)
    sink = FileSink(tmp_path / "a", drop_cache=False)
    _write(sink, 3 * WRITEBACK_EVERY + (1 << 20))
    assert calls == [sink.fd] * 3
    sink.commit()
    calls.clear()
    # A capture kernel syncs and drops every DROP_CACHE_EVERY bytes instead.
    sink = FileSink(tmp_path / "b", drop_cache=True)
    _write(sink, 3 * WRITEBACK_EVERY)
    assert calls == []
    sink.commit()


def test_a_full_disk_seen_by_writeback_is_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output, "start_writeback", full)
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    with pytest.raises(DiskFullError, match="No space left on device while writing back"):
        _write(sink, WRITEBACK_EVERY)
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_cannot_be_written_back_early_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early start is advice: an error other than a full disk is left to the fsync."""

    def refuse(fd: int) -> None:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(output, "start_writeback", refuse)
    sink = FileSink(tmp_path / "vmcore", drop_cache=False)
    _write(sink, 2 * WRITEBACK_EVERY)
    sink.commit()
    assert (tmp_path / "vmcore").stat().st_size == 2 * WRITEBACK_EVERY


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
