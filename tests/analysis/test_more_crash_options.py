"""The options of crash's commands issue 14 added (``rd -S/-r/-u``, ``mod -s/-S``, ``kmem
-n``...) against drgn 0.3.0's crash mode and helpers, on the lab dump of every lab kernel,
and against crash 8.0.2 itself where it reads the kernel (5.10 and 6.1).

kdumpy reads each dump alone (kallsyms, BTF from its memory); drgn reads it with
Debian's -dbg vmlinux, in a subprocess (``drgn_more_options_oracle.py``, cached), and so does
crash (one run per dump for all its lines, cached beside drgn's answers).  They run the
same command lines.  The dumps are cached: no VM boots here.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from analysis_oracle import dbg_vmlinux, drgn_answers
from drgn import RelocatableModule
from drgn_oracle import open_program

from kdumpy.analysis.commands import Session, run_line
from kdumpy.analysis.helpers.modules import module_objects, module_search_dirs
from kdumpy.lab.cache import cache_root, locked

pytestmark = pytest.mark.vm

ORACLE = Path(__file__).with_name("drgn_more_options_oracle.py")
ORACLE_VERSION = 4  # bump when drgn_more_options_oracle.py's output changes
RAW = "@RAW@"
CRASH_READS = {"5.10", "6.1"}  # crash 8.0.2 answers nothing on 6.12 and 7
MARK = "@@@kdumpy@@@"
KMEM_M = "kmem -m flags,_refcount,mapping,lru"  # a long, an atomic_t, a pointer, two words
BIG = 1 << 20  # crash's answers longer than this are kept as their digest


@pytest.fixture(scope="module")
def drgn(lab_dump):
    return drgn_answers(lab_dump, ORACLE, f"drgnmoreopts{ORACLE_VERSION}")


def crash_lines(drgn: dict) -> dict[str, str]:
    """The lines crash 8.0.2 runs: those of drgn's oracle that crash can answer without
    reading the task list (which crash 8.0.2 cannot on 6.1)."""
    keys = ("kmem_n", "kmem_F", "rd_S", "rd_SS")
    lines = {key: drgn[key]["line"] for key in keys if key in drgn}
    return lines | {"kmem_m": KMEM_M, "bt_s": "bt -s", "bt_s_x": "bt -s -x"}


@pytest.fixture(scope="module")
def crash(lab_dump, drgn) -> dict[str, object]:
    """crash 8.0.2's answer to each line, by key (one run, cached by the lines' digest)."""
    series = lab_dump.vmcore.name.split("-1G")[0]
    if series not in CRASH_READS or shutil.which("crash") is None:
        pytest.skip(f"crash 8.0.2 cannot read {series} (or is not installed)")
    lines = crash_lines(drgn)
    digest = hashlib.sha256(json.dumps(lines, sort_keys=True).encode()).hexdigest()[:12]
    vmcore = Path(lab_dump.vmcore)
    st = vmcore.stat()
    name = f"{vmcore.name}-{st.st_size}-{int(st.st_mtime)}.crashmoreopts-{digest}.json"
    out = cache_root() / "derived" / name
    if not out.exists():
        with locked(f"crash-{vmcore.name}"):
            if not out.exists():
                answers = _run_crash(str(dbg_vmlinux(lab_dump.kernel)), str(vmcore), lines)
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(answers))
                tmp.rename(out)
    return json.loads(out.read_text())


def _run_crash(vmlinux: str, vmcore: str, lines: dict[str, str]) -> dict[str, str]:
    script = "".join(f"!echo {MARK}{key}\n{line}\n" for key, line in lines.items()) + "q\n"
    proc = subprocess.run(["crash", "-s", vmlinux, vmcore], input=script, capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip
    answers: dict[str, object] = {}
    for part in proc.stdout.split(MARK)[1:]:
        key, _, body = part.partition("\n")
        answers[key] = body if len(body) < BIG else _digest(body)
    return answers


def _digest(text: str) -> dict[str, object]:
    """A long answer as the digest of its lines (trailing blanks and crash's warnings
    dropped), their count and the first ones."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("WARNING:")]
    blob = "\n".join(lines).encode()
    return {"sha256": hashlib.sha256(blob).hexdigest(), "count": len(lines),
            "head": lines[:50]}  # fmt: skip


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
    dprog = open_program(str(lab_dump.vmcore), str(dbg_vmlinux(lab_dump.kernel)))
    want = {m.name: m.build_id.hex() for m, _ in dprog.loaded_modules()
            if isinstance(m, RelocatableModule) and m.build_id}  # fmt: skip
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


# -- kmem -n -------------------------------------------------------------------------------


def _data_rows(text: str) -> list[list[str]]:
    """The rows of ``kmem -n`` that carry values (headers and rules dropped), crash's
    empty BOOTMEM_DATA column (``----``, which drgn leaves out) removed."""
    out = []
    for words in rows(text):
        words = [w for w in words if w != "----"]
        if words and re.fullmatch(r"[0-9a-f]+", words[0]):
            out.append(words)
    return out


def test_kmem_n_is_crashs_text(session, crash):
    """Node, zones, sections and memory blocks: crash 8.0.2's text, line for line."""
    ours_text = ours(session, "kmem -n")
    theirs = [line.rstrip() for line in crash["kmem_n"].splitlines() if line.strip()]
    theirs = [line for line in theirs if not line.startswith("WARNING:")]
    assert [line.rstrip() for line in ours_text.splitlines() if line.strip()] == theirs


def test_kmem_n_rows_match_drgn(session, drgn):
    """Every value row (node, zones, sections, memory blocks) as drgn's crash mode."""
    theirs = answer(drgn, "kmem_n")
    mine = _data_rows(ours(session, theirs["line"]))
    assert mine == _data_rows(theirs["out"])
    assert sum(len(r) == 6 and r[4] in ("PMOE", "PMO", "PME", "PM") for r in mine) >= 1


@pytest.mark.parametrize("key", ["rd_S", "rd_SS"])
def test_rd_S_names_the_same_slab_caches_as_crash(session, drgn, crash, key):
    """crash 8.0.2's own -S on pid 1's task_struct: the same bracketed cache names."""
    line = crash_lines(drgn)[key]
    want = _labels(crash[key])
    assert _labels(ours(session, line)) == want
    assert len(want) >= 3


# -- kmem -F -------------------------------------------------------------------------------


def _free_lists(text: str, header: str) -> dict[str, list[str]]:
    """Free list address -> the struct pages listed under it (non-empty lists only);
    ``header`` starts the line above each list's row (crash's ``AREA``, drgn's
    ``ORDER``), whose last word is the list's address."""
    out: dict[str, list[str]] = {}
    head = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if i and lines[i - 1].startswith(header):
            head = words[-1]
        elif len(words) == 1 and head and re.fullmatch(r"[0-9a-f]{16}", words[0]):
            out.setdefault(head, []).append(words[0])
        elif not line.startswith(header):
            head = ""
    return out


def test_kmem_F_is_crashs_text(session, crash):
    """Each zone, each free list and the page of each free block: crash 8.0.2's text."""
    theirs = [line.rstrip() for line in crash["kmem_F"].splitlines() if line.strip()]
    theirs = [line for line in theirs if not line.startswith("WARNING:")]
    mine = [line.rstrip() for line in ours(session, "kmem -F").splitlines() if line.strip()]
    assert mine == theirs


def test_kmem_F_lists_the_pages_drgn_lists(session, drgn):
    """The same struct pages on the same free lists, in the same order, as drgn's
    crash mode (whose layout names each list's migrate type)."""
    theirs = answer(drgn, "kmem_F")
    mine = _free_lists(ours(session, theirs["line"]), "AREA")
    assert mine == _free_lists(theirs["out"], "ORDER")
    assert sum(map(len, mine.values())) > 100


# -- kmem -m -------------------------------------------------------------------------------


def test_kmem_m_is_crashs_text(session, crash):
    """Every struct page's members, 262,144 lines on a 1 GiB guest: crash 8.0.2's text
    (compared by digest)."""
    theirs = crash["kmem_m"]
    assert isinstance(theirs, dict), "crash's kmem -m answer was short"
    mine = _digest(ours(session, KMEM_M))
    assert mine["head"] == theirs["head"]
    assert (mine["count"], mine["sha256"]) == (theirs["count"], theirs["sha256"])


def test_kmem_m_pages_and_flags_match_drgn(session, drgn):
    """The same struct pages, in the same order, with the same flags word, as drgn's
    crash mode (which spells ``_refcount`` as its counter)."""
    theirs = answer(drgn, "kmem_m")
    mine = ours(session, theirs["line"]).splitlines()
    assert len(mine) == theirs["count"]

    def pages_flags(lines: list[str]) -> list[tuple[str, str]]:
        rows = (line.split() for line in lines if not line.lstrip().startswith("PAGE"))
        return [(w[0], w[1]) for w in rows if len(w) >= 2]

    head = theirs["head"].splitlines()
    tail = theirs["tail"].splitlines()
    assert pages_flags(mine[: len(head)]) == pages_flags(head)
    assert pages_flags(mine[-len(tail) :]) == pages_flags(tail)


# -- vtop -u / -k / -c ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["vtop_u", "vtop_k", "vtop_c", "vtop_kernel"])
def test_vtop_u_k_c_match_drgn(session, drgn, key):
    """The crashed task's command line (-u), pid 1's task_struct (-k), and another
    process's stack (-c pid): the same physical addresses as drgn's crash mode."""
    theirs = answer(drgn, key)
    mine = rows(ours(session, theirs["line"]))
    assert mine == rows(theirs["out"])
    assert len(mine) == 2 and "(not" not in mine[1]


# -- runq -g -------------------------------------------------------------------------------


def test_runq_g_matches_drgn(session, drgn):
    """Each CPU's running task, root task group, its CFS run queue and what is queued
    there, group by group: the same rows as drgn's crash mode."""
    theirs = answer(drgn, "runq_g")
    mine = rows(ours(session, theirs["line"]))
    assert mine == rows(theirs["out"])
    assert sum(r[0] == "ROOT_TASK_GROUP:" for r in mine) == len(session.prog.online_cpus)


# -- bt -s [-x|-d] / -V --------------------------------------------------------------------


def _places(text: str) -> dict[int, str]:
    """Frame pc -> the ``symbol+offset`` ``bt -s`` printed for it."""
    return {
        int(pc, 16): where
        for where, pc in re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at ([0-9a-f]+)", text, re.M)
    }


def test_bt_s_names_each_frame_as_drgn_symbolizes_it(session, drgn):
    """The crashed task's frames: each pc as symbol+offset (decimal; -x hex).  The
    symbol is drgn's (or an alias at its address), or, like crash, the nearest label
    inside drgn's function (``entry_SYSCALL_64_after_hwframe`` in ``entry_SYSCALL_64``:
    kallsyms has it, drgn names the sized ELF symbol)."""
    mine = _places(ours(session, "bt -s"))
    hexed = _places(ours(session, "bt -s -x"))
    checked = 0
    for pc, name, address in drgn["facts"]["frames"]:
        if pc not in mine:
            continue
        ours_name = mine[pc].partition("+")[0]
        start = session.prog.symbols.address_of(ours_name)
        assert start is not None and address <= start <= pc, (hex(pc), mine[pc], name)
        if ours_name != name:
            assert start == address or session.prog.symbols.address_of(name) == address
        offset = pc - start
        assert mine[pc] == (f"{ours_name}+{offset}" if offset else ours_name)
        assert hexed[pc] == (f"{ours_name}+{offset:#x}" if offset else ours_name)
        checked += 1
    assert checked >= 5
    line = run_line(session, "bt -V")
    assert session.failed and line.startswith("bt: -V: local variables need the DWARF")


def test_bt_s_is_crashs(session, crash):
    """crash 8.0.2's own ``bt -s`` / ``bt -s -x``: the same symbol+offset at each pc
    both show."""
    for key, line in (("bt_s", "bt -s"), ("bt_s_x", "bt -s -x")):
        theirs = _places(crash[key])
        mine = _places(ours(session, line))
        same = mine.keys() & theirs.keys()
        assert len(same) >= 5, key
        assert {pc: mine[pc] for pc in same} == {pc: theirs[pc] for pc in same}


# -- bpf -p / -m / -s ----------------------------------------------------------------------


def test_bpf_p_m_s_list_the_programs_and_maps_drgn_finds(session, drgn):
    """The lab guests load no BPF program (busybox, no systemd): ``bpf -p -s`` and
    ``bpf -m -s`` list exactly the ids drgn's helpers find (none), and a program id
    that is not loaded is a one-line error.  The structure dumps themselves are
    checked on the synthetic kernel."""
    progs = [int(r[0]) for r in rows(ours(session, "bpf -p -s"), 1) if r[0].isdigit()]
    maps = [int(r[0]) for r in rows(ours(session, "bpf -m -s -x"), 1) if r[0].isdigit()]
    assert (progs, maps) == (drgn["facts"]["bpf_progs"], drgn["facts"]["bpf_maps"])
    missing = max(progs, default=0) + 1
    assert run_line(session, f"bpf -p {missing} -s") == f"bpf: -p {missing}: no such program\n"
