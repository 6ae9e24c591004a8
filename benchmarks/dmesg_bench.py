#!/usr/bin/env python3
"""Kernel log extraction: ``kdumpy dmesg`` beside ``makedumpfile --dump-dmesg``.

    python benchmarks/dmesg_bench.py [--kernels 6.1,6.12,7] [--repeat 5]

Both run as commands (process start-up included, as a user would run them) on the ELF
lab dump and on makedumpfile's ``-l -d 31`` output of it; the outputs are also compared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdumpy.lab.dumps import lab_dump


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", default="6.1,6.12,7")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    table = Table(title=f"Kernel log from a dump (best of {args.repeat}, wall clock)")
    for col in ("kernel", "input", "kdumpy s", "makedumpfile s", "ratio", "same text"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for kernel in args.kernels.split(","):
            vmcore = lab_dump(kernel).vmcore
            small = Path(tmp) / f"{kernel}.kdump"
            subprocess.run(["makedumpfile", "-l", "-d", "31", str(vmcore), str(small)],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            for label, path in (("ELF", vmcore), ("kdump -l -d 31", small)):
                ours_out, ref_out = Path(tmp) / "ours.txt", Path(tmp) / "ref.txt"
                ours_cmd = [sys.executable, "-m", "kdumpy", "dmesg", str(path), "-o", str(ours_out)]
                ref_cmd = ["makedumpfile", "--dump-dmesg", str(path), str(ref_out)]
                ref_out.unlink(missing_ok=True)
                ours = timed(ours_cmd, args.repeat)
                ref = min(timed(["sh", "-c", f"rm -f {ref_out}; {' '.join(ref_cmd)}"], 1)
                          for _ in range(args.repeat))  # fmt: skip
                same = ours_out.read_bytes() == ref_out.read_bytes()
                table.add_row(kernel, label, f"{ours:.3f}", f"{ref:.3f}", f"{ours / ref:.1f}",
                              "yes" if same else "NO")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
