"""Where a dump is written: a file created under a temporary name, or a stream.

:class:`FileSink` creates ``.NAME.kdumpy-XXXXXX`` next to the destination with mode
0600, writes at offsets with ``pwrite``, and on :meth:`commit` fsyncs the file, renames
it into place and fsyncs the directory, so a crash mid-way never leaves a
half-written file under the final name.  A full filesystem becomes
:class:`DiskFullError`; the collector then marks the dump incomplete (as makedumpfile
does) and still moves it into place, because a partial dump is worth keeping.

Every few MiB written, the file is fdatasync'ed on a thread of its own
(:class:`SyncBehind`) while the collector compresses the next pages, so the disk, and the
volatile cache a disk or a VM's host keeps, is flushed as the dump is made instead of all
in the final fsync (3 GiB at ``-d 31``, 32 MB of output: that fsync took 22 ms of a
190 ms collection although ``sync_file_range`` had started the writeback all along).
One sync is in flight at a time; the thread waits on the disk, not on a CPU, so a
capture kernel's single CPU gains as much.

In a capture kernel the synced pages also leave the page cache (``posix_fadvise
DONTNEED`` after each sync, every :data:`DROP_CACHE_EVERY` bytes, and the writer waits
for the previous sync before it starts the next): a capture kernel runs in the
crashkernel reservation (100-odd MiB); a dump of gigabytes written through the page
cache fills it with dirty and then clean pages of a file nobody reads back, and a small
reservation then ends in the OOM killer or in stalls on writeback.  Elsewhere
(``kdumpy collect`` on a running system, with memory to spare) the writer never waits:
every :data:`WRITEBACK_EVERY` bytes it starts a sync, or, with one still in flight, the
file's writeback (``sync_file_range``: left alone, the kernel writes nothing below its
background threshold, gigabytes here, until the final fsync).
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import os

from kdumpy.errors import KdumpyError

try:
    from kdumpy.collect._pagepack import start_writeback
except ImportError:  # built without the C extension: writeback is left to the kernel
    from kdumpy.collect.fallback import start_writeback

IOV_MAX = 1024
DROP_CACHE_EVERY = 8 << 20  # bytes written between two syncs + DONTNEED (a capture kernel)
WRITEBACK_EVERY = 4 << 20  # bytes written between two syncs or writeback starts (elsewhere)
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


class SyncBehind:
    """fdatasync of one file on a thread of its own, one at a time: :meth:`start` returns
    at once, :meth:`wait` waits for the sync in flight and raises what it failed with.

    ``_thread``, not ``threading``: a lock and a thread are all this needs, and threading's
    import is half a millisecond of every collect.
    """

    def __init__(self, fd: int, drop_cache: bool) -> None:
        self.fd = fd
        self.drop_cache = drop_cache  # also drop the synced pages from the page cache
        self._idle = _thread.allocate_lock()  # held while a sync is in flight
        self._error: OSError | None = None

    @property
    def busy(self) -> bool:
        return self._idle.locked()

    def start(self) -> None:
        """Sync what is written so far, unless a sync is in flight."""
        if self._idle.acquire(blocking=False):
            try:
                _thread.start_new_thread(self._run, ())
            except BaseException:
                self._idle.release()
                raise

    def _run(self) -> None:
        try:
            os.fdatasync(self.fd)
            if self.drop_cache:  # DONTNEED drops only clean pages: the sync made them so
                with contextlib.suppress(OSError):
                    os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            self._error = exc
        finally:
            self._idle.release()

    def wait(self) -> None:
        """Wait for the sync in flight (none: return at once); raise its error."""
        with self._idle:
            error, self._error = self._error, None
        if error is not None:
            raise error


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
        self.drop_cache = os.path.exists(VMCORE) if drop_cache is None else drop_cache
        self._unsynced = 0  # bytes written since the last sync (or writeback) started
        self._every = DROP_CACHE_EVERY if self.drop_cache else WRITEBACK_EVERY
        self._sync = SyncBehind(fd, self.drop_cache)

    def _wrote(self, n: int) -> None:
        self.bytes_written += n
        self._unsynced += n
        if self._unsynced < self._every:
            return
        self._unsynced = 0
        if self._sync.busy and not self.drop_cache:
            self._start_writeback()
            return
        # Returns at once unless a capture kernel's sync is still running (waiting keeps
        # its page cache to two steps of the file); an error the last sync met is raised.
        self._wait_sync()
        self._sync.start()

    def _wait_sync(self) -> None:
        """Wait for the sync in flight; its error as this file's."""
        try:
            self._sync.wait()
        except OSError as exc:
            # Delayed allocation: a full filesystem may show only now.
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFullError(f"{self.path}: {exc.strerror} while syncing") from None
            raise KdumpyError(f"{self.path}: fdatasync failed: {exc.strerror}") from None

    def _start_writeback(self) -> None:
        """Let the disk start on what is written since the sync in flight began (not
        waited for: the final fsync reports any write error)."""
        try:
            start_writeback(self.fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFullError(f"{self.path}: {exc.strerror} while writing back") from None

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
        self._wait_sync()
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
            with contextlib.suppress(OSError):
                self._sync.wait()  # before the descriptor is closed (and its number reused)
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)
