"""Time to the first backtrace, and peak memory: ``kdumpy crash -c bt`` beside drgn.

    python3 benchmarks/analysis_bench.py [6.1 6.12 7]

Each side runs in a fresh process on the same cached lab dump: kdumpy with nothing but
the dump (kallsyms, BTF, ORC from its memory), drgn 0.3.0 with the Debian -dbg vmlinux
(DWARF), printing the panic task's stack.  Wall time and peak RSS come from
``os.wait4``.  The dumps and vmlinux files are cached by the lab; run each side once
before measuring so the page cache is warm for both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))

DRGN_BT = """
import sys, drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
try:
    prog.load_debug_info([sys.argv[2]], default=False)
except drgn.MissingDebugInfoError:
    pass
print(prog.crashed_thread().stack_trace())
"""


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}: {proc.stderr.read().decode()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def best_of(cmd: list[str], runs: int = 5) -> tuple[float, float, float]:
    """Best wall and CPU time of a few runs (the machine is shared), worst peak RSS."""
    results = [measure(cmd) for _ in range(runs)]
    return min(r[0] for r in results), min(r[1] for r in results), max(r[2] for r in results)


def main() -> int:
    from analysis_oracle import dbg_vmlinux

    from kdumpy.lab.dumps import lab_dump

    kernels = sys.argv[1:] or ["6.1", "6.12", "7"]
    header = (
        f"{'kernel':<7} {'kdumpy wall':>11} {'drgn wall':>9} {'ratio':>6}   "
        f"{'kdumpy CPU':>10} {'drgn CPU':>8} {'ratio':>6}   {'kdumpy MiB':>10} {'drgn MiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for kernel in kernels:
        dump = lab_dump(kernel)
        vmlinux = dbg_vmlinux(dump.kernel)
        ours = best_of([sys.executable, "-m", "kdumpy", "crash", str(dump.vmcore), "-c", "bt"])
        theirs = best_of([sys.executable, "-c", DRGN_BT, str(dump.vmcore), str(vmlinux)])
        print(
            f"{kernel:<7} {ours[0]:>10.2f}s {theirs[0]:>8.2f}s {ours[0] / theirs[0]:>6.2f}   "
            f"{ours[1]:>9.2f}s {theirs[1]:>7.2f}s {ours[1] / theirs[1]:>6.2f}   "
            f"{ours[2]:>10.0f} {theirs[2]:>8.0f}"
        )
    print("\nratio = kdumpy / drgn (below 1: kdumpy is faster); best of 5 runs each;")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
