#!/usr/bin/env python3
"""kdumpy collect vs makedumpfile on the same real vmcores (run by hand).

    python benchmarks/collect_bench.py [--sizes 2G,4G,16G] [--levels 31,1]
        [--compressions lzo,zlib,zstd,snappy] [--threads 1,2] [--repeat 3]
        [--makedumpfile PATH]

For each lab dump size (``lab_dump(kernel, memory=SIZE)``: a real ELF vmcore captured
from a QEMU guest, made on first use and cached, kept sparse; above 4 GiB
``lab_guest_dump``: QEMU's dump of the crashed guest, with VMCOREINFO), dump level, compression
and thread count, runs ``kdumpy collect`` and ``makedumpfile`` on the same vmcore and
prints one table row: seconds, ratio, CPU seconds (user + system, the least of the
runs), and of the fastest run: the wait (durable seconds not spent on a CPU: disk
reads, fsync, or a busy machine's preemption), minor page faults, voluntary context
switches (the times the tool blocked), MiB read from the disk (page cache misses);
then output sizes, peak RSS (GNU time ``%M``) and whether the outputs are
byte-identical.  Threads 1 is the capture kernel's case (``nr_cpus=1``): both run
without ``--num-threads``; N > 1 passes ``--num-threads N`` to both.

Fairness:

* durable output for both: kdumpy fsyncs its file before renaming it into place,
  makedumpfile does not sync, so an fsync of its output is added to its time;
* kdumpy runs as in the capture initramfs: ``python3 -S`` with byte code compiled
  (the initramfs ships ``.pyc`` only and no ``site``), PYTHONPATH to kdumpy and the
  interpreter's site-packages;
* the vmcore is read once before each row, so neither tool pays for a cold cache,
  and the tools alternate who goes first; the best of ``--repeat`` runs is kept
  (``ratio``), and the ratio of the two medians is printed beside it (``median``);
* the machine's load average is printed per row: on a shared machine wall time is
  noisy, CPU seconds (user + system) much less so.

Debian 12's makedumpfile 1.7.2 has no zstd or snappy; ``--makedumpfile`` names a
build of the same 1.7.2 source with both (``benchmarks/build_makedumpfile.sh``).  A
compression the chosen makedumpfile lacks is shown against the compressor's own page
rate (``limit s``: libzstd/libsnappy over the same pages, single thread, measured
here): the time no collector can beat.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shlex
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FLAGS = {"none": [], "lzo": ["-l"], "zlib": ["-c"], "zstd": ["-z"], "snappy": ["-p"]}
REPO = Path(__file__).resolve().parent.parent
# Larger dumps come from QEMU's dump-guest-memory (16 GiB: under 2 minutes): the capture
# kernel copies /proc/vmcore at ~13 MB/s under TCG (16 GiB: 21 minutes).
CAPTURE_LIMIT = 4 << 30


@dataclass
class Run:
    wall: float
    rss_kib: int
    size: int
    cpu: float = 0.0  # user + system seconds: less disturbed by a busy machine than wall
    sync: float = 0.0
    minor_faults: int = 0
    waits: int = 0  # voluntary context switches: the times the tool blocked (I/O, fsync)
    read_bytes: int = 0  # read from the disk (GNU time %I, 512-byte units): not page cache hits

    @property
    def wait(self) -> float:
        """Seconds not on a CPU: blocked on the disk (reads, fsync) or preempted."""
        return max(0.0, self.durable - self.cpu)

    @property
    def durable(self) -> float:
        return self.wall + self.sync


def run(cmd: list[str], out: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` under GNU time: wall time, its own peak RSS, CPU, minor page faults,
    voluntary context switches and disk reads, the output size.

    (A child forked from this Python process would report this process's high-water
    mark as its RSS; GNU time's ``%M`` is the command's own.)
    """
    out.unlink(missing_ok=True)
    report = out.with_name(out.name + ".time")
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S %R %w %I", "-o", str(report), *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)  # fmt: skip
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed: {proc.stderr.decode()[-300:]}")
    rss, user, system, faults, waits, blocks = report.read_text().split()[-6:]
    report.unlink()
    cpu = float(user) + float(system)
    return Run(wall, int(rss), out.stat().st_size, cpu, minor_faults=int(faults),
               waits=int(waits), read_bytes=int(blocks) * 512)  # fmt: skip


def fsync_time(path: Path) -> float:
    start = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - start


def supports(makedumpfile: str, comp: str) -> bool:
    if comp in ("none", "zlib"):
        return True
    text = subprocess.run([makedumpfile, "-v"], capture_output=True, text=True).stdout
    return any(line.split() == [comp, "enabled"] for line in text.splitlines())


def capture_env() -> tuple[list[str], dict[str, str]]:
    """``python3 -S -m kdumpy`` with kdumpy and site-packages on PYTHONPATH (as /init does),
    byte code compiled first."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "kdumpy")],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), sysconfig.get_paths()["purelib"]])
    return [sys.executable, "-S", "-m", "kdumpy", "collect", "--message-level", "0"], env


def startup_cpu(cmd: list[str], env: dict[str, str] | None = None, runs: int = 10) -> float:
    """Least CPU seconds (user + system) of ``cmd`` over ``runs``: a fixed cost per run."""
    best = float("inf")
    for _ in range(runs):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(proc.pid, 0)
        best = min(best, usage.ru_utime + usage.ru_stime)
    return best


def warm(path: Path) -> None:
    """Read the vmcore once (holes cost nothing), so both tools start with it cached."""
    with open(path, "rb", buffering=0) as f:
        while f.readinto(bytearray(8 << 20)):
            pass


def compressor_limit(vmcore: Path, comp: str, level: int) -> float | None:
    """Seconds libzstd/libsnappy take alone over the pages kdumpy keeps at ``level``
    (the C loop, one thread): no collector can write that dump faster."""
    from kdumpy.collect import compress
    from kdumpy.collect.collector import CollectOptions, collect

    if comp not in compress.NATIVE:
        return None
    spent = 0.0
    original = compress.compress_pages

    def timed(*args: object) -> compress.PageBatch:
        nonlocal spent
        start = time.process_time()
        try:
            return original(*args)  # type: ignore[arg-type]
        finally:
            spent += time.process_time() - start

    import kdumpy.collect.collector as collector

    collector.compress_pages = timed  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            collect(str(vmcore), f"{tmp}/out", CollectOptions([level], comp))
    finally:
        collector.compress_pages = original
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--sizes", default="2G", help="lab dump memory sizes, e.g. 2G,4G,16G")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1", help="thread counts, e.g. 1,2")
    ap.add_argument("--levels", default="31,1")
    ap.add_argument("--compressions", default="lzo,zlib,zstd,snappy")
    ap.add_argument("--makedumpfile", default="makedumpfile", help="the makedumpfile to run")
    ap.add_argument("--workdir", default=None, help="where outputs go (default: a temp dir)")
    args = ap.parse_args()

    from kdumpy.lab.dumps import lab_dump
    from kdumpy.lab.guestdump import lab_guest_dump
    from kdumpy.lab.qemu import parse_size

    kdumpy_cmd, env = capture_env()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="collect-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"kdumpy: {shlex.join(kdumpy_cmd)} ...; makedumpfile: {args.makedumpfile}; "
          f"best of {args.repeat}; {os.cpu_count()} CPUs")  # fmt: skip
    # What every row pays before the first page: the interpreter and collect's imports.
    imports = "import kdumpy.cli.collect, kdumpy.collect.collector"
    ours_start = startup_cpu([sys.executable, "-S", "-c", imports], env)
    theirs_start = startup_cpu([args.makedumpfile, "-v"])
    print(f"start-up CPU (least of 10): kdumpy's interpreter and imports {ours_start:.3f} s, "
          f"makedumpfile -v {theirs_start:.3f} s")  # fmt: skip
    header = (
        f"{'dump':>5} {'lvl':>3} {'comp':>6} {'thr':>3} | {'kdumpy s':>8} {'mdf+sync':>8} "
        f"{'ratio':>6} {'median':>6} | {'kd cpu':>6} {'mdf cpu':>7} | {'kd wait':>7} "
        f"{'mdf wait':>8} | "
        f"{'kd flt':>6} {'mdf flt':>7} | {'kd sw':>5} {'mdf sw':>6} | {'kd rd MB':>8} "
        f"{'mdf rd MB':>9} | {'kdumpy MB':>9} {'mdf MB':>8} | "
        f"{'kd RSS':>7} {'mdf RSS':>7} | same | load"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes.split(","):
        if parse_size(size) > CAPTURE_LIMIT:  # QEMU's dump of the crashed guest (guestdump.py)
            dump = lab_guest_dump(kernel=args.kernel, memory=size, timeout=7200)
        else:  # the lab capture kernel's copy of /proc/vmcore
            dump = lab_dump(kernel=args.kernel, memory=size, timeout=7200)
        vmcore = Path(dump.vmcore)
        for threads in map(int, args.threads.split(",")):
            extra = ["--num-threads", str(threads)] if threads > 1 else []
            for level in args.levels.split(","):
                for comp in args.compressions.split(","):
                    row = bench_row(args, vmcore, size, level, comp, threads, extra,
                                    kdumpy_cmd, env, work)  # fmt: skip
                    print(row, flush=True)
    return 0


def bench_row(
    args: argparse.Namespace,
    vmcore: Path,
    size: str,
    level: str,
    comp: str,
    threads: int,
    extra: list[str],
    kdumpy_cmd: list[str],
    env: dict[str, str],
    work: Path,
) -> str:
    flags = [*FLAGS[comp], "-d", level, *extra]
    ours_out, theirs_out = work / "kdumpy.out", work / "mdf.out"
    has_mdf = supports(args.makedumpfile, comp)
    warm(vmcore)
    ours_runs, theirs_runs = [], []
    for i in range(args.repeat):
        order = ("mdf", "kdumpy") if i % 2 else ("kdumpy", "mdf")
        for tool in order:
            if tool == "kdumpy":
                ours_runs.append(run([*kdumpy_cmd, *flags, str(vmcore), str(ours_out)],
                                     ours_out, env))  # fmt: skip
            elif has_mdf:
                r = run([args.makedumpfile, "--message-level", "0", *flags, str(vmcore),
                         str(theirs_out)], theirs_out)  # fmt: skip
                r.sync = fsync_time(theirs_out)
                theirs_runs.append(r)
    ours = min(ours_runs, key=lambda r: r.durable)
    ours_cpu = min(r.cpu for r in ours_runs)
    load = os.getloadavg()[0]
    row = f"{size:>5} {level:>3} {comp:>6} {threads:>3} | {ours.durable:8.3f} "
    if theirs_runs:
        theirs = min(theirs_runs, key=lambda r: r.durable)
        same = "yes" if filecmp.cmp(ours_out, theirs_out, shallow=False) else "no"
        theirs_cpu = min(r.cpu for r in theirs_runs)
        median = statistics.median(r.durable for r in ours_runs) / statistics.median(
            r.durable for r in theirs_runs
        )
        row += (f"{theirs.durable:8.3f} {ours.durable / theirs.durable:6.3f} {median:6.3f} | "
                f"{ours_cpu:6.2f} {theirs_cpu:7.2f} | {ours.wait:7.2f} {theirs.wait:8.2f} | "
                f"{ours.minor_faults:6d} {theirs.minor_faults:7d} | {ours.waits:5d} "
                f"{theirs.waits:6d} | {ours.read_bytes / 2**20:8.1f} "
                f"{theirs.read_bytes / 2**20:9.1f} | {ours.size / 2**20:9.1f} "
                f"{theirs.size / 2**20:8.1f} | {ours.rss_kib / 1024:5.1f}MB "
                f"{theirs.rss_kib / 1024:5.1f}MB | {same:>4} | {load:4.1f}")  # fmt: skip
    else:
        limit = compressor_limit(vmcore, comp, int(level))
        shown = f"{limit:8.3f}" if limit is not None else f"{'-':>8}"
        row += (f"{shown} {'limit':>6} {'-':>6} | {ours_cpu:6.2f} {'-':>7} | {ours.wait:7.2f} "
                f"{'-':>8} | {ours.minor_faults:6d} {'-':>7} | {ours.waits:5d} {'-':>6} | "
                f"{ours.read_bytes / 2**20:8.1f} {'-':>9} | "
                f"{ours.size / 2**20:9.1f} {'-':>8} | {ours.rss_kib / 1024:5.1f}MB {'-':>7} | "
                f"{'-':>4} | {load:4.1f}")  # fmt: skip
    ours_out.unlink(missing_ok=True)
    theirs_out.unlink(missing_ok=True)
    return row


if __name__ == "__main__":
    sys.exit(main())
