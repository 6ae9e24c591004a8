"""The synthetic machine's memory subsystems, for crash's command set: SLUB caches
(slab pages through a vmemmap, hardened freelists, per-CPU slabs), a mount namespace,
a process's VMAs in a maple tree, IRQ descriptors in ``sparse_irqs``, vmalloc areas and
a swap file.  Every value written is recorded in :class:`Subsystems`, the oracle the
tests compare the commands with.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .kernel import SyntheticKernel
from .memory import PAGE, PAGE_OFFSET

HOSTILE_CACHE = "evil\x1b]0;pwn\x07cache"  # a module can name a cache anything
VMEMMAP = 0xFFFFEA0000000000
PAGE_STRUCT = 64
FREELIST_RANDOM = 0x5EED_F00D_CAFE_1234
PG_SLAB = 9
# Maple node types (include/linux/maple_tree.h) and the root/internal-entry marks.
MAPLE_LEAF_64, MAPLE_ARANGE_64 = 1, 3
VM_READ, VM_WRITE, VM_EXEC = 0x1, 0x2, 0x4


@dataclass
class SlabCache:
    """A cache as ``kmem -s`` must report it, and where each object is."""

    name: str
    address: int
    object_size: int
    size: int
    allocated: int
    total: int
    slabs: int
    objects: dict[int, tuple[int, bool]] = field(default_factory=dict)  # obj -> (slab, used)


@dataclass
class Subsystems:
    caches: list[SlabCache] = field(default_factory=list)  # newest first (slab_caches order)
    mounts: list[tuple[int, int, str, str, str]] = field(default_factory=list)
    vmas: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # addr..name
    mm: tuple[int, int] = (0, 0)  # systemd's mm and pgd
    irqs: dict[int, tuple[int, list[tuple[int, str]]]] = field(default_factory=dict)
    nr_irqs: int = 0
    vmap_areas: list[tuple[int, int, int, int]] = field(default_factory=list)
    swaps: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    sighand: int = 0  # systemd's
    handlers: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # sig: h, mask, fl
    pending: tuple[int, list[int]] = (0, [])  # systemd's private set and sigqueues
    timers: dict[int, list[tuple[str, list[tuple[int, int, str]]]]] = field(default_factory=dict)
    netdevs: list[tuple[int, str, list[str]]] = field(default_factory=list)
    # net -a, bucket by bucket: neighbour, IP, hardware type, address, device, state
    neighbours: list[tuple[int, str, str, str, str, str]] = field(default_factory=list)
    socket: tuple[int, int, int] = (0, 0, 0)  # bash's fd 4: fd, socket, sock
    chrdevs: list[tuple[int, str, int, str]] = field(default_factory=list)  # major name cdev ops
    blkdevs: list[tuple[int, str]] = field(default_factory=list)
    shm: tuple[int, int, int, int] = (0, 0, 0, 0)  # shmid_kernel, key, id, size
    sem: tuple[int, int, int, int] = (0, 0, 0, 0)  # sem_array, key, id, nsems
    waitq: tuple[int, list[int]] = (0, [])  # wait_queue_head, waiting tasks
    # ipcs -n: the pid in an IPC namespace of its own, and that namespace's one message
    # queue (msg_queue, key, id, bytes, messages)
    ipc_ns: tuple[int, tuple[int, int, int, int, int]] = (0, (0, 0, 0, 0, 0))
    idt: list[str] = field(default_factory=list)  # irq -d: each vector's handler, as shown
    # timer -r: crash's "now" (ns), and per CPU the hrtimer_cpu_base and its clock bases:
    # (index, base, get_time's name, offset, [(softexpires, expires, hrtimer, function)])
    # dev -i: each tree's (resource, start, end, name), depth first; dev -p: root bus
    # and name, then per bus its devices (dev, name, class, vendor:device, type) and the
    # buses behind it as (bus, parent)
    resources: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)
    pci: list[tuple[int, str, list[tuple[int, str, str, str, str]], list[tuple[int, int]]]] = field(
        default_factory=list
    )
    pci_child: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    # dev -d: each disk (gendisk, name, queue, reads, writes) in the block class's order
    disks: list[tuple[int, str, int, int, int]] = field(default_factory=list)
    hrtimer_now: int = 0
    hrtimers: dict[
        int, tuple[int, list[tuple[int, int, str, int, list[tuple[int, int, int, str]]]]]
    ] = field(default_factory=dict)
    bpf: tuple[int, int, int, int] = (0, 0, 0, 0)  # prog, aux, map, map id
    # files -d/-p: path -> (dentry, inode, superblock) of the panic task's files; the
    # syslog inode's mapping and its cached pages (page, physical, index, refcount, flags)
    dentries: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    page_cache: tuple[int, int, list[tuple[int, int, int, int, int]]] = (0, 0, [])
    # zone index -> (name, start pfn, spanned, free counter, {(order, migratetype): blocks})
    zones: list[tuple[str, int, int, int, dict[tuple[int, str], int]]] = field(default_factory=list)


def _swab(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


class _Slabs:
    """SLUB caches with one node and a per-CPU slab on CPU 0."""

    def __init__(self, k: SyntheticKernel, out: Subsystems) -> None:
        self.k, self.out = k, out
        head = k.global_("slab_caches", "struct list_head")
        k.list_init(head)
        self.head = head
        k.global_("nr_node_ids", "unsigned int", {"": 1})
        # The struct pages of the heap's frames, mapped at VMEMMAP through page tables.
        heap_pages = (4 << 20) // PAGE
        k.mem._map_pages(VMEMMAP, heap_pages * PAGE_STRUCT)
        k.vmcoreinfo_extra["SYMBOL(vmemmap)"] = f"{VMEMMAP:x}"

    def page_of(self, address: int) -> int:
        return VMEMMAP + ((address - PAGE_OFFSET) // PAGE) * PAGE_STRUCT

    def cache(self, name: str, object_size: int, size: int, layout: list[str]) -> SlabCache:
        """A cache whose slabs are described by ``layout``: one string per slab, one
        letter per object: ``U`` used, ``F`` free on the slab's freelist, ``C`` free on
        CPU 0's freelist (that slab is CPU 0's).  The first slab letters decide where
        the slab sits: a slab with ``C`` is the CPU slab, one with ``F`` is partial."""
        k = self.k
        per_slab = len(layout[0])
        node = k.new("struct kmem_cache_node")
        k.list_init(node + k.offsetof("struct kmem_cache_node", "partial"))
        cpu = k.percpu_alloc(k.type("struct kmem_cache_cpu").size)
        cache = k.new("struct kmem_cache", {
            "size": size, "object_size": object_size, "offset": size // 2,
            "oo.x": per_slab, "name": k.string(name.encode()), "random": FREELIST_RANDOM,
            "node[0]": node, "cpu_slab": cpu,
        })  # fmt: skip
        k.list_add(self.head, cache + k.offsetof("struct kmem_cache", "list"))
        rec = SlabCache(name, cache, object_size, size, 0, per_slab * len(layout), len(layout))
        for letters in layout:
            self._slab(rec, node, cpu, letters)
        k.write(node, "struct kmem_cache_node",
                {"nr_slabs.counter": rec.slabs, "total_objects.counter": rec.total})  # fmt: skip
        rec.allocated = sum(used for _slab, used in rec.objects.values())
        self.out.caches.insert(0, rec)
        return rec

    def _slab(self, rec: SlabCache, node: int, cpu: int, letters: str) -> None:
        k = self.k
        memory = k.mem.alloc(PAGE, PAGE)
        slab = self.page_of(memory)
        objs = [memory + i * rec.size for i in range(len(letters))]
        for obj, letter in zip(objs, letters, strict=True):
            rec.objects[obj] = (slab, letter == "U")
        slab_free = self._chain(rec, [o for o, c in zip(objs, letters, strict=True) if c == "F"])
        cpu_free = self._chain(rec, [o for o, c in zip(objs, letters, strict=True) if c == "C"])
        inuse = len(letters) - letters.count("F")
        k.write(slab, "struct slab", {
            "__page_flags": 1 << PG_SLAB, "slab_cache": rec.address, "freelist": slab_free,
            "inuse": inuse, "objects": len(letters),
        })  # fmt: skip
        if "C" in letters:
            k.write(k.per_cpu_address(cpu, 0), "struct kmem_cache_cpu",
                    {"slab": slab, "freelist": cpu_free})  # fmt: skip
        elif "F" in letters:
            head = node + k.offsetof("struct kmem_cache_node", "partial")
            k.list_add_tail(head, slab + k.offsetof("struct slab", "slab_list"))

    def _chain(self, rec: SlabCache, objects: list[int]) -> int:
        """A hardened freelist through ``objects``: each next pointer stored as
        ``next ^ random ^ swab(where)``; returns the first object (0 if none)."""
        k = self.k
        if not objects:
            return 0
        offset = rec.size // 2
        for obj, nxt in zip(objects, [*objects[1:], 0], strict=True):
            where = obj + offset
            k.mem.u64(where, nxt ^ FREELIST_RANDOM ^ _swab(where))
        return objects[0]


def _maple_node(k: SyntheticKernel, kind: int, pivots: list[int], slots: list[int]) -> int:
    """A 256-byte aligned maple node; returns its encoded pointer (type in bits 3..6)."""
    node = k.mem.alloc(256, 256)
    struct = "mr64" if kind == MAPLE_LEAF_64 else "ma64"
    values: dict[str, object] = {f"{struct}.pivot[{i}]": p for i, p in enumerate(pivots)}
    values |= {f"{struct}.slot[{i}]": s for i, s in enumerate(slots)}
    values[f"{struct}.meta.end"] = len(slots) - 1  # the last used slot (ma_data_end)
    k.write(node, "struct maple_node", values)
    return node | kind << 3 | 0x4


def _maple_root(encoded: int) -> int:
    """A tree's ``ma_root``: the top node marked as an internal entry (xa_mk_node)."""
    return encoded | 0x2


def _vmas(k: SyntheticKernel, out: Subsystems, mm: int, files: dict[str, int]) -> None:
    """systemd's address space: text from a file, data, heap, stack and the vDSO, split
    over two maple leaves under an allocation-range node."""
    special = k.global_("special_mapping_vmops", "unsigned long")
    vdso = k.new("struct vm_special_mapping", {"name": k.string(b"[vdso]")})
    rx, rw = VM_READ | VM_EXEC, VM_READ | VM_WRITE
    specs = [
        (0x400000, 0x401000, rx, "/usr/lib/systemd/systemd", {}),
        (0x401000, 0x480000, rx, "/usr/lib/systemd/systemd", {}),
        (0x600000, 0x604000, rw, "", {}),
        (0x1C00000, 0x1C40000, rw, "[heap]", {}),
        (0x7FFC0000E000, 0x7FFC00030000, rw | 0x100, "[stack]", {}),
        (0x7FFC00040000, 0x7FFC00042000, rx, "[vdso]", {"vm_ops": special,
                                                        "vm_private_data": vdso}),
    ]  # fmt: skip
    vmas = []
    for start, end, flags, name, extra in specs:
        values = {"vm_start": start, "vm_end": end, "vm_flags": flags, "vm_mm": mm, **extra}
        if name.startswith("/"):
            values["vm_file"] = files[name]
        vma = k.new("struct vm_area_struct", values)
        vmas.append(vma)
        out.vmas.append((vma, start, end, flags, name))
    k.write(mm, "struct mm_struct", {"start_brk": 0x1C00000, "brk": 0x1C40000,
                                     "start_stack": 0x7FFC0002F000})  # fmt: skip

    # Each leaf: entries and the gaps between them (NULL slots), pivots = last index.
    def leaf(part: list[tuple[int, int, int]], low: int, high: int) -> int:
        pivots, slots, at = [], [], low
        for vma, start, end in part:
            if start > at:
                pivots.append(start - 1)
                slots.append(0)
            pivots.append(end - 1)
            slots.append(vma)
            at = end
        if at <= high:
            slots.append(0)  # the gap up to the node's end: its pivot is implied
        else:
            pivots.pop()
        return _maple_node(k, MAPLE_LEAF_64, pivots, slots)

    entries = [(v, s, e) for v, (_a, s, e, _f, _n) in zip(vmas, out.vmas, strict=True)]
    split = 0x1000000
    left = leaf(entries[:3], 0, split - 1)
    right = leaf(entries[3:], split, (1 << 64) - 1)
    root = _maple_node(k, MAPLE_ARANGE_64, [split - 1], [left, right])
    k.write(mm, "struct mm_struct", {"mm_mt.ma_root": _maple_root(root)})


def _irqs(k: SyntheticKernel, out: Subsystems) -> None:
    """16 IRQ numbers: 0 (timer), 1 (i8042), 4 (two handlers sharing the line) and 9
    allocated without a handler; ``sparse_irqs`` is a single maple leaf."""
    out.nr_irqs = 16
    k.global_("nr_irqs", "int", {"": out.nr_irqs})
    handlers = {0: [b"timer"], 1: [b"i8042"], 4: [b"ttyS0", b"serial-extra"], 9: []}
    pivots, slots = [], []
    for irq, names in handlers.items():
        actions, nxt = [], 0
        for name in reversed(names):
            nxt = k.new("struct irqaction", {"name": k.string(name), "next": nxt, "irq": irq})
            actions.insert(0, (nxt, name.decode()))
        # affinity: IRQ 4 on CPU 1 only, the others on both; counts per CPU: (irq, 10 * irq)
        mask = k.new("struct cpumask", {"bits[0]": 0b10 if irq == 4 else 0b11})
        stats = k.percpu_alloc(8)
        for cpu, count in enumerate((irq, 10 * irq)):
            k.mem.u32(k.per_cpu_address(stats, cpu), count)
        chip = k.new("struct irq_chip", {"name": k.string(b"IO-APIC")})
        desc = k.new("struct irq_desc", {"irq": irq, "action": nxt, "kstat_irqs": stats,
                                         "irq_common_data.affinity": mask,
                                         "irq_data.chip": chip})  # fmt: skip
        out.irqs[irq] = (desc, actions)
        if irq and (not pivots or pivots[-1] != irq - 1):
            pivots.append(irq - 1)
            slots.append(0)
        pivots.append(irq)
        slots.append(desc)
    leaf = _maple_node(k, MAPLE_LEAF_64, pivots, [*slots, 0])
    k.global_("sparse_irqs", "struct maple_tree", {"ma_root": _maple_root(leaf)})
    timer = k.symbols["write_sysrq_trigger"][0]  # any text address: a softirq handler
    k.global_("softirq_vec", "struct softirq_action [2]", {"[1].action": timer})


def _vmalloc(k: SyntheticKernel, out: Subsystems, stacks: list[int]) -> None:
    """``vmap_area_list``: one area per task stack (16 KiB + the guard page)."""
    head = k.global_("vmap_area_list", "struct list_head")
    k.list_init(head)
    for stack in sorted(stacks):
        vm = k.new("struct vm_struct", {"addr": stack, "size": 16384 + PAGE})
        va = k.new("struct vmap_area", {"va_start": stack, "va_end": stack + 16384, "vm": vm})
        k.list_add_tail(head, va + k.offsetof("struct vmap_area", "list"))
        out.vmap_areas.append((va, vm, stack, stack + 16384))


def _swap(k: SyntheticKernel, out: Subsystems, swap_file: int, path: str) -> None:
    """One active swap file of 256 MiB, 10 MiB used, priority -2."""
    si = k.new("struct swap_info_struct", {"flags": 0x1, "prio": -2,
                                           "swap_file": swap_file, "pages": 65536,
                                           "inuse_pages": 2560})  # fmt: skip
    k.global_("swap_info", "struct swap_info_struct *[2]", {"[0]": si})
    k.global_("nr_swapfiles", "unsigned int", {"": 1})
    out.swaps.append((si, 65536, 2560, -2, path))


def add_subsystems(k: SyntheticKernel, out: Subsystems, mm: int, files: dict[str, int],
                   stacks: list[int]) -> None:  # fmt: skip
    """Slab caches, systemd's VMAs (``mm``), IRQs, vmalloc areas and swap; ``files``
    maps the paths of files the builder created to their ``struct file``."""
    slabs = _Slabs(k, out)
    slabs.cache("kmalloc-64", 64, 64, ["UUFUFUUU" * 8, "U" * 64, "UCUCCUUU" * 8])
    slabs.cache("task_struct", 3000, 3072, ["U", "F"])
    slabs.cache(HOSTILE_CACHE, 512, 512, ["UFUFUFUF"])
    out.mm = (mm, 0)
    _vmas(k, out, mm, files)
    _irqs(k, out)
    _vmalloc(k, out, stacks)
    _swap(k, out, files["/swapfile"], "/swapfile")


def _signals(k: SyntheticKernel, out: Subsystems, task: int) -> None:
    """systemd's handlers: SIGHUP caught with SA_RESTART|SA_RESTORER, SIGPIPE ignored;
    SIGTERM pending on the thread with one queued sigqueue."""
    sighand = k.new("struct sighand_struct")
    size = k.type("struct k_sigaction").size
    actions = sighand + k.offsetof("struct sighand_struct", "action")
    for sig, handler, mask, flags in ((1, 0x55AA00, 0x4000, 0x14000000), (13, 1, 0, 0)):
        k.write(
            actions + (sig - 1) * size,
            "struct k_sigaction",
            {"sa.sa_handler": handler, "sa.sa_mask.sig[0]": mask, "sa.sa_flags": flags},
        )
        out.handlers[sig] = (handler, mask, flags)
    out.sighand = sighand
    off = k.offsetof("struct task_struct", "pending.list")
    k.list_init(task + off)
    queued = k.new("struct sigqueue")
    k.list_add_tail(task + off, queued)
    signal = k.mem.read_u64(task + k.offsetof("struct task_struct", "signal"))
    k.list_init(signal + k.offsetof("struct signal_struct", "shared_pending.list"))
    k.write(task, "struct task_struct", {"sighand": sighand, "blocked.sig[0]": 1 << 9,
                                         "pending.signal.sig[0]": 1 << 14})  # fmt: skip
    out.pending = (1 << 14, [queued])


def _timers(k: SyntheticKernel, out: Subsystems) -> None:
    """Two bases a CPU (BASE_STD, BASE_DEF); CPU 0's standard base holds two timers in
    bucket 3 and one in bucket 40, CPU 1's deferrable base one."""
    bases = k.percpu("timer_bases", "struct timer_base [2]")
    fn = {name: k.function(name).address for name in ("process_timeout", "delayed_work_timer_fn")}
    size = k.type("struct timer_base").size
    plan = {(0, 0): {3: [(4_295_000_100, "process_timeout"), (4_295_000_050, "process_timeout")],
                     40: [(4_295_090_000, "delayed_work_timer_fn")]},
            (1, 1): {7: [(4_295_000_500, "delayed_work_timer_fn")]}}  # fmt: skip
    for cpu in range(k.cpus):
        out.timers[cpu] = []
        for i, name in enumerate(("BASE_STD", "BASE_DEF")):
            base = k.per_cpu_address(bases, cpu) + i * size
            rows = []
            for bucket, timers in sorted(plan.get((cpu, i), {}).items()):
                head = base + k.offsetof("struct timer_base", f"vectors[{bucket}]")
                nxt = 0
                made = []
                for expires, func in reversed(timers):
                    t = k.new("struct timer_list", {"expires": expires, "function": fn[func],
                                                    "entry.next": nxt})  # fmt: skip
                    made.insert(0, (t, expires, func))
                    nxt = t
                k.mem.u64(head, nxt)
                rows += made
            out.timers[cpu].append((name, rows))


def _net(k: SyntheticKernel, out: Subsystems, socket_file: int) -> None:
    """lo (127.0.0.1) and eth0 (two addresses); bash's fd 4 is a TCP socket."""
    net = k.global_("init_net", "struct net")
    head = net + k.offsetof("struct net", "dev_base_head")
    k.list_init(head)
    for name, ips in (("lo", ["127.0.0.1"]), ("eth0", ["192.168.122.10", "10.0.0.2"])):
        nxt = 0
        for ip in reversed(ips):
            raw = int.from_bytes(bytes(int(p) for p in ip.split(".")), "little")
            nxt = k.new("struct in_ifaddr", {"ifa_next": nxt, "ifa_address": raw})
        in_dev = k.new("struct in_device", {"ifa_list": nxt})
        dev = k.new("struct net_device", {"name": name.encode(), "ip_ptr": in_dev})
        k.list_add_tail(head, dev + k.offsetof("struct net_device", "dev_list"))
        out.netdevs.append((dev, name, ips))
    _arp(k, out)
    sk = k.new("struct sock", {"__sk_common.skc_family": 2, "sk_type": 1,
                               "__sk_common.skc_rcv_saddr": 0x0A00000A,
                               "__sk_common.skc_num": 22,
                               "__sk_common.skc_daddr": 0x0200000A,
                               "__sk_common.skc_dport": 0x3930})  # fmt: skip
    sock = k.new("struct socket", {"sk": sk, "file": socket_file, "type": 1})
    k.write(socket_file, "struct file", {"private_data": sock})
    out.socket = (4, sock, sk)


def _arp(k: SyntheticKernel, out: Subsystems) -> None:
    """``arp_tbl``: four buckets; bucket 0 chains the gateway (eth0, REACHABLE) and a
    stale neighbour, bucket 3 holds lo's NOARP entry (lo is ARPHRD_LOOPBACK, a type
    crash does not name).  eth0 is made an Ethernet device (type 1, 6-byte addresses)."""
    (lo, _, _), (eth0, _, _) = out.netdevs
    k.write(eth0, "struct net_device", {"type": 1, "addr_len": 6})
    k.write(lo, "struct net_device", {"type": 772, "addr_len": 6})
    plan = {0: [("192.168.122.1", eth0, "eth0", bytes.fromhex("525400aabbcc"), 0x02),
                ("192.168.122.77", eth0, "eth0", bytes.fromhex("5254000000ff"), 0x04)],
            3: [("127.0.0.1", lo, "lo", bytes(6), 0x40)]}  # fmt: skip
    state = {0x02: "REACHABLE", 0x04: "STALE", 0x40: "NOARP"}
    buckets = k.mem.alloc(8 * 4)
    key = k.offsetof("struct neighbour", "primary_key")  # inside the struct's tail padding
    for bucket, entries in plan.items():
        nxt = 0
        made = []
        for ip, dev, name, hw, nud in reversed(entries):
            n = k.new("struct neighbour", {"next": nxt, "dev": dev, "nud_state": nud, "ha": hw})
            k.mem.write(n + key, bytes(int(p) for p in ip.split(".")))
            kind = "ETHER" if dev == eth0 else "UNKNOWN"
            text = hw.hex(":") if dev == eth0 else hw.hex(" ")
            made.insert(0, (n, ip, kind, text, name, state[nud]))
            nxt = n
        k.mem.u64(buckets + 8 * bucket, nxt)
        out.neighbours += made
    nht = k.new("struct neigh_hash_table", {"hash_buckets": buckets, "hash_shift": 2})
    k.global_("arp_tbl", "struct neigh_table", {"family": 2, "nht": nht})


def _devices(k: SyntheticKernel, out: Subsystems) -> None:
    """mem (1, its cdev in the region), tty (4, its cdev only in cdev_map), input (13,
    no cdev); block majors virtblk (254) and blkext (259, hashed into bucket 4)."""
    fops = {n: k.global_(n, "unsigned long") for n in ("memory_fops", "tty_fops")}
    mem_cdev = k.new("struct cdev", {"ops": fops["memory_fops"]})
    tty_cdev = k.new("struct cdev", {"ops": fops["tty_fops"]})
    table = k.global_("chrdevs", "struct char_device_struct *[255]")
    for major, name, cdev in ((1, "mem", mem_cdev), (4, "tty", 0), (13, "input", 0)):
        cd = k.new("struct char_device_struct", {"major": major, "name": name.encode(),
                                                 "cdev": cdev, "baseminor": 0})  # fmt: skip
        k.mem.u64(table + 8 * major, cd)
    probe = k.new("struct probe", {"dev": 4 << 20, "range": 64, "data": tty_cdev})
    kmap = k.new("struct kobj_map", {"probes[4]": probe})
    k.global_("cdev_map", "struct kobj_map *", {"": kmap})
    out.chrdevs = [(1, "mem", mem_cdev, "memory_fops"), (4, "tty", tty_cdev, "tty_fops"),
                   (13, "input", 0, "")]  # fmt: skip
    names = k.global_("major_names", "struct blk_major_name *[255]")
    for major, name in ((259, "blkext"), (254, "virtblk")):
        bm = k.new("struct blk_major_name", {"major": major, "name": name.encode()})
        k.mem.u64(names + 8 * (major % 255), bm)
    out.blkdevs = [(259, "blkext"), (254, "virtblk")]


def _ipc(k: SyntheticKernel, out: Subsystems) -> None:
    """One shared memory segment (id 32769, key 0x1234, 1 MiB, 2 attached), one
    semaphore array (id 0, key 0x55, 3 semaphores); no message queues."""
    shm = k.new("struct shmid_kernel", {"shm_perm.id": 32769, "shm_perm.key": 0x1234,
                                        "shm_perm.uid.val": 1000, "shm_perm.mode": 0o600,
                                        "shm_segsz": 1 << 20, "shm_nattch": 2})  # fmt: skip
    node = k.new("struct xa_node", {"shift": 0, "slots[1]": shm})
    sem = k.new("struct sem_array", {"sem_perm.id": 0, "sem_perm.key": 0x55,
                                     "sem_perm.uid.val": 0, "sem_perm.mode": 0o600,
                                     "sem_nsems": 3})  # fmt: skip
    sem_node = k.new("struct xa_node", {"shift": 0, "slots[0]": sem})
    k.global_("init_ipc_ns", "struct ipc_namespace",
              {"ids[2].in_use": 1, "ids[2].ipcs_idr.idr_rt.xa_head": node | 2,
               "ids[0].in_use": 1, "ids[0].ipcs_idr.idr_rt.xa_head": sem_node | 2})  # fmt: skip
    out.shm = (shm, 0x1234, 32769, 1 << 20)
    out.sem = (sem, 0x55, 0, 3)


def _waitq(k: SyntheticKernel, out: Subsystems, tasks: list[int]) -> None:
    """``synth_wq``: a wait queue head the two kdumpy-dstate threads sleep on."""
    wq = k.global_("synth_wq", "struct wait_queue_head")
    head = wq + k.offsetof("struct wait_queue_head", "head")
    k.list_init(head)
    for task in tasks:
        entry = k.new("struct wait_queue_entry", {"private": task})
        k.list_add_tail(head, entry + k.offsetof("struct wait_queue_entry", "entry"))
    out.waitq = (wq, tasks)


def add_kernel_tables(k: SyntheticKernel, out: Subsystems, systemd: int, socket_file: int,
                      waiters: list[int]) -> None:  # fmt: skip
    """Signals, timers, network, devices, IPC and a wait queue."""
    _signals(k, out, systemd)
    _timers(k, out)
    _net(k, out, socket_file)
    _devices(k, out)
    _ipc(k, out)
    _waitq(k, out, waiters)
    _zones(k, out)
    _bpf(k, out)


def _zones(k: SyntheticKernel, out: Subsystems) -> None:
    """``contig_page_data`` with DMA (pfn 1-4095: two free pages and one order-3 block)
    and DMA32 (pfn 4096-262143: one order-10 block), and an empty Normal zone.  The
    blocks' struct pages are linked through ``page->lru``; the free counters are set
    apart from the lists (``kmem -f`` reports both)."""
    pgdat = k.global_("contig_page_data", "struct pglist_data")
    # one node spanning pfn 0 to max_pfn, as on x86_64 (what sys reports as MEMORY)
    k.write(pgdat, "struct pglist_data", {"node_start_pfn": 0, "node_spanned_pages": 262144})
    plan = [("DMA", 1, 4095, 3000, {(0, "MOVABLE"): [10, 12], (3, "UNMOVABLE"): [16]}),
            ("DMA32", 4096, 258048, 100000, {(10, "MOVABLE"): [512]}),
            ("Normal", 0, 0, 0, {})]  # fmt: skip
    kinds = ["UNMOVABLE", "MOVABLE", "RECLAIMABLE", "HIGHATOMIC", "ISOLATE"]
    for i, (name, start, spanned, free, lists) in enumerate(plan):
        zone = pgdat + k.offsetof("struct pglist_data", f"node_zones[{i}]")
        k.write(zone, "struct zone", {"zone_start_pfn": start, "spanned_pages": spanned,
                                      "present_pages": spanned - 97 * (i == 0),
                                      "name": k.string(name.encode()),
                                      "vm_stat[0].counter": free, "vm_stat[2].counter": i,
                                      "_watermark[0]": 10 + i, "_watermark[1]": 20 + i,
                                      "_watermark[2]": 30 + i,
                                      "watermark_boost": 5 * (i == 1)})  # fmt: skip
        for order in range(11):
            for mt, kind in enumerate(kinds):
                head = zone + k.offsetof("struct zone", f"free_area[{order}].free_list[{mt}]")
                k.list_init(head)
                for pfn in lists.get((order, kind), []):
                    k.list_add_tail(head, VMEMMAP + pfn * PAGE_STRUCT + 8)  # page->lru
        counts = {key: len(pfns) for key, pfns in lists.items()}
        out.zones.append((name, start, spanned, free, counts))


def _bpf(k: SyntheticKernel, out: Subsystems) -> None:
    """A kprobe program (id 7, tag 0102..08) using a hash map (id 3, flags 0x1)."""
    bpf_map = k.new("struct bpf_map", {"map_type": 1, "map_flags": 1, "id": 3})
    used = k.mem.alloc(8)
    k.mem.u64(used, bpf_map)
    aux = k.new("struct bpf_prog_aux", {"id": 7, "used_map_cnt": 1, "used_maps": used})
    prog = k.new("struct bpf_prog", {"type": 2, "tag": bytes(range(1, 9)), "aux": aux})
    for name, index, entry in (("prog_idr", 7, prog), ("map_idr", 3, bpf_map)):
        node = k.new("struct xa_node", {"shift": 0, f"slots[{index}]": entry})
        k.global_(name, "struct idr", {"idr_rt.xa_head": node | 2})
    out.bpf = (prog, aux, bpf_map, 3)


def add_page_cache(k: SyntheticKernel, out: Subsystems, inode: int) -> None:
    """Two pages cached for ``inode`` (indexes 0 and 2, through an XArray node) and a
    shadow entry (index 1, an evicted page: not a page).  Their struct pages are in the
    vmemmap; flags referenced, uptodate, lru (and dirty for the second)."""
    mapping = k.mem.read_u64(inode + k.offsetof("struct inode", "i_mapping"))
    rows = []
    slots: dict[str, object] = {"shift": 0, "slots[1]": (77 << 1) | 1}  # xa_mk_value(77)
    for index, flags, refs in ((0, 0b10110, 1), (2, 0b11110, 3)):
        data = k.mem.alloc(PAGE, PAGE)
        page = VMEMMAP + ((data - PAGE_OFFSET) // PAGE) * PAGE_STRUCT
        k.write(page, "struct page", {"flags": flags, "mapping": mapping, "index": index,
                                      "_refcount.counter": refs})  # fmt: skip
        slots[f"slots[{index}]"] = page
        rows.append((page, data - PAGE_OFFSET, index, refs, flags))
    node = k.new("struct xa_node", slots)
    k.write(mapping, "struct address_space", {"i_pages.xa_head": node | 2, "nrpages": 2})
    out.page_cache = (inode, mapping, rows)


def add_ipc_namespace(k: SyntheticKernel, out: Subsystems, init_ns_tasks: list[int],
                      pid: int, task: int) -> None:  # fmt: skip
    """``init_ipc_ns`` is the namespace of init_task and of ``init_ns_tasks``; ``task``
    (``pid``) has an IPC namespace of its own, holding one message queue (id 5, key
    0x77, 300 bytes in 2 messages) and nothing else."""
    init_task = k.symbols["init_task"][0]
    nsproxy = k.mem.read_u64(init_task + k.offsetof("struct task_struct", "nsproxy"))
    mnt_ns = k.mem.read_u64(nsproxy + k.offsetof("struct nsproxy", "mnt_ns"))
    k.write(nsproxy, "struct nsproxy", {"ipc_ns": k.symbols["init_ipc_ns"][0]})
    for t in init_ns_tasks:
        k.write(t, "struct task_struct", {"nsproxy": nsproxy})
    msq = k.new("struct msg_queue", {"q_perm.id": 5, "q_perm.key": 0x77, "q_perm.mode": 0o644,
                                     "q_cbytes": 300, "q_qnum": 2})  # fmt: skip
    node = k.new("struct xa_node", {"shift": 0, "slots[5]": msq})
    ns = k.new("struct ipc_namespace", {"ids[1].in_use": 1,
                                        "ids[1].ipcs_idr.idr_rt.xa_head": node | 2})  # fmt: skip
    own = k.new("struct nsproxy", {"mnt_ns": mnt_ns, "ipc_ns": ns})
    k.write(task, "struct task_struct", {"nsproxy": own})
    out.ipc_ns = (pid, (msq, 0x77, 5, 300, 2))


def add_option_tables(k: SyntheticKernel, out: Subsystems) -> None:
    """What the options of irq, timer and dev read: the IDT, hrtimers, resources, PCI
    and disks (after ``jiffies_64`` and ``tick_nsec`` are set: the hrtimers' now)."""
    _idt(k, out)
    _hrtimers(k, out)
    _resources(k, out)
    _pci(k, out)
    _disks(k, out)


def _idt(k: SyntheticKernel, out: Subsystems) -> None:
    """``idt_table``: vector 0 at the start of asm_exc_divide_error, 14 at
    asm_exc_page_fault, vectors 32-255 at irq_entries_start + 8 each (crash's
    ``name+offset``, in decimal), the rest at 0xdead0000 + vector (no symbol)."""
    fns = {n: k.function(n).address for n in ("asm_exc_divide_error", "asm_exc_page_fault")}
    stubs = k.function("irq_entries_start", size=8 * 224).address
    table = k.data("idt_table", 256 * 16, align=4096)
    for vector in range(256):
        if vector in (0, 14):
            name = "asm_exc_divide_error" if vector == 0 else "asm_exc_page_fault"
            handler, shown = fns[name], name
        elif vector >= 32:
            off = 8 * (vector - 32)
            handler, shown = stubs + off, f"irq_entries_start+{off}" if off else "irq_entries_start"
        else:
            handler = 0xDEAD0000 + vector
            shown = f"{handler:x}"
        gate = struct.pack("<HHHHII", handler & 0xFFFF, 0x10, 0x8E00, handler >> 16 & 0xFFFF,
                           handler >> 32, 0)  # fmt: skip
        k.mem.write(table + 16 * vector, gate)
        out.idt.append(f"[{vector}] {shown}")


CLOCK_READERS = ("ktime_get", "ktime_get_real", "ktime_get_boottime", "ktime_get_clocktai")


def _hrtimers(k: SyntheticKernel, out: Subsystems) -> None:
    """crash's now: the ``jiffies_64`` past INITIAL_JIFFIES (for the ``tick_nsec`` HZ) the
    machine already has, in nanoseconds.  CPU 0's monotonic base holds three timers (one
    already expired), its real-time base one (the real clock is 1.7e9 s ahead); every
    other base of both CPUs is empty.  Each base's get_time is its clock's reader."""
    tick = k.mem.read_u64(k.symbols["tick_nsec"][0])
    hz = round(1_000_000_000 / tick)
    ticks = k.mem.read_u64(k.symbols["jiffies_64"][0]) - ((-300 * hz) & 0xFFFFFFFF)
    out.hrtimer_now = now = ticks * (1_000_000_000 // hz)
    readers = {name: k.function(name).address for name in CLOCK_READERS}
    fns = {name: k.function(name).address for name in ("tick_sched_timer", "hrtimer_wakeup")}
    bases = k.percpu("hrtimer_bases", "struct hrtimer_cpu_base")
    real = 1_700_000_000 * 10**9
    plan = {(0, 0): [(now - 1_000_000, now - 1_000_000, "tick_sched_timer"),
                     (now + 4_000_000, now + 4_000_000, "tick_sched_timer"),
                     (now + 5 * 10**9, now + 5 * 10**9 + 50_000, "hrtimer_wakeup")],
            (0, 1): [(now + real + 10**9, now + real + 10**9, "hrtimer_wakeup")]}  # fmt: skip
    size = k.type("struct hrtimer_clock_base").size
    first = k.offsetof("struct hrtimer_cpu_base", "clock_base")
    for cpu in range(k.cpus):
        cpu_base = k.per_cpu_address(bases, cpu)
        clocks = []
        for index in range(8):
            base = cpu_base + first + index * size
            reader = CLOCK_READERS[index % 4]
            offset = real if index % 4 == 1 else 0
            made = []
            for soft, hard, fn in plan.get((cpu, index), []):
                t = k.new("struct hrtimer", {"_softexpires": soft, "node.expires": hard,
                                             "function": fns[fn], "base": base})  # fmt: skip
                made.append((soft, hard, t, fn))
            root = k.rb_tree([t for _s, _h, t, _f in made])
            k.write(base, "struct hrtimer_clock_base", {
                "cpu_base": cpu_base, "index": index, "get_time": readers[reader],
                "offset": offset, "active.rb_root.rb_root.rb_node": root,
                "active.rb_root.rb_leftmost": made[0][2] if made else 0,
            })  # fmt: skip
            clocks.append((index, base, reader, offset, made))
        out.hrtimers[cpu] = (cpu_base, clocks)


def _resources(k: SyntheticKernel, out: Subsystems) -> None:
    """``ioport_resource`` (PCI IO: dma1, then a PCI bus holding keyboard) and
    ``iomem_resource`` (PCI mem: System RAM holding Kernel code, then a 64-bit window)."""
    trees = {
        "ioport_resource": ("PCI IO", 0, 0xFFFF, [("dma1", 0, 0x1F, []),
                            ("PCI Bus 0000:00", 0, 0xCF7, [("keyboard", 0x60, 0x60, [])])]),
        "iomem_resource": ("PCI mem", 0, (1 << 40) - 1, [
            ("System RAM", 0x1000, 0x9FBFF, [("Kernel code", 0x2000, 0x2FFF, [])]),
            ("PCI Bus 0000:00", 1 << 32, (3 << 31) - 1, [])]),
    }  # fmt: skip

    def build(node: tuple, parent: int, address: int, rows: list) -> int:
        name, start, end, children = node
        k.write(address, "struct resource", {"start": start, "end": end, "parent": parent,
                                             "name": k.string(name.encode())})  # fmt: skip
        rows.append((address, start, end, name))
        kids = [k.new("struct resource") for _ in children]
        for i, (child, at) in enumerate(zip(children, kids, strict=True)):
            build(child, address, at, rows)
            if i + 1 < len(kids):
                k.write(at, "struct resource", {"sibling": kids[i + 1]})
        if kids:
            k.write(address, "struct resource", {"child": kids[0]})
        return address

    for root, tree in trees.items():
        rows: list[tuple[int, int, int, str]] = []
        build(tree, 0, k.global_(root, "struct resource"), rows)
        out.resources[root] = rows


def _pci(k: SyntheticKernel, out: Subsystems) -> None:
    """Root bus 0000:00: a host bridge and a PCIe root port (a bridge) whose bus 0000:01
    holds a virtio endpoint."""
    head = k.global_("pci_root_buses", "struct list_head")
    k.list_init(head)

    def bus(name: str, parent: int, self_dev: int) -> int:
        b = k.new("struct pci_bus", {"parent": parent, "self": self_dev,
                                     "dev.kobj.name": k.string(name.encode())})  # fmt: skip
        for member in ("children", "devices"):
            k.list_init(b + k.offsetof("struct pci_bus", member))
        return b

    def dev(on: int, name: str, cls: int, vendor: int, device: int, hdr: int, flags: int) -> int:
        d = k.new("struct pci_dev", {"bus": on, "vendor": vendor, "device": device,
                                     "class": cls, "hdr_type": hdr, "pcie_flags_reg": flags,
                                     "dev.kobj.name": k.string(name.encode())})  # fmt: skip
        k.list_add_tail(on + k.offsetof("struct pci_bus", "devices"),
                        d + k.offsetof("struct pci_dev", "bus_list"))  # fmt: skip
        return d

    root = bus("0000:00", 0, 0)
    k.list_add_tail(head, root + k.offsetof("struct pci_bus", "node"))
    host = dev(root, "0000:00:00.0", 0x060000, 0x8086, 0x1237, 0, 0)
    port = dev(root, "0000:00:01.0", 0x060400, 0x8086, 0x7C0, 1, 0x42)
    child = bus("0000:01", root, port)
    k.list_add_tail(root + k.offsetof("struct pci_bus", "children"),
                    child + k.offsetof("struct pci_bus", "node"))  # fmt: skip
    virtio = dev(child, "0000:01:00.0", 0x010000, 0x1AF4, 0x1041, 0, 0x02)
    rows = [(host, "0000:00:00.0", "0600", "8086:1237", "ENDPOINT"),
            (port, "0000:00:01.0", "0604", "8086:7c0", "ROOT_PORT [BRIDGE]")]  # fmt: skip
    out.pci = [(root, "0000:00", rows, [(child, root)])]
    out.pci_child = [(port, "0000:00:01.0", "0604", "8086:7c0", "ROOT_PORT [BRIDGE]"),
                     (virtio, "0000:01:00.0", "0100", "1af4:1041", "ENDPOINT")]  # fmt: skip


def _disks(k: SyntheticKernel, out: Subsystems) -> None:
    """The block class (found on ``class_kset`` by its back-pointer, as since 6.4)
    holds vda, a partition of it (vda1: not a disk), vdb and sdc.  vda's queue has two
    hardware contexts without a scheduler: driver tags 1 (a read) and 2 (a write) on
    the first, tag 0 on the second names a request of vdb's queue (stale: not counted);
    vdb is idle.  sdc's queue has an I/O scheduler: a read dispatched (scheduler tag 0
    and driver tag 5) and a write still in the scheduler (scheduler tag 3 only) are its
    two requests, counted once each through the scheduler tags."""
    cls = k.global_("block_class", "struct class", {"name": k.string(b"block")})
    kset = k.new("struct kset")
    k.list_init(kset + k.offsetof("struct kset", "list"))
    k.global_("class_kset", "struct kset *", {"": kset})
    sp = k.new("struct subsys_private", {"class": cls})
    k.list_add_tail(kset + k.offsetof("struct kset", "list"),
                    sp + k.offsetof("struct subsys_private", "subsys.kobj.entry"))  # fmt: skip
    devices = sp + k.offsetof("struct subsys_private", "klist_devices.k_list")
    k.list_init(devices)

    def queue(nr_hw: int, elevator: bool = False) -> int:
        hctxs = k.mem.alloc(8 * nr_hw)
        for i in range(nr_hw):
            k.mem.u64(hctxs + 8 * i, k.new("struct blk_mq_hw_ctx"))
        scheduler = k.mem.alloc(64) if elevator else 0  # a struct elevator_queue
        values = {"tag_set": k.mem.alloc(64), "nr_hw_queues": nr_hw, "queue_hw_ctx": hctxs,
                  "elevator": scheduler}  # fmt: skip
        return k.new("struct request_queue", values)

    def request(q: int, flags: int, tag: int = -1, internal_tag: int = -1) -> int:
        return k.new("struct request", {"q": q, "tag": tag, "internal_tag": internal_tag,
                                        "cmd_flags": flags})  # fmt: skip

    def tags(q: int, index: int, taken: dict[int, int], sched: bool = False) -> None:
        """Hardware context ``index`` of ``q``: 16 tags in two 8-bit sbitmap words;
        ``taken`` maps a tag to its request (in ``rqs``, or ``static_rqs`` for a
        scheduler's tags)."""
        words = k.mem.alloc(2 * 16)
        rqs = k.mem.alloc(8 * 16)
        for tag, rq in taken.items():
            k.mem.u64(rqs + 8 * tag, rq)
            word = words + 16 * (tag >> 3)
            k.mem.u64(word, k.mem.read_u64(word) | 1 << (tag & 7))
        t = k.new("struct blk_mq_tags", {"nr_tags": 16, "bitmap_tags.sb.depth": 16,
                                         "bitmap_tags.sb.shift": 3, "bitmap_tags.sb.map_nr": 2,
                                         "bitmap_tags.sb.map": words,
                                         "static_rqs" if sched else "rqs": rqs})  # fmt: skip
        hctxs = k.mem.read_u64(q + k.offsetof("struct request_queue", "queue_hw_ctx"))
        hctx = k.mem.read_u64(hctxs + 8 * index)
        k.write(hctx, "struct blk_mq_hw_ctx", {"sched_tags" if sched else "tags": t})

    def add(disk: int, partno: int) -> None:
        bdev = k.new("struct block_device", {"bd_disk": disk, "bd_partno": partno})
        priv = k.new("struct device_private",
                     {"device": bdev + k.offsetof("struct block_device", "bd_device")})  # fmt: skip
        k.list_add_tail(devices, priv + k.offsetof("struct device_private", "knode_class.n_node"))

    qa, qb, qc = queue(2), queue(1), queue(1, elevator=True)
    read, write = 0, 1  # REQ_OP_READ, REQ_OP_WRITE
    tags(qa, 0, {1: request(qa, read, 1), 2: request(qa, write | 1 << 11, 2)})
    tags(qa, 1, {0: request(qb, write, 0)})
    tags(qb, 0, {})
    dispatched, waiting = request(qc, read, 5, 0), request(qc, write, -1, 3)
    tags(qc, 0, {0: dispatched, 3: waiting}, sched=True)
    tags(qc, 0, {5: dispatched})
    vda = k.new("struct gendisk", {"major": 254, "disk_name": b"vda", "queue": qa})
    vdb = k.new("struct gendisk", {"major": 254, "first_minor": 16, "disk_name": b"vdb",
                                   "queue": qb})  # fmt: skip
    sdc = k.new("struct gendisk", {"major": 8, "first_minor": 32, "disk_name": b"sdc",
                                   "queue": qc})  # fmt: skip
    add(vda, 0)
    add(vda, 1)
    add(vdb, 0)
    add(sdc, 0)
    out.disks = [(vda, "vda", qa, 1, 1), (vdb, "vdb", qb, 0, 0), (sdc, "sdc", qc, 1, 1)]
