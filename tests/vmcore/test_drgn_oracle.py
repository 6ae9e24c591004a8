"""drgn 0.3.0 with the kernel's DWARF (the Debian -dbg vmlinux) as an independent reader:
its own NT_PRSTATUS parser for the crashed thread's registers, and its own printk ring
buffer walker (driven by DWARF types, not VMCOREINFO offsets) for the kernel log."""

from __future__ import annotations

import pytest

from kdumpy.vmcore import open_dump
from kdumpy.vmcore.dmesg import CALLER_CPU, records

pytestmark = pytest.mark.vm

# drgn's x86_64 register names -> user_regs_struct names.
DRGN_NAMES = {
    "rax": "ax", "rbx": "bx", "rcx": "cx", "rdx": "dx", "rsi": "si", "rdi": "di",
    "rbp": "bp", "rsp": "sp", "rip": "ip", "rflags": "flags", "fs.base": "fs_base",
    "gs.base": "gs_base", **{f"r{i}": f"r{i}" for i in range(8, 16)},
    **{s: s for s in ("cs", "ss", "ds", "es", "fs", "gs")},
}  # fmt: skip


@pytest.fixture(scope="module")
def dwarf_prog(lab_dump):  # noqa: ANN001, ANN201
    drgn = pytest.importorskip("drgn")
    try:
        vmlinux = lab_dump.kernel.dbg_vmlinux()
    except Exception as exc:  # download or extraction failure: no oracle, say why
        pytest.skip(f"no -dbg vmlinux for {lab_dump.kernel.release}: {exc}")
    if not vmlinux.exists():
        pytest.skip(f"lab returned {vmlinux}, which does not exist")
    prog = drgn.Program()
    prog.set_core_dump(str(lab_dump.vmcore))
    prog.load_debug_info([str(vmlinux)])
    return prog


def test_crashed_thread_registers(lab_dump, dwarf_prog) -> None:  # noqa: ANN001
    thread = dwarf_prog.crashed_thread()
    theirs = thread.stack_trace()[0].registers()
    with open_dump(lab_dump.vmcore) as dump:
        mine = [p for p in dump.prstatus if p.pid == thread.tid]
        assert len(mine) == 1
        for name, value in theirs.items():
            assert mine[0].regs[DRGN_NAMES[name]] == value, name


def test_log_records(lab_dump, dwarf_prog) -> None:  # noqa: ANN001
    from drgn.helpers.linux.printk import get_printk_records

    theirs = [
        (r.timestamp, r.text, r.caller_cpu, r.caller_tid) for r in get_printk_records(dwarf_prog)
    ]
    with open_dump(lab_dump.vmcore) as dump:
        mine = []
        for r in records(dump):
            cid = r.caller_id or 0
            cpu, tid = (cid & ~CALLER_CPU, None) if cid & CALLER_CPU else (None, cid)
            mine.append((r.ts_nsec, r.text, cpu, tid))
    assert len(theirs) > 300
    assert mine == theirs
