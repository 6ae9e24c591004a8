"""What `kdumpy lab demo` shows after the capture: each later stage of kdump, as it lands.

Each step takes the fresh LabDump and returns one line for the demo's table, or None when the
stage it shows is not available in this build.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kdumpy.lab.dumps import LabDump

Step = Callable[[LabDump], "str | None"]


def vmcoreinfo_step(dump: LabDump) -> str | None:
    try:
        from kdumpy.vmcore import open_dump
    except ImportError:
        return None
    with open_dump(dump.vmcore) as core:
        info = core.vmcoreinfo
        return f"OSRELEASE={info.osrelease}, {len(core.prstatus)} CPU notes"


def collect_step(dump: LabDump) -> str | None:
    try:
        from kdumpy.collect import CollectOptions, collect
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "vmcore.kdump")
        start = time.monotonic()
        collect(dump.vmcore, out, CollectOptions(dump_levels=[31], compression="zstd"))
        took = time.monotonic() - start
        size = out.stat().st_size
    return (
        f"kdumpy collect -d 31 -z: {dump.size / 2**20:.0f} MiB -> {size / 2**20:.1f} MiB "
        f"in {took:.1f} s"
    )


def dmesg_step(dump: LabDump) -> str | None:
    try:
        from kdumpy.vmcore import open_dump
        from kdumpy.vmcore.dmesg import kernel_log
    except ImportError:
        return None
    with open_dump(dump.vmcore) as core:
        lines = kernel_log(core).decode(errors="replace").splitlines()
    panic = next((ln for ln in lines if "Kernel panic" in ln), lines[-1] if lines else "")
    return f"{len(lines)} lines; {panic.strip()}"


def analysis_step(dump: LabDump) -> str | None:
    try:
        from kdumpy.analysis import Program
        from kdumpy.analysis.report import build_report
    except ImportError:
        return None
    with Program.open(dump.vmcore) as prog:
        report = build_report(prog)
    task = report["crashing_task"] or {}
    frames = " <- ".join(f["function"] for f in task.get("backtrace", [])[:5])
    return (
        f"{report['panic']['kind']} in {task.get('comm')} (pid {task.get('pid')}): {frames}"
        " [from the dump alone: kallsyms, BTF, ORC]"
    )


STEPS: list[tuple[str, Step]] = [
    ("VMCOREINFO", vmcoreinfo_step),
    ("filtered dump", collect_step),
    ("kernel log from the dump", dmesg_step),
    ("kdumpy report", analysis_step),
]
