"""The kdump header's utsname when VMCOREINFO lacks OFFSET(uts_namespace.name).

Kernels before 5.11 do not export the offset; makedumpfile (and crash) then read
``init_uts_ns`` + sizeof(int), past the ``struct kref`` that preceded ``name``.  A header
with an empty utsname is refused by libkdumpfile (drgn: "KDUMP_ATTR_ARCH_NAME: Key has
no value"), so such a dump would be lost to the tools that read it.  The inputs are
built here (fakecore), the oracles are the known bytes, makedumpfile on the same input
and drgn opening the result.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakecore import UTSNAME, FakeMachine

UTS_LEN = 65


def header_utsname(path: Path) -> tuple[str, ...]:
    """``disk_dump_header.utsname``: six 65-byte fields after the signature and version."""
    raw = path.read_bytes()[12 : 12 + 6 * UTS_LEN]
    assert path.read_bytes()[:8] == b"KDUMP   "
    return tuple(raw[i * UTS_LEN : (i + 1) * UTS_LEN].split(b"\0")[0].decode() for i in range(6))


def collect(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "kdumpy", "collect", "--message-level", "0",
                           *args], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def drgn_opens(path: Path) -> None:
    drgn = pytest.importorskip("drgn")
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    assert prog.platform is not None and prog.platform.arch == drgn.Architecture.X86_64


@pytest.fixture
def old_kernel_dump(tmp_path: Path) -> Path:
    """A 5.10-like dump: no OFFSET(uts_namespace.name), ``name`` 4 bytes into init_uts_ns."""
    machine = FakeMachine()
    assert "OFFSET(uts_namespace.name)" not in machine.info
    machine.put(0x700000, b"kdumpy" * 600)  # some data that is neither zero nor struct pages
    return machine.write(tmp_path / "vmcore")


@pytest.mark.parametrize("compression", ["-l", "-c"])
def test_utsname_without_offset_entry(old_kernel_dump: Path, tmp_path: Path, compression: str):
    out = tmp_path / "out"
    collect(compression, "-d", "1", str(old_kernel_dump), str(out))
    assert header_utsname(out) == UTSNAME
    drgn_opens(out)
    if shutil.which("makedumpfile"):
        theirs = tmp_path / "mdf"
        subprocess.run(["makedumpfile", compression, "-d", "1", str(old_kernel_dump), str(theirs)],
                       check=True, capture_output=True)  # fmt: skip
        assert out.read_bytes() == theirs.read_bytes()


def test_utsname_split_files(old_kernel_dump: Path, tmp_path: Path) -> None:
    parts = [tmp_path / "part1", tmp_path / "part2"]
    collect("--split", "-l", "-d", "1", str(old_kernel_dump), *map(str, parts))
    for part in parts:
        assert header_utsname(part) == UTSNAME


def test_offset_entry_wins_over_the_fallback(tmp_path: Path) -> None:
    """5.11+: ``name`` first in the struct, and VMCOREINFO says so."""
    machine = FakeMachine()
    machine.info["OFFSET(uts_namespace.name)"] = "0"
    machine.set_utsname(UTSNAME, name_offset=0)  # read 4 bytes on, it would be "x", ...
    out = tmp_path / "out"
    collect("-l", "-d", "1", str(machine.write(tmp_path / "vmcore")), str(out))
    assert header_utsname(out) == UTSNAME
    drgn_opens(out)
