"""Start to first ``bt``, with and without the vmlinux, beside drgn (issue 10).

    python3 benchmarks/reach_bench.py [5.10 6.1 6.12 7]

Four fresh-process runs per kernel on the same cached lab dump: kdumpy with the dump
alone (kallsyms scanned from the kernel image on 5.10, from VMCOREINFO's pointers on 6.x;
BTF and ORC from memory), kdumpy with the Debian -dbg vmlinux (its .symtab; types still
from the dump's BTF), drgn 0.3.0 with the vmlinux (DWARF), and drgn with the dump alone
(kallsyms from VMCOREINFO, Linux >= 6.0 only).  Wall time, CPU time and peak RSS come
from ``os.wait4``; best of 3 runs (the machine is shared), page cache warm.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))

from analysis_bench import DRGN_BT, best_of  # noqa: E402

DRGN_BT_ALONE = """
import sys, drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
print(prog.crashed_thread().stack_trace())
"""


def cell(result: tuple[float, float, float] | None) -> str:
    """wall / CPU seconds and peak RSS."""
    if result is None:
        return f"{'cannot':>24}"
    return f"{result[0]:>5.2f}/{result[1]:>4.2f}s {result[2]:>5.0f} MiB"


def main() -> int:
    from kdumpy.lab.dumps import lab_dump

    kernels = sys.argv[1:] or ["5.10", "6.1", "6.12", "7"]
    header = (
        f"{'kernel':<7} {'kdumpy DUMP':>24} {'kdumpy VMLINUX DUMP':>24} "
        f"{'drgn + vmlinux':>24} {'drgn DUMP alone':>24}"
    )
    print(header)
    print("-" * len(header))
    for kernel in kernels:
        dump = lab_dump(kernel)
        vmcore, vmlinux = str(dump.vmcore), str(dump.kernel.dbg_vmlinux())
        kdumpy = [sys.executable, "-m", "kdumpy", "crash"]
        runs = [
            best_of([*kdumpy, vmcore, "-c", "bt"], 3),
            best_of([*kdumpy, vmlinux, vmcore, "-c", "bt"], 3),
            best_of([sys.executable, "-c", DRGN_BT, vmcore, vmlinux], 3),
        ]
        try:
            alone: tuple[float, float, float] | None = best_of(
                [sys.executable, "-c", DRGN_BT_ALONE, vmcore], 3
            )
        except SystemExit:  # drgn needs kallsyms in VMCOREINFO (Linux >= 6.0)
            alone = None
        print(f"{kernel:<7} " + " ".join(cell(r) for r in [*runs, alone]))
    print("\nwall/CPU time and peak RSS, best of 3 runs each; drgn alone has no types")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
