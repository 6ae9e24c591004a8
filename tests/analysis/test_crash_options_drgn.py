"""crash's options that drgn 0.3.0's crash mode also takes, against drgn's crash mode on
the lab dump of every lab kernel: ``files -d/-p/-c/-R``, ``net -a``, ``ipcs -n``,
``irq -d``, ``timer -r``, ``search -x``, ``dev -i/-p/-d/-D``.

kdumpy reads each dump alone (kallsyms, BTF from its memory); drgn reads it with Debian's
-dbg vmlinux, in a subprocess (``drgn_crash_options_oracle.py``, cached).  Both run the
same command lines and the rows must agree, field by field where the layouts differ in
form (column widths, a count in hex there and decimal here, as crash prints it).  The
dumps are cached: no VM boots here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_oracle import both, drgn_answers

pytestmark = pytest.mark.vm

ORACLE = Path(__file__).with_name("drgn_crash_options_oracle.py")


@pytest.fixture(scope="module")
def drgn(lab_dump):
    return drgn_answers(lab_dump, ORACLE, "drgnopts1")


def rows(text: str, skip: int = 0) -> list[list[str]]:
    """Non-empty lines as their whitespace-separated words, the first ``skip`` dropped."""
    return [line.split() for line in text.splitlines() if line.strip()][skip:]


@pytest.mark.parametrize(
    "key", ["files_c", "files_d", "files_d_console", "files_R_path", "files_R_inode",
            "files_R_fd", "files_R_c", "files_2"],
)  # fmt: skip
def test_files_options_match_drgn(session, drgn, key):
    """``-c`` (inode, address_space, cached pages), ``-d`` (a dentry's inode, superblock,
    type, full path), ``-R`` by path, inode address, fd and (with ``-c``) address_space,
    and two tasks: the same task lines, root and cwd, and rows."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours) == rows(theirs)
    assert len(rows(ours)) >= 2


def test_files_p_matches_drgn(session, drgn):
    """``-p``: the inode's page count, then each cached page: page, physical address,
    mapping, index, count (decimal here as crash prints it, hex in drgn) and flags;
    the flag names are crash's (each bit once; drgn adds the later aliases)."""
    ours, theirs = both(session, drgn, "files_p")
    mine, their = rows(ours), rows(theirs)
    assert mine[:3] == their[:3]  # the INODE/NRPAGES header and row, the PAGE header
    pages = [(r[:4], int(r[4]), r[5]) for r in mine[3:]]
    assert pages == [(r[:4], int(r[4], 16), r[5]) for r in their[3:]]
    for m, t in zip(mine[3:], their[3:], strict=True):
        assert set(m[6].split(",")) <= set(t[6].split(","))
    assert len(pages) == int(mine[1][1]) >= 1


def test_net_a_matches_drgn(session, drgn):
    """``net -a``: the same neighbours (address, IP, hardware type and address, device,
    state).  crash prints nothing for an empty cache, drgn its header alone.  (The lab
    guests have no network configured: their caches are empty, so this proves the walk
    of ``arp_tbl`` on each kernel's layout; the synthetic test proves the rows.)"""
    ours, theirs = both(session, drgn, "net_a")

    def entries(text: str, skip: int) -> list[list[str]]:
        out = []
        for r in rows(text, skip):
            hw = ":".join(r[3:-2])  # spaced bytes here for an unnamed type, colons in drgn
            out.append([r[0].rjust(16, "0"), r[1], r[2], hw, *r[-2:]])
        return out

    assert entries(ours, 1) == entries(theirs, 1)


@pytest.mark.parametrize("key", ["ipcs_n", "ipcs_n_sleep", "ipcs_n_m"])
def test_ipcs_n_matches_drgn(session, drgn, key):
    """``ipcs -n`` by pid (init and the workload's sleep) and by task address, with a
    kind: the same headers and objects (none on the lab kernels: their workloads make no
    System V IPC; the synthetic test proves rows and a namespace of a task's own)."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours) == rows(theirs)


def test_irq_d_matches_drgn(session, drgn):
    """``irq -d``: each of the 256 IDT vectors' handler, ``name`` or ``name+offset``."""
    ours, theirs = both(session, drgn, "irq_d")
    assert rows(ours) == rows(theirs)
    assert len(rows(ours)) == 256


def _hrtimer_clocks(text: str) -> dict[tuple[int, int], list[list[str]]]:
    """``timer -r``'s output as {(cpu, clock): the rows under the CLOCK line}."""
    out: dict[tuple[int, int], list[list[str]]] = {}
    cpu = clock = -1
    for r in rows(text):
        if r[0] == "CPU:":
            cpu = int(r[1])
        elif r[0] == "CLOCK:":
            clock = int(r[1])
            out[(cpu, clock)] = [r[:4]]  # crash names the clock's reader; drgn does not
        else:
            out[(cpu, clock)].append(r)
    return out


@pytest.mark.parametrize("key", ["timer_r", "timer_r_C"])
def test_timer_r_matches_drgn(session, drgn, key):
    """``timer -r`` (``-C 1``: CPU 1's): the same CPU and clock bases, and each hrtimer's
    soft and hard expiry, address, function and symbol, in order.  "Now" differs by
    design: crash (and kdumpy) count it from jiffies, drgn reads the coarse monotonic
    clock; both must be within a second, and each TTE is EXPIRES less this now."""
    ours, theirs = both(session, drgn, key)
    mine, their = _hrtimer_clocks(ours), _hrtimer_clocks(theirs)
    assert mine.keys() == their.keys() and mine
    timers = 0
    for where, block in mine.items():
        other = their[where]
        assert block[0] == other[0]
        if block[1:] == [["(empty)"]]:
            assert other[1:] == [["(empty)"]]
            continue
        now, drgn_now = int(block[2][0]), int(other[2][0])
        assert abs(now - drgn_now) < 1_000_000_000
        assert [r[:2] + r[3:] for r in block[4:]] == [r[:2] + r[3:] for r in other[4:]]
        assert all(int(r[2]) == int(r[1]) - now for r in block[4:])
        timers += len(block) - 4
    assert timers >= 1


@pytest.mark.parametrize("key", ["search_x", "search_x_w", "search_x_h"])
def test_search_x_matches_drgn(session, drgn, key):
    """``search -x`` (64-, 32- and 16-bit values): each match with the same values
    before and after it, line by line (addresses, values, ASCII)."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours) == rows(theirs)
    assert len(rows(ours)) >= 3


def test_dev_i_matches_drgn(session, drgn):
    """``dev -i``: the I/O port resources (address, range, name), depth first; crash
    adds the I/O memory tree, which drgn's crash mode leaves out (crash 8.0.2's own
    output is compared on 6.1 in test_crash_options_crash.py)."""
    ours, theirs = both(session, drgn, "dev_i")
    ports = ours.split("\n\n")[0]
    assert rows(ports) == rows(theirs)
    assert len(rows(ports)) >= 10


def test_dev_p_matches_drgn(session, drgn):
    """``dev -p``: the root buses and names, each device's address, slot name, class,
    vendor and device ids (unpadded here as crash, 4 digits in drgn) and type."""
    ours, theirs = both(session, drgn, "dev_p")

    def ids(text: str) -> list[list[object]]:
        out: list[list[object]] = []
        for r in rows(text):
            if len(r) >= 5 and ":" in r[3] and r[0] != "PCI":
                vendor, device = r[3].split(":")
                out.append([*r[:3], int(vendor, 16), int(device, 16), *r[4:]])
            else:
                out.append(r)
        return out

    assert ids(ours) == ids(theirs)
    assert len(rows(ours)) >= 4


@pytest.mark.parametrize("key", ["dev_d", "dev_D"])
def test_dev_d_matches_drgn(session, drgn, key):
    """``dev -d``/``-D``: each disk's major, gendisk, name, request queue and the
    requests in flight on it, total, reads and writes (none on the lab dumps: the
    guests' disks are idle when they crash; -D lists none, its header alone)."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 1) == rows(theirs, 1)
    assert len(rows(ours, 1)) >= (2 if key == "dev_d" else 0)
