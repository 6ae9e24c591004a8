"""The debugger core and the helpers on the synthetic machine: kallsyms, BTF layouts,
page-table translation, per-CPU data, typed objects, and each helper module's answers,
against the builder's own records (its symbol table, its C layouts, its page map)."""

from __future__ import annotations

import pytest
from synthetic import build_machine, open_program

from kdumpy.analysis.commands import Session, run_line
from kdumpy.analysis.commands import system as system_cmds
from kdumpy.analysis.helpers.files import d_path, task_files, task_root_cwd
from kdumpy.analysis.helpers.mm import (
    commit_limit,
    committed_pages,
    get_mm_rss,
    global_node_page_state,
    global_zone_page_state,
    hugetlb_pages,
    nr_blockdev_pages,
    swap_pages,
    totalram_pages,
)
from kdumpy.analysis.helpers.modules import (
    for_each_module,
    module_info,
    module_orc_tables,
    module_symbols,
    module_text_ranges,
)
from kdumpy.analysis.helpers.printk import format_log, log_records
from kdumpy.analysis.helpers.runqueue import runqueue_tasks
from kdumpy.analysis.helpers.system import (
    format_bytes,
    format_uptime,
    panic_task_summary,
    system_info,
    taint_letters,
)
from kdumpy.analysis.helpers.tasks import find_task
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import MemberError, ObjectError
from kdumpy.analysis.panic import classify
from kdumpy.errors import KdumpyError
from kdumpy.vmcore.dmesg import LogRecord


def test_every_builder_symbol_resolves(prog, machine):
    k = machine.kernel
    assert prog.kallsyms.searchable  # kallsyms_seqs_of_names was found and used
    for name, (address, kind) in k.symbols.items():
        assert prog.symbol_address(name) == address, name
        if kind == "T" and name in k.functions:
            sym = prog.find_symbol(address + 3)
            assert (sym.name, sym.type, sym.address) == (name, "T", address)
    assert prog.describe(k.functions["vfs_write"].address + 0x21) == "vfs_write+0x21"


def test_btf_layouts_match_the_c_declarations(prog, machine):
    ts = machine.kernel.types
    for (kind, name), t in ts.tags.items():
        if kind == "enum":
            for enumerator, value in t.values:
                assert prog.constant(enumerator) == value
            continue
        assert prog.sizeof(f"{kind} {name}") == t.size, name
        for member, _m_type, offset in t.members:
            if member:
                assert prog.offsetof(f"{kind} {name}", member) == offset, f"{name}.{member}"
    assert prog.offsetof("struct qstr", "len") == 4  # through the anonymous union and struct
    assert prog.sizeof("pid_t") == 4 and prog.sizeof("struct task_struct *") == 8
    assert prog.variable_type("runqueues").spelling() == "struct rq"  # a BTF VAR


def test_translation_walks_the_page_tables(prog, machine):
    mem = machine.kernel.mem
    translator = prog.dump.translator
    for vaddr, paddr in mem._mapped.items():  # vmalloc'ed stacks and module memory
        assert translator.walk(vaddr) == paddr
        assert translator.vtop(vaddr + 8) == paddr + 8
    assert translator.page_offset == 0xFFFF888000000000
    init = machine.globals["init_task"]
    assert translator.walk(init) == init - 0xFFFFFFFF80000000  # 2 MiB kernel-image pages
    assert translator.walk(0xFFFF888000123456) == 0x123456  # 1 GiB direct-map page


def test_unmapped_reads_are_one_line_faults(prog, machine):
    guard = machine.tasks[1].stack + 16384
    with pytest.raises(FaultError, match=f"invalid kernel virtual address: {guard:#x}"):
        prog.read(guard, 8)
    assert not prog.memory.is_valid(guard) and prog.memory.is_valid(guard - 8)
    with pytest.raises(KdumpyError, match="symbol not found"):
        prog.symbol_address("no_such_symbol")


def test_per_cpu_variables(prog, machine):
    k = machine.kernel
    rq = k.symbols["runqueues"][0]
    for cpu in (0, 1):
        obj = prog.per_cpu("runqueues", cpu)
        assert obj.address_ == k.per_cpu_address(rq, cpu)
        assert int(obj.cpu) == cpu
        address, curr, _rt, _cfs = runqueue_tasks(prog, cpu)
        assert address == obj.address_
        want = machine.idle[0] if cpu == 0 else machine.panic_task
        assert int(curr) == want.address


def test_objects(prog, machine):
    task = find_task(prog, 1300)
    assert task.comm.string_() == b"sleep"
    assert task.se.run_node.address_ == machine.tasks[1300].address + machine.kernel.offsetof(
        "struct task_struct", "se.run_node")  # fmt: skip
    node = task.tasks.address_of_()
    assert int(node.container_of_("struct task_struct", "tasks")) == int(task)
    assert int(prog.object("avenrun")[1]) == 1024
    assert prog.object("init_uts_ns").name.machine.string_() == b"x86_64"
    with pytest.raises(ObjectError, match="NULL"):
        find_task(prog, 2).mm.deref_()
    assert task.mm.total_vm.value_() == 1400
    assert set(task.signal.deref_().value_()) == {
        "sigcnt",
        "live",
        "nr_threads",
        "thread_head",
        "shared_pending",
        "rlim",
    }


def test_modules(prog, machine):
    mods = list(for_each_module(prog))
    assert [module_info(prog, m).name.encode() for m in mods] == [m.name for m in machine.modules]
    for mod, want in zip(mods, machine.modules, strict=True):
        info = module_info(prog, mod)
        assert (info.address, info.base, info.size, info.taints) == (
            want.address, want.base, want.size, want.taints)  # fmt: skip
        assert [s.name for s in module_symbols(prog, mod)] == want.functions
        assert module_text_ranges(prog, mod) == [
            (want.base, want.base + 0x100 * len(want.functions))
        ]
    tables = module_orc_tables(prog, 3)
    assert len(tables) == 2
    wait = machine.kernel.functions["synth_wait"]
    table = next(t for lo, _hi, t in tables if lo == wait.address)
    assert table.find(wait.address + 0x10).sp_offset == wait.frame + 8


def test_memory_counters(prog, machine):
    mi = machine.meminfo
    assert totalram_pages(prog) == mi["total"]
    assert global_zone_page_state(prog, "NR_FREE_PAGES") == mi["free"]
    assert global_node_page_state(prog, "NR_FILE_PAGES") == mi["file"]
    assert nr_blockdev_pages(prog) == mi["buffers"]
    assert hugetlb_pages(prog) == (mi["huge_nr"] << 9, mi["huge_free"] << 9)
    assert swap_pages(prog) == (0, 0)
    assert commit_limit(prog) == (mi["total"] - (mi["huge_nr"] << 9)) * 50 // 100
    assert committed_pages(prog) == mi["committed"] + sum(mi["committed_deltas"])
    # bash: file 400 + anon (300 - 20 + 10) + shmem 4, the per-CPU deltas included.
    assert get_mm_rss(prog, find_task(prog, 1234).mm) == 400 + 290 + 4


def test_system_helpers(prog, machine):
    info = system_info(prog)
    assert (info.release, info.nodename, info.machine, info.cpus) == (
        "6.8.0-synthetic", "synth-host", "x86_64", 2)  # fmt: skip
    assert info.tasks == len(machine.tasks) + 2 and info.memory == machine.max_pfn * 4096
    assert info.panic.kind == "sysrq" and info.load_average == machine.loadavg
    assert taint_letters(prog) == "OE"
    assert panic_task_summary(prog) == {"pid": 1234, "comm": "bash",
                                        "task": machine.panic_task.address}  # fmt: skip
    assert format_uptime(2 * 86400 + 3661) == "2 days, 01:01:01"
    assert format_bytes(1536 << 20) == "1.5 GB" and format_bytes(100) == "100 bytes"


def test_printk_records(prog, machine):
    assert [(r.ts_nsec, r.text) for r in log_records(prog)] == machine.log
    text = format_log([LogRecord(1_500_000_000, b"two\nlines\x1b")])
    assert text == "[    1.500000] two\nlines\\x1b\n"


def test_files_helpers(prog, machine):
    bash = find_task(prog, 1234)
    rows = [(fd, kind, path) for fd, _f, _d, _i, kind, path in task_files(prog, bash)]
    assert rows == machine.files
    assert task_root_cwd(prog, bash) == machine.root_cwd
    assert task_files(prog, find_task(prog, 2)) == []
    root = bash.fs.root
    assert d_path(prog, root.mnt, root.dentry) == "/"


@pytest.mark.parametrize(
    ("lines", "kind", "message"),
    [
        ([b"sysrq: Trigger a crash", b"Kernel panic - not syncing: sysrq triggered crash"],
         "sysrq", "Kernel panic - not syncing: sysrq triggered crash"),
        ([b"BUG: kernel NULL pointer dereference, address: 0000000000000000", b"Oops: 0002"],
         "oops", "BUG: kernel NULL pointer dereference, address: 0000000000000000"),
        ([b"kernel BUG at mm/slub.c:42!", b"Kernel panic - not syncing: Fatal exception"],
         "BUG", "Kernel panic - not syncing: Fatal exception"),
        ([b"INFO: task kworker:1 blocked for more than 120 seconds.",
          b"Kernel panic - not syncing: hung_task: blocked tasks"], "hung task",
         "Kernel panic - not syncing: hung_task: blocked tasks"),
        ([b"hello"], "panic", "(no panic message in the log)"),
    ],
)  # fmt: skip
def test_panic_kinds(lines, kind, message):
    info = classify([LogRecord(i, text) for i, text in enumerate(lines)])
    assert (info.kind, info.message) == (kind, message)


def test_a_dump_without_btf_is_a_one_line_error():
    def drop_btf(k, m):
        k.types.btf = lambda percpu=None: b"\x00" * 24  # not BTF: bad magic

    data, _m = build_machine(tamper=drop_btf)
    prog = open_program(data)
    with pytest.raises(KdumpyError, match="not BTF"):
        prog.type("struct task_struct")


def test_a_missing_member_is_a_one_line_error_for_commands(prog, monkeypatch):
    """A helper reading a member this kernel's struct lacks (an older or newer kernel than
    it knows) raised a bare AttributeError, which the command layer let through as a
    traceback; it is a KdumpyError too, and still an AttributeError for hasattr."""
    task = find_task(prog, 1)
    assert not hasattr(task, "no_such_member")
    with pytest.raises(MemberError, match="no_such_member"):
        task.no_such_member  # noqa: B018

    def reads_a_missing_member(*_args):
        return find_task(prog, 1).no_such_member

    monkeypatch.setattr(system_cmds, "system_info", reads_a_missing_member)
    session = Session(prog)
    out = run_line(session, "sys")
    assert session.failed and out.count("\n") == 1 and "no_such_member" in out, out
