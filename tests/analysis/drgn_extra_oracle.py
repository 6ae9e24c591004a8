"""More reference answers from drgn 0.3.0 with the DWARF vmlinux, for `kmem -i`,
`bt -f` and `p` (a separate script so the main oracle's cache stays valid):

    python3 drgn_extra_oracle.py VMCORE VMLINUX OUT.json

- ``meminfo``: the /proc/meminfo figures `kmem -i` shows, through drgn's own helpers
  (``vm_commit_limit``, ``vm_memory_committed``) or the kernel counters read by drgn;
- ``stack``: the crashed thread's whole kernel stack as words, its frames' pcs and sps;
- ``exprs``: values of C expressions, written here as the equivalent drgn calls.

Nothing here uses kdumpy.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import drgn
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import totalram_pages, vm_commit_limit, vm_memory_committed
from drgn_oracle import open_program  # beside this script: sys.path[0] when run

# (expression for `p`, the same value through drgn's API; ``T`` is the crashed task).
EXPRESSIONS = (
    ("jiffies", "prog['jiffies']"),
    ("init_task.pid", "prog['init_task'].pid"),
    ("init_task.comm", "prog['init_task'].comm"),
    ("init_task.comm[1]", "prog['init_task'].comm[1]"),
    ("&init_task", "prog['init_task'].address_of_()"),
    ("init_task.tasks.next", "prog['init_task'].tasks.next"),
    ("init_task.se.load.weight", "prog['init_task'].se.load.weight"),
    ("init_task.real_parent->comm", "prog['init_task'].real_parent.comm"),
    ("(*init_task.real_parent).pid", "prog['init_task'].real_parent[0].pid"),
    ("init_uts_ns.name.release", "prog['init_uts_ns'].name.release"),
    ("__per_cpu_offset[1]", "prog['__per_cpu_offset'][1]"),
    ("init_mm.pgd", "prog['init_mm'].pgd"),
    ("nr_cpu_ids", "prog['nr_cpu_ids']"),
    ("*(unsigned long *)&jiffies", "prog['jiffies']"),
    ("(struct task_struct *){T:#x}", "T"),
    ("((struct task_struct *){T:#x})->pid", "T.pid"),
    ("((struct task_struct *){T:#x})->mm->mmap_base", "T.mm.mmap_base"),
    ("(*(struct task_struct *){T:#x}).comm", "T.comm"),
    ("((struct task_struct *){T:#x})->comm[0]", "T.comm[0]"),
    ("(unsigned int)((struct task_struct *){T:#x})->flags", "T.flags"),
)


def answer(obj: drgn.Object) -> dict[str, Any]:
    """``{"kind": int|pointer|string, "value": ...}`` of a drgn object."""
    t = obj.type_
    while t.kind == drgn.TypeKind.TYPEDEF:
        t = t.type
    if t.kind == drgn.TypeKind.ARRAY:
        return {"kind": "string", "value": obj.string_().decode("latin-1")}
    if t.kind == drgn.TypeKind.POINTER:
        return {"kind": "pointer", "value": obj.value_()}
    return {"kind": "int", "value": int(obj.value_())}


def node_stat(prog: drgn.Program, item: str) -> int:
    return int(prog["vm_node_stat"][prog[item]].counter.value_())


def swapcache_pages(prog: drgn.Program) -> int:
    """NR_SWAPCACHE (Linux >= 5.12); before, the swap address spaces' pages, which are
    none without a swap file (the lab guests have none)."""
    try:
        return node_stat(prog, "NR_SWAPCACHE")
    except LookupError:
        if int(prog["nr_swapfiles"]):
            raise
        return 0


def meminfo(prog: drgn.Program) -> dict[str, int]:
    buffers = 0
    sb = prog["blockdev_superblock"]
    for inode in list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list"):
        buffers += int(inode.i_mapping.nrpages)
    huge = huge_free = 0
    for i in range(int(prog["hugetlb_max_hstate"])):
        h = prog["hstates"][i]
        huge += int(h.nr_huge_pages) << int(h.order)
        huge_free += int(h.free_huge_pages) << int(h.order)
    return {
        "total": totalram_pages(prog),
        "free": int(prog["vm_zone_stat"][prog["NR_FREE_PAGES"]].counter),
        "shared": node_stat(prog, "NR_SHMEM"),
        "buffers": buffers,
        "cached": node_stat(prog, "NR_FILE_PAGES") - swapcache_pages(prog) - buffers,
        "slab": node_stat(prog, "NR_SLAB_RECLAIMABLE_B")
        + node_stat(prog, "NR_SLAB_UNRECLAIMABLE_B"),
        "huge": huge,
        "huge_free": huge_free,
        "swap": int(prog["total_swap_pages"]),
        "swap_free": int(prog["nr_swap_pages"].counter),
        "commit_limit": vm_commit_limit(prog),
        "committed": vm_memory_committed(prog),
    }


def stack(prog: drgn.Program, task: drgn.Object) -> dict[str, Any]:
    base = int(task.stack)
    size = 16384  # THREAD_SIZE on x86_64 (KASAN off)
    data = prog.read(base, size)
    frames = [f for f in prog.crashed_thread().stack_trace() if not f.is_inline and f.pc >> 63]
    return {
        "base": base,
        "words": [int.from_bytes(data[i : i + 8], "little") for i in range(0, size, 8)],
        "pcs": [f.pc for f in frames],
        "sps": [f.sp for f in frames],  # the stack pointer in each frame
    }


def main() -> int:
    vmcore, vmlinux, out_path = sys.argv[1:4]
    prog = open_program(vmcore, vmlinux)
    task = prog.crashed_thread().object
    exprs = {}
    for text, code in EXPRESSIONS:
        expr = text.replace("{T:#x}", f"{int(task.value_()):#x}")
        exprs[expr] = answer(eval(code, {"prog": prog, "T": task}))  # noqa: S307 - fixed table
    result = {
        "drgn": drgn.__version__,
        "task": int(task.value_()),
        "meminfo": meminfo(prog),
        "stack": stack(prog, task),
        "exprs": exprs,
    }
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
