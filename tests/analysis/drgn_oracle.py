"""The reference answers for a dump, computed by drgn 0.3.0 with the DWARF vmlinux.

Run as a separate process (drgn and a 600 MB vmlinux are heavy):

    python3 drgn_oracle.py VMCORE VMLINUX OUT.json

It writes what the analysis tests compare against: the task list, backtraces of
every task (function names of physical frames), the module list, the kernel log,
and the scalar members of init_task and init_uts_ns.  Nothing here uses kdumpy.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import drgn
from drgn.commands import run_command
from drgn.helpers.linux.fs import d_path, for_each_file
from drgn.helpers.linux.mm import task_rss, totalram_pages
from drgn.helpers.linux.module import for_each_module
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_dmesg
from drgn.helpers.linux.sched import (
    cpu_curr,
    cpu_rq,
    rq_for_each_fair_task,
    rq_for_each_rt_task,
    task_state_to_char,
)


def frame_functions(prog: drgn.Program, trace: drgn.StackTrace) -> list[list]:
    """``[name, pc, symbol start, symbol size]`` of the physical frames in kernel space
    (inline frames are folded into their caller; user-space frames are dropped)."""
    frames = []
    for frame in trace:
        if frame.is_inline:
            continue
        if frame.pc < 1 << 63:
            break
        pc = frame.pc if frame.interrupted else frame.pc - 1
        try:
            sym = prog.symbol(pc)
            frames.append([sym.name, frame.pc, sym.address, sym.size])
        except LookupError:
            frames.append([f"{frame.pc:#x}", frame.pc, 0, 0])
    return frames


def file_path(file: drgn.Object) -> str:
    """d_path of an open file, or "error: ..." (files without a mount, like some
    anonymous inodes, make drgn's d_path fault)."""
    try:
        return d_path(file.f_path).decode("utf-8", "replace")
    except drgn.FaultError as exc:
        return f"error: {exc}"


def scalar_members(obj: drgn.Object) -> dict[str, object]:
    """Integer, enum, bool and pointer members (top level), and char arrays as text."""
    out: dict[str, object] = {}
    for member in obj.type_.members:
        if not member.name:
            continue
        value = obj.member_(member.name)
        real = value.type_
        while real.kind == drgn.TypeKind.TYPEDEF:
            real = real.type
        kind = real.unqualified().kind
        t = drgn.TypeKind
        try:
            if kind in (t.INT, t.BOOL, t.ENUM, t.POINTER):
                out[member.name] = int(value.value_())
            elif (
                kind == t.ARRAY
                and real.type.unqualified().kind == t.INT
                and drgn.sizeof(real.type) == 1
            ):
                out[member.name] = value.string_().decode("utf-8", "replace")
        except drgn.FaultError:
            continue
    return out


def open_program(vmcore: str, vmlinux: str) -> drgn.Program:
    """drgn on *vmcore* with the DWARF *vmlinux* (modules have no debug info here)."""
    prog = drgn.Program()
    prog.set_core_dump(vmcore)
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info([vmlinux], default=False)
    return prog


def crash_mode_answers(prog: drgn.Program, lines: dict[str, str]) -> dict[str, object]:
    """drgn's crash mode on each command line: ``{key: {"line", "out"}}``, or ``"error"``
    where drgn itself fails (recorded for the tests to skip, not fatal)."""
    answers: dict[str, object] = {}
    for key, line in lines.items():
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                run_command(prog, "crash " + line, globals={})
            answers[key] = {"line": line, "out": buf.getvalue()}
        except Exception as exc:
            answers[key] = {"line": line, "error": f"{type(exc).__name__}: {exc}"}
    return answers


def write_answers(path: str, answers: dict[str, object]) -> None:
    with open(path, "w") as f:
        json.dump(answers, f, indent=1)


def main() -> int:
    vmcore, vmlinux, out_path = sys.argv[1:4]
    prog = open_program(vmcore, vmlinux)
    tasks = []
    traces = {}
    files = {}
    for task in for_each_task(prog):
        pid = int(task.pid)
        tasks.append(
            {
                "pid": pid,
                "comm": task.comm.string_().decode("utf-8", "replace"),
                "state": task_state_to_char(task),
                "address": int(task.value_()),
                "rss": task_rss(task).total,
            }
        )
        files[str(pid)] = [[fd, file_path(file)] for fd, file in for_each_file(task)]
        try:
            traces[str(pid)] = frame_functions(prog, prog.stack_trace(task))
        except (ValueError, drgn.FaultError) as exc:
            traces[str(pid)] = [f"error: {exc}"]
    crashed = prog.crashed_thread()
    result = {
        "drgn": drgn.__version__,
        "tasks": tasks,
        "traces": traces,
        "crashed": {
            "pid": crashed.tid,
            "trace": frame_functions(prog, crashed.stack_trace()),
        },
        "files": files,
        "cpu_curr": {str(cpu): int(cpu_curr(prog, cpu).pid) for cpu in range(2)},
        "totalram_pages": totalram_pages(prog),
        "nr_free_pages": prog["vm_zone_stat"][prog["NR_FREE_PAGES"]].counter.value_(),
        "runq": {
            str(cpu): {
                "fair": sorted(int(t.pid) for t in rq_for_each_fair_task(cpu_rq(prog, cpu))),
                "rt": sorted(int(t.pid) for t in rq_for_each_rt_task(cpu_rq(prog, cpu))),
            }
            for cpu in range(2)
        },
        "modules": [m.name.string_().decode() for m in for_each_module(prog)],
        "dmesg": get_dmesg(prog).decode("utf-8", "replace"),
        "init_task": scalar_members(prog["init_task"]),
        "init_uts_ns": scalar_members(prog["init_uts_ns"].name),
        "uts_ns_scalars": {
            k: v for k, v in scalar_members(prog["init_uts_ns"]).items() if k != "name"
        },
    }
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
