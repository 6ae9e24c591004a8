"""Our newc writer against GNU cpio, the independent reader: it lists and extracts
exactly what we wrote (names, modes, data, symlinks, device nodes)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdumpy.service.cpio import CpioWriter
from kdumpy.service.image import Image, loadable


def _archive(build) -> bytes:
    out = io.BytesIO()
    cpio = CpioWriter(out)
    build(cpio)
    cpio.finish()
    return out.getvalue()


def _gnu_cpio(args: list[str], data: bytes, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        ["cpio", *args, "--quiet"], input=data, capture_output=True, cwd=cwd, check=True
    )
    return proc.stdout.decode()


def test_gnu_cpio_lists_and_extracts(tmp_path: Path) -> None:
    def build(c: CpioWriter) -> None:
        c.add_dir("/etc")
        c.add_file("/etc/hello", b"hello\n", 0o640)
        c.add_file("/etc/empty", b"")
        c.add_file("/bin/odd", b"123", 0o755)  # lengths not multiples of 4
        c.add_symlink("/bin/sh", "busybox")
        c.add_chardev("/dev/console", 5, 1)

    data = _archive(build)
    assert len(data) % 4 == 0
    listing = _gnu_cpio(["-t"], data).split()
    assert listing == ["etc", "etc/hello", "etc/empty", "bin/odd", "bin/sh", "dev/console"]
    verbose = _gnu_cpio(["-tv"], data)
    assert "crw-------" in verbose and "5,   1" in verbose
    out = tmp_path / "x"
    out.mkdir()
    # Device nodes need root to extract; extract the rest.
    _gnu_cpio(["-id", "--no-absolute-filenames", "etc/*", "bin/*"], data, cwd=out)
    assert (out / "etc/hello").read_bytes() == b"hello\n"
    assert stat.S_IMODE((out / "etc/hello").stat().st_mode) == 0o640
    assert (out / "etc/empty").read_bytes() == b""
    assert (out / "bin/odd").read_bytes() == b"123"
    assert os.readlink(out / "bin/sh") == "busybox"


def test_duplicate_name_refused() -> None:
    with pytest.raises(ValueError):
        _archive(lambda c: (c.add_file("a", b""), c.add_file("/a", b"")))


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="abcdefgh_.-", min_size=1, max_size=12).filter(
            lambda s: s not in (".", "..")
        ),
        st.binary(max_size=300),
        min_size=1,
        max_size=8,
    )
)
def test_any_files_round_trip(files: dict[str, bytes]) -> None:
    """Whatever names and contents, GNU cpio reads back the same bytes."""
    import tempfile

    data = _archive(lambda c: [c.add_file(f"d/{n}", b) for n, b in files.items()])
    with tempfile.TemporaryDirectory() as tmp:
        _gnu_cpio(["-id"], data, cwd=Path(tmp))
        for name, content in files.items():
            assert (Path(tmp) / "d" / name).read_bytes() == content


def test_image_adds_parents_and_compresses(tmp_path: Path) -> None:
    image = Image()
    image.add_bytes("/a/b/c.txt", b"content")
    image.add_symlink("/a/link", "b/c.txt")
    for compression, tool in (("zstd", ["zstd", "-dc"]), ("gzip", ["gzip", "-dc"])):
        dest = tmp_path / f"img.{compression}"
        image.write(dest, compression)
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        raw = subprocess.run([*tool, str(dest)], capture_output=True, check=True).stdout
        assert _gnu_cpio(["-t"], raw).split() == ["a", "a/b", "a/b/c.txt", "a/link"]
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_loadable_checks_segment_alignment() -> None:
    import sys

    assert loadable(Path(sys.executable).resolve().read_bytes())
    elf = bytearray(Path(sys.executable).resolve().read_bytes())
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    phentsize = int.from_bytes(elf[0x36:0x38], "little")
    for i in range(int.from_bytes(elf[0x38:0x3A], "little")):
        at = phoff + i * phentsize
        if int.from_bytes(elf[at : at + 4], "little") == 1:  # PT_LOAD: shift its offset
            offset = int.from_bytes(elf[at + 8 : at + 16], "little") + 8
            elf[at + 8 : at + 16] = offset.to_bytes(8, "little")
            break
    assert not loadable(bytes(elf))
