"""crash's options that drgn's crash mode also takes, on the synthetic kernel (no VM):
``files -d/-p/-c/-R``, ``net -a``, ``ipcs -n``, ``irq -d``, ``timer -r``, ``search -x``,
``dev -i/-p/-d/-D``, and each one's ``--python``.  The machine's record
(``machine.sub``, ``tests/analysis/synthetic/subsystems.py``) is the oracle: every dentry,
cached page, neighbour, IDT gate, hrtimer and resource was put in memory by the test."""

from __future__ import annotations

import pytest

from kdumpy.analysis.program import Program


def rows(text: str, skip: int = 1) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()][skip:]


# -- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/var/log/syslog", "/dev/pts/0"])
def test_files_d_shows_a_dentrys_inode_superblock_and_path(crash, machine, path):
    """The tty's dentry lives on devpts: its full path goes through that mount."""
    dentry, inode, sb = machine.sub.dentries[path]
    kind = "REG" if path.startswith("/var") else "CHR"
    assert rows(crash(f"files -d {dentry:x}")) == [
        [f"{dentry:016x}", f"{inode:016x}", f"{sb:016x}", kind, path]
    ]


def test_files_p_lists_the_cached_pages_not_the_shadow_entry(crash, machine):
    inode, mapping, pages = machine.sub.page_cache
    out = crash(f"files -p {inode:x}")
    assert rows(out)[0] == [f"{inode:016x}", "2"]
    names = {0b10110: "referenced,uptodate,lru", 0b11110: "referenced,uptodate,dirty,lru"}
    assert rows(out, 3) == [
        [f"{page:016x}", f"{phys:x}", f"{mapping:016x}", f"{index:x}", str(refs), f"{flags:x}",
         names[flags]]
        for page, phys, index, refs, flags in pages
    ]  # fmt: skip


def test_files_c_shows_inodes_mappings_and_cached_pages(crash, machine):
    inode, mapping, _pages = machine.sub.page_cache
    got = {int(r[0]): r for r in rows(crash("files -c"), 3)}
    assert sorted(got) == [fd for fd, _kind, _path in machine.files]
    assert got[3] == ["3", f"{inode:016x}", f"{mapping:016x}", "2", "REG", "/var/log/syslog"]
    assert got[0][3] == "0" and got[0][4:] == ["CHR", "/dev/pts/0"]


def test_files_R_keeps_only_the_referring_files(crash, machine):
    """By path part, by descriptor (and, read as a path, what contains the digits), by
    inode address; ``-c -R`` by address_space; nothing at all when nothing refers."""
    _dentry, tty_inode, _sb = machine.sub.dentries["/dev/pts/0"]
    inode, mapping, _pages = machine.sub.page_cache

    def fds(line: str) -> list[int]:
        return [int(r[0]) for r in rows(crash(line), 3)]

    assert fds("files -R pts") == [0, 1, 2]
    assert fds("files -R 7") == [7]
    assert fds("files -R 3") == [3, 4]  # fd 3, and socket:[12345]
    assert fds(f"files -R {tty_inode:x}") == [0, 1, 2]
    assert fds(f"files -c -R {mapping:x}") == [3]
    assert fds(f"files -R {mapping:x}") == []  # without -c the mapping is not a column
    assert crash("files -R nowhere") == ""
    assert rows(crash("files -R root 1"), 0) == rows(crash("files 1"), 0)[:2]  # the cwd


def test_files_takes_several_tasks_and_refuses_mixed_options(crash, machine):
    out = crash("files 1 1234")
    assert out.count("PID:") == 2 and "No open files" in out
    for line in ("files -d 1 -p 2", "files -d 1 -c", "files -p 1 1234"):
        assert crash(line).startswith("files: ")


@pytest.mark.parametrize(
    "line", ["files -c", "files -R pts 1234", "files -c -R 3", "files -d {dentry:x}",
             "files -p {inode:x}"],
)  # fmt: skip
def test_files_python_equivalents_run(crash, machine, prog: Program, capsys, line):
    dentry = machine.sub.dentries["/var/log/syslog"][0]
    line = line.format(dentry=dentry, inode=machine.sub.page_cache[0])
    code = crash(line + " --python")
    exec(compile(code, line, "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = capsys.readouterr().out
    assert printed
    if "-p" in line:
        assert "referenced" in printed and printed.count("0x") >= 6
    if "-d" in line:
        assert "/var/log/syslog" in printed


# -- net -a -----------------------------------------------------------------------------------


def test_net_a_lists_the_arp_cache_bucket_by_bucket(crash, machine):
    """Address, IP, hardware type and address (colons for Ethernet, spaced bytes for a
    type crash does not name), device and state; the buckets' chains in order."""
    want = []
    for n, ip, kind, hw, dev, state in machine.sub.neighbours:
        want.append([f"{n:016x}", ip, kind, *hw.split(), dev, state])
    assert rows(crash("net -a")) == want
    assert len(want) == 3


def test_net_a_python_runs_and_a_task_is_refused(crash, machine, prog, capsys):
    code = crash("net -a --python")
    exec(compile(code, "net -a", "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = capsys.readouterr().out
    assert [line.split()[1] for line in printed.splitlines()] == [
        ip for _n, ip, *_ in machine.sub.neighbours
    ]
    assert crash("net -a 1").startswith("net: ")


# -- ipcs -n ----------------------------------------------------------------------------------


def test_ipcs_n_reads_the_tasks_ipc_namespace(crash, machine):
    """pid 300 has an IPC namespace of its own (one message queue, no segment, no
    semaphore array); pid 1 and bash share the initial one; by pid or task address."""
    pid, (msq, key, ident, cbytes, qnum) = machine.sub.ipc_ns
    queue = [f"{msq:016x}", f"{key:08x}", str(ident), "0", "644", str(cbytes), str(qnum)]
    own = crash(f"ipcs -n {pid}")
    assert own.count("(none allocated)") == 2 and rows(own.split("MSG_QUEUE")[1]) == [queue]
    assert rows(crash(f"ipcs -q -n {machine.tasks[pid].address:x}")) == [queue]
    assert rows(crash("ipcs -q -n 1")) == [["(none", "allocated)"]]
    shm, key, ident, size = machine.sub.shm
    assert rows(crash("ipcs -m -n 1234"))[0][:3] == [f"{shm:016x}", f"{key:08x}", str(ident)]
    assert rows(crash("ipcs -m -n 1234")) == rows(crash("ipcs -m"))
    assert crash("ipcs -n 2") == "ipcs: task 2 has no namespaces (exiting)\n"


def test_ipcs_n_python_runs(crash, machine, prog, capsys):
    pid, (msq, *_rest) = machine.sub.ipc_ns
    code = crash(f"ipcs -n {pid} --python")
    exec(compile(code, "ipcs -n", "exec"), {"prog": prog})  # noqa: S102 - our own output
    assert capsys.readouterr().out.split() == ["msg", hex(msq), "119", "5", "0"]


# -- irq -d -----------------------------------------------------------------------------------


def test_irq_d_decodes_every_gate_of_the_idt(crash, machine):
    """256 vectors, each gate's three offset parts put together: a function's start by
    its name, inside one as name+decimal offset, outside any as the address."""
    got = [" ".join(r) for r in rows(crash("irq -d"), 0)]
    assert got == machine.sub.idt and len(got) == 256


def test_irq_d_refuses_other_options_and_its_python_runs(crash, prog, capsys):
    assert crash("irq -d -u").startswith("irq: ")
    code = crash("irq -d --python")
    exec(compile(code, "irq -d", "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 256 and printed[14].split()[2].startswith("asm_exc_page_fault")


# -- timer -r ---------------------------------------------------------------------------------


def _hrtimer_blocks(text: str) -> dict[tuple[int, int], list[list[str]]]:
    """``timer -r``'s output as {(cpu, clock): the rows under the CLOCK line}."""
    out: dict[tuple[int, int], list[list[str]]] = {}
    cpu = clock = -1
    for r in rows(text, 0):
        if r[0] == "CPU:":
            cpu = int(r[1])
        elif r[0] == "CLOCK:":
            clock = int(r[1])
            out[(cpu, clock)] = [r]
        else:
            out[(cpu, clock)].append(r)
    return out


def test_timer_r_lists_each_clock_bases_hrtimers_in_order(crash, machine):
    """Every CPU's 8 clock bases (address, reader), crash's now on each clock (jiffies at
    HZ 250, plus the clock's offset), each timer's soft and hard expiry, time to expiry,
    address and function; ``(empty)`` for the others."""
    blocks = _hrtimer_blocks(crash("timer -r"))
    now = machine.sub.hrtimer_now
    for cpu, (cpu_base, clocks) in machine.sub.hrtimers.items():
        assert f"CPU: {cpu}  HRTIMER_CPU_BASE: {cpu_base:x}" in crash("timer -r")
        for index, base, reader, offset, timers in clocks:
            got = blocks[(cpu, index)]
            assert got[0] == ["CLOCK:", str(index), "HRTIMER_CLOCK_BASE:", f"{base:x}",
                              f"[{reader}]"]  # fmt: skip
            if not timers:
                assert got[1:] == [["(empty)"]]
                continue
            fn = {n: machine.kernel.functions[n].address for _s, _h, _t, n in timers}
            header = ["SOFTEXPIRES", "EXPIRES", "TTE", "HRTIMER", "FUNCTION"]
            assert got[1:4] == [["CURRENT"], [str(now + offset)], header]
            assert got[4:] == [[str(s), str(h), str(h - now - offset), f"{t:016x}",
                                f"{fn[n]:016x}", f"<{n}>"] for s, h, t, n in timers]  # fmt: skip
    assert len(blocks) == 16


def test_timer_r_C_and_python(crash, machine, prog, capsys):
    assert set(_hrtimer_blocks(crash("timer -r -C 1"))) == {(1, i) for i in range(8)}
    code = crash("timer -r --python")
    exec(compile(code, "timer -r", "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = [line.split()[:5] for line in capsys.readouterr().out.splitlines()]
    now = machine.sub.hrtimer_now
    want = [[str(cpu), str(index), str(s), str(h), str(h - now - offset)]
            for cpu, (_b, clocks) in machine.sub.hrtimers.items()
            for index, _base, _r, offset, timers in clocks for s, h, _t, _n in timers]  # fmt: skip
    assert printed == want and len(want) == 4


# -- search -x --------------------------------------------------------------------------------


def _words(machine, address: int, count: int, width: int) -> list[int]:
    data = machine.kernel.mem.read(address, count * width)
    return [int.from_bytes(data[i : i + width], "little") for i in range(0, len(data), width)]


@pytest.mark.parametrize("width", [8, 4])
def test_search_x_shows_the_values_around_each_match(crash, machine, width):
    """Each match between the ``count`` values before and after it (rd's lines: 16
    bytes each, then ASCII), the matches apart by a blank line; the values are read
    from the synthetic memory, not from the command."""
    pid_at = machine.tasks[1300].address + machine.kernel.offsetof("struct task_struct", "pid")
    flag = " -w" if width == 4 else ""
    value = 1300 if width == 4 else int.from_bytes(machine.kernel.mem.read(pid_at, 8), "little")
    out = crash(f"search -s {pid_at:x} -l {width} -x 3{flag} {value:x}")
    before = _words(machine, pid_at - 3 * width, 3, width)
    after = _words(machine, pid_at + width, 3, width)
    got = rows(out, 0)
    per_line = 16 // width
    assert got[0][0] == f"{pid_at - 3 * width:x}:"
    words = [w for r in got if r[0] != f"{pid_at:x}:" for w in r[1 : 1 + per_line]]
    shown = [int(w, 16) for w in words if len(w) == 2 * width and "." not in w]
    assert shown == before + after
    assert [f"{pid_at:x}:", f"{value:x}"] in got and len(got) == 2 * -(-3 // per_line) + 1
    assert crash(f"search -x 1 -c -s {pid_at:x} -l 8 sleep").startswith("search: ")


def test_search_x_of_several_matches_and_stacks(crash, machine):
    bash = machine.tasks[1234].address
    plain = rows(crash(f"search {bash:x}"), 0)
    blocks = crash(f"search -x 1 {bash:x}").split("\n\n")
    assert len(blocks) == len(plain) >= 3
    assert [b.splitlines()[1].split() for b in blocks] == plain
    stacks = crash(f"search -t -x 2 {bash:x}")
    assert stacks.count("PID:") == crash(f"search -t {bash:x}").count("PID:")


def test_search_x_python_runs(crash, machine, prog, capsys):
    code = crash(f"search -x 1 {machine.tasks[1234].address:x} --python")
    exec(compile(code, "search -x", "exec"), {"prog": prog})  # noqa: S102 - our own output
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 6 and all(len(x) == 16 for x in lines[1].split())


# -- dev -i, -p -------------------------------------------------------------------------------


def test_dev_i_walks_both_resource_trees_depth_first(crash, machine):
    """Ports in 4 hex digits (their root ends at 0xffff), memory in at least 8."""
    ports, memory = crash("dev -i").split("\n\n")
    for text, root, width in ((ports, "ioport_resource", 4), (memory, "iomem_resource", 8)):
        want = [[f"{a:016x}", f"{lo:0{width}x}-{hi:0{width}x}", *name.split()]
                for a, lo, hi, name in machine.sub.resources[root]]  # fmt: skip
        assert rows(text) == want and len(want) == 4


def test_dev_p_lists_buses_and_devices_bridges_and_children(crash, machine):
    """The root bus and its name; its devices; the bus behind the root port with its
    parent, its own bridge first then its endpoint (crash's vendor:device, unpadded)."""
    ((root, name, devices, children),) = machine.sub.pci
    got = rows(crash("dev -p"), 0)
    assert got[1] == [f"{root:016x}", name]
    want = [[f"{d:016x}", n, c, i, *t.split()] for d, n, c, i, t in devices]
    assert got[3:5] == want
    child, parent = children[0]
    assert got[6] == [f"{child:016x}", f"{parent:016x}"]
    assert got[8:] == [
        [f"{d:016x}", n, c, i, *t.split()] for d, n, c, i, t in machine.sub.pci_child
    ]


@pytest.mark.parametrize("line", ["dev -i", "dev -p"])
def test_dev_i_p_python_runs(crash, prog, capsys, line):
    code = crash(line + " --python")
    exec(compile(code, line, "exec"), {"prog": prog})  # noqa: S102 - our own output
    printed = capsys.readouterr().out
    assert ("keyboard" in printed) if line == "dev -i" else ("ROOT_PORT [BRIDGE]" in printed)
    assert crash("dev -i -p").startswith("dev: ")


# -- dev -d, -D -------------------------------------------------------------------------------


def test_dev_d_counts_each_disks_requests_in_flight(crash, machine):
    """Whole disks only (the partition is left out), in the block class's order; a
    request is counted on the queue it names (a stale tag naming another queue is not),
    reads and writes by the operation's low bit; with a scheduler, through its tags (a
    request still in the scheduler counts, a dispatched one once); -D the busy disks."""
    majors = {"vda": "254", "vdb": "254", "sdc": "8"}
    want = [[majors[name], f"{d:016x}", name, f"{q:016x}", str(r + w), str(r), str(w)]
            for d, name, q, r, w in machine.sub.disks]  # fmt: skip
    assert rows(crash("dev -d")) == want
    assert rows(crash("dev -D")) == [r for r in want if r[4] != "0"]
    assert [r[4] for r in want] == ["2", "0", "2"]


def test_dev_d_python_runs(crash, machine, prog, capsys):
    code = crash("dev -d --python")
    exec(compile(code, "dev -d", "exec"), {"prog": prog})  # noqa: S102 - our own output
    got = [line.split()[2:] for line in capsys.readouterr().out.splitlines()]
    assert got == [[n, hex(q), str(r + w), str(r), str(w)] for _d, n, q, r, w in machine.sub.disks]
    assert crash("dev -d -i").startswith("dev: ")


def test_search_x_count_is_bounded(crash, machine):
    task = machine.tasks[1300].address
    assert crash(f"search -s {task:x} -l 8 -x 100000 1").startswith("search: -x: at most")
