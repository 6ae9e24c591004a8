"""Analysis speed beside drgn's crash mode (issue 14, Deliver 5): start to first output,
``foreach bt`` over 1,000 tasks, ``kmem -s`` on a 4 GiB guest, and peak RSS.

    python3 benchmarks/analysis_speed.py            # every row, best of 5 runs
    python3 benchmarks/analysis_speed.py --runs 3

Each row runs the same crash command on both sides, in fresh processes, on the same
cached lab dump (6.1): ``kdumpy crash DUMP -c CMD`` from the dump alone (kallsyms, BTF
and stacks from its memory) beside drgn 0.3.0's crash mode (``run_command(prog, "crash
CMD")``) loading the Debian -dbg vmlinux (drgn needs the DWARF file):

* ``sys``: start to the first line of output (the target: under 0.3 s);
* ``foreach bt``: every task's backtrace on the ``tasks`` lab dump (1,000 sleeping
  processes; under 3 s);
* ``kmem -s``: SLUB usage of every cache of the 4 GiB guest (under 2 s).

Times are wall seconds, the best of the runs after one warm-up run (the machine is
shared: the minimum is the run least disturbed), with the CPU seconds (user + system,
from ``os.wait4``) beside; peak RSS is the worst of the runs.  The load average is
printed with the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))

DRGN_CRASH = """
import sys, drgn
from drgn.commands import run_command
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
try:
    prog.load_debug_info([sys.argv[2]], default=False)
except drgn.MissingDebugInfoError:
    pass
run_command(prog, "crash " + sys.argv[3], globals={})
"""


# As installed: byte code cached (pip compiles it; a checkout writes it on the warm-up).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(cmd: list[str]) -> tuple[float, float, float, float]:
    """(seconds to the first line, wall seconds, CPU seconds, peak RSS MiB) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert proc.stdout is not None
    proc.stdout.readline()
    first = time.perf_counter() - start
    for _ in proc.stdout:
        pass
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}: {proc.stderr.read().decode()[-300:]}")
    return first, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def best_of(cmd: list[str], runs: int) -> tuple[float, float, float, float]:
    """Best times of a few runs (the machine is shared), worst peak RSS; one warm-up."""
    measure(cmd)
    results = [measure(cmd) for _ in range(runs)]
    return (*(min(r[i] for r in results) for i in range(3)), max(r[3] for r in results))


def main() -> int:
    from analysis_oracle import dbg_vmlinux

    from kdumpy.lab.dumps import lab_dump

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    dump = lab_dump("6.1")
    vmlinux = str(dbg_vmlinux(dump.kernel))
    rows = [  # (what, target seconds, which time, dump, command)
        ("first output (sys)", 0.3, 0, dump, "sys"),
        ("foreach bt (1,000+ tasks)", 3.0, 1, lab_dump("6.1", crash="tasks"), "foreach bt"),
        ("kmem -s (4 GiB guest)", 2.0, 1, lab_dump("6.1", memory="4G"), "kmem -s"),
    ]
    header = ("| operation | target | kdumpy s | drgn s | ratio | kdumpy CPU s | drgn CPU s "
              "| kdumpy peak RSS MiB | drgn peak RSS MiB | command |")  # fmt: skip
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for what, target, which, lab, line in rows:
        ours_cmd = [sys.executable, "-m", "kdumpy", "crash", str(lab.vmcore), "-c", line]
        drgn_cmd = [sys.executable, "-c", DRGN_CRASH, str(lab.vmcore), vmlinux, line]
        ours, theirs = best_of(ours_cmd, args.runs), best_of(drgn_cmd, args.runs)
        shown = f"kdumpy crash {Path(lab.vmcore).name} -c '{line}'"
        print(f"| {what} | <{target:g} s | {ours[which]:.2f} | {theirs[which]:.2f} "
              f"| {ours[which] / theirs[which]:.2f} | {ours[2]:.2f} | {theirs[2]:.2f} "
              f"| {ours[3]:.0f} | {theirs[3]:.0f} | `{shown}` |", flush=True)  # fmt: skip
    print(f"\nkdumpy s / drgn s: wall seconds to the first line (sys) or to the end, best of "
          f"{args.runs} runs after a warm-up; peak RSS the worst run.  "
          f"command: python3 benchmarks/analysis_speed.py --runs {args.runs}")  # fmt: skip
    base = best_of([sys.executable, "-c", "pass"], args.runs)
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"python3 -c pass takes {base[1]:.2f}s wall, {base[2]:.2f}s CPU here")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
