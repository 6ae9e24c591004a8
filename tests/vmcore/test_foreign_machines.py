"""Dumps of machines kdumpy does not read: one line naming the machine and the file.

The headers are built here from the ELF and makedumpfile layouts: an ELF file's class
(byte 4), byte order (byte 5) and ``e_machine`` (offset 18, in the file's byte order;
ppc64 = 21, s390 = 22, i386 = 3, arm = 40, riscv = 243, aarch64 = 183), and a kdump
header's ``utsname.machine`` (the 5th 65-byte field after the 8-byte signature and
the 4-byte version).  s390x and big-endian ppc64 dumps are big-endian through and
through, so their headers are packed big-endian here.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore import open_dump

from .builders import elf_vmcore, kdump_file, mixed_pages, note, notes_segment, vmcoreinfo

MACHINE_AT = 12 + 4 * 65  # utsname.machine in disk_dump_header


def elf_header(klass: int, order: str, machine: int) -> bytes:
    """An ELF ``ET_CORE`` header of any class and byte order (enough to be recognised)."""
    ident = b"\x7fELF" + bytes([klass, 1 if order == "<" else 2, 1]) + bytes(9)
    if klass == 1:
        rest = struct.pack(order + "HHIIIIIHHHHHH", 4, machine, 1, 0, 52, 0, 0, 52, 32, 2, 40, 0, 0)
    else:
        rest = struct.pack(order + "HHIQQQIHHHHHH", 4, machine, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0)
    return (ident + rest).ljust(4096, b"\0")


ELF_CASES = {
    "ppc64-be": (2, ">", 21, "ppc64 64-bit big-endian dump"),
    "ppc64le": (2, "<", 21, "ppc64 dump"),
    "s390x": (2, ">", 22, "s390 64-bit big-endian dump"),
    "i386": (1, "<", 3, "i386 32-bit little-endian dump"),
    "arm32": (1, "<", 40, "arm 32-bit little-endian dump"),
    "riscv64": (2, "<", 243, "riscv dump"),
    "aarch64-be": (2, ">", 183, "aarch64 64-bit big-endian dump"),
    "unknown": (2, "<", 4242, "machine 4242 dump"),
}


@pytest.mark.parametrize("case", ELF_CASES)
def test_foreign_elf_is_one_line_naming_the_machine(tmp_path: Path, case: str) -> None:
    klass, order, machine, message = ELF_CASES[case]
    path = tmp_path / f"{case}.vmcore"
    path.write_bytes(elf_header(klass, order, machine))
    with pytest.raises(DumpFormatError) as exc:
        open_dump(path)
    text = str(exc.value)
    assert (
        text == f"{path}: {message}: kdumpy reads only 64-bit little-endian x86_64 and arm64 dumps"
    )


KDUMP_CASES = {"s390x": ">", "ppc64le": "<", "ppc64": ">", "i686": "<", "riscv64": "<"}


@pytest.mark.parametrize("machine", KDUMP_CASES)
def test_foreign_kdump_is_one_line_naming_the_machine(tmp_path: Path, machine: str) -> None:
    raw = bytearray(kdump_file(mixed_pages(range(4)), 4, notes=notes_segment(vmcoreinfo())))
    raw[MACHINE_AT : MACHINE_AT + 65] = machine.encode().ljust(65, b"\0")
    if KDUMP_CASES[machine] == ">":  # the rest of the header in the machine's order
        (version,) = struct.unpack_from("<i", raw, 8)
        struct.pack_into(">i", raw, 8, version)
    path = tmp_path / f"{machine}.kdump"
    path.write_bytes(bytes(raw))
    with pytest.raises(DumpFormatError) as exc:
        open_dump(path)
    assert str(exc.value) == (
        f"{path}: {machine!r} dump: kdumpy reads only 64-bit little-endian x86_64 and arm64 dumps"
    )


def test_kdump_machine_names_are_not_printed_raw(tmp_path: Path) -> None:
    raw = bytearray(kdump_file(mixed_pages(range(4)), 4))
    raw[MACHINE_AT : MACHINE_AT + 8] = b"\x1b[2Jx\n\0\0"
    path = tmp_path / "escape.kdump"
    path.write_bytes(bytes(raw))
    with pytest.raises(DumpFormatError) as exc:
        open_dump(path)
    assert "\x1b" not in str(exc.value) and "\n" not in str(exc.value)


def test_aarch64_kdump_header_selects_arm64(tmp_path: Path) -> None:
    raw = bytearray(kdump_file(mixed_pages(range(4)), 4))
    raw[MACHINE_AT : MACHINE_AT + 65] = b"aarch64".ljust(65, b"\0")
    path = tmp_path / "arm64.kdump"
    path.write_bytes(bytes(raw))
    with open_dump(path) as dump:
        assert dump.arch.name == "arm64"
        assert dump.read_pfn(1) == mixed_pages([1])[1]


def test_cli_says_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s390x.vmcore"
    path.write_bytes(elf_header(2, ">", 22))
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy", "dmesg", str(path)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "s390 64-bit big-endian dump" in lines[0] and str(path) in lines[0]
    assert "Traceback" not in proc.stderr


def test_arm64_elf_is_read(tmp_path: Path) -> None:
    path = tmp_path / "arm64.vmcore"
    notes = note("VMCOREINFO", 0, vmcoreinfo())
    path.write_bytes(elf_vmcore([], notes, machine=183))
    with open_dump(path) as dump:
        assert dump.arch.name == "arm64" and dump.has_vmcoreinfo
