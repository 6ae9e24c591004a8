"""What drgn 0.3.0 (with the Debian -dbg vmlinux) reads from a saved dump: the oracle.

    python3 drgn_check.py VMCORE VMLINUX  -> JSON on stdout

Nothing here uses kdumpy: release from init_uts_ns, the kernel log, the function names on
the stack of the task that crashed (the one running sysrq_handle_crash), and every task's
pid and name.
"""

from __future__ import annotations

import json
import sys

import drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_dmesg


def crashed_stack(prog: drgn.Program) -> list[str]:
    for task in for_each_task(prog):
        try:
            names = [f.name for f in prog.stack_trace(task) if f.name]
        except (ValueError, LookupError, drgn.FaultError):
            continue
        if "sysrq_handle_crash" in names:
            return names
    return []


def main() -> None:
    prog = drgn.Program()
    prog.set_core_dump(sys.argv[1])
    prog.load_debug_info([sys.argv[2]])
    out = {
        "release": prog["init_uts_ns"].name.release.string_().decode(),
        "dmesg": get_dmesg(prog).decode(errors="replace"),
        "crashed_stack": crashed_stack(prog),
        "tasks": sorted(
            [t.pid.value_(), t.comm.string_().decode(errors="replace")] for t in for_each_task(prog)
        ),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
