"""The options of crash's commands issue 14 added (``rd -S/-r/-u`` ...) against drgn 0.3.0's
crash mode and helpers, on the lab dump of every lab kernel.

kdumpy reads each dump alone (kallsyms, BTF from its memory); drgn reads it with
Debian's -dbg vmlinux, in a subprocess (``drgn_options_oracle.py``, cached).  Both run the
same command lines.  The dumps are cached: no VM boots here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from analysis_oracle import drgn_answers

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

pytestmark = pytest.mark.vm

ORACLE = Path(__file__).with_name("drgn_options_oracle.py")
ORACLE_VERSION = 2  # bump when drgn_options_oracle.py's output changes
RAW = "@RAW@"


@pytest.fixture(scope="module")
def session(lab_dump):
    with Program.open(lab_dump.vmcore) as prog:
        yield Session(prog)


@pytest.fixture(scope="module")
def drgn(lab_dump):
    return drgn_answers(lab_dump, ORACLE, f"drgnopts{ORACLE_VERSION}")


def rows(text: str, skip: int = 0) -> list[list[str]]:
    """Non-empty lines as their whitespace-separated words, ``skip`` header lines dropped."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    return lines[skip:]


def answer(drgn: dict, key: str) -> dict:
    if key not in drgn:
        pytest.skip(f"{key}: not on this kernel")
    found = drgn[key]
    if "error" in found:
        pytest.skip(f"drgn cannot run {found['line']!r} here: {found['error']}")
    return found


def ours(session: Session, line: str) -> str:
    out = run_line(session, line)
    assert not session.failed, out
    return out


# -- rd -S / -SS / -u / -r -----------------------------------------------------------------


def _labels(text: str) -> dict[int, str]:
    """Address -> the bracketed slab label ``rd -S`` printed there."""
    out = {}
    for address, rest in re.findall(r"^\s*([0-9a-f]+):\s+(.*)$", text, re.M):
        for i, word in enumerate(rest.split()):
            if word.startswith("["):
                out[int(address, 16) + 8 * i] = word
    return out


@pytest.mark.parametrize("key", ["rd_S", "rd_SS"])
def test_rd_S_names_the_same_slab_caches_as_drgn(session, drgn, key):
    """pid 1's task_struct as words: every word drgn shows as ``[cache]`` (``-SS``:
    ``[address:cache]``) kdumpy shows the same, and no other (symbols come first in
    both; drgn's symbol table is wider, so symbol words are not compared here)."""
    theirs = answer(drgn, key)
    mine = ours(session, theirs["line"])
    assert len(rows(mine)) == theirs["count"]
    want = _labels(theirs["out"])
    assert _labels(mine) == want
    assert len(want) >= 3  # the task's list heads and pointers into other tasks


@pytest.mark.parametrize("key", ["rd_u", "rd_u_auto", "rd_a_u"])
def test_rd_u_reads_the_crashed_tasks_user_memory_as_drgn(session, drgn, key):
    """The crashed task's command line, through its own page tables: the same rows."""
    theirs = answer(drgn, key)
    assert rows(ours(session, theirs["line"])) == rows(theirs["out"])
    args = bytes.fromhex(drgn["facts"]["args"]).split(b"\0")[0].decode()
    if key == "rd_a_u":
        assert rows(theirs["out"])[0][1] == args


@pytest.mark.parametrize("key", ["rd_r", "rd_r_u"])
def test_rd_r_writes_the_bytes_drgn_writes(session, drgn, key, tmp_path):
    theirs = answer(drgn, key)
    path = tmp_path / "raw.bin"
    mine = ours(session, theirs["line"].replace(RAW, str(path)))
    assert mine.replace(str(path), RAW) == theirs["out"]
    assert path.read_bytes().hex() == theirs["raw"]
    assert path.stat().st_mode & 0o777 == 0o600
