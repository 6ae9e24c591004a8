"""``kdumpy report``: what a triager wants first, from the dump alone.

Panic message and kind, the crashing task and its backtrace, taint flags and the
modules that tainted the kernel, the last log lines, tasks stuck in D state with
their stacks, a memory summary, and a signature that groups dumps of the same crash
(the kind plus the first functions of the backtrace that are not the generic crash
path, like Apport's and ABRT's duplicate hashes).
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

from kdumpy.analysis.helpers.lists import ListWarning
from kdumpy.analysis.helpers.mm import (
    global_node_page_state,
    global_zone_page_state,
    totalram_pages,
)
from kdumpy.analysis.helpers.modules import for_each_module, module_name
from kdumpy.analysis.helpers.printk import log_records
from kdumpy.analysis.helpers.system import TAINT_CHARS, system_info, taint_letters
from kdumpy.analysis.helpers.tasks import (
    for_each_task,
    panic_task,
    task_comm,
    task_cpu,
    task_state_crash,
)
from kdumpy.analysis.program import Program
from kdumpy.analysis.unwind import Frame, stack_trace
from kdumpy.errors import KdumpyError
from kdumpy.printable import escape_text, shown

RECENT_LINES = 40
SIGNATURE_FRAMES = 5
# The generic path from any crash into kdump: not part of what makes a crash distinct.
_CRASH_PATH = frozenset({
    "crash_setup_regs", "__crash_kexec", "crash_kexec", "panic", "vpanic", "oops_end", "die",
    "die_addr", "do_trap", "do_error_trap", "exc_invalid_op", "handle_bug", "asm_exc_invalid_op",
    "nmi_panic", "watchdog_timer_fn", "dump_stack", "dump_stack_lvl", "check_panic_on_oops",
    "make_task_dead", "rewind_stack_and_make_dead", "native_machine_crash_shutdown",
    "check_panic_on_warn", "__warn", "report_bug", "exc_page_fault", "asm_exc_page_fault",
    "page_fault_oops", "kernelmode_fixup_or_oops", "__bad_area_nosemaphore", "bad_area_nosemaphore",
    "do_user_addr_fault", "exc_general_protection", "asm_exc_general_protection",
})  # fmt: skip


def _frames(frames: list[Frame]) -> list[dict[str, Any]]:
    return [
        {"function": f.name, "location": f.location(), "pc": f"{f.pc:#x}", "sp": f"{f.sp:#x}"}
        for f in frames
    ]


def signature(kind: str, frames: list[Frame]) -> dict[str, str]:
    """A stable identifier: kind + the first distinctive function names."""
    names = [f.name for f in frames if f.pc >> 63 and f.name not in _CRASH_PATH]
    names = [n.split(".")[0] for n in names[:SIGNATURE_FRAMES]]
    text = f"{kind}:" + "/".join(names)
    return {"text": text, "hash": hashlib.sha1(text.encode()).hexdigest()[:16]}


def _memory(prog: Program) -> dict[str, int]:
    kb = prog.dump.page_size // 1024
    out = {"total_kb": totalram_pages(prog) * kb,
           "free_kb": global_zone_page_state(prog, "NR_FREE_PAGES") * kb}  # fmt: skip
    try:
        out["cached_kb"] = global_node_page_state(prog, "NR_FILE_PAGES") * kb
        out["slab_kb"] = (
            global_node_page_state(prog, "NR_SLAB_RECLAIMABLE_B")
            + global_node_page_state(prog, "NR_SLAB_UNRECLAIMABLE_B")
        ) * kb
    except KdumpyError:
        pass
    out["used_kb"] = out["total_kb"] - out["free_kb"]
    return out


def _tainting_modules(prog: Program) -> list[dict[str, str]]:
    out = []
    for mod in for_each_module(prog):
        taints = int(mod.taints)
        if taints:
            letters = "".join(c for bit, c in enumerate(TAINT_CHARS) if taints >> bit & 1)
            out.append({"module": module_name(mod), "taints": letters})
    return out


def _dstate_tasks(prog: Program) -> list[dict[str, Any]]:
    out = []
    for task in for_each_task(prog):
        if task_state_crash(task) != "UN":
            continue
        try:
            frames = _frames(stack_trace(prog, task))
        except KdumpyError as exc:
            frames = [{"function": f"(unwind failed: {exc})"}]
        out.append({"pid": int(task.pid), "comm": task_comm(task), "backtrace": frames})
    return out


def build_report(prog: Program) -> dict[str, Any]:
    """The report as a JSON-ready dict; ``warnings`` lists the corrupt structures met
    (the parts built from them are partial)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ListWarning)
        report = _build_report(prog)
    notes = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, ListWarning))
    report["warnings"] = list(notes)
    return report


def _build_report(prog: Program) -> dict[str, Any]:
    info = system_info(prog)
    recs = log_records(prog)
    end = info.panic.line_index + 1 if info.panic.line_index >= 0 else len(recs)
    recent = [
        r.text.decode("utf-8", "backslashreplace") for r in recs[max(0, end - RECENT_LINES) : end]
    ]
    task = panic_task(prog)
    frames = stack_trace(prog, task) if task is not None else []
    crashing = None
    if task is not None:
        crashing = {"pid": int(task.pid), "comm": task_comm(task), "cpu": task_cpu(task),
                    "task": f"{int(task):#x}", "backtrace": _frames(frames)}  # fmt: skip
    return {
        "dump": prog.path,
        "release": info.release,
        "version": info.version,
        "crash_time": info.date,
        "uptime": info.uptime,
        "panic": {
            "message": info.panic.message,
            "kind": info.panic.kind,
            "evidence": info.panic.evidence,
        },  # fmt: skip
        "crashing_task": crashing,
        "taint": {"flags": taint_letters(prog), "modules": _tainting_modules(prog)},
        "recent_log": recent,
        "dstate_tasks": _dstate_tasks(prog),
        "memory": _memory(prog),
        "signature": signature(info.panic.kind, frames),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal: every string from the dump goes through
    :func:`~kdumpy.printable.shown` (the JSON form keeps them as they are; JSON escapes
    control characters itself)."""
    p = report["panic"]
    lines = [
        f"Dump:      {report['dump']}",
        f"Kernel:    {shown(report['release'])} {shown(report['version'])}",
        f"Crashed:   {report['crash_time']} (uptime {report['uptime']})",
        f"Panic:     {shown(p['message'])}",
        f"Kind:      {p['kind']}",
        f"Signature: {shown(report['signature']['text'])} [{report['signature']['hash']}]",
        f"Tainted:   {report['taint']['flags'] or 'no'}"
        + "".join(f" {shown(m['module'])}({m['taints']})" for m in report["taint"]["modules"]),
        *(f"Warning:   {shown(w)}" for w in report.get("warnings", ())),
        "",
    ]
    task = report["crashing_task"]
    if task:
        lines.append(
            f'Crashing task: PID {task["pid"]} "{shown(task["comm"])}" on CPU {task["cpu"]}'
        )
        lines += [f"  #{i:<2} {shown(f['location'])}" for i, f in enumerate(task["backtrace"])]
        lines.append("")
    m = report["memory"]
    lines.append(
        "Memory:    " + ", ".join(f"{k.removesuffix('_kb')} {v // 1024} MiB" for k, v in m.items())
    )
    lines.append("")
    lines.append(f"Tasks in D state: {len(report['dstate_tasks'])}")
    for t in report["dstate_tasks"]:
        lines.append(f'  PID {t["pid"]} "{shown(t["comm"])}"')
        lines += [f"    {shown(f.get('location', f['function']))}" for f in t["backtrace"]]
    lines.append("")
    lines.append("Recent log:")
    lines += [f"  {shown(line)}" for line in report["recent_log"]]
    return escape_text("\n".join(lines) + "\n", "\n")
