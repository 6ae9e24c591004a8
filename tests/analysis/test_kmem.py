"""`kmem -i` against the kernel's own counters as drgn 0.3.0 reads them with the DWARF
vmlinux (drgn's ``vm_commit_limit``/``vm_memory_committed`` helpers, the vmstat arrays,
the bdev inodes, hstates, swap totals), and its layout against crash 8.0.2's output
on the 6.1 dump.

The figures follow /proc/meminfo.  crash tallies SHARED and SLAB from the page map and
shows vm_committed_as without its per-CPU deltas, so those three rows are compared with
drgn only, not with crash.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_oracle import dbg_vmlinux, drgn_answers

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

pytestmark = pytest.mark.vm

EXTRA_ORACLE = Path(__file__).with_name("drgn_extra_oracle.py")
EXTRA_TAG = "drgnx2"
# Rows whose meaning is the same in crash and in /proc/meminfo.
SAME_AS_CRASH = ("TOTAL MEM", "FREE", "USED", "BUFFERS", "CACHED", "TOTAL HUGE",
                 "HUGE FREE", "TOTAL SWAP", "SWAP USED", "SWAP FREE", "COMMIT LIMIT")  # fmt: skip


def extra_answers(dump: object) -> dict:
    return drgn_answers(dump, EXTRA_ORACLE, EXTRA_TAG)


def rows(text: str) -> dict[str, str]:
    """``label -> whole line`` of a kmem -i table."""
    out = {}
    for line in text.splitlines():
        label = line[:13].strip()
        if label and label != "PAGES" and line[13:15] == "  ":
            out[label] = line
    return out


def pages(text: str) -> dict[str, int]:
    return {label: int(line[13:].split()[0]) for label, line in rows(text).items()}


@pytest.fixture(scope="module")
def kmem(lab_dump):
    with Program.open(lab_dump.vmcore) as prog:
        return run_line(Session(prog), "kmem -i")


def test_kmem_figures_match_drgn(kmem, lab_dump):
    m = extra_answers(lab_dump)["meminfo"]
    expected = {
        "TOTAL MEM": m["total"],
        "FREE": m["free"],
        "USED": m["total"] - m["free"],
        "SHARED": m["shared"],
        "BUFFERS": m["buffers"],
        "CACHED": max(0, m["cached"]),
        "SLAB": m["slab"],
        "TOTAL HUGE": m["huge"],
        "HUGE FREE": m["huge_free"],
        "TOTAL SWAP": m["swap"],
        "SWAP USED": m["swap"] - m["swap_free"],
        "SWAP FREE": m["swap_free"],
        "COMMIT LIMIT": m["commit_limit"],
        "COMMITTED": m["committed"],
    }
    assert pages(kmem) == expected
    assert m["buffers"] > 0 and m["committed"] > 0  # the guest did use them


@pytest.mark.skipif(shutil.which("crash") is None, reason="crash is not installed")
def test_kmem_layout_matches_crash(lab_dump_61):
    vmlinux = str(dbg_vmlinux(lab_dump_61.kernel))
    theirs = subprocess.run(
        ["crash", "-s", vmlinux, str(lab_dump_61.vmcore)],
        input="kmem -i\nq\n",
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    ours = subprocess.run(
        [sys.executable, "-m", "kdumpy", "crash", str(lab_dump_61.vmcore), "-c", "kmem -i"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    t, o = rows(theirs), rows(ours)
    assert list(o) == list(t)  # the same rows in the same order
    for label in SAME_AS_CRASH:
        assert o[label] == t[label]
    assert "PAGES        TOTAL      PERCENTAGE" in ours.splitlines()[0]


def test_kmem_bad_option_is_one_line(lab_dump_61):
    with Program.open(lab_dump_61.vmcore) as prog:
        out = run_line(Session(prog), "kmem -Q")
    assert out.startswith("kmem: ") and out.count("\n") == 1
