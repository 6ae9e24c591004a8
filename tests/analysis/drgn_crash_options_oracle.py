"""drgn 0.3.0's crash mode on a lab dump, with the DWARF vmlinux: the text of the crash
command lines whose options ``tests/analysis/test_crash_options_drgn.py`` compares
(``files -d/-p/-c/-R``, ``net -a``, ``ipcs -n``, ``irq -d``, ``timer -r``, ``search -x``,
``dev -i/-p/-d/-D``).  A separate script from ``drgn_crash_oracle.py`` so that oracle's
cache stays valid.

    python3 drgn_crash_options_oracle.py VMCORE VMLINUX OUT.json

The addresses on the lines (pid 1's open files, its task_struct, a dentry and an inode
with pages cached) are found here with drgn's helpers, so the tests run the same lines.
Nothing here uses kdumpy.
"""

from __future__ import annotations

import sys

import drgn
from drgn.helpers.linux.fs import d_path, for_each_file
from drgn.helpers.linux.pid import find_task, for_each_task
from drgn_oracle import (  # beside this script: sys.path[0] when run
    crash_mode_answers,
    open_program,
    write_answers,
)


def command_lines(prog: drgn.Program) -> dict[str, str]:
    """The crash command lines to run, keyed by what the tests call them."""
    task1 = find_task(prog, 1)
    sleep = next(t for t in for_each_task(prog) if t.comm.string_() == b"sleep")
    files = list(for_each_file(task1))
    # A regular file of pid 1 with pages in the page cache (the lab's /init), and the
    # file most descriptors share (the console).
    cached = next(f for _fd, f in files if f.f_inode.i_mapping.nrpages > 0)
    console = files[0][1]
    lines = {
        "files_c": "files -c 1",
        "files_d": f"files -d {cached.f_path.dentry.value_():x}",
        "files_d_console": f"files -d {console.f_path.dentry.value_():x}",
        "files_p": f"files -p {cached.f_inode.value_():x}",
        "files_R_path": f"files -R {d_path(console.f_path).decode()} 1",
        "files_R_inode": f"files -R {cached.f_inode.value_():x} 1",
        "files_R_fd": "files -R 1 1",
        "files_R_c": f"files -c -R {cached.f_inode.i_mapping.value_():x} 1",
        "files_2": f"files 1 {sleep.pid.value_()}",
        "net_a": "net -a",
        "ipcs_n": "ipcs -n 1",
        "ipcs_n_sleep": f"ipcs -n {sleep.pid.value_()}",
        "ipcs_n_m": f"ipcs -m -n {task1.value_():x}",
        "irq_d": "irq -d",
        "timer_r": "timer -r",
        "timer_r_C": "timer -r -C 1",
        "search_x": f"search -s {task1.value_():x} -l 0x3000 -x 2 {task1.value_():x}",
        "search_x_w": f"search -s {task1.value_():x} -l 0x3000 -w -x 3 1",
        "search_x_h": f"search -s {task1.value_():x} -l 0x3000 -h -x 1 1",
        "dev_i": "dev -i",
        "dev_p": "dev -p",
        "dev_d": "dev -d",
        "dev_D": "dev -D",
    }
    return lines


def main() -> int:
    vmcore, vmlinux, out_path = sys.argv[1:4]
    prog = open_program(vmcore, vmlinux)
    answers: dict[str, object] = {}
    answers |= crash_mode_answers(prog, command_lines(prog))
    write_answers(out_path, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
