#!/usr/bin/env python3
"""kdumpy collect vs makedumpfile on the same real vmcore (run by hand).

    python benchmarks/collect_bench.py [--memory 2G] [--repeat 3] [--num-threads N]

For dump levels 31 and 1 and each compression, runs ``kdumpy collect`` and
``makedumpfile`` on the same ELF vmcore of a lab guest (``lab_dump(kernel="6.1",
memory="2G")``, made on first use) and prints wall time, output size, peak RSS and
CPU time (user + system) side by side with ratios (kdumpy / makedumpfile).  kdumpy
fsyncs its output before renaming it into place; makedumpfile does not sync at all,
so its time is shown both
raw and with an fsync of its output added ("mdf+sync"), the fair comparison for a
dump that must survive the reboot that follows.  Compressions this makedumpfile
build lacks (1.7.2 in Debian 12: no snappy, no zstd) show kdumpy alone.  The
minimum over ``--repeat`` runs is reported, since the machine is shared.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FLAGS = {"none": [], "lzo": ["-l"], "zlib": ["-c"], "zstd": ["-z"], "snappy": ["-p"]}


@dataclass
class Run:
    wall: float
    rss_kib: int
    size: int
    cpu: float = 0.0  # user + system seconds: less disturbed by a busy machine than wall
    sync: float = 0.0


def run(cmd: list[str], out: Path) -> Run:
    """Run ``cmd``, returning wall time, its peak RSS and the output size.

    The peak RSS comes from GNU time (``%M``): a child forked from this Python
    process would inherit its high-water mark across exec and report that instead.
    """
    out.unlink(missing_ok=True)
    rss_file = out.with_name(out.name + ".rss")
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", str(rss_file), *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-300:]}")
    rss, user, system = rss_file.read_text().split()[-3:]
    rss_file.unlink()
    return Run(wall, int(rss), out.stat().st_size, float(user) + float(system))


def fsync_time(path: Path) -> float:
    start = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - start


def makedumpfile_supports(comp: str) -> bool:
    if comp in ("none", "zlib"):
        return True
    text = subprocess.run(["makedumpfile", "-v"], capture_output=True, text=True).stdout
    return any(line.split() == [comp, "enabled"] for line in text.splitlines())


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.wall + r.sync)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--memory", default="2G")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--num-threads", type=int, default=0, help="passed to both tools if > 0")
    ap.add_argument("--levels", default="31,1")
    ap.add_argument("--compressions", default="lzo,zlib,none,zstd,snappy")
    ap.add_argument("--workdir", default=None, help="where outputs go (default: a temp dir)")
    args = ap.parse_args()

    from kdumpy.lab.dumps import lab_dump

    dump = lab_dump(kernel=args.kernel, memory=args.memory)
    vmcore = Path(dump.vmcore)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="collect-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    threads = ["--num-threads", str(args.num_threads)] if args.num_threads > 0 else []
    print(
        f"vmcore: {vmcore} ({vmcore.stat().st_size / 2**30:.2f} GiB, {dump.kernel.release}); "
        f"threads: {args.num_threads or 'default'}; best of {args.repeat}; outputs in {work}"
    )
    header = (
        f"{'level':>5} {'comp':>6} | {'kdumpy s':>8} {'mdf s':>7} {'mdf+sync':>8} "
        f"{'ratio':>6} | {'kdumpy MB':>9} {'mdf MB':>8} {'ratio':>6} | "
        f"{'kdumpy RSS':>10} {'mdf RSS':>8}"
    )
    print(header)
    print("-" * len(header))
    for level in args.levels.split(","):
        for comp in args.compressions.split(","):
            flags = [*FLAGS[comp], "-d", level, *threads]
            ours_out, theirs_out = work / "kdumpy.out", work / "mdf.out"
            ours = best([run([sys.executable, "-m", "kdumpy", "collect", "--message-level", "0",
                              *flags, str(vmcore), str(ours_out)], ours_out)
                         for _ in range(args.repeat)])  # fmt: skip
            row = f"{level:>5} {comp:>6} | {ours.wall:8.2f} "
            if makedumpfile_supports(comp):
                runs = []
                for _ in range(args.repeat):
                    r = run(["makedumpfile", "--message-level", "0", *flags, str(vmcore),
                             str(theirs_out)], theirs_out)  # fmt: skip
                    r.sync = fsync_time(theirs_out)
                    runs.append(r)
                theirs = best(runs)
                synced = theirs.wall + theirs.sync
                row += (f"{theirs.wall:7.2f} {synced:8.2f} {ours.wall / synced:6.2f} | "
                        f"{ours.size / 2**20:9.1f} {theirs.size / 2**20:8.1f} "
                        f"{ours.size / theirs.size:6.3f} | "
                        f"{ours.rss_kib / 1024:8.1f}MB {theirs.rss_kib / 1024:6.1f}MB")  # fmt: skip
                row += f" | {ours.cpu:10.2f} {theirs.cpu:7.2f}"
                same = filecmp.cmp(ours_out, theirs_out, shallow=False)
                row += "  identical" if same else ""
            else:
                row += (f"{'-':>7} {'-':>8} {'-':>6} | {ours.size / 2**20:9.1f} {'-':>8} "
                        f"{'-':>6} | {ours.rss_kib / 1024:8.1f}MB {'-':>8} | "
                        f"{ours.cpu:10.2f} {'-':>7}")  # fmt: skip
            print(row, flush=True)
            ours_out.unlink(missing_ok=True)
            theirs_out.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
