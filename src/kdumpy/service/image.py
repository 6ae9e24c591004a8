"""The content of an initramfs before it is written: a map of archive path -> entry.

Collecting first and writing last lets the builder add the same library twice (ldd of
several binaries) without duplicates, creates parent directories automatically, and
writes a compressed cpio under a temporary name that is renamed only when complete.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from kdumpy.errors import KdumpyError
from kdumpy.fileio import PRIVATE_FILE, atomic_output
from kdumpy.service.cpio import CpioWriter


@dataclass(frozen=True)
class Entry:
    kind: str  # "file", "dir", "symlink", "chardev"
    mode: int = 0o644
    source: Path | None = None  # file content read from here at write time...
    data: bytes | None = None  # ...or given here
    target: str = ""  # symlink target
    rdev: tuple[int, int] = (0, 0)
    strip: bool = False  # ELF: drop symbols and debug info on the way in

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.source is not None
        if self.strip and shutil.which("strip"):
            return _stripped(self.source)
        return self.source.read_bytes()


def _stripped(source: Path) -> bytes:
    """The file without symbols (strip --strip-unneeded): often a fraction of the size."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stripped"
        proc = subprocess.run(
            ["strip", "--strip-unneeded", "-o", str(out), str(source)],
            capture_output=True,
            check=False,
        )
        data = out.read_bytes() if proc.returncode == 0 else b""
    # strip can break libraries patchelf has rewritten (wheels' *.libs): keep the original.
    return data if data and loadable(data) else source.read_bytes()


def loadable(elf: bytes) -> bool:
    """Every PT_LOAD segment is page-congruent (offset = vaddr mod 4096), as ld.so requires."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return True  # not a 64-bit ELF: nothing to check
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, offset, vaddr = struct.unpack_from("<IIQQ", elf, phoff + i * phentsize)
        if p_type == 1 and (vaddr - offset) % 4096:
            return False
    return True


class Image:
    """An initramfs under construction."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.written = 0

    def __contains__(self, path: str) -> bool:
        return os.path.normpath("/" + path.strip("/")) in self.entries

    def _put(self, path: str, entry: Entry) -> None:
        path = os.path.normpath("/" + path.strip("/"))
        parent = os.path.dirname(path)
        if parent != "/" and parent not in self.entries:
            self.add_dir(parent)
        self.entries.setdefault(path, entry)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._put(path, Entry("dir", mode))

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._put(path, Entry("file", mode, data=data))

    def add_host_file(
        self, src: str | Path, dest: str | None = None, mode: int | None = None, strip: bool = False
    ) -> None:
        """Copy a host file (symlinks followed) to ``dest`` (default: the same path)."""
        real = Path(src).resolve()
        if not real.is_file():
            raise KdumpyError(f"{src}: not a file, cannot put it in the initramfs")
        file_mode = real.stat().st_mode & 0o7777 if mode is None else mode
        self._put(dest or str(src), Entry("file", file_mode, source=real, strip=strip))

    def add_symlink(self, path: str, target: str) -> None:
        self._put(path, Entry("symlink", target=target))

    def add_chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._put(path, Entry("chardev", mode, rdev=(major, minor)))

    def file_size(self) -> int:
        """Total bytes of file content written (what the unpacked initramfs occupies)."""
        return self.written

    def write_cpio(self, out: BinaryIO) -> None:
        """Write the entries as an uncompressed newc archive, parents before children."""
        cpio = CpioWriter(out)
        self.written = 0
        for path in sorted(self.entries):
            e = self.entries[path]
            if e.kind == "dir":
                cpio.add_dir(path, e.mode)
            elif e.kind == "file":
                data = e.content()
                self.written += len(data)
                cpio.add_file(path, data, e.mode)
            elif e.kind == "symlink":
                cpio.add_symlink(path, e.target)
            else:
                cpio.add_chardev(path, *e.rdev, mode=e.mode)
        cpio.finish()

    def write(self, dest: Path, compression: str = "zstd") -> str:
        """Write the compressed archive atomically; return its sha256.

        The archive may hold the ssh dump key: its temporary file is 0600 from the moment
        it exists (O_EXCL|O_NOFOLLOW), so no one else can open it while it is written."""
        with atomic_output(dest, PRIVATE_FILE) as raw, _compressor(raw, compression) as out:
            self.write_cpio(out)
        return hashlib.sha256(dest.read_bytes()).hexdigest()


@contextlib.contextmanager
def _compressor(raw: BinaryIO, compression: str) -> Iterator[BinaryIO]:
    """A write stream compressing into ``raw``, in a format the kernel's unpacker knows."""
    if compression == "zstd":
        # Level 3 (dracut's default): level 12 took 30 s natively and minutes under TCG
        # for a few per cent smaller output.
        cctx = zstandard.ZstdCompressor(level=3, threads=-1)
        with cctx.stream_writer(raw, closefd=False) as writer:
            yield writer
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
            yield gz  # type: ignore[misc]
    elif compression == "none":
        yield raw
    else:
        raise KdumpyError(f"unknown initramfs compression {compression!r}")
