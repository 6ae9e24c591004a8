"""drgn 0.3.0's crash mode on a lab dump, with the DWARF vmlinux: the text of each
crash command the command-set tests compare with (``tests/analysis/test_crash_commands_drgn.py``).

    python3 drgn_crash_oracle.py VMCORE VMLINUX OUT.json

The command lines name addresses and pids found here with drgn's helpers (the sleep
task, pid 1's task_struct, a vmalloc address), so the tests run the same lines.
Nothing here uses kdumpy.
"""

from __future__ import annotations

import contextlib
import sys

import drgn
from drgn.helpers.linux.fs import d_path, for_each_file
from drgn.helpers.linux.mm import for_each_vma, pfn_to_page, virt_to_phys
from drgn.helpers.linux.pid import find_task, for_each_task
from drgn_oracle import (  # beside this script: sys.path[0] when run
    crash_mode_answers,
    open_program,
    write_answers,
)


def command_lines(prog: drgn.Program) -> dict[str, str]:
    """The crash command lines to run, keyed by what the tests call them."""
    sleep = next(t for t in for_each_task(prog) if t.comm.string_() == b"sleep")
    task1 = find_task(prog, 1).value_()
    tasks_head = prog["init_task"].tasks.address_of_().value_()
    modules = prog["modules"].address_of_().value_()
    stack = find_task(prog, 1).stack.value_()
    lines = {}
    with contextlib.suppress(KeyError, LookupError):  # 6.9+: per-node vmap area trees
        lines["tree_vmap_node"] = (
            "tree -t rbtree -o vmap_area.rb_node "
            f"{prog['vmap_nodes'][0].busy.root.address_of_().value_():x}"
        )
    try:  # kswapd sleeps on its node's kswapd_wait
        pgdat = prog["node_data"][0]
    except KeyError:
        pgdat = prog["contig_page_data"].address_of_()
    lines["waitq_kswapd"] = f"waitq {pgdat.kswapd_wait.address_of_().value_():x}"
    pid_xa = prog["init_pid_ns"].idr.idr_rt.address_of_().value_()
    lines["tree_pid_xarray"] = f"tree -t xarray {pid_xa:x}"
    pid_ns = prog["init_pid_ns"].address_of_().value_()
    lines["tree_pid_r"] = f"tree -t x -r pid_namespace.idr.idr_rt {pid_ns:x}"
    init_task = prog["init_task"].address_of_().value_()
    lines["list_l"] = f"list -l task_struct.tasks -s task_struct.pid -H {tasks_head:x}"
    lines["list_O"] = f"list -h -O task_struct.tasks -o task_struct.tasks {init_task:x}"
    mm = find_task(prog, 1).mm
    with contextlib.suppress(AttributeError):  # 6.1+: VMAs in a maple tree
        lines["tree_mm_maple"] = f"tree -t maple {mm.mm_mt.address_of_().value_():x}"
    tasks = prog["init_task"].tasks
    lines["list_tasks_e"] = (  # stops before the third process's node
        f"list -o task_struct.tasks -e {tasks.next.next.next.value_():x} -H {tasks_head:x}"
    )
    crash_fn = prog.symbol("sysrq_handle_crash").address
    uts = prog["init_uts_ns"].name.address_of_().value_()
    return lines | {
        "sym_name": "sym sysrq_handle_crash",
        "sym_addr": f"sym {crash_fn + 4:x}",
        "whatis_var": "whatis init_uts_ns",
        "struct_uts": f"struct new_utsname.sysname,release {uts:x}",
        "union_attr": f"union bpf_attr.map_type,key_size {task1:x}",
        "p_x": "p -x jiffies",
        "struct_x": f"struct -x task_struct.pid,tgid,prio {task1:x}",
        "task_x": "task -x -R pid,prio 1",
        "sym_q": "sym -q sysrq_handle_",
        "sym_pn": "sym -p -n sysrq_handle_crash",
        "bt_c0": "bt -c 0",
        "bt_p": "bt -p",
        "set_c0": "set -c 0",
        "set_p": "set -p",
        "mod_t": "mod -t",
        "search_t": f"search -t {task1:x}",
        "search_T": f"search -T {task1:x}",
        "ipcs_m": "ipcs -m",
        "ipcs_s": "ipcs -s",
        "ipcs_q": "ipcs -q",
        "timer_C": "timer -C 1",
        "ps_S": "ps -S",
        "ps_A": "ps -A",
        "ps_G": "ps -G",
        "ps_y": "ps -y FIFO",
        "rd_d": "rd -32 -d jiffies 4",
        "rd_D": "rd -D jiffies 2",
        "rd_x": "rd -x init_task 4",
        "rd_N": "rd -N -32 init_task 4",
        "rd_R": "rd -R init_task 3",
        "rd_o": "rd -o 8 init_task 2",
        "rd_e": f"rd -e {init_task + 40:x} init_task",
        "runq_c": "runq -c 1",
        "runq_t": "runq -t",
        "runq_T": "runq -T",
        "runq_m": "runq -m",
        "kmem_I": "kmem -s -I kmalloc-64,task_struct",
        "struct_c": f"struct list_head {tasks_head:x} -c 2",
        "struct_l": f"struct task_struct.pid,tgid {tasks_head:x} -l task_struct.tasks",
        "irq_u": "irq -u",
        "irq_a": "irq -a",
        "irq_s": "irq -s",
        "irq_b": "irq -b",
        "mount_n": f"mount -n {sleep.pid.value_()}",
        "sig_l": "sig -l",
        "sig_s": "sig -s 14003",
        "sig_g": "sig -g 1",
        "p_var": "p jiffies",
        "ps": "ps",
        "runq": "runq",
        "files_1": "files 1",
        "set_1": "set 1",
        "mod": "mod",
        "log": "log",
        "kmem_V": "kmem -V",
        "kmem_z": "kmem -z",
        "kmem_h": "kmem -h",
        "kmem_o": "kmem -o",
        "list_tasks_r": f"list -r -o task_struct.tasks -H {tasks_head:x}",
        "list_modules_r": f"list -r -o module.list -s module.name -H {modules:x}",
        "mount": "mount",
        "dev": "dev",
        "swap": "swap",
        "irq": "irq",
        "kmem_s": "kmem -s",
        "kmem_s_task": "kmem -s task_struct",
        "kmem_v": "kmem -v",
        "kmem_task1": f"kmem {task1:x}",
        "kmem_task1_inside": f"kmem {task1 + 0x100:x}",
        "kmem_stack": f"kmem {stack + 0x40:x}",
        "timer": "timer",
        "ipcs": "ipcs",
        "net": "net",
        "sig_1": "sig 1",
        "vm_1": "vm 1",
        "vm_sleep": f"vm {sleep.pid.value_()}",
        "btop": "btop 123456",
        "ptob": "ptob 1234",
        "ptov": "ptov 1000000",
        "vtop_task1": f"vtop {task1:x}",
        "vtop_stack": f"vtop {stack:x}",
        "list_tasks": f"list -o task_struct.tasks -H {tasks_head:x}",
        "list_modules": f"list -s module.name -o module.list -H {modules:x}",
        "tree_vmap": "tree -t rbtree -o vmap_area.rb_node vmap_area_root",
        "task_1": "task -R pid,comm,tgid 1",
        "search_range": f"search -s {task1:x} -l 0x3000 {task1:x}",
        "search_int": f"search -s {task1:x} -l 0x3000 -w 1",
        "search_mask": f"search -s {task1:x} -l 0x3000 -m ffff {task1:x}",
        "search_string": f"search -s {task1:x} -l 0x3000 -c init",
        "search_all": f"search {task1:x}",
        "kmem_g": "kmem -g 0x17ff",
        "kmem_f": "kmem -f",
        "ascii": "ascii 62696c2f7273752f",
        "ascii_nul": "ascii 4142",
        "eval_kb": "eval 128 * 1024",
        "eval_gb": "eval 0x7fffffff + 1",
        "eval_bits": "eval -b 0x41",
        "eval_dec": "eval 1000",
        "bpf": "bpf",
        "pointer_to": f"*task_struct.pid,tgid {task1:x}",
        "kmem_g_slab": "kmem -g 0x10200",
        "task_sleep": f"task -R pid,comm,prio,static_prio,flags {sleep.pid.value_()}",
        "sig_sleep": f"sig {sleep.pid.value_()}",
    }


def fuser(prog: drgn.Program, path: str) -> list[list]:
    """``[pid, usage]`` of the tasks using ``path`` (root, cwd, fd, mmap), by drgn's
    helpers (crash's fuser is not in drgn's crash mode)."""
    out = []
    for task in for_each_task(prog):
        usage = []
        fs = task.fs
        if fs:
            if d_path(fs.root).decode() == path:
                usage.append("root")
            if d_path(fs.pwd).decode() == path:
                usage.append("cwd")
        if any(_path(f) == path for _fd, f in for_each_file(task)):
            usage.append("fd")
        if task.mm and any(v.vm_file and _path(v.vm_file) == path for v in for_each_vma(task.mm)):
            usage.append("mmap")
        if usage:
            out.append([task.pid.value_(), usage])
    return sorted(out)


def pages(prog: drgn.Program) -> list[list[int]]:
    """``[phys, page, mapping, index, refcount, flags]`` of a sample of frames (pid 1's
    task_struct and stack, and frames across RAM), by drgn's ``pfn_to_page``; a frame
    whose struct page cannot be read is left out, as ``kmem -p`` leaves it out."""
    task = find_task(prog, 1)
    phys = [virt_to_phys(task).value_(), virt_to_phys(task.stack).value_()]
    phys += [n << 24 for n in range(1, 60, 7)]
    out = []
    for address in phys:
        page = pfn_to_page(prog, address >> 12)
        index = page.index if hasattr(page, "index") else page.__folio_index
        flags = page.flags.f if hasattr(page.flags, "f") else page.flags
        with contextlib.suppress(drgn.FaultError):  # no struct page there (a hole)
            out.append(
                [
                    address & ~0xFFF,
                    page.value_(),
                    page.mapping.value_(),
                    index.value_(),
                    page._refcount.counter.value_(),
                    flags.value_(),
                ]
            )
    return out


def _path(file: drgn.Object) -> str:
    try:
        return d_path(file.f_path).decode()
    except drgn.FaultError:
        return ""


def main() -> int:
    vmcore, vmlinux, out_path = sys.argv[1:4]
    prog = open_program(vmcore, vmlinux)
    answers: dict[str, object] = {
        "fuser_busybox": fuser(prog, "/bin/busybox"),
        "pages": pages(prog),
        "vmas": [
            [
                t.pid.value_(),
                v.value_(),
                v.vm_start.value_(),
                v.vm_end.value_(),
                v.vm_flags.value_(),
            ]
            for t in for_each_task(prog)
            if t.mm
            for v in for_each_vma(t.mm)
        ],  # fmt: skip
    }
    answers |= crash_mode_answers(prog, command_lines(prog))
    write_answers(out_path, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
