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


# -- mod -s / -S ---------------------------------------------------------------------------


def _build_id(path: str) -> str:
    """The GNU build ID note of a module's object file (plain or xz-compressed)."""
    import io
    import lzma

    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        data = lzma.decompress(data)
    elf = ELFFile(io.BytesIO(data))
    for section in elf.iter_sections():
        if section.header.sh_type == "SHT_NOTE":
            for note in section.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
    return ""


def test_mod_S_would_load_the_files_whose_build_ids_drgn_reads(session, lab_dump):
    """In the kernel package's module tree, the object file ``mod -S`` names for each
    loaded module has the build ID drgn reads from that module in the dump; ``mod -S``
    and ``mod -s`` say kdumpy cannot load them, in one line."""
    import drgn
    from analysis_oracle import dbg_vmlinux
    from drgn_oracle import open_program

    from kdumpy.analysis.helpers.modules import module_objects, module_search_dirs

    dprog = open_program(str(lab_dump.vmcore), str(dbg_vmlinux(lab_dump.kernel)))
    want = {m.name: m.build_id.hex() for m, _ in dprog.loaded_modules()
            if isinstance(m, drgn.RelocatableModule) and m.build_id}  # fmt: skip
    assert want
    tree = str(lab_dump.kernel.modules_dir)
    found = module_objects(module_search_dirs(session.prog.info.osrelease, tree))
    assert {name: _build_id(found[name]) for name in want} == want
    line = run_line(session, f"mod -S {tree}")
    assert session.failed and line.count("\n") == 1
    assert f"object files for {len(want)} of {len(want)} loaded modules\n" in line
    name = sorted(want)[0]
    line = run_line(session, f"mod -s {name} {found[name]}")
    assert line.endswith(f"; crash would load {found[name]}\n") and session.failed
