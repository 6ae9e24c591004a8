"""Independent readers used as oracles by the collector tests.

Nothing here imports kdumpy: the kdump-compressed bitmaps are parsed straight from
the on-disk layout (makedumpfile's diskdump_mod.h, format.md 1.2-1.4), VMCOREINFO
comes from the ELF note via pyelftools, and memory (page data, struct pages in the
vmemmap) is read through drgn 0.3.0 (its bundled libkdumpfile).
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class KdumpFile:
    """The parts of a kdump-compressed file the tests compare."""

    status: int
    block_size: int
    max_mapnr: int
    dump_level: int
    split: int
    bitmap1: np.ndarray  # bool per pfn
    bitmap2: np.ndarray


def read_kdump(path: Path) -> KdumpFile:
    with open(path, "rb") as f:
        head = f.read(464)
        assert head[:8] == b"KDUMP   ", f"{path}: not kdump-compressed"
        status, block_size, sub_hdr_size, bitmap_blocks, max32 = struct.unpack_from(
            "<IiiII", head, 0x1A8
        )
        f.seek(block_size)
        sub = f.read(104)
        dump_level, split = struct.unpack_from("<ii", sub, 8)
        max_mapnr = struct.unpack_from("<Q", sub, 0x60)[0] or max32
        f.seek((1 + sub_hdr_size) * block_size)
        bitmaps = np.frombuffer(f.read(bitmap_blocks * block_size), dtype=np.uint8)
    half = bitmaps.size // 2
    bits1 = np.unpackbits(bitmaps[:half], bitorder="little")[:max_mapnr].astype(bool)
    bits2 = np.unpackbits(bitmaps[half:], bitorder="little")[:max_mapnr].astype(bool)
    return KdumpFile(status, block_size, max_mapnr, dump_level, split, bits1, bits2)


def vmcoreinfo(vmcore: Path) -> dict[str, str]:
    """``KEY=VALUE`` entries of the VMCOREINFO note of an ELF vmcore."""
    from elftools.elf.elffile import ELFFile

    with open(vmcore, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg.header.p_type != "PT_NOTE":
                continue
            for note in seg.iter_notes():
                if note.n_name == "VMCOREINFO":
                    desc = note.n_desc
                    text = desc if isinstance(desc, str) else bytes(desc).decode("ascii", "replace")
                    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    raise AssertionError(f"{vmcore}: no VMCOREINFO note")


def number(info: dict[str, str], key: str) -> int | None:
    value = info.get(key)
    return None if value is None else int(value, 0) if value.startswith("0x") else int(value)


def drgn_program(path: Path):  # noqa: ANN201 - drgn.Program
    import drgn

    prog = drgn.Program()
    prog.set_core_dump(str(path))
    return prog


def struct_pages(vmcore: Path, max_pfn: int) -> tuple[np.ndarray, dict[str, str], int]:
    """Every ``struct page`` (uint8 ``[max_pfn + 1, SIZE(page)]``) read through drgn,
    the VMCOREINFO entries and the vmemmap base.

    The vmemmap base is decoded from the first present ``mem_section`` (its
    ``section_mem_map`` minus the flag bits is ``vmemmap`` on SPARSEMEM_VMEMMAP).
    """
    info = vmcoreinfo(vmcore)
    prog = drgn_program(vmcore)
    size = int(info["SIZE(page)"])
    roots = int(info["SYMBOL(mem_section)"], 16)
    root0 = int.from_bytes(prog.read(roots, 8), "little")
    vmemmap = int.from_bytes(prog.read(root0, 8), "little") & ~0x3F
    raw = np.frombuffer(prog.read(vmemmap, size * (max_pfn + 1)), dtype=np.uint8)
    return raw.reshape(max_pfn + 1, size), info, vmemmap


def field(raw: np.ndarray, offset: int, dtype: str) -> np.ndarray:
    return (
        np.ascontiguousarray(raw[:, offset : offset + np.dtype(dtype).itemsize]).view(dtype).ravel()
    )


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def compare_pages(out_path: Path, src_path: Path, kept: np.ndarray, page_size: int = 4096) -> int:
    """Read every kept page through drgn from both files; returns pages compared."""
    out, src = drgn_program(out_path), drgn_program(src_path)
    compared = 0
    for a, b in runs(kept):
        for s in range(a, b, 256):
            e = min(b, s + 256)
            got = out.read(s * page_size, (e - s) * page_size, True)
            want = src.read(s * page_size, (e - s) * page_size, True)
            if got != want:
                for p in range(s, e):
                    lo, hi = (p - s) * page_size, (p - s + 1) * page_size
                    assert got[lo:hi] == want[lo:hi], f"{out_path}: page {p:#x} differs"
            compared += e - s
    return compared


def kdump_page(path: Path, pfn: int) -> bytes | None:
    """One page straight from a kdump-compressed file's descriptor (None: lost page,
    descriptor offset 0 as in an incomplete dump).  Handles raw, zlib and lzo pages."""
    import zlib

    import lzo

    with open(path, "rb") as f:
        head = f.read(464)
        block_size, sub_hdr_size, bitmap_blocks = struct.unpack_from("<iiI", head, 0x1AC)
        f.seek((1 + sub_hdr_size) * block_size)
        bitmaps = np.frombuffer(f.read(bitmap_blocks * block_size), dtype=np.uint8)
        bits2 = np.unpackbits(bitmaps[bitmaps.size // 2 :], bitorder="little").astype(bool)
        assert bits2[pfn], f"page {pfn:#x} has no descriptor"
        rank = int(np.count_nonzero(bits2[:pfn]))
        f.seek((1 + sub_hdr_size + bitmap_blocks) * block_size + 24 * rank)
        offset, size, flags = struct.unpack("<qII", f.read(16))
        if offset == 0:
            return None
        f.seek(offset)
        data = f.read(size)
    if flags & 0x1:
        return zlib.decompress(data)
    if flags & 0x2:
        return lzo.decompress(data, False, block_size)
    return data


def run_kdumpy(*args: str, stdin=None, stdout=None) -> subprocess.CompletedProcess:  # noqa: ANN001
    """``python -m kdumpy collect ARGS`` as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "kdumpy", "collect", "--message-level", "4", *args],
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )


@contextlib.contextmanager
def small_fs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the duration of the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        # Lazy: a test that failed while still holding the dump mapped must not leave the
        # tmpfs mounted (and its memory pinned) for the rest of the run.
        subprocess.run(["umount", "--lazy", str(where)], check=True)
