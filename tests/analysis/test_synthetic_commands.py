"""sys, log, mod, runq, files, kmem -i, rd, struct/union/p/whatis, sym, dis, help and
errors on the synthetic machine, against the values it put in memory."""

from __future__ import annotations

import struct

import pytest
from synthetic.tables import record_level

from kdumpy.analysis.commands import Session, run_line


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        out[key.strip()] = value
    return out


def test_sys(crash, machine):
    f = _fields(crash("sys"))
    assert f["KERNEL"].endswith("[TAINTED]")
    assert f["DUMPFILE"] == "synthetic.vmcore  [elf]"
    assert f["CPUS"] == "2"
    assert f["DATE"] == "Wed Dec  3 08:20:00 UTC 2025"  # CRASHTIME 1764750000
    assert f["UPTIME"] == "01:06:40"  # the newest log record: 4000.65 s
    assert f["LOAD AVERAGE"] == machine.loadavg
    assert f["TASKS"] == str(len(machine.tasks) + 2)  # + one idle task per CPU
    assert f["NODENAME"] == "synth-host" and f["RELEASE"] == "6.8.0-synthetic"
    assert f["VERSION"] == machine.uts["version"]
    assert f["MACHINE"] == "x86_64  (2400 Mhz)"
    assert f["MEMORY"] == "1 GB"  # max_pfn 0x40000 pages
    assert f["PANIC"] == '"Kernel panic - not syncing: sysrq triggered crash"'
    assert (f["PID"], f["COMMAND"], f["CPU"]) == ("1234", '"bash"', "1")
    assert f["TASK"] == f"{machine.panic_task.address:x}"
    assert f["STATE"] == "TASK_RUNNING (PANIC)"


def test_log(crash, machine):
    lines = crash("log").splitlines()
    assert len(lines) == len(machine.log)
    for line, (ts, text) in zip(lines, machine.log, strict=True):
        stamp = f"[{ts // 10**9:5d}.{ts % 10**9 // 1000:06d}] "
        assert line.startswith(stamp)
        if b"\x1b" not in text:
            assert line[len(stamp) :] == text.decode()
    assert crash("log -t").splitlines()[1] == machine.log[1][1].decode()
    # -m: crash's <level> from each record's flags/level byte (the ring gives record i
    # level i % 8); -T: dates from the boot time, the crash time less whole seconds of
    # uptime (jiffies_64 at HZ 250: 4000 s, the newest record's time too)
    for i, line in enumerate(crash("log -t -m").splitlines()[:8]):
        assert line.startswith(f"<{record_level(i)}>")
    last = len(machine.log) - 1
    assert (
        crash("log -Tm")
        .splitlines()[-1]
        .startswith(
            f"[Wed Dec  3 08:20:00 UTC 2025] <{record_level(last)}>"  # CRASHTIME 1764750000
        )
    )
    first = crash("log -T").splitlines()[0]
    assert first.startswith("[Wed Dec  3 07:13:20 UTC 2025] ")  # 4000 s before the crash


def test_mod(crash, machine):
    rows = crash("mod").splitlines()[1:]
    want = sorted(machine.modules, key=lambda m: m.address)
    assert len(rows) == len(want)
    for row, mod in zip(rows, want, strict=True):
        address, name, base, size = row.split()[:4]
        assert (int(address, 16), int(base, 16), int(size)) == (mod.address, mod.base, mod.size)
        assert name == mod.name.decode().replace("\x1b", r"\x1b")


def test_runq(crash, machine):
    out = crash("runq")
    cpus = out.split("CPU ")[1:]
    for cpu, block in enumerate(cpus):
        want = machine.runq[cpu]
        rt, cfs = block.split("RT PRIO_ARRAY:")[1].split("CFS RB_ROOT:")
        pid_of = lambda text: [int(x.split()[0]) for x in text.split("PID: ")[1:]]  # noqa: E731
        assert pid_of(block.split("RT PRIO_ARRAY")[0].split("CURRENT:")[1]) == want["curr"]
        queued = [pid for pid in want["cfs"] if pid not in want["curr"]]  # crash: not curr
        assert pid_of(rt) == want["rt"] and pid_of(cfs) == queued
    assert "[  0] PID: 20 " in out and "[120] PID: 300 " in out


def test_files(crash, machine):
    out = crash("files 1234").splitlines()
    assert out[1] == "ROOT: /    CWD: /root"
    rows = [(int(r.split()[0]), r.split()[4], r.split()[5]) for r in out[3:]]
    assert rows == machine.files
    assert crash("files") == crash("files 1234")  # the panic task by default


def test_kmem_i(crash, machine):
    mi = machine.meminfo
    rows = {line[:13].strip(): line[13:].split() for line in crash("kmem -i").splitlines()[1:]
            if line.strip()}  # fmt: skip
    pages = {k: int(v[0]) for k, v in rows.items()}
    huge = mi["huge_nr"] << mi["huge_order"]
    assert pages == {
        "TOTAL MEM": mi["total"], "FREE": mi["free"], "USED": mi["total"] - mi["free"],
        "SHARED": mi["shmem"], "BUFFERS": mi["buffers"],
        "CACHED": mi["file"] - mi["swapcache"] - mi["buffers"],
        "SLAB": mi["slab_r"] + mi["slab_u"], "TOTAL HUGE": huge,
        "HUGE FREE": mi["huge_free"] << mi["huge_order"], "TOTAL SWAP": 0, "SWAP USED": 0,
        "SWAP FREE": 0,
        "COMMIT LIMIT": (mi["total"] - huge) * mi["overcommit_ratio"] // 100,
        "COMMITTED": mi["committed"] + sum(mi["committed_deltas"]),
    }  # fmt: skip
    assert rows["TOTAL MEM"][1:] == ["1", "GB", "----"]
    assert rows["FREE"][-4:] == ["76%", "of", "TOTAL", "MEM"]
    assert crash("kmem") == (
        "kmem: give -i, -f, -F, -p, -m, -s, -v, -V, -z, -h, -o, -n, -g or an address\n"
    )


def _hexwords(text: str) -> list[int]:
    return [int(w, 16) for line in text.splitlines() for w in line.split(":  ")[1].split()[:-1]]


def test_rd(crash, prog, machine):
    avenrun = machine.globals["avenrun"]
    out = crash("rd avenrun 3")
    assert out.splitlines()[0].startswith(f"{avenrun:x}:  ")
    assert _hexwords(out) == [2560, 1024, 205]
    assert _hexwords(crash(f"rd -32 {avenrun:x} 4")) == [2560, 0, 1024, 0]
    jiffies = struct.pack("<Q", 4_295_000_000)
    assert _hexwords(crash("rd -8 jiffies 8")) == list(jiffies)
    init = machine.globals["init_task"]
    # -p: physical; the image is mapped at __START_KERNEL_map + physical.
    assert crash(f"rd -p {init - 0xFFFFFFFF80000000:x} 2").split(":")[1] == crash(
        f"rd {init:x} 2").split(":")[1]  # fmt: skip
    assert crash("rd 0") == "rd: invalid kernel virtual address: 0x0 (not mapped)\n"
    # The page after a vmalloc'ed stack is its guard: unmapped.
    guard = machine.tasks[1].stack + 16384
    assert "not mapped" in crash(f"rd {guard:x}")


def test_struct_union_and_offsets(crash, machine):
    k = machine.kernel
    assert crash("struct list_head") == (
        "struct list_head {\n    struct list_head *next;\n    struct list_head *prev;\n}\n"
        "SIZE: 16\n")  # fmt: skip
    offset = k.offsetof("struct task_struct", "comm")
    assert crash("struct task_struct.comm") == f"  [{offset}] comm\n"
    out = crash("struct -o task_struct").splitlines()
    size = k.type("struct task_struct").size
    width = len(str(size)) + 4  # crash: the offset column as wide as the size's digits + 4
    for member in ("pid", "tasks", "thread", "se"):
        column = f"[{k.offsetof('struct task_struct', member)}]".rjust(width) + " "
        assert next(line for line in out if line.rstrip(";").endswith(f" {member}")).startswith(
            column
        )
    assert out[-1] == f"SIZE: {size}"
    # Anonymous unions and structs spelled out in place with absolute offsets (crash's
    # layout, seen on the 6.1 lab dump's task_struct.rcu_users); qualifiers are not kept.
    assert crash("struct -o qstr") == (
        "struct qstr {\n"
        "       union {\n"
        "           struct {\n"
        "   [0]         u32 hash;\n"
        "   [4]         u32 len;\n"
        "           };\n"
        "   [0]     u64 hash_len;\n"
        "       };\n"
        "   [8] unsigned char *name;\n"
        "}\n"
        "SIZE: 16\n"
    )
    task = machine.tasks[1300]
    assert crash(f"struct task_struct.pid,comm {task.address:x}") == (
        '  pid = 1300\n  comm = "sleep\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000"\n'
    )
    assert crash("struct nosuch") == "struct: no type named 'struct nosuch' in the dump's BTF\n"
    assert crash("union qstr").startswith("struct qstr {")  # looked up across tag kinds


def test_p_and_whatis(crash, machine):
    assert crash("p avenrun") == "avenrun = $1 = {2560, 1024, 205}\n"
    assert crash("p init_task.pid") == "$2 = 0\n"
    init = machine.globals["init_task"]
    assert crash("p &init_task") == f"$3 = (struct task_struct *) {init:#x} <init_task>\n"
    assert crash("p (int)jiffies") == f"$4 = {4_295_000_000 & 0xFFFFFFFF}\n"
    assert crash("p PIDTYPE_SID") == "PIDTYPE_SID = $5 = 3\n"
    first = machine.modules[0].address + machine.kernel.offsetof("struct module", "list")
    assert f"next = {first:#x}" in crash("p *(struct list_head *)&modules")
    second = machine.tasks[2].address + machine.kernel.offsetof("struct task_struct", "tasks")
    assert crash("p init_task.tasks.next->next") == f"$7 = (struct list_head *) {second:#x}\n"
    assert crash("p nosuch") == "p: symbol not found: nosuch\n"
    assert crash("whatis init_task") == "struct task_struct init_task;\n"
    assert crash("whatis struct cpumask").startswith("struct cpumask {")


def test_p_counts_values_per_session(prog):
    session = Session(prog)
    assert run_line(session, "p jiffies").startswith("jiffies = $1 = ")
    assert run_line(session, "p max_pfn") == f"max_pfn = $2 = {0x40000}\n"


def test_sym(crash, machine):
    fn = machine.kernel.functions["sysrq_handle_crash"]
    assert crash("sym sysrq_handle_crash") == f"{fn.address:x} (T) sysrq_handle_crash\n"
    assert crash(f"sym {fn.address + 5:x}") == f"{fn.address + 5:x} (T) sysrq_handle_crash+0x5\n"
    mod = machine.kernel.functions["synth_wait"]
    assert crash("sym synth_wait") == f"{mod.address:x} (T) synth_wait [synthmod]\n"
    assert crash(f"sym {mod.address + 0x13:x}") == (
        f"{mod.address + 0x13:x} (T) synth_wait+0x13 [synthmod]\n")  # fmt: skip
    assert crash("sym 10") == "sym: invalid address: 10\n"


def test_dis(crash, machine):
    fn = machine.kernel.functions["sysrq_handle_crash"]
    # The synthetic functions start with push %rbp; mov %rsp,%rbp (55 48 89 e5).
    assert crash("dis sysrq_handle_crash 2") == (
        f"{fn.address:#x} <sysrq_handle_crash>:\tpush rbp\n"
        f"{fn.address + 1:#x} <sysrq_handle_crash+0x1>:\tmov rbp, rsp\n")  # fmt: skip
    # A call site: call rel32 to the callee, named.
    ret = machine.kernel.functions["__handle_sysrq"].sites["sysrq_handle_crash"]
    out = crash(f"dis {ret - 5:x} 1")
    assert out.rstrip().endswith(f"call {fn.address:#x} <sysrq_handle_crash>")


def test_help_and_errors(crash):
    text = crash("help ps")
    assert text.startswith(
        "ps: display process status information\n"
        "usage: ps [-k|-u|-G|-y policy] [-s] [-p|-c|-t|-[l|m][-C cpus]|-a|-g|-r|-S|-A] [-H] "
        "[pid|task|comm ...]\n\n"
        "positional arguments:\n  pid|task|comm       pids, task_struct addresses or command "
        "names\n\noptions:\n  -k                  kernel threads only\n"
    )
    assert (
        "  -y policy[,policy]  these scheduling policies only (NORMAL, FIFO, RR, BATCH,\n"
        "                      IDLE, DEADLINE or numbers)\n" in text
    )
    flags = [line.split()[0] for line in text.split("options:\n")[1].splitlines()
             if line.startswith("  -")]  # fmt: skip
    assert flags == ["-k", "-u", "-G", "-y", "-s", "-p", "-c", "-t", "-l", "-m", "-C", "-a",
                     "-g", "-r", "-S", "-A", "-H"]  # fmt: skip
    names = [line.split()[0] for line in crash("help").splitlines()]
    assert {"bt", "ps", "log", "sys", "kmem", "runq", "files", "mod", "struct"} <= set(names)
    assert crash("nosuch") == "crash: command not found: nosuch\n"
    assert crash("lsmod") == crash("mod") and crash("dmesg") == crash("log")
    assert crash("p 'unterminated").startswith("crash: No closing quotation")
    with pytest.raises(SystemExit):
        crash("q")
