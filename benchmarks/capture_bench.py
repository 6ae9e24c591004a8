#!/usr/bin/env python3
"""Capture side in the lab's Debian guest: initramfs size, smallest reservation, dump time.

    python benchmarks/capture_bench.py [--kernels 6.1,6.12,7] [--memory 1G,4G]
                                       [--sizes 128M,160M,192M,224M,256M]

For each kernel and guest size, full kdump cycles run in the Debian guest (kdumpy start,
echo c, kdumpy's capture initramfs saving to an ext4 disk with the default collector,
``kdumpy collect -l -d 31``).  The guest's root overlay is kept between the cycles of one
row, so the capture initramfs is built once and only the reservation changes.  The
smallest reservation is found by bisection over --sizes; success means the serial console
shows "kdump: saved vmcore to" and the target disk holds a vmcore.  Times come from the
host clock at the first appearance of serial markers (panic -> "saved vmcore to").

The reference columns are Debian's own: the guest's initramfs-tools initrd, and
kdump-tools' default reservation (crashkernel=512M-:192M, i.e. 192M).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

import kdumpy
from kdumpy.errors import KdumpyError
from kdumpy.lab.debian import debian_dir
from kdumpy.lab.debian_job import read_back
from kdumpy.lab.debian_kdump import Cycle, blank_ext4, run_cycle
from kdumpy.lab.kernels import get_kernel
from kdumpy.lab.qemu import parse_size

CONF = "ext4 LABEL=kdumptgt\npath /var/crash\nfinal_action poweroff\nfailure_action poweroff\n"
DEBIAN_RESERVATION = 192 << 20  # kdump-tools: crashkernel=512M-:192M


@dataclass
class Trial:
    ok: bool
    initramfs: int | None
    panic_to_saved: float | None
    note: str


def trial(kernel: str, memory: str, size: str, workdir: Path, overlay: Path) -> Trial:
    """One cycle at reservation *size*; success is a vmcore on the target disk.

    A first kernel that never reaches the job (a boot flake of the loaded host, nothing
    to do with the reservation) is retried once.
    """
    result = _trial(kernel, memory, size, workdir, overlay)
    if result.note == "first kernel did not boot":
        result = _trial(kernel, memory, size, workdir, overlay)
    state = "ok" if result.ok else f"FAILED ({result.note})"
    took = f", panic to saved {result.panic_to_saved:.0f} s" if result.panic_to_saved else ""
    print(f"{kernel} {memory} crashkernel={size}: {state}{took}; logs in {workdir}/run-{size}",
          file=sys.stderr, flush=True)  # fmt: skip
    return result


def _trial(kernel: str, memory: str, size: str, workdir: Path, overlay: Path) -> Trial:
    target = blank_ext4(workdir / "target.img", "kdumptgt", "6G")
    cycle = Cycle(CONF, disks=[target], memory=memory, crashkernel=size, timeout=2400,
                  root_overlay=overlay, kdumpy_tree=snapshot(workdir))  # fmt: skip
    try:
        result = run_cycle(cycle, workdir / f"run-{size}", kernel)
    except KdumpyError as exc:
        return Trial(False, None, None, str(exc)[:60])
    size_file = result.out / "initramfs_size"
    initramfs = int(size_file.read_text()) if size_file.exists() else None
    marks = result.run.markers
    if "KDUMPY-JOB-BEGIN" not in marks:
        return Trial(False, None, None, "first kernel did not boot")
    saved = "kdump: saved vmcore to" in marks
    crash = read_back(target.path, "/var/crash", workdir / f"got-{size}")
    vmcores = list(crash.rglob("vmcore")) if crash.exists() else []
    if not (saved and vmcores):
        why = "start failed" if result.rc else "capture failed"
        return Trial(False, initramfs, None, why)
    elapsed = marks["kdump: saved vmcore to"] - marks["Kernel panic"]
    return Trial(True, initramfs, elapsed, "")


def snapshot(workdir: Path) -> Path:
    """The kdumpy tree as of the first trial: the guest's initramfs is built once per row."""
    tree = workdir / "kdumpy-snapshot" / "kdumpy"
    if not tree.exists():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(Path(kdumpy.__file__).parent, tree, ignore=ignore)
    return tree


def smallest(kernel: str, memory: str, sizes: list[str], workdir: Path) -> list[tuple[str, Trial]]:
    """Bisect *sizes* (ascending) for the smallest that succeeds, starting from the largest."""
    overlay = workdir / "root.qcow2"
    done: list[tuple[str, Trial]] = []
    top = trial(kernel, memory, sizes[-1], workdir, overlay)
    done.append((sizes[-1], top))
    if not top.ok:
        return done
    lo, hi = 0, len(sizes) - 1  # sizes[hi] is known good
    while lo < hi:
        mid = (lo + hi) // 2
        result = trial(kernel, memory, sizes[mid], workdir, overlay)
        done.append((sizes[mid], result))
        if result.ok:
            hi = mid
        else:
            lo = mid + 1
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default="6.1")
    parser.add_argument("--memory", default="1G,4G")
    parser.add_argument("--sizes", default="128M,160M,192M,224M,256M")
    parser.add_argument(
        "--workdir",
        default="/tmp/kdumpy-capture-bench",
        help="runs are kept here (serial logs, outputs)",
    )
    args = parser.parse_args()
    sizes = sorted(args.sizes.split(","), key=parse_size)
    table = Table(title="kdumpy capture in the Debian guest (TCG), ext4 target, kdumpy collect")
    cols = ("kernel", "guest", "capture initramfs", "Debian initrd", "ratio",
            "smallest OK", "kdump-tools default", "ratio", "panic to saved", "trials")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right")
    for series in args.kernels.split(","):
        kernel = get_kernel(series)
        debian_initrd = debian_dir() / "rootfs" / "boot" / f"initrd.img-{kernel.release}"
        for memory in args.memory.split(","):
            workdir = Path(args.workdir) / f"{series}-{memory}"
            workdir.mkdir(parents=True, exist_ok=True)
            trials = smallest(series, memory, sizes, workdir)
            good = [(s, t) for s, t in trials if t.ok]
            best = min(good, key=lambda st: parse_size(st[0])) if good else None
            initramfs = next((t.initramfs for _, t in trials if t.initramfs), None)
            ref = debian_initrd.stat().st_size if debian_initrd.exists() else None
            times = [t.panic_to_saved for _, t in good if t.panic_to_saved is not None]
            table.add_row(
                kernel.release,
                memory,
                f"{initramfs / 2**20:.1f} MiB" if initramfs else "-",
                f"{ref / 2**20:.1f} MiB" if ref else "-",
                f"{initramfs / ref:.2f}" if initramfs and ref else "-",
                best[0] if best else "none",
                f"{DEBIAN_RESERVATION >> 20}M",
                f"{parse_size(best[0]) / DEBIAN_RESERVATION:.2f}" if best else "-",
                f"{min(times):.0f} s" if times else "-",
                " ".join(f"{s}:{'ok' if t.ok else t.note or 'fail'}" for s, t in trials),
            )
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
