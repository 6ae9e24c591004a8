"""drgn 0.3.0's crash mode and helpers on a lab dump, with the DWARF vmlinux, for the
options of crash's commands issue 14 added (``rd -S/-r/-u``, ``kmem -n/-m/-F``, ``vtop
-c/-k/-u``, ``runq -g``...): the text the tests in ``test_more_crash_options.py`` compare
kdumpy's with, and figures read with drgn's helpers.  A separate script (and cache file)
so the main oracle's cache stays valid.

    python3 drgn_more_options_oracle.py VMCORE VMLINUX OUT.json

Long outputs (a line per page) are kept as their first and last lines and their count.
Nothing here uses kdumpy.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile

import drgn
from drgn.commands import run_command
from drgn.helpers.linux.bpf import bpf_map_for_each, bpf_prog_for_each
from drgn.helpers.linux.mm import access_process_vm
from drgn.helpers.linux.pid import find_task, for_each_task
from drgn_oracle import open_program  # beside this script: sys.path[0] when run

KEEP = 3000  # lines kept at each end of a long output
RAW = "@RAW@"  # stands for the file an rd -r line writes


def command_lines(prog: drgn.Program) -> dict[str, str]:
    """The crash command lines to run, keyed by what the tests call them."""
    task1 = find_task(prog, 1)
    crashed = prog.crashed_thread().object
    arg_start = crashed.mm.arg_start.value_()
    # 64 bytes ending at the end of the command line (its page's next may be unmapped)
    user = (crashed.mm.arg_end.value_() - 64) & ~0xF
    other = next(t for t in for_each_task(prog) if t.mm and t.pid != crashed.pid)
    t1 = task1.value_()
    return {
        "rd_S": f"rd -S {t1:x} 512",
        "rd_SS": f"rd -SS {t1:x} 512",
        "rd_u": f"rd -u {user:x} 8",
        "rd_u_auto": f"rd {user:x} 8",
        "rd_a_u": f"rd -a -u {arg_start:x}",
        "rd_r": f"rd -r {RAW} {t1:x} 4096",
        "rd_r_u": f"rd -u -r {RAW} {user:x} 64",
        "vtop_u": f"vtop -u {arg_start:x}",
        "vtop_k": f"vtop -k {t1:x}",
        "vtop_c": f"vtop -c {other.pid.value_()} {other.mm.start_stack.value_():x}",
        "vtop_kernel": f"vtop {t1:x}",
        "kmem_n": "kmem -n",
        "kmem_F": "kmem -F",
        "kmem_m": "kmem -m flags,_refcount",
        "runq_g": "runq -g",
    }


def facts(prog: drgn.Program) -> dict[str, object]:
    """Figures through drgn's helpers: the crashed task's command line (its user memory)
    and the symbol of each of its frames; the ids of the loaded BPF programs and maps."""
    crashed = prog.crashed_thread().object
    mm = crashed.mm
    start, end = mm.arg_start.value_(), mm.arg_end.value_()
    frames = []
    for frame in prog.crashed_thread().stack_trace():
        try:
            sym = prog.symbol(frame.pc)
        except LookupError:
            continue
        frames.append([frame.pc, sym.name, sym.address])
    return {
        "bpf_progs": [p.aux.id.value_() for p in bpf_prog_for_each(prog)],
        "bpf_maps": [m.id.value_() for m in bpf_map_for_each(prog)],
        "frames": frames,  # the crashed thread's: pc, the symbol covering it, its address
        "crashed_pid": crashed.pid.value_(),
        "arg_start": start,
        "args": access_process_vm(crashed, start, end - start).hex(),
    }


def run(prog: drgn.Program, line: str) -> dict[str, object]:
    """One crash line's output (or drgn's error); an ``rd -r`` line's file as hex."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.bin")
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                run_command(prog, "crash " + line.replace(RAW, raw), globals={})
        except Exception as exc:  # the oracle's own failure is recorded, not fatal
            return {"line": line, "error": f"{type(exc).__name__}: {exc}"}
        answer: dict[str, object] = {"line": line}
        lines = buf.getvalue().replace(raw, RAW).splitlines(keepends=True)
        answer["count"] = len(lines)
        if len(lines) > 2 * KEEP:
            answer["head"] = "".join(lines[:KEEP])
            answer["tail"] = "".join(lines[-KEEP:])
        else:
            answer["out"] = "".join(lines)
        if os.path.exists(raw):
            with open(raw, "rb") as f:
                answer["raw"] = f.read().hex()
        return answer


def main() -> int:
    vmcore, vmlinux, out_path = sys.argv[1:4]
    prog = open_program(vmcore, vmlinux)
    answers: dict[str, object] = {"facts": facts(prog)}
    for key, line in command_lines(prog).items():
        answers[key] = run(prog, line)
    with open(out_path, "w") as f:
        json.dump(answers, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
