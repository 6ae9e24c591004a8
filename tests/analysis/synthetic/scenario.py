"""The standard synthetic machine: two CPUs, a dozen tasks, two modules, a kernel log,
files across three mounts, memory counters, and a sysrq crash on CPU 1.

:func:`build_machine` returns the dump's bytes together with :class:`Machine`, the
record of everything that was put in memory: the answers a test checks against.
Some of the content is hostile on purpose (a task name, a log line and a module name
carrying terminal escape sequences), as a dump from an untrusted machine may be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from .kernel import THREAD_SIZE, StackFrame, SyntheticKernel
from .memory import PAGE_OFFSET
from .subsystems import (
    Subsystems,
    add_ipc_namespace,
    add_kernel_tables,
    add_option_tables,
    add_page_cache,
    add_subsystems,
)
from .tables import ORC_TYPE_END_OF_STACK, ORC_TYPE_REGS, ORC_TYPE_UNDEFINED

PF_KTHREAD = 0x00200000
# __state values and crash's two-letter names for them.
RUNNING, INTERRUPTIBLE, UNINTERRUPTIBLE = 0x0, 0x1, 0x2
EXIT_ZOMBIE = 0x20
HOSTILE_COMM = b"\x1b[2J\x1b]0;pwn\x07"
HOSTILE_LOG = b"evil: \x1b[31mred\x1b[0m \x1b]8;;http://x\x07link"
HOSTILE_MODULE = b"evil\x1b[5m"
PAGE_KB = 4


@dataclass
class Task:
    """What the machine's task is, as the commands must report it."""

    pid: int
    comm: bytes
    address: int
    state: str  # crash's two letters
    cpu: int
    ppid: int
    kthread: bool
    rss_kb: int = 0
    vsz_kb: int = 0
    frames: list[StackFrame] = field(default_factory=list)
    user_regs: dict[str, int] | None = None
    regs_at: int = 0  # where the user pt_regs sit on the stack
    prio: int = 120
    stack: int = 0
    saved_sp: int = 0  # thread.sp of a sleeping task (ps -s)
    start_time: int = 0  # ns since boot (ps -t)
    utime: int = 0
    stime: int = 0
    last_arrival: int = 0  # ns of the run queue clock (ps -l, -m)


@dataclass
class Module:
    name: bytes
    address: int
    base: int
    size: int
    taints: int
    functions: list[str]


@dataclass
class Machine:
    """The oracle: everything the synthetic dump holds, in plain values."""

    kernel: SyntheticKernel = field(repr=False)
    tasks: dict[int, Task] = field(default_factory=dict)  # by pid, not the idle tasks
    idle: list[Task] = field(default_factory=list)  # by CPU
    panic_pid: int = 0
    modules: list[Module] = field(default_factory=list)
    log: list[tuple[int, bytes]] = field(default_factory=list)
    files: list[tuple[int, str, str]] = field(default_factory=list)  # panic task: fd, type, path
    root_cwd: tuple[str, str] = ("/", "/")
    runq: dict[int, dict[str, list[int]]] = field(default_factory=dict)  # cpu -> rt/cfs pids
    meminfo: dict[str, int] = field(default_factory=dict)  # pages
    vm_events: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per CPU
    uts: dict[str, str] = field(default_factory=dict)
    loadavg: str = ""
    taint_mask: int = 0
    max_pfn: int = 0
    cpu_khz: int = 0
    globals: dict[str, int] = field(default_factory=dict)
    sub: Subsystems = field(default_factory=Subsystems)  # slab, mounts, VMAs, IRQs...
    # ps -a: pid -> (argv, envp) in the process's user memory; ps -r: pid -> (cur, max)
    # of each limit; the uptime jiffies_64 and tick_nsec say (ps -t)
    user_args: dict[int, tuple[list[bytes], list[bytes]]] = field(default_factory=dict)
    rlimits: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    hz: int = 0
    uptime_jiffies: int = 0

    @property
    def panic_task(self) -> Task:
        return self.tasks[self.panic_pid]

    def task_by_comm(self, comm: bytes) -> Task:
        return next(t for t in self.tasks.values() if t.comm == comm)


def _functions(k: SyntheticKernel) -> None:
    """vmlinux text: the crash path, the syscall path, the scheduler, kernel threads."""
    for name, frame in (
        ("sysrq_handle_crash", 0x10), ("__handle_sysrq", 0x28), ("write_sysrq_trigger", 0x18),
        ("proc_reg_write", 0x20), ("vfs_write", 0x48), ("ksys_write", 0x30),
        ("__x64_sys_write", 0x8), ("do_syscall_64", 0x20), ("__switch_to_asm", 0x30),
        ("__schedule", 0x60), ("schedule", 0x10), ("schedule_idle", 0x10),
        ("do_nanosleep", 0x38), ("hrtimer_nanosleep", 0x70), ("__x64_sys_nanosleep", 0x30),
        ("worker_thread", 0x40), ("kthread", 0x38), ("smpboot_thread_fn", 0x30),
        ("default_idle", 0x8), ("do_idle", 0x30), ("cpu_startup_entry", 0x10),
        ("do_exit", 0x60), ("do_group_exit", 0x18),
    ):  # fmt: skip
        k.function(name, frame)
    k.function("entry_SYSCALL_64", orc=ORC_TYPE_REGS)
    k.function("ret_from_fork", orc=ORC_TYPE_END_OF_STACK)
    k.function("start_secondary", orc=ORC_TYPE_END_OF_STACK)
    k.function("start_kernel", orc=ORC_TYPE_END_OF_STACK)
    # No ORC data: reached by a stack scan (direct call) and by frame pointers (indirect).
    k.function("schedule_timeout", 0x28, orc=ORC_TYPE_UNDEFINED)
    k.function("kthread_worker_fn", 0x20, orc=ORC_TYPE_UNDEFINED, kind="t")


SYSCALL_WRITE = ["vfs_write", "ksys_write", "__x64_sys_write", "do_syscall_64", "entry_SYSCALL_64"]
NANOSLEEP = ["__schedule", "schedule", "do_nanosleep", "hrtimer_nanosleep",
             "__x64_sys_nanosleep", "do_syscall_64", "entry_SYSCALL_64"]  # fmt: skip
PANIC_CHAIN = ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger", "proc_reg_write",
               *SYSCALL_WRITE]  # fmt: skip


class _Builder:
    def __init__(self) -> None:
        self.k = SyntheticKernel()
        self.m = Machine(self.k)
        self.pids: dict[int, int] = {}  # pid -> struct pid
        self.mnt_ns: int | None = None
        self.k.list_init(self.k.global_("init_task", "struct task_struct") + self._off("tasks"))

    def _off(self, path: str) -> int:
        return self.k.offsetof("struct task_struct", path)

    # -- memory descriptors -------------------------------------------------------------------
    def mm(self, total_vm: int, counters: list[tuple[int, list[int]]]) -> tuple[int, int]:
        """An mm with RSS counters ``(count, per-CPU deltas)`` for file, anon, swap,
        shmem; returns its address and the RSS in KiB the kernel would report."""
        k = self.k
        values: dict[str, object] = {"total_vm": total_vm}
        for i, (count, deltas) in enumerate(counters):
            pointer = k.percpu_alloc(4)
            for cpu, delta in enumerate(deltas):
                k.mem.u32(k.per_cpu_address(pointer, cpu), delta)
            values[f"rss_stat[{i}].count"] = count
            values[f"rss_stat[{i}].counters"] = pointer
        rss = sum(max(0, counters[i][0] + sum(counters[i][1])) for i in (0, 1, 3))
        return k.new("struct mm_struct", values), rss * PAGE_KB

    # -- tasks --------------------------------------------------------------------------------
    def task(
        self,
        pid: int,
        comm: bytes,
        state: int,
        cpu: int,
        parent: int,
        chain: list[str],
        *,
        kthread: bool = False,
        mm: tuple[int, int] | None = None,
        running: bool = False,
        user: dict[str, int] | None = None,
        indirect: tuple[str, ...] = (),
        leader: Task | None = None,
        exit_state: int = 0,
        prio: int = 120,
        address: int | None = None,
        extra: dict[str, object] | None = None,
    ) -> Task:
        k = self.k
        addr = address if address is not None else k.new("struct task_struct")
        parent = parent or k.symbols["init_task"][0]
        base, sps, bp = k.stack(chain, user, indirect)
        values: dict[str, object] = {
            "__state": state, "stack": base, "cpu": cpu, "pid": pid, "comm": comm,
            "tgid": leader.pid if leader else pid, "real_parent": parent, "parent": parent,
            "group_leader": leader.address if leader else addr, "exit_state": exit_state,
            "flags": PF_KTHREAD if kthread else 0x400000, "prio": prio, "static_prio": prio,
        }  # fmt: skip
        if mm is not None:
            values["mm"] = values["active_mm"] = mm[0]
        if running:  # registers come from the CPU's PRSTATUS note
            pc = k.functions[chain[0]].address + 8
            k.prstatus[cpu] = {"ip": pc, "sp": sps[0], "bp": bp, "cs": 0x10, "ss": 0x18,
                               "flags": 0x46}  # fmt: skip
            frames = k.expected_frames(chain, sps, pc, sps[0])
        else:  # __switch_to_asm left an inactive_task_frame at thread.sp
            ret = k.call_site(chain[0], "__switch_to_asm")
            frame_at = sps[0] - k.type("struct inactive_task_frame").size
            k.write(frame_at, "struct inactive_task_frame", {"bp": bp, "ret_addr": ret})
            values["thread.sp"] = frame_at
            slot = frame_at + k.offsetof("struct inactive_task_frame", "ret_addr")
            frames = k.expected_frames(chain, sps, ret, slot)
        k.write(addr, "struct task_struct", {**values, **(extra or {})})
        # Thread group: signal->thread_head links every thread's thread_node.
        if leader is None:
            signal = k.new("struct signal_struct", {"nr_threads": 1})
            k.list_init(signal + k.offsetof("struct signal_struct", "thread_head"))
        else:
            signal = k.mem.read_u64(leader.address + self._off("signal"))
        k.write(addr, "struct task_struct", {"signal": signal})
        head = signal + k.offsetof("struct signal_struct", "thread_head")
        k.list_add_tail(head, addr + self._off("thread_node"))
        if leader is None and pid:
            init_tasks = k.symbols["init_task"][0] + self._off("tasks")
            k.list_add_tail(init_tasks, addr + self._off("tasks"))
        if pid:
            self.pids[pid] = k.new("struct pid", {
                "numbers[0].nr": pid, "tasks[0].first": addr + self._off("pid_links[0]"),
            })  # fmt: skip
            k.write(addr, "struct task_struct", {"pid_links[0].pprev": self.pids[pid]})
        ppid = k.mem.read_u32(parent + self._off("pid"))
        names = ("RU", "IN", "UN")
        crash_state = "ZO" if exit_state & EXIT_ZOMBIE else names[state.bit_length()]
        regs_at = base + THREAD_SIZE - 8 * 21 if user else 0
        t = Task(pid, comm, addr, crash_state, cpu, ppid, kthread, mm[1] if mm else 0,
                 0, frames, user, regs_at, prio, base)  # fmt: skip
        if mm is not None:
            t.vsz_kb = k.mem.read_u64(mm[0] + k.offsetof("struct mm_struct", "total_vm")) * PAGE_KB
        t.saved_sp = int(values.get("thread.sp", 0))  # type: ignore[call-overload]
        if pid:
            self.m.tasks[pid] = t
        return t

    def pid_idr(self) -> None:
        """init_pid_ns.idr: a two-level XArray (6 bits a level) of the struct pids."""
        k = self.k
        root = k.new("struct xa_node", {"shift": 6})
        children: dict[int, int] = {}
        for pid, spid in self.pids.items():
            hi = pid >> 6
            if hi not in children:
                children[hi] = k.new("struct xa_node", {"shift": 0, "offset": hi, "parent": root})
                k.write(root, "struct xa_node", {f"slots[{hi}]": children[hi] | 2})
            k.write(children[hi], "struct xa_node", {f"slots[{pid & 63}]": spid})
        k.global_("init_pid_ns", "struct pid_namespace", {"idr.idr_rt.xa_head": root | 2})

    # -- files ----------------------------------------------------------------------------------
    def dentry(self, name: bytes, parent: int | None, inode: int = 0) -> int:
        k = self.k
        d = k.new("struct dentry")
        k.write(d, "struct dentry", {"d_parent": parent or d, "d_name.name": k.string(name),
                                     "d_name.len": len(name), "d_inode": inode})  # fmt: skip
        return d

    def mount(self, root: int, parent: int | None, mountpoint: int, devname: bytes,
              fstype: bytes, path: str) -> int:  # fmt: skip
        """A mount on the initial namespace's list (``init_task.nsproxy->mnt_ns``)."""
        k = self.k
        if self.mnt_ns is None:
            self.mnt_ns = k.new("struct mnt_namespace")
            k.list_init(self.mnt_ns + k.offsetof("struct mnt_namespace", "list"))
            nsproxy = k.new("struct nsproxy", {"mnt_ns": self.mnt_ns})
            k.write(k.symbols["init_task"][0], "struct task_struct", {"nsproxy": nsproxy})
        fs_type = k.new("struct file_system_type", {"name": k.string(fstype)})
        sb = k.new("struct super_block", {"s_type": fs_type})
        m = k.new("struct mount")
        k.write(m, "struct mount", {"mnt_parent": parent or m, "mnt_mountpoint": mountpoint,
                                    "mnt.mnt_root": root, "mnt.mnt_sb": sb,
                                    "mnt_devname": k.string(devname)})  # fmt: skip
        head = self.mnt_ns + k.offsetof("struct mnt_namespace", "list")
        k.list_add_tail(head, m + k.offsetof("struct mount", "mnt_list"))
        self.m.sub.mounts.append((m, sb, fstype.decode(), devname.decode(), path))
        return m + k.offsetof("struct mount", "mnt")

    def inode(self, mode: int, ino: int, nrpages: int = 0) -> int:
        k = self.k
        i = k.new("struct inode", {"i_mode": mode, "i_ino": ino, "i_data.nrpages": nrpages})
        k.write(i, "struct inode", {"i_mapping": i + k.offsetof("struct inode", "i_data")})
        return i

    def file(self, mnt: int, dentry: int, inode: int) -> int:
        return self.k.new("struct file", {"f_path.mnt": mnt, "f_path.dentry": dentry,
                                          "f_inode": inode})  # fmt: skip


def build_machine(
    hostile: bool = True, tamper: Callable[[SyntheticKernel, Machine], None] | None = None
) -> tuple[bytes, Machine]:
    """The standard machine's dump and its record.  ``tamper`` runs on the finished
    memory before the dump is written (to corrupt lists, cut pages, ...)."""
    b = _Builder()
    k, m = b.k, b.m
    _functions(k)
    rq_sym = k.percpu("runqueues", "struct rq")
    rqs = [k.per_cpu_address(rq_sym, cpu) for cpu in range(k.cpus)]

    # Idle tasks: init_task is CPU 0's and is running (PRSTATUS); CPU 1's sleeps.
    init = k.symbols["init_task"][0]
    idle0 = b.task(0, b"swapper/0", RUNNING, 0, 0, ["default_idle", "do_idle",
                   "cpu_startup_entry", "start_kernel"], kthread=True, running=True,
                   address=init)  # fmt: skip
    idle1 = b.task(0, b"swapper/1", RUNNING, 1, 0, ["__schedule", "schedule_idle", "do_idle",
                   "cpu_startup_entry", "start_secondary"], kthread=True)  # fmt: skip
    m.idle = [idle0, idle1]

    # Memory, filesystems.
    root_d = b.dentry(b"/", None, b.inode(0o040755, 2))
    root_mnt = b.mount(root_d, None, root_d, b"/dev/vda1", b"ext4", "/")
    dev_d = b.dentry(b"dev", root_d, b.inode(0o040755, 3))
    devfs_root = b.dentry(b"/", None, b.inode(0o040755, 1))
    devfs_mnt = b.mount(devfs_root, root_mnt - k.offsetof("struct mount", "mnt"), dev_d,
                        b"devtmpfs", b"devtmpfs", "/dev")  # fmt: skip
    pts_d = b.dentry(b"pts", devfs_root, b.inode(0o040755, 4))
    devpts_root = b.dentry(b"/", None, b.inode(0o040755, 1))
    devpts_mnt = b.mount(devpts_root, devfs_mnt - k.offsetof("struct mount", "mnt"), pts_d,
                         b"devpts", b"devpts", "/dev/pts")  # fmt: skip
    tty_inode = b.inode(0o020620, 3)
    tty_d = b.dentry(b"0", devpts_root, tty_inode)
    var_d = b.dentry(b"var", root_d)
    log_d = b.dentry(b"log", var_d)
    syslog_inode = b.inode(0o100640, 131075)
    syslog_d = b.dentry(b"syslog", log_d, syslog_inode)
    root_home = b.dentry(b"root", root_d)
    sock_inode = b.inode(0o140777, 12345)
    sock_d = b.dentry(b"", None, sock_inode)
    pipe_inode = b.inode(0o010600, 6789)
    pipe_d = b.dentry(b"", None, pipe_inode)
    fs = k.new("struct fs_struct", {"root.mnt": root_mnt, "root.dentry": root_d,
                                    "pwd.mnt": root_mnt, "pwd.dentry": root_home})  # fmt: skip
    m.root_cwd = ("/", "/root")
    tty = b.file(devpts_mnt, tty_d, tty_inode)
    fd_files = {
        0: tty,
        1: tty,
        2: tty,
        3: b.file(root_mnt, syslog_d, syslog_inode),
        4: b.file(root_mnt, sock_d, sock_inode),
        7: b.file(root_mnt, pipe_d, pipe_inode),
    }
    m.files = [(0, "CHR", "/dev/pts/0"), (1, "CHR", "/dev/pts/0"), (2, "CHR", "/dev/pts/0"),
               (3, "REG", "/var/log/syslog"), (4, "SOCK", "socket:[12345]"),
               (7, "FIFO", "pipe:[6789]")]  # fmt: skip
    # files -d: the superblocks of the syslog's and the tty's dentries and inodes (the
    # tty's is devpts': its path is found through that mount)
    root_sb, devpts_sb = m.sub.mounts[0][1], m.sub.mounts[2][1]
    for path, d, i, sb in (("/var/log/syslog", syslog_d, syslog_inode, root_sb),
                           ("/dev/pts/0", tty_d, tty_inode, devpts_sb)):  # fmt: skip
        k.write(d, "struct dentry", {"d_sb": sb})
        k.write(i, "struct inode", {"i_sb": sb})
        m.sub.dentries[path] = (d, i, sb)
    fd_array = k.mem.alloc(8 * 64)
    for fd, f in fd_files.items():
        k.mem.u64(fd_array + 8 * fd, f)
    fdt = k.new("struct fdtable", {"max_fds": 64, "fd": fd_array})
    files = k.new("struct files_struct", {"fdt": fdt})

    # Processes.
    user = {"ip": 0x7F3A12345678, "sp": 0x7FFC0000F000, "ax": 0xFFFFFFFFFFFFFFDA, "orig_ax": 1}
    systemd = b.task(1, b"systemd", INTERRUPTIBLE, 0, 0, NANOSLEEP, user=user,
                     mm=b.mm(40000, [(1500, [3, -1]), (2200, [0, 0]), (0, [0, 0]), (10, [0, 0])]),
                     extra={"fs": fs})  # fmt: skip
    kthreadd = b.task(
        2,
        b"kthreadd",
        INTERRUPTIBLE,
        0,
        0,
        ["__schedule", "schedule", "kthread", "ret_from_fork"],
        kthread=True,
    )
    migration = b.task(20, b"migration/1", RUNNING, 1, kthreadd.address,
                       ["__schedule", "schedule", "smpboot_thread_fn", "kthread", "ret_from_fork"],
                       kthread=True, prio=0)  # fmt: skip
    kworker1 = b.task(45, b"kworker/1:0", RUNNING, 1, kthreadd.address,
                      ["__schedule", "schedule", "schedule_timeout", "worker_thread", "kthread",
                       "ret_from_fork"], kthread=True)  # fmt: skip
    b.task(46, b"kworker/0:1", INTERRUPTIBLE, 0, kthreadd.address,
           ["__schedule", "schedule", "kthread_worker_fn", "kthread", "ret_from_fork"],
           kthread=True, indirect=("kthread_worker_fn",))  # fmt: skip
    spin = b.task(
        300,
        b"kdumpy-spin",
        RUNNING,
        1,
        systemd.address,
        NANOSLEEP,
        user=user,
        mm=b.mm(600, [(100, [0, 0]), (250, [5, 5]), (0, [0, 0]), (0, [0, 0])]),
    )
    bash = b.task(1234, b"bash", RUNNING, 1, systemd.address, PANIC_CHAIN, running=True,
                  user={**user, "ax": 1, "di": 1},
                  mm=b.mm(2000, [(400, [0, 0]), (300, [-20, 10]), (0, [0, 0]), (4, [0, 0])]),
                  extra={"files": files, "fs": fs})  # fmt: skip
    m.panic_pid = 1234
    b.task(
        1300,
        b"sleep",
        INTERRUPTIBLE,
        0,
        bash.address,
        NANOSLEEP,
        user=user,
        mm=b.mm(1400, [(150, [0, 0]), (30, [0, 0]), (0, [0, 0]), (0, [0, 0])]),
    )

    # A module, and a task blocked in it.
    k.module(b"synthmod", 1 << 12, [("synth_wait", 0x28, 2), ("synth_write", 0x30, 2)])
    k.module(HOSTILE_MODULE if hostile else b"quietmod", 1 << 13, [("quiet_fn", 0x10, 2)])
    dmm = b.mm(3000, [(700, [0, 0]), (900, [0, 0]), (0, [0, 0]), (0, [0, 0])])
    dchain = ["__schedule", "schedule", "synth_wait", "synth_write", *SYSCALL_WRITE]
    dstate = b.task(1400, b"kdumpy-dstate", UNINTERRUPTIBLE, 0, systemd.address, dchain,
                    user=user, mm=dmm)  # fmt: skip
    b.task(1401, b"kdumpy-dstate", UNINTERRUPTIBLE, 1, systemd.address, dchain, user=user,
           mm=dmm, leader=dstate)  # fmt: skip
    b.task(1600, b"defunct", INTERRUPTIBLE, 0, bash.address,
           ["__schedule", "schedule", "do_exit", "do_group_exit", "do_syscall_64",
            "entry_SYSCALL_64"], user=user, exit_state=EXIT_ZOMBIE)  # fmt: skip
    if hostile:
        b.task(
            666,
            HOSTILE_COMM,
            INTERRUPTIBLE,
            0,
            systemd.address,
            NANOSLEEP,
            user=user,
            mm=b.mm(100, [(1, [0, 0]), (2, [0, 0]), (0, [0, 0]), (0, [0, 0])]),
        )
    b.pid_idr()
    m.modules = _modules(k)
    usr = b.dentry(b"usr", root_d)
    lib = b.dentry(b"lib", usr)
    sysd = b.dentry(b"systemd", lib)
    exe_inode = b.inode(0o100755, 4242)
    exe = b.file(root_mnt, b.dentry(b"systemd", sysd, exe_inode), exe_inode)
    swap_inode = b.inode(0o100600, 77)
    swapfile = b.file(root_mnt, b.dentry(b"swapfile", root_d, swap_inode), swap_inode)
    files = {"/usr/lib/systemd/systemd": exe, "/swapfile": swapfile}
    systemd_mm = k.mem.read_u64(systemd.address + b._off("mm"))
    stacks = [t.stack for t in [*m.tasks.values(), *m.idle] if t.stack]
    add_subsystems(k, m.sub, systemd_mm, files, stacks)
    waiters = [t.address for t in m.tasks.values() if t.comm == b"kdumpy-dstate"]
    add_kernel_tables(k, m.sub, systemd.address, fd_files[4], waiters)
    add_page_cache(k, m.sub, syslog_inode)
    add_ipc_namespace(k, m.sub, [systemd.address, bash.address], spin.pid, spin.address)

    # Run queues: CPU 1 runs bash with two fair tasks and one RT task queued.
    se, run_node = b._off("se"), k.offsetof("struct sched_entity", "run_node")
    rt_list = b._off("rt") + k.offsetof("struct sched_rt_entity", "run_list")
    for cpu, rq in enumerate(rqs):
        k.write(rq, "struct rq", {"cpu": cpu, "idle": m.idle[cpu].address})
        for prio in range(100):
            k.list_init(rq + k.offsetof("struct rq", f"rt.active.queue[{prio}]"))
    # run queue clocks and when each CPU's task started running (ns): CPU 1 lags CPU 0 by
    # 2.5 s, and its task has run for 1 h 2 min 3.456 s
    k.write(rqs[0], "struct rq", {"curr": idle0.address, "clock": 7_000_000_000_000})
    k.write(rqs[1], "struct rq", {"clock": 6_997_500_000_000})
    k.write(idle0.address, "struct task_struct", {"sched_info.last_arrival": 6_999_000_000_000})
    k.write(bash.address, "struct task_struct",
            {"sched_info.last_arrival": 6_997_500_000_000 - 3_723_456_000_000})  # fmt: skip
    k.write(rqs[1], "struct rq", {"curr": bash.address, "cfs.curr": bash.address + se,
                                  "nr_running": 4, "rt.rt_nr_running": 1})  # fmt: skip
    queued = [spin, kworker1]
    root = k.rb_tree([t.address + se + run_node for t in queued])
    k.write(
        rqs[1],
        "struct rq",
        {
            "cfs.tasks_timeline.rb_root.rb_node": root,
            "cfs.tasks_timeline.rb_leftmost": queued[0].address + se + run_node,
        },
    )
    k.list_add_tail(rqs[1] + k.offsetof("struct rq", "rt.active.queue[0]"),
                    migration.address + rt_list)  # fmt: skip
    m.runq = {0: {"curr": [0], "rt": [], "cfs": []},
              1: {"curr": [1234], "rt": [20], "cfs": [1234, 300, 45]}}  # fmt: skip

    _ps_details(k, m, hostile)
    add_option_tables(k, m.sub)
    _system(k, m)
    _kernel_log(k, m, hostile)
    if tamper is not None:
        tamper(k, m)
    return k.dump(), m


def _modules(k: SyntheticKernel) -> list[Module]:
    out = []
    head = k.symbols["modules"][0]
    node = k.mem.read_u64(head)
    list_off = k.offsetof("struct module", "list")
    while node != head:
        mod = node - list_off
        t = k.type("struct module")
        name = k.mem.read(mod + k.types.path(t, "name")[1], 56).split(b"\0")[0]
        base = k.mem.read_u64(mod + k.offsetof("struct module", "mem[0].base"))
        size = sum(
            k.mem.read_u32(mod + k.offsetof("struct module", f"mem[{i}].size")) for i in range(4)
        )
        taints = k.mem.read_u64(mod + k.offsetof("struct module", "taints"))
        fns = [f.name for f in k.functions.values() if f.module == name.decode("latin-1")]
        out.append(Module(name, mod, base, size, taints, fns))
        node = k.mem.read_u64(node)
    return out


RLIM_INFINITY = (1 << 64) - 1
INITIAL_JIFFIES = (-300 * 250) & 0xFFFFFFFF  # HZ 250


def _ps_details(k: SyntheticKernel, m: Machine, hostile: bool) -> None:
    """What ps -t, -l, -m, -a and -r read: start and CPU times, when each task last
    ran, systemd's arguments and environment in its user memory (across a page
    boundary; a hostile variable with an escape), bash's with its pages not in the dump,
    and systemd's resource limits."""
    task_off = partial(k.offsetof, "struct task_struct")
    for n, pid in enumerate(sorted(m.tasks)):
        t = m.tasks[pid]
        t.start_time, t.utime, t.stime = 100_000_000 * (n + 1), 4_000_000 * n, 9_000_000 * n
        k.write(t.address, "struct task_struct",
                {"start_time": t.start_time, "utime": t.utime, "stime": t.stime})  # fmt: skip
    # when they last ran (bash's and the idle task's were written with the run queues);
    # kworker/0:1 and sleep ran at the same instant: the tie keeps the task order
    for pid, when in ((1, 6_999_900_000_000), (2, 6_990_000_000_000), (46, 6_500_000_000_000),
                      (1300, 6_500_000_000_000), (1400, 5_000_000_000)):  # fmt: skip
        m.tasks[pid].last_arrival = when
        k.write(m.tasks[pid].address, "struct task_struct", {"sched_info.last_arrival": when})
    m.tasks[1234].last_arrival = 6_997_500_000_000 - 3_723_456_000_000
    m.idle[0].last_arrival = 6_999_000_000_000
    # user memory: systemd's strings straddle two pages; bash's pages are not in the dump
    argv = [b"/usr/lib/systemd/systemd", b"--switched-root", b"--system"]
    envp = [b"HOME=/", b"TERM=linux", b"EVIL=\x1b[2J" if hostile else b"QUIET=1"]
    args, env = b"\0".join(argv) + b"\0", b"\0".join(envp) + b"\0"
    start = 0x7FFC0002F000 - 24
    for pid, mapped in ((1, True), (1234, False)):
        mm = k.mem.read_u64(m.tasks[pid].address + task_off("mm"))
        pgd = k.mem.alloc_phys(4096, 4096)
        if mapped:
            k.mem.map_user(pgd, start, args + env)
        k.write(mm, "struct mm_struct", {
            "pgd": PAGE_OFFSET + pgd, "arg_start": start, "arg_end": start + len(args),
            "env_start": start + len(args), "env_end": start + len(args) + len(env)})  # fmt: skip
        if pid == 1:  # vm shows the PGD
            m.sub.mm = (mm, PAGE_OFFSET + pgd)
    m.user_args[1] = (argv, envp)
    signal = k.mem.read_u64(m.tasks[1].address + task_off("signal"))
    limits = [(RLIM_INFINITY, RLIM_INFINITY)] * 16
    limits[3], limits[6], limits[7] = (8 << 20, RLIM_INFINITY), (3906, 3906), (1024, 524288)
    for i, (cur, hard) in enumerate(limits):
        k.write(signal, "struct signal_struct", {f"rlim[{i}].rlim_cur": cur,
                                                  f"rlim[{i}].rlim_max": hard})  # fmt: skip
    m.rlimits[1] = limits
    # jiffies_64 says the uptime the log does (4000 s and a bit) at HZ 250
    m.hz, m.uptime_jiffies = 250, 4000 * 250 + 100
    k.global_("jiffies_64", "unsigned long long", {"": INITIAL_JIFFIES + m.uptime_jiffies})
    k.global_("tick_nsec", "unsigned long", {"": 1_000_000_000 // m.hz})


def _system(k: SyntheticKernel, m: Machine) -> None:
    m.uts = {
        "sysname": "Linux",
        "nodename": "synth-host",
        "release": k.release,
        "version": "#1 SMP PREEMPT_DYNAMIC Thu Dec  3 08:00:00 UTC 2026",
        "machine": "x86_64",
    }
    k.global_("init_uts_ns", "struct uts_namespace",
              {f"name.{key}": value.encode() for key, value in m.uts.items()})  # fmt: skip
    k.global_("panic_cpu", "atomic_t", {"counter": 1})
    m.taint_mask = 1 << 12 | 1 << 13  # O, E
    k.global_("tainted_mask", "unsigned long", {"": m.taint_mask})
    # avenrun is fixed point with 11 fraction bits: 1.25, 0.50, 0.10.
    k.global_("avenrun", "unsigned long [3]", {"[0]": 2560, "[1]": 1024, "[2]": 205})
    m.loadavg = "1.25, 0.50, 0.10"
    m.max_pfn = 0x40000
    k.global_("max_pfn", "unsigned long", {"": m.max_pfn})
    m.cpu_khz = 2_400_000
    k.global_("cpu_khz", "unsigned int", {"": m.cpu_khz})
    k.global_("jiffies", "unsigned long", {"": 4_295_000_000})
    # Memory counters (pages) as /proc/meminfo's sources hold them.
    mi = {"total": 262144, "free": 200000, "slab_r": 3000, "slab_u": 5000, "file": 20000,
          "shmem": 500, "swapcache": 0, "huge_order": 9, "huge_nr": 4, "huge_free": 2,
          "overcommit_ratio": 50, "committed": 50000, "committed_deltas": (100, -20)}  # fmt: skip
    k.global_("_totalram_pages", "atomic_long_t", {"counter": mi["total"]})
    k.global_("vm_zone_stat", "atomic_long_t [3]", {"[0].counter": mi["free"]})
    k.global_("vm_node_stat", "atomic_long_t [6]", {
        "[1].counter": mi["slab_r"], "[2].counter": mi["slab_u"], "[3].counter": mi["file"],
        "[4].counter": mi["shmem"], "[5].counter": mi["swapcache"]})  # fmt: skip
    sb = k.new("struct super_block")
    head = sb + k.offsetof("struct super_block", "s_inodes")
    k.list_init(head)
    for pages in (100, 28):
        inode = k.new("struct inode", {"i_data.nrpages": pages})
        k.write(inode, "struct inode", {"i_mapping": inode + k.offsetof("struct inode", "i_data")})
        k.list_add_tail(head, inode + k.offsetof("struct inode", "i_sb_list"))
    mi["buffers"] = 128
    k.global_("blockdev_superblock", "struct super_block *", {"": sb})
    k.global_("hugetlb_max_hstate", "unsigned int", {"": 1})
    k.global_(
        "hstates",
        "struct hstate [2]",
        {
            "[0].order": mi["huge_order"],
            "[0].nr_huge_pages": mi["huge_nr"],
            "[0].free_huge_pages": mi["huge_free"],
            "[0].name": b"hugepages-2048kB",
        },
    )
    # VM event counters: per CPU, summed over the online CPUs by kmem -V.
    events = k.percpu("vm_event_states", "struct vm_event_state")
    m.vm_events = {"PGPGIN": (5, 7), "PGPGOUT": (0, 11), "PGFAULT": (1000, 234)}
    for item, per_cpu in enumerate(m.vm_events.values()):
        for cpu, value in enumerate(per_cpu):
            k.mem.u64(k.per_cpu_address(events, cpu) + 8 * item, value)
    k.global_("total_swap_pages", "long", {"": 0})
    k.global_("nr_swap_pages", "atomic_long_t", {"counter": 0})
    k.global_("sysctl_overcommit_ratio", "int", {"": mi["overcommit_ratio"]})
    k.global_("sysctl_overcommit_kbytes", "unsigned long", {"": 0})
    counters = k.percpu_alloc(4)
    for cpu, delta in enumerate(mi["committed_deltas"]):
        k.mem.u32(k.per_cpu_address(counters, cpu), delta)
    k.global_("vm_committed_as", "struct percpu_counter",
              {"count": mi["committed"], "counters": counters})  # fmt: skip
    m.meminfo = mi  # type: ignore[assignment]
    for name in ("init_task", "avenrun", "jiffies", "max_pfn", "panic_cpu", "runqueues"):
        m.globals[name] = k.symbols[name][0]


def _kernel_log(k: SyntheticKernel, m: Machine, hostile: bool) -> None:
    lines = [
        b"Linux version 6.8.0-synthetic (kdumpy@tests) #1 SMP PREEMPT_DYNAMIC",
        b"Command line: console=ttyS0 crashkernel=256M",
        b"smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
        b"synthmod: loading out-of-tree module taints kernel.",
        HOSTILE_LOG if hostile else b"nothing to see here",
        b"sysrq: Trigger a crash",
        b"Kernel panic - not syncing: sysrq triggered crash",
        b"CPU: 1 PID: 1234 Comm: bash Tainted: G           OE      6.8.0-synthetic #1",
    ]
    m.log = [(1_000_000 * (i + 1) + 123_456_789 * i, text) for i, text in enumerate(lines)]
    m.log[-1] = (4_000 * 1_000_000_000 + 654_321_000, lines[-1])  # uptime 01:06:40
    k.log = list(m.log)
