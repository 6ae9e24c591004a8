"""Reading crash dumps: ELF (/proc/vmcore, QEMU), kdump-compressed, flattened, split sets.

    from kdumpy.vmcore import open_dump
    with open_dump(path) as dump:
        dump.vmcoreinfo.symbol("init_top_pgt"), dump.read_phys(pa, n), dump.read_virt(va, n)

The format is recognised from the file's first bytes, never from its name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.base import Dump
from kdumpy.vmcore.notes import Note, PrStatus
from kdumpy.vmcore.source import ByteSource, FileSource
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

__all__ = ["Dump", "Note", "PrStatus", "VmcoreInfo", "detect_format", "open_dump"]

PathLike = str | os.PathLike[str]


def detect_format(src: ByteSource) -> str:
    """``"elf"``, ``"kdump"``, ``"flattened"`` from the file's magic, or a one-line error."""
    head = src.read(0, 16)
    if head[:4] == b"\x7fELF":
        return "elf"
    if head[:8] in (b"KDUMP   ", b"DISKDUMP"):
        return "kdump"
    if head[:13] == b"makedumpfile\0":
        return "flattened"
    raise DumpFormatError(f"{src.path}: not a crash dump (unknown magic {bytes(head[:8])!r})")


def _open_source(src: ByteSource) -> Dump:
    """A dump reader over ``src`` (recursing once through a flattened layer)."""
    kind = detect_format(src)
    if kind == "elf":
        from kdumpy.vmcore.elf import ElfDump

        return ElfDump(src, "elf" if isinstance(src, FileSource) else "flattened-elf")
    if kind == "kdump":
        from kdumpy.vmcore.diskdump import KdumpDump

        return KdumpDump([src], "kdump" if isinstance(src, FileSource) else "flattened-kdump")
    from kdumpy.vmcore.flattened import FlattenedSource

    inner = FlattenedSource(src)
    if detect_format(inner) == "flattened":
        raise DumpFormatError(f"{src.path}: flattened file contains another flattened file")
    return _open_source(inner)


def open_dump(path: PathLike | Sequence[PathLike]) -> Dump:
    """Open a dump file, or the files of a ``makedumpfile --split`` set (a list of paths)."""
    if isinstance(path, str | os.PathLike):
        paths = [path]
    else:
        paths = list(path)
        if not paths:
            raise DumpFormatError("open_dump: no dump files given")
    sources: list[ByteSource] = []
    try:
        for p in paths:
            src: ByteSource = FileSource(p)
            sources.append(src)
            if detect_format(src) == "flattened":
                from kdumpy.vmcore.flattened import FlattenedSource

                src = FlattenedSource(src)
                sources[-1] = src
        if len(sources) == 1:
            return _open_source(sources[0])
        from kdumpy.vmcore.diskdump import KdumpDump

        for src in sources:
            if detect_format(src) != "kdump":
                raise DumpFormatError(f"{src.path}: split sets must be kdump-compressed files")
        return KdumpDump(sources, "kdump-split")
    except BaseException:
        for src in sources:
            src.close()
        raise
