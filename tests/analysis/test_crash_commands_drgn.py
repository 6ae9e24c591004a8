"""crash's command set against drgn 0.3.0's crash mode, on the lab dump of every lab kernel.

kdumpy reads each dump alone (kallsyms, BTF from its memory); drgn reads it with
Debian's -dbg vmlinux, in a subprocess (``drgn_crash_oracle.py``, cached).  Both run the
same command lines; the rows must agree: addresses, names, counts.  Where the layouts
differ in form (column widths, drgn's typed member values), the rows are compared
field by field.  The dumps are cached: no VM boots here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from analysis_oracle import both, drgn_answers

from kdumpy.analysis.commands import run_line

pytestmark = pytest.mark.vm

ORACLE = Path(__file__).with_name("drgn_crash_oracle.py")
_HEX = re.compile(r"\b[0-9a-f]{9,16}\b")


@pytest.fixture(scope="module")
def drgn(lab_dump):
    return drgn_answers(lab_dump, ORACLE, "drgncrash25")


def rows(text: str, skip: int = 1) -> list[list[str]]:
    """Non-empty lines as their whitespace-separated words, the header(s) dropped."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    return lines[skip:]


@pytest.mark.parametrize(
    "key",
    [
        "mount",
        "kmem_s",
        "kmem_s_task",
        "kmem_v",
        "kmem_f",
        "irq",
        "swap",
        "mount_n",
        "irq_u",
        "irq_a",
        "irq_s",
        "irq_b",
        "kmem_I",
    ],
)
def test_table_rows_match_drgn(session, drgn, key):
    """Same rows, same fields, same order (mount, kmem -s, kmem -v, irq, swap)."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours) == rows(theirs)


@pytest.mark.parametrize("key", ["vm_1", "vm_sleep"])
def test_vm_matches_drgn(session, drgn, key):
    """The mm line (MM, PGD, RSS, TOTAL_VM) and every VMA (address, range, flags, file)."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0)[2] == rows(theirs, 0)[2]  # MM PGD RSS TOTAL_VM
    assert rows(ours, 4) == rows(theirs, 4)
    assert len(rows(ours, 4)) >= 8


@pytest.mark.parametrize("key", ["ptov", "vtop_task1", "vtop_stack", "btop"])
def test_address_conversion_matches_drgn(session, drgn, key):
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0) == rows(theirs, 0)


def test_ptob_matches_drgn(session, drgn):
    """A page number in decimal, as crash and drgn read it."""
    ours, theirs = both(session, drgn, "ptob")
    assert ours.split() == theirs.split()


@pytest.mark.parametrize(
    "key",
    ["list_tasks", "list_modules", "tree_vmap", "tree_vmap_node", "tree_pid_xarray",
     "tree_mm_maple", "list_tasks_r", "list_tasks_e", "list_modules_r", "tree_pid_r",
     "list_l", "list_O"],
)  # fmt: skip
def test_list_and_tree_match_drgn(session, drgn, key):
    """The same entries in the same order, and for ``-s module.name`` the same names."""
    ours, theirs = both(session, drgn, key)
    assert _HEX.findall(ours) == _HEX.findall(theirs)
    assert re.findall(r'"([^"]*)"', ours) == re.findall(r'"([^"]*)"', theirs)
    assert len(_HEX.findall(ours)) >= 1


@pytest.mark.parametrize("key", ["kmem_task1", "kmem_task1_inside", "kmem_stack"])
def test_kmem_address_matches_drgn(session, drgn, key):
    """What an address is: the task, the slab cache row, the slab, the object and
    whether it is allocated, the vmalloc area, the page and its physical address."""
    ours, theirs = both(session, drgn, key)
    ours_rows, their_rows = rows(ours, 0), rows(theirs, 0)
    wanted = [r for r in their_rows if r[0] in ("PID:", "TASK:")]
    wanted = [r[:2] for r in wanted]
    assert wanted == [r[:2] for r in ours_rows if r[0] in ("PID:", "TASK:")]
    for header in ("CACHE", "SLAB", "FREE", "VMAP_AREA", "PAGE"):
        if not any(r[0] == header for r in their_rows):
            assert not any(r[0] == header for r in ours_rows), header
            continue
        i = next(i for i, r in enumerate(their_rows) if r[0] == header)
        j = next(j for j, r in enumerate(ours_rows) if r[0] == header)
        if header == "PAGE":  # page and physical address; the flags' spelling differs
            assert ours_rows[j + 1][:2] == their_rows[i + 1][:2]
        else:
            assert ours_rows[j + 1] == their_rows[i + 1], header


@pytest.mark.parametrize("key", ["ipcs", "net", "timer", "ipcs_m", "ipcs_s", "ipcs_q", "timer_C"])
def test_kernel_tables_match_drgn(session, drgn, key):
    """ipcs, net and timer: every row's fields (timer: bases, expiry, TTE, timer_list,
    function and its symbol)."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0) == rows(theirs, 0)


def test_dev_matches_drgn(session, drgn):
    """Character devices with their cdev and file operations (a NULL region cdev looked
    up in cdev_map); block majors and names (kdumpy does not list gendisks)."""
    ours, theirs = both(session, drgn, "dev")
    char_ours, block_ours = ours.split("\nBLKDEV")
    char_theirs, block_theirs = theirs.split("\nBLKDEV")
    assert rows(char_ours) == rows(char_theirs)
    majors = [r[:2] for r in rows(block_theirs) if r[0].isdigit()]
    assert rows(block_ours) == majors


@pytest.mark.parametrize("key", ["task_1", "task_sleep"])
def test_task_members_match_drgn(session, drgn, key):
    """``task -R``: the task line and each member's value (drgn adds the C type in
    parentheses, which is dropped here)."""
    ours, theirs = both(session, drgn, key)
    typed = re.compile(r"= \([^)]*\)")
    assert rows(ours, 0) == rows(typed.sub("= ", theirs), 0)


@pytest.mark.parametrize("key", ["sig_1", "sig_sleep"])
def test_sig_matches_drgn(session, drgn, key):
    """Every handler (address, handler, mask, flags), the blocked and pending sets."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0) == rows(theirs, 0)


def test_fuser_matches_drgn_helpers(session, drgn):
    """fuser (not in drgn's crash mode): the same pids and uses as drgn's d_path,
    for_each_file and for_each_vma give."""
    ours = rows(run_line(session, "fuser /bin/busybox"))
    assert not session.failed
    assert sorted([int(r[0]), r[3:]] for r in ours) == drgn["fuser_busybox"]
    assert ours


@pytest.mark.parametrize("key", ["search_range", "search_int", "search_mask", "search_all"])
def test_search_matches_drgn(session, drgn, key):
    """The same addresses and words: in a range, 32-bit, with a mask, and over all
    of the direct map."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0) == rows(theirs, 0)
    assert rows(ours, 0)


def test_search_string_matches_drgn(session, drgn):
    ours, theirs = both(session, drgn, "search_string")
    assert [r[0] for r in rows(ours, 0)] == [r[0] for r in rows(theirs, 0)]


@pytest.mark.parametrize("key", ["kmem_g", "kmem_g_slab"])
def test_kmem_g_matches_drgn(session, drgn, key):
    """Page flag names and bits, aliases included, in the kernel's enum order."""
    ours, theirs = both(session, drgn, key)
    assert [r[:2] for r in rows(ours, 2)] == [r[:2] for r in rows(theirs, 2)]


@pytest.mark.parametrize(
    "key", ["ascii", "ascii_nul", "eval_kb", "eval_gb", "eval_bits", "eval_dec", "bpf"]
)
def test_calculator_and_bpf_match_drgn(session, drgn, key):
    """ascii and eval (the same text), bpf (the same programs and maps: none here)."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0) == rows(theirs, 0)


def test_pointer_to_matches_drgn(session, drgn):
    """crash's ``*struct.member addr`` short-cut: the members' values."""
    ours, theirs = both(session, drgn, "pointer_to")
    typed = re.compile(r"= \([^)]*\)")
    assert rows(ours, 0) == rows(typed.sub("= ", theirs), 0)


def test_kmem_p_matches_drgn_pages(session, drgn):
    """``kmem -p PHYS...``: page, physical address, mapping, index, count and flags of
    frames across RAM, as drgn's pfn_to_page reads them."""
    want = drgn["pages"]
    out = run_line(session, "kmem -p " + " ".join(f"{p[0]:x}" for p in want))
    assert not session.failed, out
    got = [[int(r[1], 16), int(r[0], 16), int(r[2], 16), int(r[3], 16), int(r[4]), int(r[5], 16)]
           for r in rows(out)]  # fmt: skip
    assert got == want


def test_foreach_vm_matches_drgn_helpers(session, drgn):
    """``foreach vm``: every task's VMAs (address, range, flags), as drgn's for_each_vma
    lists them (drgn's crash-mode foreach stops after the first task, so its helpers are
    the oracle)."""
    out = run_line(session, "foreach vm")
    assert not session.failed
    ours, pid = [], None
    for r in rows(out, 0):
        if r[0] == "PID:":
            pid = int(r[1])
        elif len(r) >= 4 and re.fullmatch("[0-9a-f]{16}", r[0]) and not r[2].endswith("k"):
            ours.append([pid, int(r[0], 16), int(r[1], 16), int(r[2], 16), int(r[3], 16)])
    assert sorted(ours) == sorted(drgn["vmas"]) and len(ours) > 20


def test_kmem_S_slabs_hold_every_free_object_drgn_counts(session, drgn):
    """``kmem -S``: the free objects of the CPU slabs and partial slabs it lists add up to
    drgn's TOTAL - ALLOCATED for each cache (full slabs have none).  Caches with
    per-CPU sheaves (6.18+; every cache since 7.0) keep free objects outside any slab:
    they are left out."""
    theirs = {r[-1]: int(r[3]) - int(r[2]) for r in rows(drgn["kmem_s"]["out"])}
    out = run_line(session, "kmem -S")
    assert not session.failed
    checked = 0
    for block in out.split("\n\n"):
        lines = rows(block, 0)
        name, cache = lines[1][-1], int(lines[1][0], 16)
        if session.prog.object_at("struct kmem_cache", cache).has_member_("cpu_sheaves"):
            sheaves = session.prog.object_at("struct kmem_cache", cache).cpu_sheaves
            if int(sheaves):
                continue
        free = sum(int(r[4]) for r in lines[2:] if re.fullmatch("[0-9a-f]{16}", r[0]))
        assert free == theirs[name], name
        checked += 1
    if not session.prog.has_member("struct kmem_cache", "cpu_slab"):
        pytest.skip("7.0+: free objects wait in sheaves, outside any slab")
    assert checked >= 10


def test_waitq_matches_drgn(session, drgn):
    """``waitq``: the tasks on kswapd's wait queue (pid and task_struct)."""
    ours, theirs = both(session, drgn, "waitq_kswapd")

    def tasks(text: str) -> list[list[str]]:
        return [r[:4] for r in rows(text, 0) if r[0] == "PID:"]

    assert tasks(ours) == tasks(theirs) and tasks(ours)


@pytest.mark.parametrize("key", ["kmem_V", "kmem_z", "kmem_h", "kmem_o"])
def test_kmem_statistics_match_drgn(session, drgn, key):
    """``kmem -V/-z/-h/-o``: every heading, counter name and value, zone line and
    watermark, HugeTLB state and per-CPU offset, in order (colons aside: drgn leaves
    them out of -z's counter rows)."""
    ours, theirs = both(session, drgn, key)

    def words(text: str) -> list[list[str]]:
        return [line.replace(":", " ").split() for line in text.splitlines() if line.strip()]

    assert words(ours) == words(theirs)
    assert len(words(ours)) >= 2


@pytest.mark.parametrize("key", ["sym_name", "sym_addr"])
def test_sym_matches_drgn(session, drgn, key):
    """The symbol's address and name (drgn names the symbol's start and its source
    line; crash and kdumpy name the address given, +offset)."""
    ours, theirs = both(session, drgn, key)
    address, _kind, name = ours.split()[:3]
    start, their_name = theirs.split()[:2]
    assert name.split("+")[0] == their_name
    offset = int(name.split("+")[1], 16) if "+" in name else 0
    assert int(address, 16) - offset == int(start, 16)


def test_whatis_and_p_match_drgn(session, drgn):
    ours, theirs = both(session, drgn, "whatis_var")
    assert ours == theirs
    ours, theirs = both(session, drgn, "p_var")
    value = re.compile(r"(\d+)\s*$")  # the value; drgn adds its type, crash $1
    assert value.search(ours)[1] == value.search(theirs)[1]  # type: ignore[index]


def test_struct_members_match_drgn(session, drgn):
    """``struct TYPE.a,b ADDR``: the same members and strings (gdb prints the whole
    char array, drgn the string)."""
    ours, theirs = both(session, drgn, "struct_uts")
    strings = re.findall(r'(\w+) = [^"]*"([^"\\]*)', ours)
    assert strings == re.findall(r'(\w+) = [^"]*"([^"\\]*)', theirs)
    assert len(strings) == 2


def test_union_member_matches_drgn(session, drgn):
    """``union TYPE.a,b ADDR`` (bpf_attr over pid 1's task_struct): the same values."""
    ours, theirs = both(session, drgn, "union_attr")
    members = re.compile(r"(\w+) = (?:\([^)]*\))?(\d+)")
    assert members.findall(ours) == members.findall(theirs)
    assert len(members.findall(ours)) == 2


def test_set_names_drgns_task(session, drgn):
    ours, theirs = both(session, drgn, "set_1")
    assert rows(ours, 0)[:2] == rows(theirs, 0)[:2]  # PID, COMMAND
    assert rows(ours, 0)[2][:2] == rows(theirs, 0)[2][:2]  # TASK
    assert rows(ours, 0)[3] == rows(theirs, 0)[3]  # CPU


def test_files_rows_match_drgn(session, drgn):
    """fd, file, dentry, inode, type and path of every open file, and the root and
    working directories."""
    ours, theirs = both(session, drgn, "files_1")
    assert rows(ours, 0)[1] == rows(theirs, 0)[1]  # ROOT: / CWD: /
    assert rows(ours, 3) == rows(theirs, 3)
    assert len(rows(ours, 3)) >= 3


@pytest.mark.parametrize("key", ["runq", "runq_c", "runq_t", "runq_T", "runq_m"])
def test_runq_matches_drgn(session, drgn, key):
    """Each CPU's run queue, current task, queue addresses and queued tasks (``-c 1``:
    CPU 1's); ``-t`` the clocks and arrival times, ``-T`` the lags, ``-m`` how long
    each task has run."""
    ours, theirs = both(session, drgn, key)

    def words(text: str) -> list[list[str]]:
        return [line.replace(":", " ").split() for line in text.splitlines() if line.strip()]

    assert words(ours) == words(theirs)


@pytest.mark.parametrize("key", ["ps", "ps_A", "ps_G", "ps_y"])
def test_ps_rows_match_drgn(session, drgn, key):
    """Every task (``-A`` the active ones, ``-G`` group leaders, ``-y FIFO`` real-time
    FIFO tasks): pid, CPU, task address, memory, VSZ, RSS, name; the ``>`` marks.
    (The state column is crash 8's two letters here, drgn's one; the PPID of an idle
    task is its real parent here, 0 in drgn.)"""
    ours, theirs = both(session, drgn, key)

    def fields(text: str) -> list[tuple[str, ...]]:
        out = []
        for line in text.splitlines()[1:]:
            mark, words = line.startswith(">"), line.lstrip("> ").split()
            out.append((str(mark), words[0], *words[2:4], *words[5:]))
        return out

    assert fields(ours) == fields(theirs)
    assert len(fields(ours)) >= {"ps": 50, "ps_A": 2, "ps_G": 40, "ps_y": 1}[key]


def test_mod_rows_match_drgn(session, drgn):
    """Every module's address, name, base and size (in address order here, list
    order in drgn)."""
    ours, theirs = both(session, drgn, "mod")
    assert sorted(r[:4] for r in rows(ours)) == sorted(r[:4] for r in rows(theirs))
    assert len(rows(ours)) >= 1


def test_log_matches_drgn(session, drgn):
    ours, theirs = both(session, drgn, "log")
    assert ours == theirs


_HEXVAL = re.compile(r"(\w+) = (?:\([^)]*\))?(0x[0-9a-f]+)")


@pytest.mark.parametrize("key", ["p_x", "struct_x", "task_x"])
def test_hex_values_match_drgn(session, drgn, key):
    """``-x``: the same members printed in hex with the same values."""
    ours, theirs = both(session, drgn, key)
    if key == "p_x":  # crash's "jiffies = $N = 0x..."
        ours = re.sub(r" = \$\d+", "", ours)
    assert _HEXVAL.findall(ours) == _HEXVAL.findall(theirs)
    assert _HEXVAL.findall(ours)


@pytest.mark.parametrize("key", ["sym_q", "sym_pn"])
def test_sym_search_and_neighbours_match_drgn(session, drgn, key):
    """``sym -q``/``-p -n``: the same symbols at the same addresses, in order."""
    ours, theirs = both(session, drgn, key)
    assert [(r[0], r[2]) for r in rows(ours, 0)] == [tuple(r[:2]) for r in rows(theirs, 0)]
    assert len(rows(ours, 0)) >= 2


_FRAME = re.compile(r"#\d+ \[[0-9a-f]+\] (\S+) at ([0-9a-f]+)")


@pytest.mark.parametrize("key", ["bt_c0", "bt_p"])
def test_bt_of_a_cpu_and_the_panic_task_match_drgn(session, drgn, key):
    """``bt -c 0``, ``bt -p``: the same task and the same frames' pcs (drgn names them
    from DWARF: ``__handle_sysrq`` for the ``.cold`` part kallsyms names, one alias of
    several at an address)."""
    ours, theirs = both(session, drgn, key)
    assert ours.split()[:4] == theirs.split()[:4]  # PID: n TASK: address
    assert [pc for _n, pc in _FRAME.findall(ours)] == [pc for _n, pc in _FRAME.findall(theirs)]
    assert _FRAME.findall(ours)


@pytest.mark.parametrize("key", ["set_c0", "set_p"])
def test_set_cpu_and_panic_match_drgn(session, drgn, key):
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0)[:2] == rows(theirs, 0)[:2]  # PID, COMMAND
    assert rows(ours, 0)[2][:2] == rows(theirs, 0)[2][:2]  # TASK


@pytest.mark.parametrize("key", ["sig_l", "sig_s", "sig_g"])
def test_sig_list_set_and_group_match_drgn(session, drgn, key):
    """``sig -l`` (every number and name), ``sig -s`` (a set's names) and ``sig -g``
    (from the shared pending set on: each thread's blocked and pending signals)."""
    ours, theirs = both(session, drgn, key)
    if key == "sig_g":
        ours = ours[ours.index("SHARED_PENDING") :]
        theirs = theirs[theirs.index("SHARED_PENDING") :]
    assert rows(ours, 0) == rows(theirs, 0)
    assert rows(ours, 0)


def test_mod_t_matches_drgn(session, drgn):
    """``mod -t``: the tainting modules and their letters (none on the lab kernels:
    Debian's modules are signed and in tree)."""
    ours, theirs = both(session, drgn, "mod_t")
    assert ours == theirs


@pytest.mark.parametrize("key", ["struct_c", "struct_l"])
def test_struct_count_and_offset_match_drgn(session, drgn, key):
    """``struct -c 2``: two list_heads from init_task's; ``-l task_struct.tasks``:
    init_task's pid and tgid from its tasks member.  The same pointers and numbers."""
    ours, theirs = both(session, drgn, key)
    pointers = re.compile(r"(?<![+\w])0x[0-9a-f]+")  # drgn adds symbol+0xOFFSET
    numbers = re.compile(r"(\w+) = (?:\([^)]*\))?(\d+)\b")
    assert pointers.findall(ours) == pointers.findall(theirs)
    assert numbers.findall(ours) == numbers.findall(theirs)
    assert len(pointers.findall(ours) + numbers.findall(ours)) >= 2


@pytest.mark.parametrize("key", ["rd_d", "rd_D", "rd_x", "rd_N", "rd_R", "rd_o", "rd_e"])
def test_rd_formats_match_drgn(session, drgn, key):
    """``rd`` with -d/-D (decimal), -x (no ASCII), -N (network order), -R (up to the
    address), -o (offset), -e (end): the same addresses and values, line by line."""
    ours, theirs = both(session, drgn, key)
    assert rows(ours, 0) == rows(theirs, 0)
    assert rows(ours, 0)


# drgn's one-letter states (task_state_to_char) as crash 8.0.2 spells them.
_CRASH_STATE = {"R": "RU", "S": "IN", "D": "UN", "I": "ID", "T": "ST", "t": "TR", "Z": "ZO",
                "X": "DE", "P": "PA", "N": "NE", "W": "WA"}  # fmt: skip


def test_ps_summary_matches_drgn(session, drgn):
    ours, theirs = both(session, drgn, "ps_S")
    mine = dict(line.strip().split(": ") for line in ours.splitlines())
    pairs = (line.strip().split(": ") for line in theirs.splitlines())
    counted = {_CRASH_STATE[state]: count for state, count in pairs}
    assert mine == counted


@pytest.mark.parametrize("key", ["search_t", "search_T"])
def test_search_of_the_stacks_matches_drgn(session, drgn, key):
    """``search -t/-T ADDR`` (pid 1's task_struct): the same tasks, and where on each
    stack the value sits."""
    ours, theirs = both(session, drgn, key)

    def found(text: str) -> dict[int, list[int]]:
        blocks = [b for b in text.split("\n\n") if b.strip()]
        return {
            int(b.split("TASK: ")[1].split()[0], 16): [
                int(line.split(":")[0], 16) for line in b.splitlines()[1:]
            ]
            for b in blocks
        }

    assert found(ours) == found(theirs)
