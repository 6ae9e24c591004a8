"""crash's flags added for issue 14 (``log -m/-T``, ``rd -s``, ``struct -o``, ``bt -f/-F/
-l/-e``, ``dis -l``) on every lab kernel, against crash 8.0.2 with the Debian -dbg vmlinux
where crash reads the kernel (5.10 and 6.1: it prints nothing for 6.12 and 7, see
vm-lab-notes.md), and against drgn (levels, member offsets, symbols) and binutils'
addr2line (source lines) on every kernel.  Each dump is opened once per tool: kdumpy
with the vmlinux, like crash, in one session; crash once with all the commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from analysis_oracle import dbg_vmlinux

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

pytestmark = pytest.mark.vm
CRASH_READS = {"5.10", "6.1"}  # crash 8.0.2 answers nothing on 6.12 and 7
COMMANDS = ("log -m", "log -T", "rd -s init_task 64", "struct -o task_struct", "bt -f",
            "bt -F", "bt -l", "bt -e", "dis -l sysrq_handle_crash")  # fmt: skip
MARK = "@@@kdumpy@@@"


def _series(dump: Any) -> str:
    return dump.kernel.series if hasattr(dump.kernel, "series") else dump.vmcore.name.split("-")[0]


@pytest.fixture(scope="module")
def setup(lab_dump) -> dict[str, Any]:
    """kdumpy's answers (one session), crash's (one run) and drgn's program."""
    vmlinux = str(dbg_vmlinux(lab_dump.kernel))
    prog = Program.open(lab_dump.vmcore, vmlinux)
    session = Session(prog)
    ours = {c: run_line(session, c) for c in COMMANDS}
    series = lab_dump.vmcore.name.split("-1G")[0]
    theirs: dict[str, str] = {}
    if series in CRASH_READS and shutil.which("crash"):
        script = "".join(f"!echo {MARK}{c}\n{c}\n" for c in COMMANDS) + "q\n"
        out = subprocess.run(["crash", "-s", vmlinux, str(lab_dump.vmcore)], input=script,
                             capture_output=True, text=True, timeout=900).stdout  # fmt: skip
        for part in out.split(MARK)[1:]:
            name, _, text = part.partition("\n")
            theirs[name] = text
    import drgn
    from drgn_oracle import open_program

    return {"ours": ours, "crash": theirs, "prog": prog, "vmlinux": vmlinux,
            "drgn": open_program(str(lab_dump.vmcore), vmlinux), "series": series,
            "drgn_module": drgn}  # fmt: skip


def _crash(setup: dict[str, Any], command: str) -> str:
    if setup["series"] not in CRASH_READS:
        pytest.skip(f"crash 8.0.2 cannot read {setup['series']}")
    text = setup["crash"].get(command, "")
    assert text.strip(), f"crash printed nothing for {command}"
    return text


def _printable(line: str) -> bool:
    """A record's first line with nothing escaped: crash indents a record's continuation
    lines under its prefix, kdumpy prints them as they are (like dmesg), and shows
    control characters as \\xNN where crash prints '.'."""
    return line.startswith("[") and "\\x" not in line


# -- log -m / -T ---------------------------------------------------------------------------


def test_log_levels_match_crash(setup):
    theirs = _crash(setup, "log -m").splitlines()
    ours = setup["ours"]["log -m"].splitlines()
    assert len(ours) == len(theirs)
    same = [a == b for a, b in zip(ours, theirs, strict=True) if _printable(a)]
    assert all(same) and len(same) > 100


def test_log_levels_match_drgn(setup):
    from drgn.helpers.linux.printk import get_printk_records

    levels = [r.level for r in get_printk_records(setup["drgn"])]
    ours = [int(m[1], 16) for m in re.finditer(r"^\[[ \d.]+\] <(\d)>", setup["ours"]["log -m"],
                                                re.M)]  # fmt: skip
    assert ours == levels[-len(ours) :] and len(ours) > 100


def test_log_dates_match_crash(setup):
    theirs = _crash(setup, "log -T").splitlines()
    ours = setup["ours"]["log -T"].splitlines()
    assert len(ours) == len(theirs)
    assert all(a == b for a, b in zip(ours, theirs, strict=True) if _printable(a))


# -- struct -o -----------------------------------------------------------------------------


def test_struct_offsets_match_crash(setup):
    text = _crash(setup, "struct -o task_struct")
    theirs = text.replace("const ", "").replace("volatile ", "").splitlines()  # not in BTF
    ours = setup["ours"]["struct -o task_struct"].splitlines()
    # crash spells function pointers with their arguments, which BTF does not keep
    mismatch = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b and "(*" not in b]
    assert len(ours) == len(theirs) and mismatch == []


def test_struct_offsets_match_drgn(setup):
    drgn = setup["drgn_module"]
    t = setup["drgn"].type("struct task_struct")
    rows = re.findall(r"^\s*\[(\d+)\] .*?(\w+)(?:\[\d+\])*(?: : \d+)?;$",
                      setup["ours"]["struct -o task_struct"], re.M)  # fmt: skip
    checked = 0
    for offset, name in rows:
        if not t.has_member(name) or re.search(rf"\b{name} : \d+;", setup["ours"][
                "struct -o task_struct"]):  # fmt: skip
            continue  # bit fields: drgn's offsetof takes byte-aligned members only
        assert drgn.offsetof(t, name) == int(offset), name
        checked += 1
    assert checked > 100


# -- rd -s, bt -f / -F ---------------------------------------------------------------------


def _words(text: str, line_re: str = r"^\s*([0-9a-f]{16}):\s+(.*)$") -> dict[int, str]:
    """Stack or memory address -> the word shown there."""
    out = {}
    for address, rest in re.findall(line_re, text, re.M):
        for i, word in enumerate(rest.split()):
            out[int(address, 16) + 8 * i] = word
    return out


def _compare_words(ours: dict[int, str], theirs: dict[int, str], symbols: Callable) -> int:
    """Words at the same addresses agree: both hex and equal, or the same symbol+offset
    (crash's slab cache names in brackets and its section/label names, which kallsyms and
    our symbol table lack, are skipped).  Returns how many were compared."""
    compared = 0
    for address in ours.keys() & theirs.keys():
        a, b = ours[address], theirs[address]
        if b.startswith("[") or (not re.fullmatch(r"[0-9a-f]{16}", b) and not symbols(b)):
            continue
        assert a == b, f"{address:x}: ours {a}, crash {b}"
        compared += 1
    return compared


def _known(setup: dict[str, Any]) -> Callable[[str], bool]:
    prog = setup["prog"]
    return lambda word: prog.symbols.address_of(word.split("+")[0]) is not None


def test_rd_symbolic_matches_crash(setup):
    theirs = _words(_crash(setup, "rd -s init_task 64"), r"^([0-9a-f]{16}):\s+(.*)$")
    ours = _words(setup["ours"]["rd -s init_task 64"], r"^([0-9a-f]{16}):\s+(.*)$")
    assert len(ours) == 64
    assert _compare_words(ours, theirs, _known(setup)) > 40


def test_rd_symbolic_names_drgn_symbols(setup):
    """drgn finds the same symbol (or an alias at the same address) for each word."""
    dprog = setup["drgn"]
    checked = 0
    for word in _words(setup["ours"]["rd -s init_task 64"], r"^([0-9a-f]{16}):\s+(.*)$").values():
        if not re.fullmatch(r"[0-9a-f]{16}", word):
            name, _, offset = word.partition("+")
            start = setup["prog"].symbols.address_of(name)
            sym = dprog.symbol(start + int(offset or 0))
            assert sym.name == name or sym.address == start, word
            checked += 1
    assert checked >= 3  # init_task's first 64 words hold a few (4 on 5.10)


@pytest.mark.parametrize("flag", ["-f", "-F"])
def test_bt_frame_words_match_crash(setup, flag):
    theirs = _words(_crash(setup, f"bt {flag}"))
    ours = _words(setup["ours"][f"bt {flag}"])
    assert _compare_words(ours, theirs, _known(setup)) > 50


def test_bt_exception_frames_match_crash(setup):
    frame = r"(KERNEL|USER)-MODE EXCEPTION FRAME AT: ([0-9a-f]+)\n(?:.*\n)*?\s+RIP: ([0-9a-f]+)"
    theirs = re.findall(frame, _crash(setup, "bt -e"))
    ours = re.findall(frame, setup["ours"]["bt -e"])
    assert theirs and ours == theirs


# -- bt -l / dis -l ------------------------------------------------------------------------


def _addr2line(vmlinux: str, addresses: list[int]) -> list[tuple[str, int]]:
    out = subprocess.run(["addr2line", "-e", vmlinux, *(f"{a:x}" for a in addresses)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        path, _, number = line.partition(" ")[0].rpartition(":")
        rows.append((path, int(number) if number.isdigit() else 0))
    return rows


def _unrelocated(setup: dict[str, Any], address: int) -> int:
    from kdumpy.analysis.symfile import kaslr_offset

    return address - kaslr_offset(setup["prog"].info)


def _same_place(ours: tuple[str, int], theirs: tuple[str, int]) -> bool:
    """The same line of the same file; addr2line may name the file by its full build
    path, gdb by the path relative to the compilation directory."""
    return ours[1] == theirs[1] and (theirs[0].endswith(ours[0]) or ours[0].endswith(theirs[0]))


def test_bt_source_lines_match_crash(setup):
    frame = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] \S+ at ([0-9a-f]+)\n\s+(\S.*): (\d+)$", re.M)
    theirs = {int(pc, 16): (f, int(n)) for pc, f, n in frame.findall(_crash(setup, "bt -l"))}
    ours = {int(pc, 16): (f, int(n)) for pc, f, n in frame.findall(setup["ours"]["bt -l"])}
    common = ours.keys() & theirs.keys()
    assert len(common) >= 5 and all(ours[pc] == theirs[pc] for pc in common)


def test_bt_source_lines_match_addr2line(setup):
    frame = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] \S+ at ([0-9a-f]+)\n\s+(\S.*): (\d+)$", re.M)
    rows = frame.findall(setup["ours"]["bt -l"])
    assert len(rows) >= 5
    theirs = _addr2line(setup["vmlinux"], [_unrelocated(setup, int(pc, 16)) for pc, _, _ in rows])
    for (_, f, n), place in zip(rows, theirs, strict=True):
        assert _same_place((f, int(n)), place)


def test_dis_source_lines_match_crash(setup):
    def rows(text: str) -> list[str]:
        return [re.sub(r"\s+.*", "", line) if line.startswith("0x") else line
                for line in text.splitlines() if line.strip()]  # fmt: skip

    theirs = rows(_crash(setup, "dis -l sysrq_handle_crash"))
    ours = rows(setup["ours"]["dis -l sysrq_handle_crash"])
    assert ours == theirs


def test_dis_source_lines_match_addr2line(setup):
    current = None
    checked = 0
    for line in setup["ours"]["dis -l sysrq_handle_crash"].splitlines():
        if line.startswith("0x"):
            address = int(line.split()[0], 16)
            (place,) = _addr2line(setup["vmlinux"], [_unrelocated(setup, address)])
            assert current is not None and _same_place(current, place), line
            checked += 1
        else:
            path, _, number = line.rpartition(": ")
            current = (path, int(number))
    assert checked >= 3


def test_lines_without_a_vmlinux_are_one_line(lab_dump):
    with Program.open(lab_dump.vmcore) as prog:
        session = Session(prog)
        for line in ("bt -l", "dis -l panic"):
            out = run_line(session, line)
            assert out.count("\n") == 1 and "need the vmlinux with debug info" in out


# -- the API's walks on a real kernel ------------------------------------------------------


def test_cgroup_tree_matches_drgn(setup):
    from drgn.helpers.linux.cgroup import cgroup_path as drgn_path
    from drgn.helpers.linux.cgroup import css_for_each_descendant_pre

    from kdumpy.analysis.api import cgroup_descendants, cgroup_path, root_cgroup

    dprog = setup["drgn"]
    root = dprog["cgrp_dfl_root"].cgrp.address_of_()
    theirs = [
        drgn_path(css.cgroup).decode()
        for css in css_for_each_descendant_pre(root.self.address_of_())
    ]
    ours = [cgroup_path(c) for c in cgroup_descendants(root_cgroup(setup["prog"]))]
    assert ours and ours == theirs


def test_pid_xarray_and_cfs_rbtree_match_drgn(setup):
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry as drgn_rb
    from drgn.helpers.linux.xarray import xa_for_each as drgn_xa

    from kdumpy.analysis.api import rbtree_inorder_for_each_entry, xa_for_each

    prog, dprog = setup["prog"], setup["drgn"]
    ours = [(i, int(e)) for i, e in xa_for_each(prog.object("init_pid_ns").idr.idr_rt)]
    theirs = [(i, e.value_()) for i, e in drgn_xa(dprog["init_pid_ns"].idr.idr_rt.address_of_())]
    assert len(ours) > 20 and ours == theirs
    from drgn.helpers.linux.percpu import per_cpu

    for cpu in prog.online_cpus:
        tree = prog.per_cpu("runqueues", cpu).cfs.tasks_timeline
        dtree = per_cpu(dprog["runqueues"], cpu).cfs.tasks_timeline.rb_root.address_of_()
        ours_rb = [int(e) for e in rbtree_inorder_for_each_entry("struct sched_entity", tree,
                                                                  "run_node")]  # fmt: skip
        theirs_rb = [e.value_() for e in drgn_rb("struct sched_entity", dtree, "run_node")]
        assert ours_rb == theirs_rb


def test_page_cache_walk_counts_nrpages(setup):
    """Every regular file the tasks hold: the pages found in its XArray are the kernel's
    own count (address_space.nrpages)."""
    from kdumpy.analysis.api import (
        for_each_page_cache_page,
        for_each_task,
        page_cache_size,
        task_files,
    )

    prog = setup["prog"]
    checked = 0
    for task in list(for_each_task(prog))[:80]:
        for _, file, _, _, kind, _ in task_files(prog, task):
            if kind == "REG":
                mapping = prog.object_at("struct file", file).f_mapping
                assert sum(1 for _ in for_each_page_cache_page(mapping)) == page_cache_size(mapping)
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("line", ["bt -l", "dis -l sysrq_handle_crash"])
def test_source_line_python_equivalents_give_the_same_lines(setup, line):
    """``--python`` of the commands that need the vmlinux, run on the real kernel."""
    import io

    from kdumpy.analysis.api import script_namespace
    from kdumpy.analysis.scripting import run_code

    prog = setup["prog"]
    code = run_line(Session(prog), f"{line} --python")
    out, err = io.StringIO(), io.StringIO()
    assert run_code(code, line, script_namespace(prog), out, err), err.getvalue()
    place = re.compile(r"^\s*(\S+): (\d+)$", re.M)
    ours = place.findall(setup["ours"][line])
    assert len(ours) >= 3 and place.findall(out.getvalue()) == ours
