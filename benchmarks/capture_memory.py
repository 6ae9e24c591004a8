#!/usr/bin/env python3
"""Peak memory of a capture run: kdumpy collect in the capture's process, as a child
Python (how the capture ran it before), and makedumpfile as the child (the peer).

    python benchmarks/capture_memory.py VMCORE [--runs 3]

Each run is ``python3 -m kdumpy.capture --no-action --target-dir DIR`` on VMCORE (a lab
guest's /proc/vmcore) saving to a temporary directory (TMPDIR, default /var/tmp), with one of
three ``core_collector`` lines (``-l -d 31``, the default's options).  The capture's
process tree is sampled every 10 ms (``/proc/PID/status``: RssAnon and VmRSS of every
process whose parent chain leads to the capture); the table shows the largest sum seen,
the smallest over the runs.  Anonymous memory is what a capture kernel cannot reclaim:
the text of python3 and its libraries is shared and, in the capture initramfs, already
counted in the unpacked image.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLLECTORS = {
    "kdumpy collect in the capture's process": "kdumpy collect -l -d 31",
    "kdumpy collect as a child python3": f"{sys.executable} -m kdumpy collect -l -d 31",
    "makedumpfile as the child (peer)": "makedumpfile -l -d 31",
}


def _status(pid: int) -> tuple[int, int, int]:
    """(ppid, RssAnon kB, VmRSS kB) of *pid*; zeros once it is gone."""
    fields: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        return 0, 0, 0
    kb = lambda k: int(fields.get(k, "0 kB").split()[0])  # noqa: E731
    return int(fields.get("PPid", "0")), kb("RssAnon"), kb("VmRSS")


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            parents[int(name)] = _status(int(name))[0]
    members, changed = {root}, True
    while changed:
        new = {pid for pid, ppid in parents.items() if ppid in members} - members
        members |= new
        changed = bool(new)
    return sorted(members)


def peak(vmcore: Path, collector: str) -> tuple[int, int, float]:
    """Largest summed RssAnon and VmRSS (kB) of the capture's tree, and the run's seconds."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        conf = Path(tmp) / "kdump.conf"
        conf.write_text(f"ext4 LABEL=x\npath /crash\ncore_collector {collector}\n")
        target = Path(tmp) / "target"
        target.mkdir()
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "kdumpy.capture", "--config", str(conf), "--vmcore",
             str(vmcore), "--no-action", "--target-dir", str(target)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        anon = rss = 0
        while proc.poll() is None:
            stats = [_status(pid) for pid in _tree(proc.pid)]
            anon = max(anon, sum(s[1] for s in stats))
            rss = max(rss, sum(s[2] for s in stats))
            time.sleep(0.01)
        seconds = time.monotonic() - start
        saved = list(target.glob("crash/*/vmcore"))
        if proc.returncode != 0 or not saved:
            raise SystemExit(f"{collector}: the capture failed (status {proc.returncode})")
    return anon, rss, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vmcore", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name, collector in COLLECTORS.items():
        results = [peak(args.vmcore, collector) for _ in range(args.runs)]
        rows.append((name, min(r[0] for r in results), min(r[1] for r in results),
                     min(r[2] for r in results)))  # fmt: skip
    peer_anon = rows[-1][1]
    print(f"{'collector':45} {'peak RssAnon':>14} {'peak VmRSS':>12} {'x peer anon':>12} {'s':>6}")
    for name, anon, rss, seconds in rows:
        print(f"{name:45} {anon:>11} kB {rss:>9} kB {anon / peer_anon:>12.2f} {seconds:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
