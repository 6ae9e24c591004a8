#!/usr/bin/env python3
"""Dump reading speed: kdumpy's readers beside makedumpfile and drgn (libkdumpfile).

    python benchmarks/vmcore_read.py [--kernel 6.1] [--repeat 3]

Cases (every page of the dump is read and, for compressed files, decompressed):

* ELF /proc/vmcore copy: kdumpy ``read_pfns`` over ``pfn_ranges()`` in 4096-page batches
  vs ``makedumpfile -F -d 0 VMCORE > /dev/null`` (reads every page and streams it out).
* kdump-compressed made by makedumpfile (-l / -c, -d 0 and -d 31): the same kdumpy scan
  vs ``makedumpfile -F -d 0 FILE > /dev/null`` (decompresses every page and streams it).
* drgn 0.3.0 (libkdumpfile) reading the same pages one ``read(addr, 4096, True)`` each.
* Virtual reads: 20000 random 64-byte kernel reads (direct map + vmemmap), kdumpy
  ``read_virt`` vs drgn ``Program.read``.

Times are the best of --repeat runs, wall clock.  The ratio is kdumpy / reference
(below 1 = kdumpy faster).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from kdumpy.lab.dumps import lab_dump
from kdumpy.vmcore import open_dump


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def kdumpy_scan(path: Path) -> int:
    pages = 0
    with open_dump(path) as dump:
        for start, end in dump.pfn_ranges():
            for lo in range(start, end, 4096):
                data, present = dump.read_pfns(lo, min(4096, end - lo))
                np.frombuffer(data, dtype=np.uint8).sum(dtype="u8")  # touch every byte
                pages += int(np.count_nonzero(np.frombuffer(present, dtype=np.uint8)))
    return pages


def makedumpfile_stream(path: Path) -> None:
    with open("/dev/null", "wb") as null:
        subprocess.run(["makedumpfile", "-F", "-d", "0", str(path)], stdout=null,
                       stderr=subprocess.DEVNULL, check=True)  # fmt: skip


def drgn_scan(path: Path, ranges: list[tuple[int, int]]) -> None:
    import drgn

    prog = drgn.Program()
    prog.set_core_dump(str(path))
    for start, end in ranges:
        for pfn in range(start, end):
            prog.read(pfn << 12, 4096, True)


def derived(vmcore: Path, name: str, args: list[str]) -> Path:
    out = vmcore.parent.parent / "derived" / f"{vmcore.name}-{vmcore.stat().st_size}" / name
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        subprocess.run(["makedumpfile", *args, str(vmcore), str(tmp)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        tmp.rename(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    vmcore = lab_dump(args.kernel).vmcore
    files = {
        "ELF vmcore": vmcore,
        "kdump -l -d 0": derived(vmcore, "kdump-l-d0", ["-l", "-d", "0"]),
        "kdump -c -d 0": derived(vmcore, "kdump-c-d0", ["-c", "-d", "0"]),
        "kdump -l -d 31": derived(vmcore, "kdump-l-d31", ["-l", "-d", "31"]),
    }
    table = Table(title=f"Reading every page ({args.kernel} lab dump, best of {args.repeat})")
    for col in ("input", "pages", "kdumpy s", "MB/s", "makedumpfile -F s", "ratio", "drgn s",
                "ratio"):  # fmt: skip
        table.add_column(col, justify="right")
    for name, path in files.items():
        pages = kdumpy_scan(path)
        ours = best(lambda p=path: kdumpy_scan(p), args.repeat)
        mdf = best(lambda p=path: makedumpfile_stream(p), args.repeat)
        with open_dump(path) as dump:
            ranges = dump.pfn_ranges()
        drgn_t = best(lambda p=path, r=ranges: drgn_scan(p, r), 1)
        table.add_row(name, str(pages), f"{ours:.2f}", f"{pages * 4096 / ours / 1e6:.0f}",
                      f"{mdf:.2f}", f"{ours / mdf:.2f}", f"{drgn_t:.2f}",
                      f"{ours / drgn_t:.2f}")  # fmt: skip
    Console().print(table)

    # Kernel virtual reads.
    import drgn

    rng = random.Random(1)
    with open_dump(vmcore) as dump:
        t = dump.translator
        ranges = dump.pfn_ranges()
        addrs = []
        for _ in range(10000):
            s, e = rng.choice(ranges)
            pfn = rng.randrange(s, e)
            addrs += [t.page_offset + (pfn << 12) + rng.randrange(0, 4032), t.vmemmap + 64 * pfn]
        prog = drgn.Program()
        prog.set_core_dump(str(vmcore))

        def ours_virt() -> None:
            dump.translator._cache.clear()
            for va in addrs:
                dump.read_virt(va, 64)

        def drgn_virt() -> None:
            for va in addrs:
                prog.read(va, 64)

        ov, dv = best(ours_virt, args.repeat), best(drgn_virt, args.repeat)
    vt = Table(title=f"{len(addrs)} kernel virtual reads of 64 bytes")
    for col in ("kdumpy s", "µs/read", "drgn s", "µs/read", "ratio"):
        vt.add_column(col, justify="right")
    vt.add_row(f"{ov:.3f}", f"{ov / len(addrs) * 1e6:.1f}", f"{dv:.3f}",
               f"{dv / len(addrs) * 1e6:.1f}", f"{ov / dv:.2f}")  # fmt: skip
    Console().print(vt)


if __name__ == "__main__":
    main()
