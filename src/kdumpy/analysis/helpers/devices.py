"""Character and block device majors (``dev``): the ``chrdevs`` regions with their
``struct cdev`` and file operations, and the ``major_names`` of block drivers."""

from __future__ import annotations

from typing import NamedTuple

from kdumpy.analysis.helpers.lists import walk
from kdumpy.analysis.program import Program

MAJOR_HASH = 255  # CHRDEV_MAJOR_HASH_SIZE, BLKDEV_MAJOR_HASH_SIZE


class CharDev(NamedTuple):
    major: int
    minor: int
    name: str
    cdev: int
    ops: int  # the cdev's file_operations, 0 without a cdev


def _name(prog: Program, address: int, struct: str) -> str:
    return prog.object_at(struct, address).name.string_().decode("utf-8", "backslashreplace")


def char_devices(prog: Program) -> list[CharDev]:
    """Every registered character device region, by major and first minor."""
    table = prog.object("chrdevs")
    off = prog.offsetof("struct char_device_struct", "next")
    out = []
    for i in range(MAJOR_HASH):
        first = int(table[i])
        for cd in walk(first, lambda a: prog.read_u64(a + off), 0, "chrdevs chain"):
            c = prog.object_at("struct char_device_struct", cd)
            cdev = int(c.cdev) or _mapped_cdev(prog, int(c.major), int(c.baseminor))
            ops = int(prog.object_at("struct cdev", cdev).ops) if cdev else 0
            name = _name(prog, cd, "struct char_device_struct")
            out.append(CharDev(int(c.major), int(c.baseminor), name, cdev, ops))
    return sorted(out, key=lambda d: (d.major, d.minor))


MINORBITS = 20


def _mapped_cdev(prog: Program, major: int, minor: int) -> int:
    """The ``struct cdev`` that ``cdev_add`` put in ``cdev_map`` for a device number
    (drivers like tty register a region and add their cdev separately)."""
    probes = prog.object("cdev_map").probes
    off = prog.offsetof("struct probe", "next")
    dev = major << MINORBITS | minor
    for p in walk(int(probes[major % MAJOR_HASH]), lambda a: prog.read_u64(a + off), 0, "cdev_map"):
        probe = prog.object_at("struct probe", p)
        start, count = int(probe.dev), int(probe.range)
        if start >> MINORBITS == major and start <= dev < start + count and int(probe.data):
            return int(probe.data)
    return 0


def block_majors(prog: Program) -> list[tuple[int, str]]:
    """``(major, name)`` of every registered block driver, in the table's order."""
    table = prog.object("major_names")
    off = prog.offsetof("struct blk_major_name", "next")
    out = []
    for i in range(MAJOR_HASH):
        for bm in walk(int(table[i]), lambda a: prog.read_u64(a + off), 0, "major_names chain"):
            major = int(prog.object_at("struct blk_major_name", bm).major)
            out.append((major, _name(prog, bm, "struct blk_major_name")))
    return out
