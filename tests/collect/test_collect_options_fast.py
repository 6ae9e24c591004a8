"""CollectOptions and command-line checks that need no dump: refused before any work,
with one line naming the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.collect.collector import CollectOptions, collect
from kdumpy.collect.levels import parse_dump_levels
from kdumpy.errors import KdumpyError


@pytest.mark.parametrize(
    ("text", "levels"), [("31", [31]), ("11,31", [11, 31]), (" 0 , 1", [0, 1])]
)
def test_dump_level_lists(text: str, levels: list[int]) -> None:
    assert parse_dump_levels(text) == levels


@pytest.mark.parametrize(
    ("text", "message"),
    [("32", "out of range"), ("-1", "out of range"), ("x", "not a number"), ("1,,3", "a number")],
)
def test_bad_dump_levels(text: str, message: str) -> None:
    with pytest.raises(KdumpyError, match=message):
        parse_dump_levels(text)


def test_unknown_compression_is_refused_before_opening(tmp_path: Path) -> None:
    with pytest.raises(KdumpyError, match="unknown compression 'lz4'.*zstd"):
        collect(str(tmp_path / "absent"), str(tmp_path / "out"), CollectOptions(compression="lz4"))


def test_elf_output_cannot_be_compressed(tmp_path: Path) -> None:
    with pytest.raises(KdumpyError, match="-E"):
        collect(str(tmp_path / "absent"), str(tmp_path / "out"),
                CollectOptions(elf=True, compression="zlib"))  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-E", "--num-threads", "2", "a", "b"], "--num-threads cannot be used with ELF"),
    (["--split", "a", "b"], "--split needs a source and at least two"),
    (["a"], "usage: kdumpy collect"),
    (["-d", "40", "a", "b"], "dump level 40 is out of range"),
    (["--reassemble", "a", "b"], "usage: kdumpy collect --reassemble"),
])  # fmt: skip
def test_command_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kdumpy", "collect", *args], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("kdumpy: ")
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
