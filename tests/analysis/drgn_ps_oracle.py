"""drgn 0.3.0's crash mode on a lab dump, with the DWARF vmlinux: the text of each ps
view the ps tests compare with (``tests/analysis/test_ps_drgn.py``), and, where drgn's
crash mode means something else than crash 8.0.2, the values by drgn's own objects.

    python3 drgn_ps_oracle.py VMCORE VMLINUX OUT.json

Nothing here uses kdumpy.
"""

from __future__ import annotations

import sys

import drgn
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import idle_task
from drgn_oracle import (  # beside this script: sys.path[0] when run
    crash_mode_answers,
    open_program,
    write_answers,
)


def command_lines(prog: drgn.Program) -> dict[str, str]:
    """The crash command lines to run, keyed by what the tests call them."""
    sleep = next(t for t in for_each_task(prog) if t.comm.string_() == b"sleep").pid.value_()
    return {
        "ps_p": "ps -p",
        "ps_p_sleep": f"ps -p {sleep}",
        "ps_c": "ps -c",
        "ps_c_kthreadd": "ps -c 2",
        "ps_t": "ps -t",
        "ps_l": "ps -l",
        "ps_m": "ps -m",
        "ps_l_C": "ps -l -C 1",
        "ps_m_C": "ps -m -C 0,1",
        "ps_a": "ps -a",
        "ps_g": "ps -g",
        "ps_r": "ps -r",
        "ps_s": "ps -s",
        "ps_H": "ps -H",
        "ps_H_u": "ps -H -u",
    }


def saved_stack_pointers(prog: drgn.Program) -> dict[str, int]:
    """Each task's saved kernel stack pointer by drgn's DWARF types (x86_64
    ``thread.sp``, arm64 ``thread.cpu_context.sp``), keyed by its address in hex:
    crash 8.0.2's KSTACKP (drgn's crash mode shows the first frame's sp instead)."""
    out = {}
    tasks = [*(idle_task(prog, cpu) for cpu in for_each_online_cpu(prog)), *for_each_task(prog)]
    for task in tasks:
        if prog.platform.arch == drgn.Architecture.AARCH64:
            sp = task.thread.cpu_context.sp
        else:
            sp = task.thread.sp
        out[f"{task.value_():x}"] = sp.value_()
    return out


def main() -> int:
    vmcore, vmlinux, out_path = sys.argv[1:4]
    prog = open_program(vmcore, vmlinux)
    answers: dict[str, object] = {"saved_sp": saved_stack_pointers(prog)}
    answers |= crash_mode_answers(prog, command_lines(prog))
    write_answers(out_path, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
