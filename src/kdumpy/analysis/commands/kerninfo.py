"""timer, net, dev, ipcs, waitq: kernel-wide tables."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands import parse_cpus, resolve_address
from kdumpy.analysis.commands.addrcmds import address_code
from kdumpy.analysis.commands.apicode import task_expr
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.tasksel import task_from_arg, task_line
from kdumpy.analysis.helpers.block import disk_name, disk_requests, for_each_disk
from kdumpy.analysis.helpers.devices import (
    block_majors,
    char_devices,
    device_name,
    pci_bus_devices,
    pci_child_buses,
    pci_dev_type,
    pci_root_buses,
    resource_tree,
)
from kdumpy.analysis.helpers.ipc import (
    IPC_MSG_IDS,
    IPC_SEM_IDS,
    IPC_SHM_IDS,
    ipc_objects,
    task_ipc_ns,
)
from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.helpers.net import (
    ARP_HW_TYPES,
    arp_neighbours,
    for_each_netdev,
    netdev_ipv4,
    netdev_name,
    nud_state_names,
    sock_endpoints,
    sock_family_type,
    task_sockets,
)
from kdumpy.analysis.helpers.timer import (
    crash_ktime_now,
    hrtimer_bases,
    jiffies,
    ktime_ns,
    timer_bases,
)
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.printable import shown

_PRELUDE = "# prog = kdumpy.open(DUMP)\n"


def _timer_python(opts: argparse.Namespace) -> str:
    cpus = "prog.online_cpus" if opts.cpus is None else repr(opts.cpus)
    if opts.hrtimers:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.timer import crash_ktime_now, hrtimer_bases, ktime_ns\n"
            "now = crash_ktime_now(prog)\n"
            f"for cpu in {cpus}:\n"
            "    cpu_base, clocks = hrtimer_bases(prog, cpu)\n"
            "    for clock in clocks:\n"
            "        for t in clock.timers:\n"
            "            expires = ktime_ns(t.node.expires)\n"
            "            print(cpu, clock.number, ktime_ns(t._softexpires), expires,\n"
            "                  expires - (now + clock.offset), hex(int(t)),\n"
            "                  prog.describe(int(t.function)))\n"
        )
    return _PRELUDE + (
        "from kdumpy.analysis.helpers.timer import timer_bases\n"
        f"for cpu in {cpus}:\n"
        "    for name, base, timers in timer_bases(prog, cpu):\n"
        "        for t in timers:\n"
        "            print(cpu, name, int(t.expires),\n"
        "                  prog.describe(int(t.function)))\n"
    )


@command("timer", "timer queue data",
         Arg("-C", dest="cpus", type=parse_cpus, metavar="cpus", help="these CPUs only"),
         Arg("-r", dest="hrtimers", action="store_true", help="the high-resolution timers"),
         usage="timer [-r] [-C cpus]", python=_timer_python)  # fmt: skip
def cmd_timer(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    cpus = prog.online_cpus if opts.cpus is None else opts.cpus
    if opts.hrtimers:
        return _hrtimers(prog, cpus)
    now = jiffies(prog)
    out = [f"JIFFIES\n{now}\n"]
    for cpu in cpus:
        out.append("\n")
        for name, base, timers in timer_bases(prog, cpu):
            out.append(f"TIMER_BASES[{cpu}][{name}]: {int(base.address_ or 0):x}\n")
            out.append("  EXPIRES          TTE     TIMER_LIST     FUNCTION\n")
            for t in timers:
                expires = int(t.expires)
                out.append(f"  {expires:<11} {expires - now:>9}  {int(t):016x}  "
                           f"{_function(prog, int(t.function))}\n")  # fmt: skip
    return "".join(out)


def _function(prog: Program, address: int) -> str:
    """A timer's function: its address, then ``<symbol>`` where one holds it."""
    sym = prog.find_symbol(address)
    return f"{address:016x}" + (f"  <{shown(sym.describe(address))}>" if sym is not None else "")


def _hrtimers(prog: Program, cpus: list[int]) -> str:
    """``timer -r``: each CPU's hrtimer clock bases, each with the time now on its clock
    (crash's reckoning, from jiffies) and its timers: soft and hard expiry, time to
    expiry, the hrtimer and its function; ``(empty)`` for a base without one."""
    now = crash_ktime_now(prog)
    blocks = []
    for cpu in cpus:
        cpu_base, clocks = hrtimer_bases(prog, cpu)
        out = [f"CPU: {cpu}  HRTIMER_CPU_BASE: {int(cpu_base.address_ or 0):x}\n"]
        for i, clock in enumerate(clocks):
            sym = prog.find_symbol(clock.get_time) if clock.get_time else None
            name = f"  [{shown(sym.name)}]" if sym is not None else ""
            out.append(("\n" if i else "") + f"  CLOCK: {clock.number}  HRTIMER_CLOCK_BASE: "
                       f"{int(clock.base.address_ or 0):x}{name}\n")  # fmt: skip
            if not clock.timers:
                out.append("  (empty)\n")
                continue
            current = now + clock.offset
            rows = []
            for t in clock.timers:
                expires = ktime_ns(t.node.expires)
                rows.append((str(ktime_ns(t._softexpires)), str(expires), str(expires - current),
                             f"{int(t):016x}", _function(prog, int(t.function))))  # fmt: skip
            w = [max(len(r[c]) for r in [("SOFTEXPIRES", "EXPIRES", "TTE"), *rows])
                 for c in range(3)]  # fmt: skip
            out.append(f"  {'CURRENT':>{w[0]}}\n  {current:>{w[0]}}\n")
            out.append(f"  {'SOFTEXPIRES':>{w[0]}}  {'EXPIRES':>{w[1]}}  {'TTE':>{w[2]}}  "
                       "    HRTIMER           FUNCTION\n")  # fmt: skip
            out += [
                f"  {a:>{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d}  {e}\n" for a, b, c, d, e in rows
            ]
        blocks.append("".join(out))
    return "\n".join(blocks)


@command("net", "network devices and sockets",
         Arg("-s", dest="sockets", action="store_true", help="a task's open sockets"),
         Arg("-a", dest="arp", action="store_true", help="the ARP cache"),
         Arg("tasks", nargs="*", metavar="pid|task", help="with -s: the tasks"),
         usage="net [-s [pid|task ...]] [-a]",
         python=lambda o: _PRELUDE + (_sockets_python(o) if o.sockets else _ARP_PYTHON if o.arp
                                      else (
             "from kdumpy.analysis.helpers.net import for_each_netdev, netdev_name, netdev_ipv4\n"
             "for dev in for_each_netdev(prog):\n"
             "    print(hex(int(dev)), netdev_name(dev), netdev_ipv4(prog, dev))\n")))  # fmt: skip
def cmd_net(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.arp:
        if opts.sockets or opts.tasks:
            raise CommandError("-a takes no -s or task")
        return _arp(prog)
    if opts.sockets:
        tasks = [task_from_arg(session, t) for t in opts.tasks]
        if not tasks:
            raise CommandError("net -s needs a pid or task")
        return "\n".join(_sockets(prog, t) for t in tasks)
    out = ["   NET_DEVICE     NAME   IP ADDRESS(ES)\n"]
    for dev in for_each_netdev(prog):
        ips = ", ".join(netdev_ipv4(prog, dev))
        out.append(f"{int(dev):016x}  {shown(netdev_name(dev)):<6} {ips}\n")
    return "".join(out)


_ARP_PYTHON = """from kdumpy.analysis.helpers.net import (ARP_HW_TYPES, arp_neighbours,
    nud_state_names)
for n in arp_neighbours(prog):
    print(hex(n.address), n.ip, ARP_HW_TYPES.get(n.hw_type, "UNKNOWN"), n.hw_address.hex(":"),
          n.device, nud_state_names(n.state))
"""


def _arp(prog: Program) -> str:
    """``net -a``: the ARP cache; nothing at all when it is empty, as crash.  A known
    hardware type's address is written with colons, another's as spaced bytes (crash)."""
    out = []
    for n in arp_neighbours(prog):
        kind = ARP_HW_TYPES.get(n.hw_type)
        hw = n.hw_address.hex(":") if kind else n.hw_address.hex(" ")
        out.append(f"{n.address:016x}  {n.ip:<15} {kind or 'UNKNOWN':<9} {hw:<18} "
                   f"{shown(n.device):<7} {nud_state_names(n.state)}\n")  # fmt: skip
    if not out:
        return ""
    return (
        "   NEIGHBOUR      IP ADDRESS      HW TYPE   HW ADDRESS         DEVICE  STATE\n"
        + "".join(out)
    )


def _sockets_python(opts: argparse.Namespace) -> str:
    pid = int(opts.tasks[0]) if opts.tasks and opts.tasks[0].isdigit() else 1
    return (
        "from kdumpy.analysis.helpers.tasks import find_task\n"
        "from kdumpy.analysis.helpers.net import task_sockets, sock_family_type, sock_endpoints\n"
        f"for fd, sock, sk in task_sockets(prog, find_task(prog, {pid})):\n"
        "    print(fd, hex(int(sock)), sock_family_type(sk), sock_endpoints(sk))\n"
    )


def _sockets(prog: Program, task: object) -> str:
    out = [task_line(task)]  # type: ignore[arg-type]
    out.append("FD      SOCKET            SOCK       FAMILY:TYPE SOURCE-PORT DESTINATION-PORT\n")
    for fd, sock, sk in task_sockets(prog, task):  # type: ignore[arg-type]
        src, dst = sock_endpoints(sk)
        out.append(f"{fd:>2}  {int(sock):016x}  {int(sk):016x}  {sock_family_type(sk)}  "
                   f"{src}  {dst}\n")  # fmt: skip
    return "".join(out)


def _dev_python(opts: argparse.Namespace) -> str:
    if opts.ports:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.devices import resource_tree\n"
            'for root in ("ioport_resource", "iomem_resource"):\n'
            "    for r in resource_tree(prog, root):\n"
            "        print(hex(r.address), hex(r.start), hex(r.end), r.name)\n"
        )
    if opts.disks:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.block import disk_name, disk_requests, for_each_disk\n"
            "for disk in for_each_disk(prog):\n"
            "    reads, writes = disk_requests(prog, disk)\n"
            + ("    if not reads + writes:\n        continue\n" if opts.disks == "busy" else "")
            + "    print(int(disk.major), hex(int(disk)), disk_name(disk), hex(int(disk.queue)),\n"
            "          reads + writes, reads, writes)\n"
        )
    if opts.pci:
        return _PRELUDE + (
            "from kdumpy.analysis.helpers.devices import (device_name, pci_bus_devices,\n"
            "    pci_child_buses, pci_dev_type, pci_root_buses)\n"
            "def walk(bus):\n"
            "    print(hex(int(bus)), device_name(bus.dev))\n"
            "    for dev in pci_bus_devices(bus):\n"
            "        print(' ', hex(int(dev)), device_name(dev.dev), hex(int(dev.vendor)),\n"
            "              hex(int(dev.device)), pci_dev_type(dev))\n"
            "    for child in pci_child_buses(bus):\n"
            "        walk(child)\n"
            "for bus in pci_root_buses(prog):\n"
            "    walk(bus)\n"
        )
    return _PRELUDE + (
        "from kdumpy.analysis.helpers.devices import char_devices, block_majors\n"
        "for d in char_devices(prog):\n    print(d)\n"
        "print(block_majors(prog))\n"
    )


@command("dev", "device data",
         Arg("-i", dest="ports", action="store_true", help="I/O port and memory resources"),
         Arg("-p", dest="pci", action="store_true", help="PCI buses and devices"),
         Arg("-d", dest="disks", action="store_const", const="all",
             help="each disk's requests in flight: total, reads, writes"),
         Arg("-D", dest="disks", action="store_const", const="busy",
             help="as -d, the disks with requests in flight only"),
         usage="dev [-i | -p | -d | -D]", python=_dev_python)  # fmt: skip
def cmd_dev(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if sum(map(bool, (opts.ports, opts.pci, opts.disks))) > 1:
        raise CommandError("give one of -i, -p and -d/-D")
    if opts.disks:
        return _disks(prog, busy=opts.disks == "busy")
    if opts.ports:
        return _resources(prog)
    if opts.pci:
        return _pci(prog)
    out = ["CHRDEV  NAME                CDEV        OPERATIONS\n"]
    for d in char_devices(prog):
        if d.cdev:
            sym = prog.find_symbol(d.ops)
            ops = sym.describe(d.ops) if sym is not None else f"{d.ops:x}"
            out.append(f"{d.major:>6}  {shown(d.name):<12}  {d.cdev:016x}  {ops}\n")
        else:
            out.append(f"{d.major:>6}  {shown(d.name):<12}       (none)\n")
    out.append("\nBLKDEV  NAME\n")
    out += [f"{major:>6}  {shown(name)}\n" for major, name in block_majors(prog)]
    return "".join(out)


def _resources(prog: Program) -> str:
    """``dev -i``: the I/O port tree, then the I/O memory tree (crash's two tables;
    ranges in 4 hex digits for ports up to 0xffff, else 8, at least)."""
    blocks = []
    headers = {"ioport_resource": "    RESOURCE        RANGE    NAME\n",
               "iomem_resource": "    RESOURCE            RANGE        NAME\n"}  # fmt: skip
    for root, header in headers.items():
        tree = resource_tree(prog, root)
        width = 4 if root == "ioport_resource" and tree and tree[0].end <= 0xFFFF else 8
        rows = [f"{r.address:016x}  {r.start:0{width}x}-{r.end:0{width}x}  {shown(r.name)}\n"
                for r in tree]  # fmt: skip
        blocks.append(header + "".join(rows))
    return "\n".join(blocks)


def _disks(prog: Program, busy: bool) -> str:
    """``dev -d``: each disk, its queue and the requests in flight on it (crash's
    columns for blk-mq queues, which have no driver count); ``-D`` leaves out the
    idle disks."""
    out = ["MAJOR GENDISK            NAME       REQUEST_QUEUE      TOTAL  READ WRITE\n"]
    for disk in for_each_disk(prog):
        reads, writes = disk_requests(prog, disk)
        if busy and not reads + writes:
            continue
        name = shown(disk_name(disk))
        out.append(f"{int(disk.major):>5} {int(disk):016x}   {name:<10} {int(disk.queue):016x} "
                   f"{reads + writes:>7} {reads:>5} {writes:>5}\n")  # fmt: skip
    return "".join(out)


def _pci(prog: Program) -> str:
    """``dev -p``: each root bus and its name, its devices (the bus's own bridge first),
    then each bus behind it with its parent, depth first, as crash."""
    out: list[str] = []

    def devices(bus: Object) -> None:
        out.append("      PCI DEV       DO:BU:SL.FN   CLASS   PCI_ID    TYPE\n")
        for dev in pci_bus_devices(bus):
            ident = f"{int(dev.vendor):x}:{int(dev.device):x}"
            out.append(f"  {int(dev):016x}  {shown(device_name(dev.dev)):<12}  "
                       f"{int(dev.member_('class')) >> 8:04x}  {ident:<9}  "
                       f"{pci_dev_type(dev)}\n")  # fmt: skip

    def children(bus: Object) -> None:
        for child in pci_child_buses(bus):
            out.append("      PCI BUS         PARENT BUS\n")
            out.append(f"  {int(child):016x}  {int(child.parent):016x}\n")
            devices(child)
            out.append("\n")
            children(child)

    for root in pci_root_buses(prog):
        out.append("    ROOT BUS      BUSNAME\n")
        out.append(f"{int(root):016x}  {shown(device_name(root.dev))}\n")
        devices(root)
        children(root)
        out.append("\n")
    return "".join(out)


# ipcs --python: each kind's ids constant and the member holding its kern_ipc_perm.
_IPC_KINDS = {"shm": ("IPC_SHM_IDS", "shm_perm"), "sem": ("IPC_SEM_IDS", "sem_perm"),
              "msg": ("IPC_MSG_IDS", "q_perm")}  # fmt: skip


def _ipcs_python(opts: argparse.Namespace) -> str:
    chosen = {"shm": opts.shm, "sem": opts.sem, "msg": opts.msg}
    kinds = [k for k in _IPC_KINDS if chosen[k]] or list(_IPC_KINDS)
    ns, head = "", ""
    if opts.task:
        expr, names = task_expr(opts.task)
        head = f"from kdumpy.analysis.api import {', '.join(sorted(names))}\n" if names else ""
        ns = f"ns = task_ipc_ns({expr})\n"
    consts = ", ".join(_IPC_KINDS[k][0] for k in kinds)
    body = "".join(
        f"for obj in ipc_objects(prog, {_IPC_KINDS[k][0]}{', ns' if ns else ''}):\n"
        f"    perm = obj.{_IPC_KINDS[k][1]}\n"
        f"    print({k!r}, hex(int(obj)), int(perm.key), int(perm.id), int(perm.uid.val))\n"
        for k in kinds
    )
    return (f"{_PRELUDE}{head}from kdumpy.analysis.helpers.ipc import (ipc_objects, "
            f"task_ipc_ns,\n    {consts})\n{ns}{body}")  # fmt: skip


@command("ipcs", "System V IPC facilities",
         Arg("-m", dest="shm", action="store_true", help="shared memory segments only"),
         Arg("-s", dest="sem", action="store_true", help="semaphore arrays only"),
         Arg("-q", dest="msg", action="store_true", help="message queues only"),
         Arg("-n", dest="task", metavar="pid|task", help="the IPC namespace of this task"),
         usage="ipcs [-m] [-s] [-q] [-n pid|task]", python=_ipcs_python)  # fmt: skip
def cmd_ipcs(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    ns = task_ipc_ns(task_from_arg(session, opts.task)) if opts.task else None
    every = not (opts.shm or opts.sem or opts.msg)  # no flag: all three, as crash
    sections = []
    if every or opts.shm:
        rows = ["SHMID_KERNEL  KEY  SHMID  UID  PERMS  BYTES  NATTCH  STATUS\n"]
        for shm in ipc_objects(prog, IPC_SHM_IDS, ns):
            rows.append(_ipc_columns(shm, shm.shm_perm)
                        + f"{int(shm.shm_segsz)}  {int(shm.shm_nattch)}\n")  # fmt: skip
        sections.append(rows)
    if every or opts.sem:
        rows = ["SEM_ARRAY  KEY  SEMID  UID  PERMS  NSEMS\n"]
        for sem in ipc_objects(prog, IPC_SEM_IDS, ns):
            rows.append(_ipc_columns(sem, sem.sem_perm) + f"{int(sem.sem_nsems)}\n")
        sections.append(rows)
    if every or opts.msg:
        rows = ["MSG_QUEUE  KEY  MSQID  UID  PERMS  USED-BYTES  MESSAGES\n"]
        for msq in ipc_objects(prog, IPC_MSG_IDS, ns):
            rows.append(_ipc_columns(msq, msq.q_perm)
                        + f"{int(msq.q_cbytes)}  {int(msq.q_qnum)}\n")  # fmt: skip
        sections.append(rows)
    return "\n".join("".join(rows) + _none(rows) for rows in sections)


def _ipc_columns(obj: Object, perm: Object) -> str:
    """The columns every IPC row starts with: address, key, id, uid, permissions."""
    return (f"{int(obj):016x}  {int(perm.key) & 0xFFFFFFFF:08x}  {int(perm.id)}  "
            f"{int(perm.uid.val)}  {int(perm.mode) & 0o777:o}  ")  # fmt: skip


def _none(rows: list[str]) -> str:
    """crash's line for a kind with nothing allocated (``rows`` holds just its header)."""
    return "(none allocated)\n" if len(rows) <= 1 else ""


@command("waitq", "list tasks queued on a wait queue",
         Arg("where", metavar="address|symbol", help="a wait_queue_head"),
         usage="waitq address|symbol",
         python=lambda o: _PRELUDE + (
             "from kdumpy.analysis.helpers.lists import list_for_each_entry\n"
             f"wq = prog.object_at('struct wait_queue_head', {address_code(o.where)})\n"
             "for entry in list_for_each_entry('struct wait_queue_entry', wq.head, 'entry'):\n"
             "    print(hex(int(entry.private)))\n"))  # fmt: skip
def cmd_waitq(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    address = resolve_address(session, opts.where)
    wq = prog.object_at("struct wait_queue_head", address)
    out = []
    for entry in list_for_each_entry("struct wait_queue_entry", wq.head, "entry"):
        task = prog.pointer("struct task_struct", int(entry.private))
        out.append(task_line(task))
    return "".join(out) or f"wait queue {address:x} is empty\n"
