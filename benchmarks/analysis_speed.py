"""Analysis speed beside drgn (issue 14, Deliver 5): start to first output, ``foreach bt``
over 1,000 tasks, the slab walk of a 4 GiB guest, and peak RSS.

    python3 benchmarks/analysis_speed.py            # every row, best of 3 runs
    python3 benchmarks/analysis_speed.py --runs 1

Each row runs both sides in fresh processes on the same cached lab dump:

* ``first output``: ``kdumpy crash DUMP -c sys`` with the dump alone (kallsyms, BTF and
  the log from its memory) until its first line, beside drgn 0.3.0 loading the Debian
  -dbg vmlinux and printing the release (drgn needs the DWARF file).
* ``foreach bt``: every task's backtrace on the ``tasks`` lab dump (1,000 sleeping
  processes, 6.1): ``kdumpy crash DUMP -c "foreach bt"`` beside drgn's ``stack_trace``
  of every task, printed.
* ``slab walk``: SLUB usage of every cache of the 4 GiB 6.1 guest (objects, free objects
  on the partial lists and per-CPU freelists, slabs), through kdumpy's API
  (``kmem -s`` is another helper's work in progress) beside drgn's ``slab_cache_usage``.

Wall time to the first line and to the end, CPU time (user + system, the process and
its children) and peak RSS come from the process itself (``os.wait4``); best of the
runs for times, worst for memory.  The first run of each warms the page cache.  On a
shared machine the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))

DRGN_OPEN = """
import sys, drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
try:
    prog.load_debug_info([sys.argv[2]], default=False)
except drgn.MissingDebugInfoError:
    pass
"""
DRGN_FIRST = DRGN_OPEN + 'print(prog["init_uts_ns"].name.release.string_().decode())\n'
DRGN_FOREACH_BT = (
    DRGN_OPEN
    + """
from drgn.helpers.linux.pid import for_each_task
for task in for_each_task(prog):
    print("PID:", task.pid.value_(), task.comm.string_().decode(errors="replace"))
    try:
        print(prog.stack_trace(task))
    except ValueError as exc:   # a task running on a CPU without saved registers
        print(exc)
"""
)
DRGN_SLAB = (
    DRGN_OPEN
    + """
from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage
for cache in for_each_slab_cache(prog):
    u = slab_cache_usage(cache)
    print(cache.name.string_().decode(), u.num_objs, u.free_objs, u.num_slabs)
"""
)
# The same walk through kdumpy's API: per node, the slab and object counters and the
# free objects of the partial slabs; per CPU, the lockless freelist, the active slab's
# own freelist and the per-CPU partial slabs (6.1's SLUB; as drgn's slab_cache_usage).
# Run with `kdumpy crash --python` (prog bound).
KDUMPY_SLAB = """
from kdumpy.analysis.api import list_for_each_entry

slab_t = "struct slab" if prog.has_member("struct slab", "slab_list") else "struct page"
lru = "slab_list" if slab_t == "struct slab" else "lru"
caches = prog.object("slab_caches", "struct list_head")
for cache in list_for_each_entry("struct kmem_cache", caches, "list"):
    objs = slabs = free = 0
    for nid in range(int(prog.object("nr_node_ids", "unsigned int"))):
        node = cache.node[nid]
        if not int(node):
            continue
        slabs += int(node.nr_slabs.counter)
        objs += int(node.total_objects.counter)
        for slab in list_for_each_entry(slab_t, node.partial, lru):
            free += int(slab.objects) - int(slab.inuse)
    offset = int(cache.offset)
    # CONFIG_SLAB_FREELIST_HARDENED: a stored pointer is ptr ^ s->random ^ swab(&slot)
    random = int(cache.random) if cache.has_member_("random") else None

    def chain(pointer):
        count = 0
        while pointer and count < 65536:
            count += 1
            slot = pointer + offset
            pointer = prog.read_u64(slot)
            if random is not None:
                pointer ^= random ^ int.from_bytes(slot.to_bytes(8, "little"), "big")
        return count

    for cpu in prog.possible_cpus:
        c = prog.per_cpu_ptr(cache.cpu_slab, cpu)
        free += chain(int(c.freelist))  # the lockless per-CPU freelist
        if int(c.slab):
            free += chain(int(c.slab.freelist))  # objects freed by other CPUs
        partial, seen = c.partial, 0
        while int(partial) and seen < 65536:  # per-CPU partial slabs
            free += int(partial.objects) - int(partial.inuse)
            partial, seen = partial.next, seen + 1
    print(cache.name.string_().decode(), objs, free, slabs)
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
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    kdumpy = [sys.executable, "-m", "kdumpy", "crash"]
    rows = []
    dump = lab_dump("6.1")
    vmlinux = str(dbg_vmlinux(dump.kernel))
    rows.append(("first output (6.1, sys)", "<0.3 s to first line",
                 kdumpy + [str(dump.vmcore), "-c", "sys"],
                 [sys.executable, "-c", DRGN_FIRST, str(dump.vmcore), vmlinux]))  # fmt: skip
    tasks = lab_dump("6.1", crash="tasks")
    rows.append(("foreach bt (1,000+ tasks)", "<3 s",
                 kdumpy + [str(tasks.vmcore), "-c", "foreach bt"],
                 [sys.executable, "-c", DRGN_FOREACH_BT, str(tasks.vmcore), vmlinux]))  # fmt: skip
    big = lab_dump("6.1", memory="4G")
    script = Path(os.environ.get("TMPDIR", "/tmp"), f"kdumpy-slab-bench-{os.getpid()}.py")
    script.write_text(KDUMPY_SLAB)
    rows.append(("slab walk (4 GiB guest)", "<2 s (kmem -s)",
                 kdumpy + ["--python", str(script), str(big.vmcore)],
                 [sys.executable, "-c", DRGN_SLAB, str(big.vmcore), vmlinux]))  # fmt: skip
    header = (f"{'what':<26} {'target':<21} {'kdumpy 1st':>10} {'kdumpy end':>10} "
              f"{'kdumpy CPU':>10} {'drgn 1st':>8} {'drgn end':>8} {'drgn CPU':>8} "
              f"{'kdumpy MiB':>10} {'drgn MiB':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    try:
        for what, target, ours_cmd, drgn_cmd in rows:
            ours, theirs = best_of(ours_cmd, args.runs), best_of(drgn_cmd, args.runs)
            print(f"{what:<26} {target:<21} {ours[0]:>9.2f}s {ours[1]:>9.2f}s {ours[2]:>9.2f}s "
                  f"{theirs[0]:>7.2f}s {theirs[1]:>7.2f}s {theirs[2]:>7.2f}s "
                  f"{ours[3]:>10.0f} {theirs[3]:>8.0f}", flush=True)  # fmt: skip
    finally:
        script.unlink()
    print(f"\nbest of {args.runs} runs after a warm-up (worst peak RSS); "
          f"command: python3 benchmarks/analysis_speed.py --runs {args.runs}")  # fmt: skip
    base = best_of([sys.executable, "-c", "pass"], args.runs)
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"python3 -c pass takes {base[1]:.2f}s wall, {base[2]:.2f}s CPU here")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
