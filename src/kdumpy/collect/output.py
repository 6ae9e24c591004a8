"""Where a dump is written: a file created under a temporary name, or a stream.

:class:`FileSink` creates ``.NAME.kdumpy-XXXXXX`` next to the destination with mode
0600, writes at offsets with ``pwrite``, and on :meth:`commit` fsyncs the file, renames
it into place and fsyncs the directory, so a crash mid-way never leaves a
half-written file under the final name.  A full filesystem becomes
:class:`DiskFullError`; the collector then marks the dump incomplete (as makedumpfile
does) and still moves it into place, because a partial dump is worth keeping.

In a capture kernel the file's pages leave the page cache as they are written: every
:data:`DROP_CACHE_EVERY` bytes the file is fdatasync'ed and ``posix_fadvise(DONTNEED)``'ed.
A capture kernel runs in the crashkernel reservation (100-odd MiB); a dump of gigabytes
written through the page cache fills it with dirty and then clean pages of a file nobody
reads back, and a small reservation then ends in the OOM killer or in stalls on writeback.
Elsewhere (``kdumpy collect`` on a running system, with memory to spare) the synchronous
writeback would only slow the collector down: every :data:`WRITEBACK_EVERY` bytes the
file's writeback is started without waiting for it, so the disk writes while the next
pages are compressed and the final fsync has only the last of them left (left alone,
the kernel writes nothing below its background threshold, gigabytes here, until that
fsync: the whole output's disk time came after the collection's CPU time).
"""

from __future__ import annotations

import contextlib
import errno
import os

from kdumpy.errors import KdumpyError

try:
    from kdumpy.collect._pagepack import start_writeback
except ImportError:  # built without the C extension: writeback is left to the kernel
    from kdumpy.collect.fallback import start_writeback

IOV_MAX = 1024
DROP_CACHE_EVERY = 8 << 20  # bytes written between two fdatasync + DONTNEED
WRITEBACK_EVERY = 4 << 20  # bytes written between two starts of writeback (not in a capture)
# The kernel creates /proc/vmcore only in a capture kernel (is_kdump_kernel()).
VMCORE = "/proc/vmcore"


def _create_temporary(directory: str, base: str) -> tuple[int, str]:
    """A new file ``.BASE.RANDOM.kdumpy-tmp`` in ``directory``, as ``tempfile.mkstemp``
    makes it (exclusive, mode 0600, never through a symlink), without importing tempfile
    (with shutil, random, bz2 and lzma: milliseconds before the first page)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = os.path.join(directory, f".{base}.{os.urandom(6).hex()}.kdumpy-tmp")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", directory)


class DiskFullError(KdumpyError):
    """The destination filesystem ran out of space (ENOSPC/EDQUOT/EFBIG)."""


class FileSink:
    """Random-access writes to a temporary file that becomes ``path`` when complete."""

    def __init__(self, path: str | os.PathLike[str], drop_cache: bool | None = None) -> None:
        """*drop_cache*: drop written pages from the page cache as they go (see the module
        docstring); by default only in a capture kernel."""
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        base = os.path.basename(self.path) or "vmcore"
        if os.path.isdir(self.path):
            raise KdumpyError(f"{self.path}: is a directory")
        try:
            fd, self.tmp_path = _create_temporary(directory, base)
        except OSError as exc:
            raise KdumpyError(f"{self.path}: cannot create the dump file: {exc.strerror}") from None
        os.fchmod(fd, 0o600)
        self.fd = fd
        self.bytes_written = 0
        self.size = 0
        self._unsynced = 0  # bytes written since the page cache was last dropped
        self.drop_cache = os.path.exists(VMCORE) if drop_cache is None else drop_cache
        self._unstarted = 0  # bytes written since writeback was last started

    def _wrote(self, n: int) -> None:
        self.bytes_written += n
        self._unsynced += n
        self._unstarted += n
        if self.drop_cache:
            if self._unsynced >= DROP_CACHE_EVERY:
                self._drop_cache()
        elif self._unstarted >= WRITEBACK_EVERY:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Let the disk start on what is written so far (not waited for: the final fsync
        reports any write error)."""
        self._unstarted = 0
        try:
            start_writeback(self.fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFullError(f"{self.path}: {exc.strerror} while writing back") from None

    def _drop_cache(self) -> None:
        """Write back what is dirty and drop the file's pages from the page cache
        (DONTNEED drops only clean pages: the fdatasync first makes them clean)."""
        self._unsynced = 0
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            # Delayed allocation: a full filesystem may show only now.
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFullError(f"{self.path}: {exc.strerror} while syncing") from None
            raise KdumpyError(f"{self.path}: fdatasync failed: {exc.strerror}") from None
        # Advice only: a filesystem that cannot drop the pages still holds a correct file.
        with contextlib.suppress(OSError):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``offset``; :class:`DiskFullError` if space runs out."""
        view = memoryview(data).cast("B")
        while view:
            try:
                n = os.pwrite(self.fd, view, offset)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise DiskFullError(f"{self.path}: {exc.strerror}") from None
                raise KdumpyError(f"{self.path}: write failed: {exc.strerror}") from None
            view = view[n:]
            offset += n
            self.size = max(self.size, offset)
            self._wrote(n)

    def writev_at(self, offset: int, parts: list[bytes]) -> None:
        """Write ``parts`` back to back at ``offset`` (``pwritev``, no joining copy)."""
        i = 0
        while i < len(parts):
            batch = parts[i : i + IOV_MAX]
            total = sum(len(p) for p in batch)
            try:
                n = os.pwritev(self.fd, batch, offset)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise DiskFullError(f"{self.path}: {exc.strerror}") from None
                raise KdumpyError(f"{self.path}: write failed: {exc.strerror}") from None
            if n < total:  # short write: finish this batch the slow way
                self._wrote(n)
                self.write_at(offset + n, b"".join(batch)[n:])
            else:
                self.size = max(self.size, offset + n)
                self._wrote(n)
            offset += total
            i += IOV_MAX

    def commit(self) -> None:
        """fsync, drop the file's last pages from the page cache, rename into place, fsync
        the directory."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"{self.path}: {exc.strerror} while syncing") from None
            raise KdumpyError(f"{self.path}: fsync failed: {exc.strerror}") from None
        if self.drop_cache:
            with contextlib.suppress(OSError):
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(self.fd)
        self.fd = -1
        try:
            os.rename(self.tmp_path, self.path)
        except OSError as exc:
            raise KdumpyError(
                f"{self.path}: cannot rename the finished dump: {exc.strerror}"
            ) from None
        dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def abort(self) -> None:
        """Remove the temporary file (nothing appears under the final name)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)
