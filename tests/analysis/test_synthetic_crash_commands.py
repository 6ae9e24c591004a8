"""crash's command set on the synthetic kernel (no VM): kmem -s/-v/ADDRESS, vm, mount,
swap, irq, list, tree, btop/ptob/ptov/vtop and each one's --python.  The machine's
record (``machine.sub``, ``tests/analysis/synthetic/subsystems.py``) is the oracle:
every slab, freelist, maple node and mount was put in memory by the test."""

from __future__ import annotations

import re

import numpy as np
import pytest
from synthetic import build_machine, open_program
from synthetic.memory import PAGE_OFFSET
from synthetic.subsystems import FREELIST_RANDOM

from kdumpy.analysis.commands import COMMANDS, Session, load_commands, run_line
from kdumpy.printable import shown


def rows(text: str, skip: int = 1) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()][skip:]


def test_kmem_s_counts_every_free_object(crash, machine):
    """Allocated = total - (free on partial slabs + free on CPU 0's freelist), read
    through hardened (XOR-encoded) freelist pointers."""
    want = [
        [f"{c.address:016x}", str(c.object_size), str(c.allocated), str(c.total),
         str(c.slabs), "4k", shown(c.name)]
        for c in machine.sub.caches
    ]  # fmt: skip
    assert rows(crash("kmem -s")) == want
    kmalloc = next(c for c in machine.sub.caches if c.name == "kmalloc-64")
    assert (kmalloc.allocated, kmalloc.total) == (152, 192)
    assert rows(crash("kmem -s kmalloc-64")) == [want[2]]
    assert r"evil\x1b]0;pwn\x07cache" in crash("kmem -s")  # escaped, never raw


def test_kmem_s_names_an_unknown_cache(crash):
    assert crash("kmem -s no-such-cache") == "kmem: invalid slab cache name: no-such-cache\n"


@pytest.mark.parametrize("which", ["used", "free", "inside"])
def test_kmem_address_finds_the_slab_object(crash, machine, which):
    cache = next(c for c in machine.sub.caches if c.name == "kmalloc-64")
    used = [o for o, (_s, u) in cache.objects.items() if u == (which != "free")]
    obj = used[5]
    slab = cache.objects[obj][0]
    address = obj + 10 if which == "inside" else obj
    out = rows(crash(f"kmem {address:x}"), 0)
    assert out[1][0] == f"{cache.address:016x}" and out[1][-1] == "kmalloc-64"
    assert out[3][0] == f"{slab:016x}"
    state = f"[{obj:x}]" if which != "free" else f"{obj:x}"
    assert out[5] == [state]
    page_row = out[out.index(["PAGE", "PHYSICAL", "MAPPING", "INDEX", "CNT", "FLAGS"]) + 1]
    assert page_row[:2] == [f"{slab:016x}", f"{(obj - PAGE_OFFSET) & ~0xFFF:x}"]


def test_kmem_address_on_the_cpu_freelist_is_free(crash, machine):
    """Objects waiting on CPU 0's freelist are free though their slab says in use."""
    cache = next(c for c in machine.sub.caches if c.name == "kmalloc-64")
    cpu_slab = list(cache.objects.values())[-1][0]
    free = [o for o, (s, u) in cache.objects.items() if s == cpu_slab and not u]
    assert f"\n  {free[0]:x}\n" in crash(f"kmem {free[0]:x}")


def test_kmem_address_in_a_stack_is_its_task_and_vmalloc_area(crash, machine):
    task = machine.tasks[1300]
    out = crash(f"kmem {task.stack + 0x100:x}")
    assert "    PID: 1300\n" in out
    va, vm, start, end = next(a for a in machine.sub.vmap_areas if a[2] == task.stack)
    assert f"{va:016x}  {vm:016x}  {start:016x} - {end:016x}     16384\n" in out
    assert "CACHE" not in out


def test_kmem_v_lists_every_vmalloc_area(crash, machine):
    want = [[f"{va:016x}", f"{vm:016x}", f"{s:016x}", "-", f"{e:016x}", str(e - s)]
            for va, vm, s, e in machine.sub.vmap_areas]  # fmt: skip
    assert rows(crash("kmem -v")) == want


def test_mount(crash, machine):
    want = [[f"{m:016x}", f"{sb:016x}", t, dev, d] for m, sb, t, dev, d in machine.sub.mounts]
    assert rows(crash("mount")) == want


def test_vm_walks_the_maple_tree(crash, machine):
    """Six VMAs over two maple leaves under an allocation-range node, with gaps; names
    from the file, the heap and stack bounds, and the vDSO's special mapping."""
    out = rows(crash("vm 1"), 0)
    mm = machine.tasks[1]
    mm_pgd = [f"{machine.sub.mm[0]:016x}", f"{machine.sub.mm[1]:016x}"]
    assert out[2] == [*mm_pgd, f"{mm.rss_kb}k", f"{mm.vsz_kb}k"]
    want = [[f"{a:016x}", f"{s:x}", f"{e:x}", f"{f:x}", *([n] if n else [])]
            for a, s, e, f, n in machine.sub.vmas]  # fmt: skip
    assert out[4:] == want


def test_vm_of_a_kernel_thread_has_no_mm(crash):
    assert rows(crash("vm 2"), 0)[2] == [f"{0:016x}", f"{0:016x}", "0k", "0k"]


def test_irq_reads_sparse_irqs(crash, machine):
    out = rows(crash("irq"))
    want = []
    for irq in range(machine.sub.nr_irqs):
        desc, actions = machine.sub.irqs.get(irq, (0, []))
        if not desc:
            want.append([str(irq), "(unused)", "(unused)"])
        elif not actions:
            want.append([str(irq), f"{desc:016x}", "(unused)"])
        want += [[str(irq), f"{desc:016x}", f"{a:016x}", f'"{n}"'] for a, n in actions]
    assert out == want
    assert rows(crash("irq 4")) == [r for r in want if r[0] == "4"]


def test_swap(crash, machine):
    si, pages, used, prio, path = machine.sub.swaps[0]
    assert rows(crash("swap")) == [[f"{si:016x}", "FILE", f"{pages * 4}k", f"{used * 4}k",
                                    f"{used * 100 // pages}%", str(prio), path]]  # fmt: skip


def test_page_and_address_conversions(crash, machine, prog):
    assert crash("btop 12345") == "12345: 12\n"
    assert crash("ptob 12") == "c: c000\n"  # crash reads a page number in decimal
    assert crash("ptob 0x12") == "12: 12000\n"
    assert crash("ptov 1000") == f"VIRTUAL           PHYSICAL\n{PAGE_OFFSET + 0x1000:x}  1000\n"
    stack = machine.tasks[1300].stack
    phys = machine.kernel.mem.vtop(stack + 0x1234)
    assert rows(crash(f"vtop {stack + 0x1234:x}")) == [[f"{stack + 0x1234:x}", f"{phys:x}"]]
    assert rows(crash("vtop 1000")) == [["1000", "(not", "accessible)"]]


def test_pte_decodes_an_entry(crash):
    assert rows(crash("pte 8000000012345067"), 0)[1] == [
        "8000000012345067",
        "12345000",
        "(PRESENT|RW|USER|ACCESSED|DIRTY|NX)",
    ]
    assert rows(crash("pte 12345025"), 0) == [
        ["PTE", "PHYSICAL", "FLAGS"],
        ["12345025", "12345000", "(PRESENT|USER|ACCESSED)"],
    ]


def test_list_follows_list_heads(crash, machine, prog):
    """``list -o task_struct.tasks -H HEAD``: every process on init_task.tasks, in order."""
    head = machine.globals["init_task"] + prog.offsetof("struct task_struct", "tasks")
    leaders = [t.address for t in machine.tasks.values() if t.pid != 1401]
    out = crash(f"list -o task_struct.tasks -H {head:x}")
    assert out.split() == [f"{a:x}" for a in leaders]
    shown = crash(f"list -s task_struct.pid,comm -o task_struct.tasks -H {head:x}")
    assert '  pid = 1300\n  comm = "sleep"\n' in shown


def test_list_without_head_follows_next_pointers(crash, machine, prog):
    """``list -o OFFSET START``: singly linked through a next pointer (irqaction.next)."""
    desc, actions = machine.sub.irqs[4]
    offset = prog.offsetof("struct irqaction", "next")
    assert crash(f"list -o {offset} {actions[0][0]:x}").split() == [f"{a:x}" for a, _n in actions]


def test_tree_rbtree_orders(crash, machine, prog):
    """The CFS tree of CPU 1 (two entities): root first by default, in order with -l."""
    rq = machine.globals["runqueues"]
    root = prog.per_cpu(prog.object("runqueues"), 1).cfs.tasks_timeline.rb_root.address_
    se = prog.offsetof("struct task_struct", "se")
    spin, kworker = machine.tasks[300].address + se, machine.tasks[45].address + se
    line = f"tree -t rbtree -o sched_entity.run_node {root:x}"
    assert crash(line).split() == [f"{kworker:x}", f"{spin:x}"]
    assert crash(line + " -l").split() == [f"{spin:x}", f"{kworker:x}"]
    assert rq


def test_tree_maple(crash, machine):
    descs = [f"{d:x}" for _irq, (d, _a) in sorted(machine.sub.irqs.items())]
    assert crash("tree -t maple sparse_irqs").split() == descs


NEW_COMMANDS = ("kmem -s", "kmem -v", "kmem ffff888000001000", "vm 1", "mount", "swap",
                "irq", "list -H ffff888000001000", "tree -t maple sparse_irqs",
                "btop 1000", "ptob 1", "ptov 1000", "vtop init_task")  # fmt: skip


@pytest.mark.parametrize("line", NEW_COMMANDS)
def test_python_equivalent_is_python(crash, line):
    """``CMD --python`` prints code that compiles, using kdumpy's API (``prog``)."""
    code = crash(line + " --python")
    compile(code, line, "exec")
    assert "prog" in code and "kdumpy" in code


def test_every_new_command_declares_its_python_equivalent():
    load_commands()
    names = {line.split()[0] for line in NEW_COMMANDS}
    assert all(COMMANDS[n].python is not None for n in names)


def test_sig_shows_handlers_and_pending_signals(crash, machine):
    sub = machine.sub
    out = crash("sig 1")
    lines = rows(out, 0)
    table = {int(r[0].strip("[]")): r[1:] for r in lines[3:67]}
    size = 32  # struct k_sigaction: handler, flags, restorer, mask
    base = lines[3][1]
    assert int(base, 16) == sub.sighand + 8  # action[] follows the refcount
    assert table[1] == [f"{sub.sighand + 8:016x}", "55aa00", f"{0x4000:016x}", "14000000",
                        "(SA_RESTORER|SA_RESTART)"]  # fmt: skip
    assert table[13][1] == "SIG_IGN" and table[2][1] == "SIG_DFL"
    assert table[64][0] == f"{sub.sighand + 8 + 63 * size:016x}"
    mask, queued = sub.pending
    assert f"   BLOCKED: {1 << 9:016x}\n" in out
    assert f"PRIVATE_PENDING\n    SIGNAL: {mask:016x}\n  SIGQUEUE: {queued[0]:x}\n" in out
    assert out.endswith(f"SHARED_PENDING\n    SIGNAL: {0:016x}\n  SIGQUEUE: (empty)\n")


def test_timer_lists_each_base_bucket_by_bucket(crash, machine, prog):
    out = crash("timer")
    jiffies = 4_295_000_000
    want = [["JIFFIES"], [str(jiffies)]]
    for cpu, bases in machine.sub.timers.items():
        for name, timers in bases:
            want.append([f"TIMER_BASES[{cpu}][{name}]:", rows(out, 0)[len(want)][1]])
            want.append(["EXPIRES", "TTE", "TIMER_LIST", "FUNCTION"])
            for t, expires, func in timers:
                fn = machine.kernel.functions[func].address
                want.append([str(expires), str(expires - jiffies), f"{t:016x}", f"{fn:016x}",
                             f"<{func}>"])  # fmt: skip
    assert rows(out, 0) == want


def test_net_devices_and_sockets(crash, machine):
    want = [[f"{d:016x}", name, *[ip + ("," if i < len(ips) - 1 else "")
                                  for i, ip in enumerate(ips)]]
            for d, name, ips in machine.sub.netdevs]  # fmt: skip
    assert rows(crash("net")) == want
    fd, sock, sk = machine.sub.socket
    assert rows(crash("net -s 1234"), 2) == [
        [str(fd), f"{sock:016x}", f"{sk:016x}", "INET:STREAM", "10.0.0.10-22", "10.0.0.2-12345"]
    ]


def test_dev_finds_cdevs_in_the_region_or_cdev_map(crash, machine):
    out = crash("dev")
    chars, blocks = out.split("\nBLKDEV")
    want = [[str(ma), n, f"{c:016x}", ops] if c else [str(ma), n, "(none)"]
            for ma, n, c, ops in machine.sub.chrdevs]  # fmt: skip
    assert rows(chars) == want
    assert rows(blocks) == [[str(ma), n] for ma, n in machine.sub.blkdevs]


def test_ipcs(crash, machine):
    shm, key, shmid, size = machine.sub.shm
    out = crash("ipcs")
    assert rows(out, 0)[1] == [f"{shm:016x}", f"{key:08x}", str(shmid), "1000", "600",
                               str(size), "2"]  # fmt: skip
    sem, sem_key, semid, nsems = machine.sub.sem
    assert rows(out, 0)[3] == [f"{sem:016x}", f"{sem_key:08x}", str(semid), "0", "600",
                               str(nsems)]  # fmt: skip
    assert out.count("(none allocated)") == 1  # the message queues only


def test_waitq_lists_the_waiting_tasks(crash, machine):
    wq, tasks = machine.sub.waitq
    assert [r[3] for r in rows(crash("waitq synth_wq"), 0)] == [f"{t:x}" for t in tasks]
    assert rows(crash(f"waitq {wq:x}"), 0) == rows(crash("waitq synth_wq"), 0)


def test_task_members(crash, machine):
    out = crash("task -R pid,comm,prio 1300")
    assert out.endswith('  pid = 1300\n  comm = "sleep"\n  prio = 120\n')
    assert crash("task 1300").startswith("PID: 1300 ")


@pytest.mark.parametrize(("path", "want"), [
    ("/usr/lib/systemd/systemd", {1: ["mmap"]}),
    ("/dev/pts/0", {1234: ["fd"]}),
    ("/", {1: ["root"], 1234: ["root"]}),
    ("/root", {1: ["cwd"], 1234: ["cwd"]}),
])  # fmt: skip
def test_fuser(crash, path, want):
    assert {int(r[0]): r[3:] for r in rows(crash(f"fuser {path}"))} == want


def test_fuser_of_an_unused_path(crash):
    assert crash("fuser /nowhere") == "No users of /nowhere found\n"


MORE_COMMANDS = ("sig 1", "timer", "net", "dev", "ipcs", "waitq synth_wq", "task -R pid 1",
                 "fuser /")  # fmt: skip


@pytest.mark.parametrize("line", MORE_COMMANDS)
def test_python_equivalent_of_kernel_tables_is_python(crash, line):
    code = crash(line + " --python")
    compile(code, line, "exec")
    assert "prog" in code and "kdumpy" in code


def test_search_finds_every_pointer_to_a_task(crash, machine, prog):
    """bash's task_struct is pointed to by its children's real_parent and parent, its
    group_leader, its own pid link... every aligned word equal to it, in the direct map."""
    bash = machine.tasks[1234].address
    words = np.frombuffer(bytes(machine.kernel.mem.heap), dtype="<u8")
    want = [f"{PAGE_OFFSET + 8 * int(i):x}:" for i in np.nonzero(words == bash)[0]]
    out = rows(crash(f"search {bash:x}"), 0)
    assert [r[0] for r in out] == want and len(want) >= 3
    assert {r[1] for r in out} == {f"{bash:x}"}


def test_search_in_a_range_with_a_mask_and_widths(crash, machine):
    task = machine.tasks[1300].address
    out = rows(crash(f"search -s {task:x} -l 0x400 -m ffff {task:x}"), 0)
    assert out and all(int(r[1], 16) >> 16 == task >> 16 for r in out)
    assert all(task <= int(r[0][:-1], 16) < task + 0x400 for r in out)
    pid_at = task + machine.kernel.offsetof("struct task_struct", "pid")
    assert f"{pid_at:x}: 514\n" in crash(f"search -s {task:x} -l 0x400 -w 0d1300")  # pid 1300
    assert [r[0] for r in rows(crash(f"search -s {task:x} -l 0x400 -c sleep"), 0)] == [
        f"{task + machine.kernel.offsetof('struct task_struct', 'comm'):x}:"
    ]


def test_search_physical(crash, machine):
    bash = machine.tasks[1234].address
    virt = rows(crash(f"search {bash:x}"), 0)
    phys = rows(crash(f"search -p {bash:x}"), 0)
    assert [f"{int(r[0][:-1], 16) - PAGE_OFFSET:x}:" for r in virt] == [r[0] for r in phys]


def test_kmem_g_decodes_page_flags(crash):
    assert rows(crash("kmem -g 0x240"), 2) == [["PG_head", "6", "040"], ["PG_slab", "9", "200"]]


def _tampered(change) -> Session:
    data, _machine = build_machine(tamper=change)
    return Session(open_program(data))


def _loop_cpu_freelist(k, m) -> None:
    """kmalloc-64's CPU freelist: the last free object points back to the first."""
    cache = next(c for c in m.sub.caches if c.name == "kmalloc-64")
    cpu_slab = list(cache.objects.values())[-1][0]
    free = [o for o, (s, u) in cache.objects.items() if s == cpu_slab and not u]
    where = free[-1] + cache.size // 2
    k.mem.u64(where, free[0] ^ FREELIST_RANDOM ^ int.from_bytes(where.to_bytes(8, "little"),
                                                                  "big"))  # fmt: skip


def test_a_looping_freelist_is_a_warning_not_a_hang():
    session = _tampered(_loop_cpu_freelist)
    out = run_line(session, "kmem -s kmalloc-64")
    assert "kmalloc-64" in out
    assert re.search(r"WARNING: kmalloc-64 freelist loops back to 0x[0-9a-f]+ after 24 entries",
                     out)  # fmt: skip


def test_a_maple_node_pointing_at_itself_is_a_warning():
    def loop(k, m):
        mm = m.sub.mm[0]
        root = k.mem.read_u64(mm + k.offsetof("struct mm_struct", "mm_mt.ma_root"))
        node = root & ~0xFF
        k.mem.u64(node + k.offsetof("struct maple_arange_64", "slot[1]"), root & ~0x2)

    out = run_line(_tampered(loop), "vm 1")
    assert len(rows(out.split("WARNING")[0], 4)) == 3  # the first leaf's VMAs
    assert "WARNING: maple tree at" in out and "has a bad node" in out


def test_kmem_f_counts_the_buddy_free_lists(crash, machine):
    out = crash("kmem -f")
    zones = out.split("\n\n")
    found = 0
    for i, (name, start, spanned, free, counts) in enumerate(machine.sub.zones):
        lines = rows(zones[i], 0)
        mem_map = f"{0xFFFFEA0000000000 + start * 64:x}" if spanned else "0"
        assert lines[1] == [str(i), name, str(spanned), str(free), mem_map,
                            f"{start * 4096:x}", str(start)]  # fmt: skip
        got = {(int(r[0]), r[2]): int(r[4]) for r in lines[3:] if r[4] != "0"}
        assert got == counts
        assert all(int(r[5]) == int(r[4]) << int(r[0]) for r in lines[3:])
        found += sum(n << order for (order, _kind), n in counts.items())
    assert len(rows(zones[0], 3)) == 11 * 5  # every order and migrate type, HIGHATOMIC named
    assert "HIGHATOMIC" in zones[0] and "PCPTYPES" not in zones[0]
    assert out.endswith(f"nr_free_pages: {machine.meminfo['free']}  (found {found})\n")


def test_ascii_and_eval(crash):
    assert crash("ascii 62696c2f7273752f") == "62696c2f7273752f: /usr/lib\n"
    assert crash("ascii 0a41") == "0000000000000a41: A<0a><NUL><NUL><NUL><NUL><NUL><NUL>\n"
    out = crash("eval -b (1 << 20) - 0x10")
    assert rows(out, 0) == [["hexadecimal:", "ffff0"], ["decimal:", "1048560"],
                            ["octal:", "3777760"], ["binary:", f"{0xFFFF0:064b}"],
                            ["bits", "set:", *map(str, range(19, 3, -1))]]  # fmt: skip
    assert crash("eval 3 * 1024 * 1024").startswith("hexadecimal: 300000  (3MB)\n")
    assert crash("eval 0 - 1").splitlines()[1] == f"    decimal: {(1 << 64) - 1}"
    assert crash("eval 1 / 0") == "eval: division by zero\n"
    assert crash("eval open('x')") == "eval: bad expression: open(x)\n"


def test_bpf_lists_programs_and_maps(crash, machine):
    prog, aux, bpf_map, map_id = machine.sub.bpf
    out = rows(crash("bpf"), 0)
    assert out == [["ID", "BPF_PROG", "BPF_PROG_AUX", "BPF_PROG_TYPE", "TAG", "USED_MAPS"],
                   ["7", f"{prog:x}", f"{aux:x}", "KPROBE", "0102030405060708", str(map_id)],
                   ["ID", "BPF_MAP", "BPF_MAP_TYPE", "MAP_FLAGS"],
                   [str(map_id), f"{bpf_map:x}", "HASH", "1"]]  # fmt: skip


def test_pointer_to_is_struct(crash, machine):
    task = machine.tasks[1300].address
    out = crash(f"*task_struct.pid,comm {task:x}")  # as ``struct``: gdb's char array
    assert out.startswith('  pid = 1300\n  comm = "sleep\\000')
    assert out == crash(f"struct task_struct.pid,comm {task:x}")


@pytest.mark.parametrize("line", ["ascii 41", "eval 1 + 2", "bpf", "kmem -f", "kmem -g 200",
                                  "pte 8000000012345067", "search -p 1"])  # fmt: skip
def test_python_equivalent_of_the_rest_is_python(crash, line):
    code = crash(line + " --python")
    compile(code, line, "exec")


def test_kmem_p_reads_struct_pages(crash, machine, prog):
    """A slab's frame: its struct page (the slab), PG_slab; with no address, every frame
    whose struct page is mapped (the synthetic vmemmap covers the 4 MiB heap)."""
    cache = next(c for c in machine.sub.caches if c.name == "task_struct")
    obj, (slab, _used) = next(iter(cache.objects.items()))
    phys = obj - PAGE_OFFSET
    assert rows(crash(f"kmem -p {phys:x}")) == [[f"{slab:016x}", f"{phys:x}", "0", "0", "0",
                                                 "200"]]  # fmt: skip
    every = rows(crash("kmem -p"))
    held = sum(min(hi, 1024) - lo for lo, hi in prog.dump.pfn_ranges() if lo < 1024)
    assert len(every) == held and held > 100
    assert [f"{slab:016x}", f"{phys:x}"] in [r[:2] for r in every]


def test_foreach_vm_and_sig(crash, machine):
    """``foreach vm``: one block per task, systemd's VMAs among them; ``foreach sig``:
    the tasks with handlers (systemd alone here)."""
    vms = crash("foreach IN vm")
    heads = [int(line.split()[1]) for line in vms.splitlines() if line.startswith("PID:")]
    assert heads == [t.pid for t in [*machine.idle, *sorted(machine.tasks.values(),
                     key=lambda t: t.pid)] if t.state == "IN"]  # fmt: skip
    assert f"{machine.sub.vmas[-1][0]:016x}" in vms
    sigs = crash("foreach sig")
    assert sigs.count("SIGNAL_STRUCT:") == 1 and sigs.startswith("PID: 1 ")


def test_kmem_S_lists_the_cpu_and_partial_slabs(crash, machine):
    """kmalloc-64: CPU 0's slab (24 objects free on the CPU's freelist) and the partial
    slab on node 0 (16 free); the full slab is on no list."""
    cache = next(c for c in machine.sub.caches if c.name == "kmalloc-64")
    slabs = list(dict.fromkeys(s for s, _u in cache.objects.values()))
    out = crash("kmem -S kmalloc-64")
    assert out.split("\n")[2:] == [
        "CPU 0:", "  SLAB              MEMORY            TOTAL  ALLOCATED  FREE",
        f"  {slabs[2]:016x}  {min(o for o, (s, _u) in cache.objects.items() if s == slabs[2]):016x}"
        "     64         40    24",
        "NODE 0 PARTIAL:", "  SLAB              MEMORY            TOTAL  ALLOCATED  FREE",
        f"  {slabs[0]:016x}  {min(cache.objects):016x}     64         48    16", "",
    ]  # fmt: skip
    free = sum(int(r[4]) for r in rows(out, 2) if len(r) == 5 and r[0] != "SLAB")
    assert free == cache.total - cache.allocated


RUNNABLE = (*NEW_COMMANDS, *MORE_COMMANDS, "ascii 41", "eval 1 + 2", "bpf", "kmem -f",
            "kmem -g 200", "pte 8000000012345067", "kmem -s kmalloc-64", "kmem -p",
            "search ffff888000001000", "tree -t rbtree -l runqueues", "net -s 1234",
            "list -H modules")  # fmt: skip


@pytest.mark.parametrize("line", RUNNABLE)
def test_python_equivalent_runs_on_the_dump(crash, prog, line, capsys):
    """The printed code runs with ``prog`` bound (kdumpy's API, no crash command)."""
    code = crash(line + " --python")
    if line.startswith("list -H ffff"):  # zeroed memory: a list cut at once, by design
        return
    exec(compile(code, line, "exec"), {"prog": prog})  # noqa: S102 - our own output
    assert capsys.readouterr().out or line.startswith(("list", "tree", "search", "fuser"))


def _pairs(text: str) -> list[list[str]]:
    """Lines as words, colons dropped (crash's ``NAME: value`` rows)."""
    return [line.replace(":", " ").split() for line in text.splitlines() if line.strip()]


def test_kmem_V_sums_the_counters_and_each_cpus_events(crash, machine):
    """``kmem -V``: the global zone and node counters as the test set them, and each
    VM event added over both CPUs."""
    mi = machine.meminfo
    out = _pairs(crash("kmem -V"))
    assert out[:4] == [["VM_ZONE_STAT"], ["NR_FREE_PAGES", str(mi["free"])],
                       ["NR_ZONE_LRU_BASE", "0"], ["NR_MLOCK", "0"]]  # fmt: skip
    assert ["NR_FILE_PAGES", str(mi["file"])] in out and ["VM_NODE_STAT"] in out
    events = out[out.index(["VM_EVENT_STATES"]) + 1 :]
    assert events == [[name, str(sum(v))] for name, v in machine.vm_events.items()]
    assert "VM_NUMA" not in crash("kmem -V")  # no vm_numa_event: a kernel without NUMA


def test_kmem_z_shows_each_zone(crash, machine):
    """``kmem -z``: each zone's address, size (PRESENT when fewer pages are present),
    watermarks with the boost added, and its counters; an empty zone is unpopulated."""
    zones = crash("kmem -z").split("\n\n")
    base = machine.kernel.symbols["contig_page_data"][0]
    size = machine.kernel.type("struct zone").size
    for i, (name, _start, spanned, free, _counts) in enumerate(machine.sub.zones):
        lines = _pairs(zones[i])
        assert lines[0] == ["NODE", "0", "ZONE", str(i), "ADDR", f"{base + i * size:x}",
                            "NAME", f'"{name}"']  # fmt: skip
        if not spanned:
            assert lines[1:] == [["[unpopulated]"]]
            continue
        boost = 5 * (i == 1)
        marks = f"{10 + i + boost}/{20 + i + boost}/{30 + i + boost}"
        present = ["PRESENT", str(spanned - 97)] if i == 0 else []
        assert lines[1] == ["SIZE", str(spanned), *present, "MIN/LOW/HIGH", marks]
        assert lines[2:] == [["VM_STAT"], ["NR_FREE_PAGES", str(free)],
                             ["NR_ZONE_LRU_BASE", "0"], ["NR_MLOCK", str(i)]]  # fmt: skip


def test_kmem_h_and_o(crash, machine):
    """``kmem -h``: the one huge page size in use (2 MiB, order 9); ``kmem -o``: each
    CPU's __per_cpu_offset."""
    mi = machine.meminfo
    k = machine.kernel
    hstates = k.symbols["hstates"][0]
    assert rows(crash("kmem -h")) == [[f"{hstates:x}", "2MB", str(mi["huge_free"]),
                                       str(mi["huge_nr"]), "hugepages-2048kB"]]  # fmt: skip
    var = k.symbols["vm_event_states"][0]
    offsets = [(k.per_cpu_address(var, cpu) - var) % (1 << 64) for cpu in (0, 1)]
    assert _pairs(crash("kmem -o")) == [["PER-CPU", "OFFSET", "VALUES"],
                                         ["CPU", "0", f"{offsets[0]:x}"],
                                         ["CPU", "1", f"{offsets[1]:x}"]]  # fmt: skip


def test_list_r_walks_back_and_e_stops(crash, machine, prog):
    """``list -r -H``: the processes last first (list_head.prev); ``-e NODE`` stops
    before that node; ``-r`` without ``-H`` starts from the entry given (crash's -h)."""
    off = prog.offsetof("struct task_struct", "tasks")
    head = machine.globals["init_task"] + off
    leaders = [t.address for t in machine.tasks.values() if t.pid != 1401]
    want = [f"{a:x}" for a in leaders]
    assert crash(f"list -r -o task_struct.tasks -H {head:x}").split() == want[::-1]
    line = f"list -o task_struct.tasks -e {leaders[2] + off:x} -H {head:x}"
    assert crash(line).split() == want[:2]
    init = f"{machine.globals['init_task']:x}"
    out = crash(f"list -r -o task_struct.tasks {leaders[0]:x}").split()
    assert out == [want[0], init, *want[:0:-1]]
    code = crash(f"list -r -e {leaders[2] + off:x} -H {head:x} --python")
    assert "list_for_each_reverse" in code and f"{leaders[2] + off:#x}" in code


def test_x_prints_integers_in_hex_and_d_in_decimal(crash, machine):
    """crash's ``-x``/``-d`` on p, struct, union, ``*``, task, list and tree: the values
    the test wrote (pid 1300, jiffies), negative ones as the type's two's complement."""
    task = machine.tasks[1300].address
    jiffies = 4_295_000_000
    assert crash("p -x jiffies") == f"jiffies = $1 = {jiffies:#x}\n"
    assert crash("p -d jiffies") == f"jiffies = $2 = {jiffies}\n"
    assert crash(f"struct -x task_struct.pid,tgid {task:x}") == "  pid = 0x514\n  tgid = 0x514\n"
    assert crash(f"*task_struct.pid -x {task:x}") == "  pid = 0x514\n"
    assert crash(f"union -d task_struct.pid {task:x}") == "  pid = 1300\n"
    assert crash("task -x -R pid 1300").endswith("  pid = 0x514\n")
    assert "pid = 1300," in crash("task -d 1300")
    head = machine.globals["init_task"] + machine.kernel.offsetof("struct task_struct", "tasks")
    out = crash(f"list -x -s task_struct.pid -o task_struct.tasks -H {head:x}")
    assert "  pid = 0x514\n" in out


def test_sym_l_q_p_n(crash, machine):
    """``sym -l``: every vmlinux symbol the kernel image holds, by address (modules'
    after them); ``-q``: those whose name holds a string; ``-p``/``-n``: a symbol with
    the one before and after."""
    k = machine.kernel
    kernel = sorted((a, n) for n, (a, _t) in k.symbols.items() if a >= 1 << 63)
    listed = [(int(r[0], 16), r[2]) for r in rows(crash("sym -l"), 0)]
    assert sorted(listed[: len(kernel)]) == kernel
    assert [a for a, _n in listed] == sorted(a for a, _n in listed)
    assert [r[2] for r in rows(crash("sym -q sysrq"), 0)] == [
        "sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger"]  # fmt: skip
    around = [r[2] for r in rows(crash("sym -p -n __handle_sysrq"), 0)]
    assert around == ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger"]
    assert [r[2] for r in rows(crash("sym -n sysrq_handle_crash"), 0)] == [
        "sysrq_handle_crash", "__handle_sysrq"]  # fmt: skip
    assert crash("sym -l _text") == "sym: -l and -q take no symbol, -p or -n\n"
    assert "in_address_order" in crash("sym -q sysrq --python")


def test_bt_and_set_take_a_cpu_or_the_panic_task(crash, machine):
    """``bt -c 1`` is the task running on CPU 1 (the panic task here), ``bt -c 0-1``
    both CPUs' tasks, ``bt -p`` the panic task; ``set -c``/``set -p`` switch to them."""
    panic = machine.panic_pid
    assert crash("bt -p") == crash(f"bt {panic}")
    assert crash("bt -c 1") == crash(f"bt {panic}")
    both = crash("bt -c 0-1")
    assert both.startswith("PID: 0 ") and f"PID: {panic} " in both
    assert crash("bt -c 5") == "bt: no active task on CPU 5\n"
    assert crash("bt -c x").startswith("bt: argument -c: invalid CPU list: x")
    assert crash("set -c 0").startswith("    PID: 0\n")
    assert crash("set -p").startswith(f"    PID: {panic}\n")
    assert crash("set -p 1300") == "set: give one of a task, -c cpu or -p\n"
    assert "active_tasks(prog)[cpu] for cpu in [0, 1]" in crash("bt -c 0,1 --python")


def test_sig_l_s_g(crash, machine):
    """``sig -l``: the 64 signals, aliases after a slash and the real-time ones as crash
    numbers them; ``sig -s``: the names in a set; ``sig -g``: the shared set, then
    each thread's blocked and private pending signals."""
    listed = dict(line.split() for line in crash("sig -l").splitlines())
    assert len(listed) == 64
    assert listed["[6]"] == "SIGABRT/SIGIOT" and listed["[17]"] == "SIGCHLD/SIGCLD"
    assert (listed["[33]"], listed["[48]"]) == ("SIGRTMIN+1", "SIGRTMIN+16")
    assert (listed["[49]"], listed["[63]"], listed["[64]"]) == ("SIGRTMAX-15", "SIGRTMAX-1",
                                                                 "SIGRTMAX")  # fmt: skip
    assert crash("sig -s 14003") == "SIGHUP SIGINT SIGTERM SIGCHLD\n"
    mask, queued = machine.sub.pending
    out = crash("sig -g 1")
    assert "\n   BLOCKED:" not in out  # -g: per thread, below
    assert out.index("SHARED_PENDING") < out.index("\n  PID: 1 ")
    assert out.endswith(f"     BLOCKED: {1 << 9:016x}\n  PRIVATE_PENDING\n"
                        f"      SIGNAL: {mask:016x}\n    SIGQUEUE: {queued[0]:x}\n")  # fmt: skip


def test_list_l_o_S_and_tree_r_abbreviations(crash, machine, prog):
    """``list -l MEMBER -s``: the node addresses, each entry shown; ``-h -O``: a
    structure holding the head; ``-S`` is ``-s``; ``tree -r``: the root inside a
    structure; ``-t rb``: an abbreviated kind; ``eval -l`` the same 64-bit answer."""
    off = prog.offsetof("struct task_struct", "tasks")
    init = machine.globals["init_task"]
    leaders = [t for t in machine.tasks.values() if t.pid != 1401]
    out = crash(f"list -l task_struct.tasks -S task_struct.pid -H {init + off:x}")
    assert rows(out, 0) == [w for t in leaders for w in ([f"{t.address + off:x}"],
                                                          ["pid", "=", str(t.pid)])]  # fmt: skip
    by_o = crash(f"list -h -O task_struct.tasks -o task_struct.tasks {init:x}")
    assert by_o.split() == [f"{t.address:x}" for t in leaders]
    assert crash(f"list -O 8 {init:x}") == "list: -O goes with -h\n"
    assert crash(f"list -l 8 {init:x}").startswith("list: -l goes with -s")
    rq = prog.per_cpu(prog.object("runqueues"), 1)
    inside = prog.offsetof("struct rq", "cfs.tasks_timeline")
    line = f"tree -t rb -r rq.cfs.tasks_timeline -o sched_entity.run_node {rq.address_:x}"
    assert crash(line) == crash(f"tree -o sched_entity.run_node {rq.address_ + inside:x}")
    assert crash("tree -t q 0").startswith("tree: argument -t: invalid tree kind: q")
    assert crash("eval -l 1 << 40") == crash("eval 1 << 40")


def test_mod_t_and_mount_n(crash, machine):
    """``mod -t``: each module with taint bits and their letters (the kernel's table:
    bit 12 O, bit 13 E); ``mount -n PID``: the mounts of that task's namespace."""
    letters = "PFSRMBUDAWCIOELKXTN"
    want = [[shown(m.name.decode()), "".join(c for b, c in enumerate(letters) if m.taints >> b & 1)]
            for m in machine.modules if m.taints]  # fmt: skip
    assert want and rows(crash("mod -t")) == want
    init = f"{machine.globals['init_task']:x}"
    assert crash(f"mount -n {init}") == crash("mount")
    assert len(rows(crash(f"mount -n {init}"))) == len(machine.sub.mounts)
    assert crash("mount -n 1300") == "mount: 1300: the task has no namespaces (exiting)\n"


def test_irq_u_a_s_b(crash, machine):
    """``irq -u``: the allocated descriptors only; ``-a``: each line with handlers and
    its CPUs; ``-s``: its count on each CPU (``-c``: some CPUs) and chip; ``-b``: the
    softirq vectors and their handlers."""
    irqs = machine.sub.irqs
    assert [int(r[0]) for r in rows(crash("irq -u"))] == sorted(
        irq for irq, (_d, actions) in irqs.items() for _ in actions or [None])  # fmt: skip
    in_use = sorted(irq for irq, (_d, actions) in irqs.items() if actions)
    names = {irq: ",".join(n for _a, n in irqs[irq][1]) for irq in in_use}
    assert rows(crash("irq -a")) == [[str(i), names[i], "1" if i == 4 else "0-1"] for i in in_use]
    assert rows(crash("irq -s")) == [[f"{i}:", str(i), str(10 * i), "IO-APIC", names[i]]
                                     for i in in_use]  # fmt: skip
    assert rows(crash("irq -s -c 1")) == [[f"{i}:", str(10 * i), "IO-APIC", names[i]]
                                          for i in in_use]  # fmt: skip
    assert crash("irq -c 1") == "irq: -c goes with -s\n"
    handler = machine.kernel.symbols["write_sysrq_trigger"][0]
    assert rows(crash("irq -b")) == [["[0]", "0"], ["[1]", f"{handler:x}", "<write_sysrq_trigger>"]]


def test_struct_c_and_l(crash, machine):
    """``struct -c N``: N structures from the address (``-c -N``: ending there);
    ``-l struct.member``: the address given is that member's (a list_head's)."""
    k = machine.kernel
    size = k.type("struct list_head").size
    head = machine.globals["init_task"] + k.offsetof("struct task_struct", "tasks")
    first, second = crash(f"struct list_head {head:x}"), crash(f"struct list_head {head + size:x}")
    assert crash(f"struct list_head -c 2 {head:x}") == first + "\n" + second
    assert crash(f"struct list_head -c -2 {head:x}").endswith("\n" + first)
    task = machine.tasks[1300].address
    tasks = task + k.offsetof("struct task_struct", "tasks")
    assert crash(f"struct task_struct.pid -l task_struct.tasks {tasks:x}") == "  pid = 1300\n"
    assert crash(f"struct task_struct.pid -l 8 {task + 8:x}") == "  pid = 1300\n"
    assert crash("struct list_head -c 2") == "struct: -c and -l need an address\n"


def test_kmem_I_leaves_caches_out(crash, machine):
    names = [shown(c.name) for c in machine.sub.caches]
    out = rows(crash("kmem -s -I kmalloc-64,no-such-cache"))
    assert [r[-1] for r in out] == names
    ignored = next(c for c in machine.sub.caches if c.name == "kmalloc-64")
    assert [r for r in out if "[IGNORED]" in r] == [[f"{ignored.address:016x}", "[IGNORED]",
                                                     "kmalloc-64"]]  # fmt: skip
    assert crash("kmem -I kmalloc-64") == "kmem: -I goes with -s or -S\n"


def test_runq_c_t_T_m(crash, machine):
    """``runq -c 1``: CPU 1 only; ``-t``: each clock and when its task arrived (ns);
    ``-T``: CPU 1's clock 2.5 s behind CPU 0's; ``-m``: CPU 1's task has run for
    1 h 2 min 3.456 s, CPU 0's for 1 s."""
    assert crash("runq -c 1") == "CPU 1" + crash("runq").split("CPU 1", 1)[1]
    times = crash("runq -t").splitlines()
    assert times[0] == f" CPU 0: {7_000_000_000_000:016d}"
    assert times[3].startswith(f"        {6_997_500_000_000 - 3_723_456_000_000:016d}  PID: 1234 ")
    assert crash("runq -T") == "  CPU 0: 0.00 secs\n  CPU 1: 2.50 secs\n"
    elapsed = crash("runq -m").splitlines()
    assert elapsed[0].startswith("  CPU 0: [0 00:00:01.000]  PID: 0 ")
    assert elapsed[1].startswith("  CPU 1: [0 01:02:03.456]  PID: 1234 ")


def test_rd_decimal_network_reverse_offset_end(crash, machine):
    """``rd -d/-D`` decimal values (no ASCII), ``-x`` no ASCII, ``-N`` network byte
    order, ``-R`` up to the address, ``-o`` an offset, ``-e`` an end address; jiffies
    (4,295,000,000 = 0x1000136c0 written by the test) is the value read."""
    at = machine.globals["jiffies"]
    jiffies = 4_295_000_000
    low, high = jiffies & 0xFFFFFFFF, jiffies >> 32
    signed = low - (1 << 32) if low >> 31 else low
    assert rows(crash("rd -32 -d jiffies 2"), 0) == [[f"{at:x}:", str(signed), str(high)]]
    assert rows(crash("rd -32 -D jiffies 2"), 0) == [[f"{at:x}:", str(low), str(high)]]
    assert rows(crash("rd -x jiffies"), 0) == [[f"{at:x}:", f"{jiffies:016x}"]]
    swapped = int.from_bytes(low.to_bytes(4, "little"), "big")
    assert rows(crash("rd -N -32 -x jiffies"), 0) == [[f"{at:x}:", f"{swapped:08x}"]]
    assert crash("rd -R jiffies 2") == crash(f"rd {at - 8:x} 2")
    assert crash("rd -o 8 jiffies") == crash(f"rd {at + 8:x}")
    assert crash(f"rd -e {at + 24:x} jiffies") == crash("rd jiffies 3")
    assert crash(f"rd -e {at:x} jiffies").startswith("rd: -e ")


def test_ps_S_A_G_y(crash, machine):
    """``ps -S``: tasks per state; ``-A``: the task active on each CPU; ``-G``: thread
    group leaders (not thread 1401); ``-y``: by scheduling policy (all NORMAL here)."""
    every = rows(crash("ps"))
    states = {}
    for r in every:
        st = r[5] if r[0] == ">" else r[4]
        states[st] = states.get(st, 0) + 1
    summary = dict(line.split(": ") for line in crash("ps -S").strip().splitlines())
    assert {k.strip(): int(v) for k, v in summary.items()} == states
    active = [r for r in every if r[0] == ">"]
    assert rows(crash("ps -A")) == active and len(active) == 2
    pids = [r[1] if r[0] == ">" else r[0] for r in rows(crash("ps -G"))]
    assert "1401" not in pids and "1300" in pids
    assert rows(crash("ps -y normal,0")) == every
    assert rows(crash("ps -y FIFO")) == []
    assert crash("ps -y nosuch").startswith("ps: argument -y: invalid policy: nosuch")


def test_ipcs_one_kind_and_timer_of_some_cpus(crash):
    """``ipcs -m/-s/-q``: that section of ``ipcs`` alone; ``timer -C 1``: CPU 1's
    bases alone."""
    shm, sem, msg = crash("ipcs").split("\n\n")
    assert crash("ipcs -m") == shm + "\n"
    assert crash("ipcs -s") == sem + "\n"
    assert crash("ipcs -q") == msg
    assert crash("ipcs -m -q") == shm + "\n\n" + msg
    every = crash("timer")
    one = crash("timer -C 1")
    assert "TIMER_BASES[0]" not in one and "TIMER_BASES[1]" in one
    assert one.split("\n\n")[1] == every.split("\n\n")[2]


def test_search_t_and_T_search_the_stacks(crash, machine):
    """``search -t VALUE``: each task whose kernel stack holds the value, with where;
    ``-T``: the active tasks' stacks only.  The oracle reads the stacks the test built."""
    k = machine.kernel
    task = machine.tasks[1300]
    words = [k.mem.read_u64(task.stack + off) for off in range(0, 16384, 8)]
    value = next(w for w in reversed(words) if w >> 63)  # a kernel address on its stack
    expected = {}
    for t in [*machine.idle, *machine.tasks.values()]:
        hits = [t.stack + off for off in range(0, 16384, 8)
                if k.mem.read_u64(t.stack + off) == value]  # fmt: skip
        if hits:
            expected[t.address] = hits
    blocks = crash(f"search -t {value:x}").split("\n\n")
    got = {int(b.split("TASK: ")[1].split()[0], 16): [int(line.split(":")[0], 16)
           for line in b.splitlines()[1:]] for b in blocks}  # fmt: skip
    assert got == expected and task.address in got
    active = {t.address for t in machine.idle[:1]} | {machine.tasks[machine.panic_pid].address}
    only = crash(f"search -T {value:x}")
    assert {int(b.split("TASK: ")[1].split()[0], 16) for b in only.split("\n\n") if b} <= active
    assert crash("search -t -s 0 1").startswith("search: -t and -T search the stacks")
