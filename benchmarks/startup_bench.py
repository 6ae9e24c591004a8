"""Start to first output from the dump alone (issue 14, speed): kdumpy's first commands
(``crash -c sys``, ``-c ps``, ``-c bt``, ``dmesg``, ``report``) on the cached 1 GiB lab
dumps, beside drgn from the same dump alone, as a ratio table.

    python3 benchmarks/startup_bench.py                  # 6.1, 7 and 5.10, best of 5
    python3 benchmarks/startup_bench.py --kernels 6.1 --runs 3

From the dump alone drgn 0.3.0 has kallsyms (through VMCOREINFO, Linux >= 6.0) but no
types (no BTF support in any release), so its row is the part of ``sys`` it can print: it
opens the dump, loads the kernel's kallsyms and prints ``init_uts_ns``'s strings (node
name, release, version, machine) read at their place.  kdumpy's ``sys`` prints more (task
count, panic message, memory, the panic task): the ratio is against that lower bound.

Each command runs in fresh processes, with byte code cached (one warm-up run).  The
machine this runs on is usually shared, so the CPU seconds (user + system, from
``os.wait4``) are the figure to compare, the best of the runs; wall seconds to the first
line are shown beside them, and peak RSS is the worst run.  ``python3 -c pass`` is
measured too: Python's own start is part of every row.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from analysis_speed import ENV, best_of

DRGN_UTS = """
import sys, drgn
from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.register_symbol_finder("kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
raw = prog.read(prog.symbol("init_uts_ns").address, 1024)
at = raw.find(b"Linux\\0")  # struct new_utsname: six 65-byte strings from sysname on
uts = [raw[at + 65 * i : at + 65 * i + 65].split(b"\\0")[0].decode() for i in range(6)]
for label, value in zip(("NODENAME", "RELEASE", "VERSION", "MACHINE"), uts[1:5]):
    print(f"{label:>12}: {value}")
"""

COMMANDS = (
    ("crash -c sys", ("crash", "{dump}", "-c", "sys")),
    ("crash -c ps", ("crash", "{dump}", "-c", "ps")),
    ("crash -c bt", ("crash", "{dump}", "-c", "bt")),
    ("dmesg", ("dmesg", "{dump}")),
    ("report", ("report", "{dump}")),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kernels", nargs="+", default=["6.1", "7", "5.10"])
    parser.add_argument(
        "--dumps",
        default=str(Path.home() / ".cache" / "kdumpy" / "lab" / "dumps"),
        help="where the lab's {kernel}-1G-256M-sysrq.vmcore dumps are cached",
    )
    args = parser.parse_args()
    assert "PYTHONDONTWRITEBYTECODE" not in ENV
    base = best_of([sys.executable, "-c", "pass"], args.runs)
    header = (
        "| kernel | command | kdumpy CPU s | kdumpy first line s | kdumpy peak RSS MiB "
        "| drgn CPU s | drgn first line s | drgn peak RSS MiB | CPU ratio | RSS ratio |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for kernel in args.kernels:
        dump = Path(args.dumps) / f"{kernel}-1G-256M-sysrq.vmcore"
        if not dump.exists():
            print(f"| {kernel} | (no cached dump: {dump}) |")
            continue
        for shown, argv in COMMANDS:
            words = [w.format(dump=dump) for w in argv]
            first, _wall, cpu, rss = best_of([sys.executable, "-m", "kdumpy", *words], args.runs)
            theirs = "| — | — | — | — | — |"
            if shown == "crash -c sys" and kernel != "5.10":  # drgn's kallsyms: >= 6.0
                d_first, _w, d_cpu, d_rss = best_of(
                    [sys.executable, "-c", DRGN_UTS, str(dump)], args.runs
                )
                theirs = (
                    f"| {d_cpu:.3f} | {d_first:.3f} | {d_rss:.0f} | {cpu / d_cpu:.2f} "
                    f"| {rss / d_rss:.2f} |"
                )
            print(f"| {kernel} | `{shown}` | {cpu:.3f} | {first:.3f} | {rss:.0f} {theirs}")
    print(
        f"\nbest of {args.runs} runs after a warm-up (peak RSS: the worst run); ratio = kdumpy"
        f" / drgn.  python3 -c pass: {base[2]:.3f} s CPU, {base[1]:.3f} s wall.  "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.  "
        f"command: python3 benchmarks/startup_bench.py --runs {args.runs} "
        f"--kernels {' '.join(args.kernels)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
