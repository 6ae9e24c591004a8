"""Creating files and directories safely, for every layer (standard library only).

kdumpy runs as root and writes where other users may write: a 1777 ``/var/crash``, the
directory given to ``kdumpy dmesg -o``.  So a file is created with its final mode from the
first moment (never written first and chmod-ed after), never through a symbolic link
(``O_NOFOLLOW``) and never reused when it already exists (``O_EXCL``).  A file that must be
replaced is written under a fresh temporary name beside it and renamed over it: ``rename``
replaces a symbolic link planted at the name instead of following it.  Directories kdumpy
keeps (the state directory, the lock directory) must be its own: not a symbolic link, owned
by this user, and no one else may write or read them.

Errors are ``OSError`` (callers name the file and the problem in their own words) except
for an existing directory that belongs to someone else: :class:`UnsafePath`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kdumpy.errors import KdumpyError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# Opening a directory without following a symbolic link at its name.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_TRIES = 16


class UnsafePath(KdumpyError):
    """A directory kdumpy would use is a symbolic link or belongs to someone else."""


def create(path: str | Path, mode: int = PRIVATE_FILE, *, dir_fd: int | None = None) -> int:
    """A new file open for writing with exactly *mode*; FileExistsError if the name exists
    (a file, a directory or a symbolic link: nothing is followed or reused)."""
    fd = os.open(path, _NEW_FILE, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # the umask can only have removed bits the caller asked for
    except OSError:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def atomic_output(
    path: str | Path, mode: int = PRIVATE_FILE, *, dir_fd: int | None = None
) -> Iterator[BinaryIO]:
    """A new file under a fresh temporary name beside *path*, fsynced and renamed over
    *path* when the block ends without an exception (removed otherwise).  Readers see the
    old file or the new one, never a partial one."""
    directory, name = os.path.split(os.fspath(path))
    for _ in range(_TEMP_TRIES):
        # Unpredictable: nobody can plant the name in advance (O_EXCL would refuse it anyway).
        tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}")
        try:
            fd = create(tmp, mode, dir_fd=dir_fd)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def replace(
    path: str | Path, data: bytes, mode: int = PRIVATE_FILE, *, dir_fd: int | None = None
) -> None:
    """Write *path* atomically with *mode* (see :func:`atomic_output`)."""
    with atomic_output(path, mode, dir_fd=dir_fd) as out:
        out.write(data)


def private_dir(path: str | Path, mode: int = PRIVATE_DIR) -> Path:
    """*path* as a directory only this user can use: created with *mode*, or an existing
    one checked (a real directory owned by this user) and narrowed to *mode*.
    Missing parents are created as ``mkdir -p`` does.  UnsafePath if it is not ours."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    try:
        fd = os.open(path, DIR_FLAGS)
    except OSError as exc:
        raise UnsafePath(f"{path}: not a directory kdumpy can use ({exc.strerror})") from None
    try:
        owner = os.fstat(fd).st_uid
        if owner != os.geteuid():
            raise UnsafePath(f"{path}: owned by uid {owner}, not by us: refusing to use it")
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def fresh_dir(name: str, *, dir_fd: int, mode: int = PRIVATE_DIR, check_owner: bool = True) -> int:
    """Create directory *name* in *dir_fd* now and return a descriptor of it.

    FileExistsError if *name* exists in any form: a directory someone prepared is never
    reused.  With *check_owner*, the directory opened must be owned by this user (it is
    the one just made, not a replacement slipped in between ``mkdir`` and ``open``).
    """
    os.mkdir(name, mode, dir_fd=dir_fd)
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if check_owner and info.st_uid != os.geteuid():
            raise UnsafePath(f"{name}: replaced by uid {info.st_uid}'s directory after mkdir")
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd
