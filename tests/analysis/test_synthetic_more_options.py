"""crash's options drgn's crash mode takes (docs/commands.md, issue 14) on the synthetic
kernel (no VM): ``rd -S/-r/-u`` and the rest.  The machine is the standard one with a
few things added by the test (``_extras``): words pointing at slab objects, and a user
page of bash's (the panic task) mapped through its own page tables.  The builder's
record is the oracle."""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field

import pytest
from synthetic import HOSTILE_MODULE, Machine, SyntheticKernel, build_machine, open_program
from synthetic.kernel import IMAGE_END
from synthetic.memory import PAGE, PAGE_OFFSET
from synthetic.subsystems import HOSTILE_CACHE, PAGE_STRUCT, VMEMMAP

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line
from kdumpy.printable import shown

USER_PAGE = 0x7FFC0000E000  # below bash's user stack pointer
USER_TEXT = b"HOME=/root\0PATH=/usr/bin:/bin\0"
USER_PTE = 0x7  # present, writable, user


@dataclass
class Extras:
    words: int = 0  # the rd -S array
    values: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # what rd -S must print for each
    labels2: list[str] = field(default_factory=list)  # and rd -SS
    user_phys: int = 0
    sections: list[tuple[int, int]] = field(default_factory=list)  # nr, struct mem_section
    blocks: list[tuple[int, str, int]] = field(default_factory=list)  # memory_block, name, nr
    root_group: int = 0
    root_cfs: list[int] = field(default_factory=list)  # per CPU
    group: int = 0  # the child task group, throttled, with kworker/1:0 on CPU 1
    group_cfs: int = 0


def _user_tables(k: SyntheticKernel, mm: int, vaddr: int, phys: int) -> None:
    """A process's 4-level page tables (``mm->pgd``, a direct-map address) mapping the
    4 KiB page ``vaddr`` to ``phys``, and nothing else."""
    tables = [k.mem.alloc_phys(PAGE, PAGE) for _ in range(4)]
    for level, shift in enumerate((39, 30, 21, 12)):
        entry = tables[level + 1] if level < 3 else phys
        at = tables[level] + 8 * ((vaddr >> shift) & 511)
        k.mem.write_phys(at, struct.pack("<Q", entry | USER_PTE))
    k.write(mm, "struct mm_struct", {"pgd": PAGE_OFFSET + tables[0]})


SECTION_BITS = 22  # 4 MiB sections: the heap is section 0, the kernel image section 4
SECTION_TYPES = """
enum section_flag_bits { SECTION_MARKED_PRESENT_BIT, SECTION_HAS_MEM_MAP_BIT,
                         SECTION_IS_ONLINE_BIT, SECTION_IS_EARLY_BIT, SECTION_MAP_LAST_BIT };
struct kobject { const char *name; };
struct device { struct kobject kobj; };
struct memory_block { unsigned long start_section_nr; unsigned long state; int online_type;
                      int nid; struct device dev; };
"""


def _sections_and_blocks(k: SyntheticKernel, extras: Extras) -> None:
    """SPARSEMEM sections 0 and 4 (present, with a mem_map, online, early) in the first
    of two roots, and two memory blocks in the ``memory_blocks`` XArray."""
    k.types.declare(SECTION_TYPES)
    roots = k.mem.alloc(16, 8)
    table = k.mem.alloc(PAGE, PAGE)
    k.mem.u64(roots, table)
    for nr in (0, 4):
        k.mem.u64(table + 16 * nr, VMEMMAP | 0xF)  # coded: the vmemmap, flags PMOE
        extras.sections.append((nr, table + 16 * nr))
    k.vmcoreinfo_extra.update({"SYMBOL(mem_section)": f"{roots:x}", "LENGTH(mem_section)": "2",
                               "SIZE(mem_section)": "16",
                               "OFFSET(mem_section.section_mem_map)": "0",
                               "NUMBER(SECTION_SIZE_BITS)": str(SECTION_BITS)})  # fmt: skip
    node = k.new("struct xa_node", {"shift": 0})
    for index, nr in enumerate((0, 4)):
        name = f"memory{nr}"
        values = {"start_section_nr": nr, "state": 1, "dev.kobj.name": k.string(name.encode())}
        block = k.new("struct memory_block", values)
        k.write(node, "struct xa_node", {f"slots[{index}]": block})
        extras.blocks.append((block, name, nr))
    k.global_("memory_blocks", "struct xarray", {"xa_head": node | 2})
    k.global_("memory_block_size_probed", "unsigned long", {"": 1 << SECTION_BITS})


def _task_groups(k: SyntheticKernel, m: Machine, extras: Extras) -> None:
    """``root_task_group`` (each CPU's rq->cfs) and a child group ``kdumpy.slice`` whose
    run queue on CPU 1 holds kworker/1:0 (taken from the root queue, where the group's
    entity now sits beside kdumpy-spin) and is throttled."""
    rq_sym = k.symbols["runqueues"][0]
    cfs = [k.per_cpu_address(rq_sym, cpu) + k.offsetof("struct rq", "cfs") for cpu in (0, 1)]
    array = k.mem.alloc(16)
    for cpu, address in enumerate(cfs):
        k.mem.u64(array + 8 * cpu, address)
    root = k.global_("root_task_group", "struct task_group", {"cfs_rq": array})
    kn = k.new("struct kernfs_node", {"name": k.string(b"kdumpy.slice")})
    cgroup = k.new("struct cgroup", {"kn": kn})
    child_rq = k.new("struct cfs_rq", {"throttled": 1})
    child_array = k.mem.alloc(16)
    k.mem.u64(child_array + 8, child_rq)
    child = k.new("struct task_group", {"css.cgroup": cgroup, "cfs_rq": child_array})
    k.write(child_rq, "struct cfs_rq", {"tg": child})
    for address in cfs:
        k.write(address, "struct cfs_rq", {"tg": root})
    se_off = k.offsetof("struct task_struct", "se")
    node_off = k.offsetof("struct sched_entity", "run_node")
    group_se = k.new("struct sched_entity", {"my_q": child_rq})
    spin, kworker = m.tasks[300].address, m.tasks[45].address
    k.write(cfs[1], "struct cfs_rq", {
        "tasks_timeline.rb_root.rb_node": k.rb_tree([spin + se_off + node_off,
                                                     group_se + node_off]),
        "tasks_timeline.rb_leftmost": spin + se_off + node_off})  # fmt: skip
    k.write(child_rq, "struct cfs_rq", {
        "tasks_timeline.rb_root.rb_node": k.rb_tree([kworker + se_off + node_off]),
        "tasks_timeline.rb_leftmost": kworker + se_off + node_off})  # fmt: skip
    extras.root_group, extras.root_cfs = root, cfs
    extras.group, extras.group_cfs = child, child_rq


def _add_extras(extras: Extras) -> object:
    def tamper(k: SyntheticKernel, m: Machine) -> None:
        caches = {c.name: c for c in m.sub.caches}
        kmalloc = next(iter(caches["kmalloc-64"].objects))
        task_obj = next(iter(caches["task_struct"].objects))
        hostile = next(iter(caches[HOSTILE_CACHE].objects))
        crash_fn = k.symbols["sysrq_handle_crash"][0]
        k.symbol("_end", IMAGE_END)  # symbolize reads the image's bounds, _text to _end
        extras.values = [crash_fn + 8, kmalloc + 16, 0x1234, task_obj, hostile, 0]
        extras.labels = ["sysrq_handle_crash+8", "[kmalloc-64]", "0000000000001234",
                         "[task_struct]", f"[{shown(HOSTILE_CACHE)}]",
                         "0000000000000000"]  # fmt: skip
        extras.labels2 = [extras.labels[0], f"[{kmalloc + 16:x}:kmalloc-64]", extras.labels[2],
                          f"[{task_obj:x}:task_struct]",
                          f"[{hostile:x}:{shown(HOSTILE_CACHE)}]", extras.labels[5]]  # fmt: skip
        extras.words = k.mem.alloc(8 * len(extras.values))
        for i, value in enumerate(extras.values):
            k.mem.u64(extras.words + 8 * i, value)
        page = k.mem.alloc_phys(PAGE, PAGE)
        k.mem.write_phys(page, USER_TEXT)
        extras.user_phys = page
        bash = m.tasks[m.panic_pid].address
        mm = k.mem.read_u64(bash + k.offsetof("struct task_struct", "mm"))
        _user_tables(k, mm, USER_PAGE, page)
        _sections_and_blocks(k, extras)
        _task_groups(k, m, extras)

    return tamper


@pytest.fixture(scope="module")
def built() -> tuple[Program, Machine, Extras]:
    extras = Extras()
    data, machine = build_machine(tamper=_add_extras(extras))  # type: ignore[arg-type]
    return open_program(data), machine, extras


@pytest.fixture
def sh(built):
    """Run lines in one fresh session over the extended machine."""
    session = Session(built[0])

    def run(line: str) -> str:
        out = run_line(session, line)
        run.failed = session.failed  # type: ignore[attr-defined]
        return out

    return run


def _words(text: str) -> list[str]:
    return [w for line in text.splitlines() for w in line.split()[1:]]


# -- rd -S ---------------------------------------------------------------------------------


def test_rd_S_names_the_slab_cache_of_a_value(sh, built):
    """``-S``: a symbol as -s shows it, a value in a slab page as ``[cache]``, anything
    else in hex; ``-SS``: ``[value:cache]``; a hostile cache name comes out escaped."""
    _prog, _m, ex = built
    n = len(ex.values)
    assert _words(sh(f"rd -S {ex.words:x} {n}")) == ex.labels
    assert _words(sh(f"rd -SS {ex.words:x} {n}")) == ex.labels2
    assert _words(sh(f"rd -S -S {ex.words:x} {n}")) == ex.labels2
    # -s alone does not look at slab pages
    plain = _words(sh(f"rd -s {ex.words:x} {n}"))
    assert plain[1] == f"{ex.values[1]:016x}" and plain[0] == ex.labels[0]
    first = sh(f"rd -S {ex.words:x} 2").splitlines()[0]
    assert first == f"{ex.words:x}:  {ex.labels[0]:<16} {ex.labels[1]:<16} "


def test_rd_S_python_equivalent_gives_the_same_words(sh, built, capsys):
    prog, _m, ex = built
    for flag, want in (("-S", ex.labels), ("-SS", ex.labels2)):
        code = sh(f"rd {flag} {ex.words:x} {len(ex.values)} --python")
        exec(compile(code, "rd", "exec"), {"prog": prog})  # noqa: S102 - our own output
        printed = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
        assert [shown(w) for w in printed] == want


# -- rd -u ---------------------------------------------------------------------------------


def test_rd_u_reads_the_current_tasks_user_memory(sh, built):
    """``-u``: bash's (the panic task's) page, through its own page tables: words, a
    string, and the same without -u for an address the kernel does not map."""
    _prog, _m, ex = built
    words = struct.unpack("<2Q", USER_TEXT[:16])
    out = sh(f"rd -u {USER_PAGE:x} 2")
    assert out.split()[:3] == [f"{USER_PAGE:x}:", f"{words[0]:016x}", f"{words[1]:016x}"]
    assert out.rstrip().endswith("HOME=/root.PATH=")
    assert sh(f"rd {USER_PAGE:x} 2") == out  # crash reads a user-half address as -u
    assert sh(f"rd -a -u {USER_PAGE:x}") == f"{USER_PAGE:x}:  HOME=/root\n"
    assert sh(f"rd -a -u {USER_PAGE + 11:x}") == f"{USER_PAGE + 11:x}:  PATH=/usr/bin:/bin\n"
    assert sh(f"rd -8 -u {USER_PAGE + 0xFFE:x} 2").split()[1:3] == ["00", "00"]


def test_rd_u_errors(sh, built):
    """An unmapped user address; a kernel thread as the current task; -p with -u."""
    assert sh(f"rd -u {USER_PAGE + PAGE:x}") == (
        f"rd: invalid user virtual address: {USER_PAGE + PAGE:#x}\n"
    )
    assert sh(f"rd -u {USER_PAGE + PAGE - 8:x} 2").startswith("rd: invalid user virtual address")
    assert sh("rd -p -u 1000").startswith("rd: -p and -u ")
    assert sh("set 2").startswith("    PID: 2")
    assert sh(f"rd -u {USER_PAGE:x}") == (
        "rd: -u: the current task (pid 2) has no user address space\n"
    )
    assert sh.failed
    # without -u the kernel's own error stands
    assert sh(f"rd {USER_PAGE:x}").startswith("rd: invalid kernel virtual address")


def test_rd_u_python_equivalent_reads_the_same_bytes(sh, built, capsys):
    prog, _m, _ex = built
    code = sh(f"rd -u {USER_PAGE:x} 2 --python")
    exec(compile(code, "rd", "exec"), {"prog": prog})  # noqa: S102 - our own output
    words = struct.unpack("<2Q", USER_TEXT[:16])
    assert capsys.readouterr().out.split() == [
        f"{USER_PAGE:x}:",
        f"{words[0]:016x}",
        f"{USER_PAGE + 8:x}:",
        f"{words[1]:016x}",
    ]


# -- rd -r ---------------------------------------------------------------------------------


def test_rd_r_copies_raw_bytes_to_a_new_private_file(sh, built, tmp_path):
    prog, _m, ex = built
    out = tmp_path / "words.bin"
    size = 8 * len(ex.values)
    assert sh(f"rd -r {out} {ex.words:x} {size}") == (
        f"{size} bytes copied from 0x{ex.words:x} to {out}\n"
    )
    assert out.read_bytes() == b"".join(struct.pack("<Q", v) for v in ex.values)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    end = tmp_path / "end.bin"
    assert sh(f"rd -r {end} -e {ex.words + 24:x} {ex.words:x}").startswith("24 bytes copied")
    assert end.read_bytes() == out.read_bytes()[:24]
    user = tmp_path / "user.bin"
    assert sh(f"rd -u -r {user} {USER_PAGE:x} {len(USER_TEXT)}").startswith(
        f"{len(USER_TEXT)} bytes copied from 0x{USER_PAGE:x}"
    )
    assert user.read_bytes() == USER_TEXT
    phys = tmp_path / "phys.bin"
    sh(f"rd -p -r {phys} {ex.user_phys:x} 4")
    assert phys.read_bytes() == USER_TEXT[:4]


def test_rd_r_never_overwrites_nor_follows_a_link(sh, built, tmp_path):
    _prog, _m, ex = built
    existing = tmp_path / "existing"
    existing.write_bytes(b"keep")
    assert sh(f"rd -r {existing} {ex.words:x} 8") == (
        f"rd: -r: cannot create {existing}: File exists\n"
    )
    assert existing.read_bytes() == b"keep"
    target = tmp_path / "target"
    link = tmp_path / "link"
    os.symlink(target, link)  # dangling: O_EXCL refuses it, nothing is created behind it
    assert sh(f"rd -r {link} {ex.words:x} 8").startswith(f"rd: -r: cannot create {link}: ")
    assert not target.exists()


def test_rd_r_needs_a_byte_count_and_no_display_flags(sh, built, tmp_path):
    _prog, _m, ex = built
    out = tmp_path / "x"
    assert sh(f"rd -r {out} {ex.words:x}") == "rd: -r needs a count or -e: how many bytes to copy\n"
    assert sh(f"rd -64 -r {out} {ex.words:x} 8").startswith("rd: -r copies bytes")
    assert sh(f"rd -S -r {out} {ex.words:x} 8").startswith("rd: -r copies bytes")
    assert not out.exists()
    # an unreadable byte stops the copy, saying how much was written
    assert sh(f"rd -u -r {out} {USER_PAGE + PAGE - 4:x} 8") == (
        f"rd: invalid user virtual address: {USER_PAGE + PAGE:#x}: 0 bytes copied to {out} "
        "before it\n"
    )


def test_rd_r_python_equivalent_writes_the_same_file(sh, built, tmp_path):
    prog, _m, ex = built
    out = tmp_path / "py.bin"
    code = sh(f"rd -r {out} {ex.words:x} 16 --python")
    exec(compile(code, "rd", "exec"), {"prog": prog})  # noqa: S102 - our own output
    assert out.read_bytes() == b"".join(struct.pack("<Q", v) for v in ex.values[:2])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# -- mod -s / -S ---------------------------------------------------------------------------

WHY = (
    "kdumpy reads module symbols from the dump's kallsyms and types from its BTF, and "
    "loads no module debuginfo (DWARF)"
)


def _module_tree(top) -> None:
    """A module tree: synthmod's object file deep down, and a module not loaded."""
    (top / "kernel" / "drivers").mkdir(parents=True)
    (top / "kernel" / "drivers" / "synthmod.ko.xz").write_bytes(b"\x7fELF")
    (top / "kernel" / "other.ko").write_bytes(b"\x7fELF")


def test_mod_s_says_why_it_cannot_and_which_file_crash_would_load(sh, tmp_path):
    ko = tmp_path / "synthmod.ko"
    ko.write_bytes(b"\x7fELF")
    assert sh(f"mod -s synthmod {ko}") == f"mod: -s synthmod: {WHY}; crash would load {ko}\n"
    assert sh.failed
    assert sh(f"mod -s synthmod {tmp_path / 'absent.ko'}") == (
        f"mod: -s synthmod: {tmp_path / 'absent.ko'}: no such file\n"
    )
    assert sh("mod -s nosuchmod") == "mod: -s nosuchmod: no such module is loaded\n"
    release = "6.8.0-synthetic"
    assert sh("mod -s synthmod") == (
        f"mod: -s synthmod: {WHY}; and no object file for it is under /lib/modules/{release}, "
        f"/usr/lib/debug/lib/modules/{release}\n"
    )
    assert sh("mod -t -s synthmod").startswith("mod: give one of -t, -s, -S")
    assert sh(f"mod {ko}").startswith(f"mod: unexpected argument {ko}")


def test_mod_S_says_what_it_would_search(sh, tmp_path):
    _module_tree(tmp_path)
    hostile = shown(HOSTILE_MODULE.decode())
    assert sh(f"mod -S {tmp_path}") == (
        f"mod: -S: {WHY}; -S would search {tmp_path}: object files for 1 of 2 loaded modules "
        f"(none for {hostile})\n"
    )
    assert sh.failed
    assert sh(f"mod -S {tmp_path / 'absent'}") == (
        f"mod: -S: {tmp_path / 'absent'}: no such directory\n"
    )
    assert sh("mod -S").startswith(f"mod: -S: {WHY}; -S would search /lib/modules/6.8.0-")


def test_mod_s_and_S_python_equivalent_lists_the_files(sh, built, tmp_path, capsys):
    prog, _m, _ex = built
    _module_tree(tmp_path)
    code = sh(f"mod -S {tmp_path} --python")
    exec(compile(code, "mod", "exec"), {"prog": prog})  # noqa: S102 - our own output
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines[-1] == f"synthmod {tmp_path}/kernel/drivers/synthmod.ko.xz"
    assert lines[0].endswith(" (not found)")
    code = sh("mod -s synthmod --python")
    exec(compile(code, "mod", "exec"), {"prog": prog})  # noqa: S102 - our own output
    assert capsys.readouterr().out == "synthmod (not found)\n"


# -- kmem -n -------------------------------------------------------------------------------


def test_kmem_n_shows_nodes_zones_sections_and_blocks(sh, built):
    """The node (contig_page_data) and its three zones, sections 0 and 4 with their
    struct pages, and the two memory blocks, in crash's layout."""
    prog, m, ex = built
    out = sh("kmem -n")
    lines = out.splitlines()
    pgdat = prog.symbol_address("contig_page_data")
    zone = prog.sizeof("struct zone")
    assert lines[0] == "NODE    SIZE      PGLIST_DATA       BOOTMEM_DATA       NODE_ZONES   "
    assert lines[1] == f"  0    262144   {pgdat:x}        ----        {pgdat:x}"
    assert lines[2:4] == [" " * 52 + f"{pgdat + i * zone:x}" for i in (1, 2)]
    assert lines[5].split() == [f"{VMEMMAP:x}", "0", "0"]
    zones = [line.split() for line in lines[8:11]]
    want = []
    for i, (name, start, spanned, _free, _lists) in enumerate(m.sub.zones):
        page = f"{VMEMMAP + start * PAGE_STRUCT:x}" if spanned else "0"
        want.append([str(i), name, str(spanned), page, f"{start * PAGE:x}",
                     str(start if spanned else 0)])  # fmt: skip
    assert zones == want
    assert lines[12] == "-" * 67
    sections = [line.split() for line in lines[15:17]]
    pfn = 1 << (SECTION_BITS - 12)
    assert sections == [[str(nr), f"{at:x}", f"{VMEMMAP:x}",
                         f"{VMEMMAP + nr * pfn * PAGE_STRUCT:x}", "PMOE", str(nr * pfn)]
                        for nr, at in ex.sections]  # fmt: skip
    blocks = [line.split() for line in lines[19:]]
    size = 1 << SECTION_BITS
    assert blocks == [[f"{b:x}", name, f"{nr * size:x}", "-", f"{(nr + 1) * size - 1:x}", "0",
                       "ONLINE", str(nr)] for b, name, nr in ex.blocks]  # fmt: skip
    assert lines[18].split() == ["MEM_BLOCK", "NAME", "PHYSICAL", "RANGE", "NODE", "STATE",
                                 "START_SECTION_NO"]  # fmt: skip


def test_kmem_n_python_equivalent_lists_the_same_sections(sh, built, capsys):
    prog, _m, ex = built
    code = sh("kmem -n --python")
    exec(compile(code, "kmem", "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in printed if "PMOE" in line] == [
        [str(nr), hex(at)] for nr, at in ex.sections
    ]
    assert sum("ONLINE" in line for line in printed) == len(ex.blocks)


# -- kmem -F -------------------------------------------------------------------------------


def _free_lists(text: str) -> dict[str, list[str]]:
    """``kmem -F``: free list address -> the struct pages listed under it."""
    out: dict[str, list[str]] = {}
    head = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if i and lines[i - 1].startswith("AREA"):
            head = words[2]
            out[head] = []
        elif len(words) == 1 and head:
            out[head].append(words[0])
        elif not line.startswith("AREA"):
            head = ""
    return out


def test_kmem_F_lists_each_free_blocks_page(sh, built):
    """Zones DMA and DMA32 (free counters set) show every free list, with the struct
    page of each block the test linked; the counters (103000) against the 1034 pages
    found; the empty Normal zone shows no list."""
    prog, m, _ex = built
    out = sh("kmem -F")
    lists = _free_lists(out)
    pgdat = prog.symbol_address("contig_page_data")
    want: dict[str, list[str]] = {}
    for i, (_name, _start, _spanned, free, blocks) in enumerate(m.sub.zones):
        if not free:
            continue
        zone = pgdat + i * prog.sizeof("struct zone")
        for order in range(11):
            for mt, kind in enumerate(["UNMOVABLE", "MOVABLE", "RECLAIMABLE", "HIGHATOMIC",
                                       "ISOLATE"]):  # fmt: skip
                head = (
                    zone
                    + prog.offsetof("struct zone", "free_area")
                    + order * prog.sizeof("struct free_area")
                    + 16 * mt
                )
                pfns = _pfns_on(prog, head) if (order, kind) in blocks else []
                want[f"{head:x}"] = [f"{VMEMMAP + p * PAGE_STRUCT:x}" for p in pfns]
    assert lists == want
    assert sum(map(len, lists.values())) == 4
    assert out.endswith("\nnr_free_pages: 103000  (found 1034)\n")
    assert out.splitlines()[1].split() == ["0", "DMA", "4095", "3000", f"{VMEMMAP + 64:x}",
                                           "1000", "0"]  # fmt: skip


def _pfns_on(prog: Program, head: int) -> list[int]:
    """The pfns the builder linked on a free list (page->lru at 8), read back raw."""
    pfns, node = [], prog.read_u64(head)
    while node != head:
        pfns.append((node - 8 - VMEMMAP) // PAGE_STRUCT)
        node = prog.read_u64(node)
    return pfns


def test_kmem_F_python_equivalent_lists_the_same_pages(sh, built, capsys):
    prog, _m, _ex = built
    code = sh("kmem -F --python")
    exec(compile(code, "kmem", "exec"), {"prog": prog})  # noqa: S102 - our own output
    pages = sorted(line.split()[-1] for line in capsys.readouterr().out.splitlines())
    assert pages == sorted(f"{p:#x}" for p in (VMEMMAP + pfn * PAGE_STRUCT
                                               for pfn in (10, 12, 16, 512)))  # fmt: skip


# -- kmem -m -------------------------------------------------------------------------------


def test_kmem_m_prints_the_members_of_each_struct_page(sh, built):
    """Section 0's 1024 struct pages (section 4's are not mapped: left out): a slab
    page's flags (PG_slab) in hex, its ``_refcount`` (an atomic_t: 8 hex digits, no
    gap, as crash) and its ``lru`` list head as two words."""
    prog, m, _ex = built
    out = sh("kmem -m flags,_refcount,lru")
    lines = out.splitlines()
    assert lines[0] == "      PAGE        flags  _refcount  lru"
    assert len(lines) == 1 + (1 << (SECTION_BITS - 12))
    slab_page = next(iter(m.sub.caches[0].objects.values()))[0]
    row = next(line for line in lines if line.startswith(f"{slab_page:x}  "))
    lru = prog.read(slab_page + 8, 16)
    words = struct.unpack("<2Q", lru)
    assert row == (f"{slab_page:x}  {1 << 9:016x}  00000000"
                   f"{words[0]:016x},{words[1]:016x}  ")  # fmt: skip
    assert sh("kmem -m nosuch") == "kmem: invalid page struct member: nosuch\n"
    assert sh("kmem -m flags,").startswith("kmem: invalid format: flags,")
    assert sh("kmem -m flags -F").startswith("kmem: give one of ")


def test_kmem_m_python_equivalent_reads_the_same_members(sh, built, capsys):
    prog, _m, _ex = built
    code = sh("kmem -m _refcount --python")
    exec(compile(code, "kmem", "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 << (SECTION_BITS - 12)
    assert printed[0].split()[0] == hex(VMEMMAP)


# -- vtop -u / -k / -c ---------------------------------------------------------------------


def test_vtop_u_k_c_translate_through_the_tasks_page_tables(sh, built):
    """bash's user page through bash's page tables (-u, -c 1234, or no flag for a user
    half address); -k reads it as a kernel address (not mapped); systemd (no page
    tables) and a kernel thread do not map it."""
    prog, _m, ex = built
    at = USER_PAGE + 0x10
    want = [["VIRTUAL", "PHYSICAL"], [f"{at:x}", f"{ex.user_phys + 0x10:x}"]]
    for line in (f"vtop -u {at:x}", f"vtop {at:x}", f"vtop -c 1234 {at:x}",
                 f"vtop -c 1234 -u {at:x}"):  # fmt: skip
        assert [r.split() for r in sh(line).splitlines()] == want, line
    assert sh(f"vtop -k {at:x}").splitlines()[1].split() == [f"{at:x}", "(not", "accessible)"]
    assert sh(f"vtop -c 1 {at:x}").splitlines()[1].split() == [f"{at:x}", "(not", "accessible)"]
    assert sh(f"vtop -c 2 -u {at:x}") == "vtop: -u: the task (pid 2) has no user address space\n"
    assert sh(f"vtop -u -k {at:x}").startswith("vtop: -u and -k ")
    init = prog.symbol_address("init_task")
    assert sh(f"vtop -k {init:x}").splitlines()[1].split() == [
        f"{init:x}",
        f"{init - 0xFFFFFFFF80000000:x}",
    ]


def test_vtop_python_equivalent_gives_the_same_address(sh, built, capsys):
    prog, _m, ex = built
    code = sh(f"vtop -u {USER_PAGE + 0x10:x} --python")
    exec(compile(code, "vtop", "exec"), {"prog": prog})  # noqa: S102 - our own output
    assert capsys.readouterr().out == f"{ex.user_phys + 0x10}\n"


# -- runq -g -------------------------------------------------------------------------------


def test_runq_g_walks_the_task_group_tree(sh, built):
    """CPU 1: bash running (CURRENT, first), kdumpy-spin queued at the root, then the
    child group's queue (named, throttled) with kworker/1:0 under it; CPU 0: nothing."""
    _prog, m, ex = built

    def task(pid: int, current: bool = False) -> str:
        t = m.tasks[pid]
        mark = " [CURRENT]" if current else ""
        return (
            f'[{t.prio:3d}] PID: {pid:<5}  TASK: {t.address:x}  COMMAND: "{t.comm.decode()}"{mark}'
        )

    bash = m.tasks[1234]
    idle = m.idle[0]
    assert sh("runq -g").splitlines() == [
        "CPU 0",
        f'  CURRENT: PID: 0      TASK: {idle.address:x}  COMMAND: "swapper/0"',
        f"  ROOT_TASK_GROUP: {ex.root_group:x}  CFS_RQ: {ex.root_cfs[0]:x}",
        "     [no tasks queued]",
        "",
        "CPU 1",
        f'  CURRENT: PID: 1234   TASK: {bash.address:x}  COMMAND: "bash"',
        f"  ROOT_TASK_GROUP: {ex.root_group:x}  CFS_RQ: {ex.root_cfs[1]:x}",
        "     " + task(1234, current=True),
        "     " + task(300),
        f"     TASK_GROUP: {ex.group:x}  CFS_RQ: {ex.group_cfs:x}  <kdumpy.slice> (THROTTLED)",
        "        " + task(45),
    ]
    assert sh("runq -g -c 0").splitlines()[0] == "CPU 0"
    assert sh("runq -g -t").startswith("runq: give one of -t, -T, -m, -g")


def test_runq_g_python_equivalent_walks_the_same_tree(sh, built, capsys):
    prog, _m, ex = built
    code = sh("runq -g --python")
    exec(compile(code, "runq", "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed if "PID:" in line] == ["1234", "300", "45"]
    assert any(f"{ex.group:x} kdumpy.slice" in line for line in printed)


# -- bt -s [-x|-d] / -V --------------------------------------------------------------------


def test_bt_s_shows_each_frame_as_symbol_plus_offset(sh, built):
    """bash's frames: the function and the pc's offset in it, decimal (-d, the default)
    or hex (-x); -V says in one line why kdumpy has no local variables."""
    _prog, m, _ex = built
    k = m.kernel
    want, want_hex = [], []
    for f in m.panic_task.frames:
        offset = f.pc - k.functions[f.function].address
        want.append(f"[{f.slot:x}] {f.function}+{offset} at {f.pc:x}")
        want_hex.append(f"[{f.slot:x}] {f.function}+{offset:#x} at {f.pc:x}")
    for line, expected in (("bt -s", want), ("bt -s -d", want), ("bt -s -x", want_hex)):
        frames = [
            ln.split(None, 1)[1] for ln in sh(line).splitlines() if ln.lstrip().startswith("#")
        ]
        assert frames == expected, line
    assert sh("bt -x") == "bt: -x and -d choose how -s shows offsets: give -s\n"
    assert sh("bt -V").startswith("bt: -V: local variables need the DWARF of each function")
    assert sh.failed


def test_bt_s_python_equivalent_names_the_same_places(sh, built, capsys):
    prog, m, _ex = built
    code = sh("bt -s -x --python")
    exec(compile(code, "bt", "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = [ln.split()[2] for ln in capsys.readouterr().out.splitlines() if ln.startswith("#")]
    k = m.kernel
    assert printed == [f"{f.function}+{f.pc - k.functions[f.function].address:#x}"
                       for f in m.panic_task.frames]  # fmt: skip


# -- bpf -p ID / -m ID / -s [-x|-d] --------------------------------------------------------


def test_bpf_s_dumps_the_structures_of_the_chosen_program_and_map(sh, built):
    """Program 7 (kprobe, tag 01..08, map 3) and map 3 (hash, flags 1): their rows, then
    with -s their structures, integers in decimal (-d, the default) or hex (-x)."""
    _prog, m, _ex = built
    prog_addr, aux, bpf_map, _map_id = m.sub.bpf
    out = sh("bpf -p 7 -s")
    assert out.splitlines()[1].split() == ["7", f"{prog_addr:x}", f"{aux:x}", "KPROBE",
                                           "0102030405060708", "3"]  # fmt: skip
    assert "\nstruct bpf_prog {\n" in out and "  type = BPF_PROG_TYPE_KPROBE,\n" in out
    assert f"  aux = {aux:#x}\n" in out
    assert "\nstruct bpf_prog_aux {\n  id = 7,\n  used_map_cnt = 1,\n" in out
    assert "ID  BPF_MAP" not in out
    hexed = sh("bpf -m 3 -s -x")
    assert hexed.splitlines()[1].split() == ["3", f"{bpf_map:x}", "HASH", "1"]
    assert "  map_flags = 0x1,\n  id = 0x3\n" in hexed
    assert "  map_flags = 1,\n  id = 3\n" in sh("bpf -m 3 -s -d")
    assert sh("bpf -p 8") == "bpf: -p 8: no such program\n"
    assert sh("bpf -s").startswith("bpf: -s shows the structures")
    assert sh("bpf -p").splitlines()[1].split()[0] == "7"


def test_bpf_s_python_equivalent_prints_the_same_structures(sh, built, capsys):
    prog, _m, _ex = built
    code = sh("bpf -p 7 -s -x --python")
    exec(compile(code, "bpf", "exec"), {"prog": prog})  # noqa: S102 - our own output
    out = capsys.readouterr().out
    assert out.startswith("7 0x") and "struct bpf_prog_aux {\n  id = 0x7," in out
    assert "struct bpf_map" not in out
