#!/usr/bin/env python3
"""Time one crash-capture cycle per lab kernel (run by hand; not part of the test suite).

    python benchmarks/lab_cycle.py [--memory 1G] [--kernels 6.1,6.12,7]
    python benchmarks/lab_cycle.py --kernels arm64-6.1,arm64-6.12

Each cycle boots the kernel in QEMU (TCG), runs the workload, loads the capture kernel,
crashes by sysrq and saves /proc/vmcore with dd. Times come from the host clock at the first
appearance of each marker on the serial console, except "to /init" and "load", which are the
first kernel's own timestamps (its /init starting; the load between "workload ready" and
"capture kernel loaded": kexec-tools on x86_64, kdumpy's kexec_load loader on arm64).
Kernels and initramfs images are cached first so downloads are not timed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdumpy.lab.dumps import capture_vmcore
from kdumpy.lab.kernels import get_kernel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="1G")
    parser.add_argument("--crashkernel", default="256M")
    parser.add_argument("--kernels", default="6.1,6.12,7")
    args = parser.parse_args()
    table = Table(title=f"kdumpy lab: crash-capture cycle, {args.memory} guest, TCG")
    columns = ("kernel", "to /init", "load", "boot to panic", "panic to vmcore saved", "total")
    for col in (*columns, "vmcore"):
        table.add_column(col, justify="right")
    for series in args.kernels.split(","):
        kernel = get_kernel(series)
        with tempfile.TemporaryDirectory() as tmp:
            dump = capture_vmcore(
                kernel, Path(tmp, "vmcore"), memory=args.memory, crashkernel=args.crashkernel
            )
            t = dump.timings
            first = dump.serial_log.read_text(errors="replace").split("kdumpy.role=capture")[0]
            markers = ("first kernel up", "workload ready", "capture kernel loaded")
            up, ready, loaded = (_stamp(first, m) for m in markers)
            table.add_row(
                kernel.release,
                f"{up:.1f} s",
                f"{loaded - ready:.1f} s",
                f"{t['boot_to_panic']:.1f} s",
                f"{t['panic_to_saved']:.1f} s",
                f"{t['total']:.1f} s",
                f"{dump.size / 2**20:.0f} MiB",
            )
    Console().print(table)
    return 0


def _stamp(console: str, marker: str) -> float:
    """The kernel timestamp of the lab marker *marker* on the console (NaN when absent)."""
    found = re.search(r"\[ *([0-9.]+)\] kdumpy-lab: " + re.escape(marker), console)
    return float(found.group(1)) if found else float("nan")


if __name__ == "__main__":
    sys.exit(main())
