"""mount, swap."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.tasksel import task_from_arg
from kdumpy.analysis.helpers.mount import for_each_mount, mount_devname, mount_dir, mount_fstype
from kdumpy.analysis.helpers.swap import for_each_swap, swap_filename
from kdumpy.printable import shown

_PRELUDE = "# prog = kdumpy.open(DUMP)\n"


@command("mount", "mounted filesystems",
         Arg("-n", dest="task", metavar="pid|task", help="the mount namespace of this task"),
         usage="mount [-n pid|task]",
         python=lambda o: _PRELUDE + (
             "from kdumpy.analysis.helpers.mount import (for_each_mount, mount_devname,\n"
             "    mount_dir, mount_fstype)\n"
             "for mnt in for_each_mount(prog):\n"
             "    print(hex(int(mnt)), hex(int(mnt.mnt.mnt_sb)), mount_fstype(mnt),\n"
             "          mount_devname(mnt), mount_dir(prog, mnt))\n"))  # fmt: skip
def cmd_mount(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    ns = None
    if opts.task:  # -n: the task's namespace (none once it has exited: no nsproxy)
        nsproxy = task_from_arg(session, opts.task).nsproxy
        if not int(nsproxy):
            raise CommandError(f"{opts.task}: the task has no namespaces (exiting)")
        ns = nsproxy.mnt_ns.deref_()
    rows = [("MOUNT", "SUPERBLK", "TYPE", "DEVNAME", "DIRNAME")]
    for mnt in for_each_mount(prog, ns):
        rows.append((f"{int(mnt):016x}", f"{int(mnt.mnt.mnt_sb):016x}",
                     shown(mount_fstype(mnt)), shown(mount_devname(mnt)),
                     shown(mount_dir(prog, mnt))))  # fmt: skip
    return table(rows)


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, two spaces apart (crash's tables)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )


@command("swap", "swap device information", usage="swap",
         python=lambda o: _PRELUDE + (
             "from kdumpy.analysis.helpers.swap import for_each_swap, swap_filename\n"
             "for si in for_each_swap(prog):\n"
             "    print(hex(int(si)), int(si.pages), int(si.inuse_pages), int(si.prio),\n"
             "          swap_filename(prog, si))\n"))  # fmt: skip
def cmd_swap(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    kb = prog.dump.page_size // 1024
    out = ["SWAP_INFO_STRUCT    TYPE       SIZE       USED    PCT  PRI  FILENAME\n"]
    for si in for_each_swap(prog):
        size, used = int(si.pages) * kb, int(si.inuse_pages) * kb
        kind = "PARTITION" if int(si.flags) & 0x2 else "FILE"  # SWP_BLKDEV
        pct = used * 100 // size if size else 0
        out.append(f"{int(si):016x}  {kind:<9} {size:>9}k {used:>9}k {pct:>5}% {int(si.prio):>4}  "
                   f"{shown(swap_filename(prog, si))}\n")  # fmt: skip
    return "".join(out)
