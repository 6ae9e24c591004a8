"""Reach on real kernels: kallsyms found by scanning each lab kernel's image in its dump.

The oracle is binutils' ``nm`` on Debian's -dbg vmlinux of the same build, moved by the
dump's KERNELOFFSET (KASLR): every symbol the scan finds must be there, at that address.
Linux 5.10 (Debian 11) exports no kallsyms in VMCOREINFO, so the scan is its only way;
on 6.0+ the scan must also equal what VMCOREINFO points at.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from analysis_oracle import drgn_answers

from kdumpy.analysis import Program
from kdumpy.analysis.helpers.tasks import panic_task
from kdumpy.analysis.kallsyms import Kallsyms
from kdumpy.analysis.kallsyms_scan import kallsyms_from_image
from kdumpy.analysis.memory import KernelMemory
from kdumpy.analysis.unwind import stack_trace
from kdumpy.vmcore import open_dump

pytestmark = pytest.mark.vm


def nm_symbols(vmlinux) -> dict[tuple[str, int], str]:
    """``(name, link address) -> type`` from ``nm``."""
    out = subprocess.run(["nm", str(vmlinux)], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            table[(parts[2], int(parts[0], 16))] = parts[1]
    return table


def test_scanned_kallsyms_match_nm_of_the_dbg_vmlinux(lab_dump):
    with open_dump(lab_dump.vmcore) as dump:
        info = dump.vmcoreinfo
        start = time.perf_counter()
        k = kallsyms_from_image(dump.read_phys, dump.translator.vtop, info)
        elapsed = time.perf_counter() - start
        if info.symbol("kallsyms_names") is not None:
            ref = Kallsyms.from_vmcoreinfo(info, KernelMemory(dump).read)
            assert k.names == ref.names
            assert np.array_equal(k.addresses, ref.addresses)
        offset = int(info.get("KERNELOFFSET") or "0", 16)
    assert elapsed < 2.0, f"scan took {elapsed:.2f} s"  # 0.3 s measured; a loaded host
    nm = nm_symbols(lab_dump.kernel.dbg_vmlinux())
    assert len(k) > 50_000
    missing = []
    for name, kind, addr in zip(k.names, k.types, k.addresses.tolist(), strict=True):
        link = addr if addr < 1 << 63 else addr - offset  # per-CPU offsets do not move
        if (name, link) not in nm:
            missing.append(f"{kind} {name} {addr:#x}")
    assert not missing[:20], f"{len(missing)} of {len(k)} not in nm"


def kdumpy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kdumpy", *args], capture_output=True, text=True, timeout=300
    )


def test_crash_with_the_vmlinux_either_order_agrees_with_drgn(lab_dump):
    """``kdumpy crash VMLINUX DUMP`` and ``DUMP VMLINUX``: the panic task's backtrace
    is drgn's (with the same vmlinux), frame by frame."""
    oracle = drgn_answers(lab_dump)
    vmlinux = str(lab_dump.kernel.dbg_vmlinux())
    theirs = [t[0] for t in oracle["crashed"]["trace"]]
    for files in ((vmlinux, str(lab_dump.vmcore)), (str(lab_dump.vmcore), vmlinux)):
        result = kdumpy("crash", *files, "-c", "bt")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        frames = [ln.split("] ")[1].split()[0] for ln in lines if ln.lstrip().startswith("#")]
        # The closest symbol names a pc, as crash does: a label inside drgn's (sized)
        # function for the syscall entry (entry_SYSCALL_64_after_hwframe).
        assert frames[:-1] == theirs[:-1]
        assert frames[-1].startswith(theirs[-1])


def test_system_map_gives_the_same_symbols_and_a_wrong_one_is_refused(lab_dump, tmp_path):
    vmlinux = lab_dump.kernel.dbg_vmlinux()
    out = subprocess.run(["nm", "-n", str(vmlinux)], capture_output=True, text=True, check=True)
    smap = tmp_path / f"System.map-{lab_dump.kernel.release}"
    smap.write_text(out.stdout)
    with Program.open_files([str(smap), str(lab_dump.vmcore)]) as prog:
        with_map = [(f.pc, f.name) for f in stack_trace(prog, panic_task(prog))]
    with Program.open(lab_dump.vmcore) as prog:
        alone = [(f.pc, f.name) for f in stack_trace(prog, panic_task(prog))]
    assert [pc for pc, _ in with_map] == [pc for pc, _ in alone]
    # Shift every address: a System.map of another build.
    shifted = tmp_path / "System.map-other"
    shifted.write_text(
        "".join(
            f"{(int(a, 16) + 0x200000) & (1 << 64) - 1:016x} {t} {n}\n"
            for a, t, n in (ln.split() for ln in out.stdout.splitlines())
        )
    )
    result = kdumpy("crash", str(lab_dump.vmcore), str(shifted), "-c", "bt")
    assert result.returncode != 0
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"does not match {lab_dump.vmcore} ({lab_dump.kernel.release})" in err


def test_without_types_symbol_and_memory_commands_still_work(lab_dump, tmp_path):
    """No BTF and no vmlinux (a System.map of a kernel without CONFIG_DEBUG_INFO_BTF,
    made here by leaving __start_BTF out): log, sym, rd, dis and bt answer; what needs
    types says in one line that they are missing and what to pass."""
    vmlinux = lab_dump.kernel.dbg_vmlinux()
    out = subprocess.run(["nm", "-n", str(vmlinux)], capture_output=True, text=True, check=True)
    smap = tmp_path / "System.map"
    smap.write_text("".join(ln + "\n" for ln in out.stdout.splitlines() if "_BTF" not in ln))
    oracle = drgn_answers(lab_dump)
    dump = str(lab_dump.vmcore)
    for cmd, expect in (
        ("sym init_task", "init_task"),
        ("log", "sysrq: Trigger a crash"),
        ("rd linux_banner 2", "Linux ve"),
        ("dis sysrq_handle_crash 2", "<sysrq_handle_crash>"),
    ):
        result = kdumpy("crash", str(smap), dump, "-c", cmd)
        assert result.returncode == 0 and expect in result.stdout, (cmd, result.stdout[-300:])
    result = kdumpy("crash", str(smap), dump, "-c", "bt")
    frames = [ln.split("] ")[1].split()[0] for ln in result.stdout.splitlines()[1:]]
    theirs = [t[0] for t in oracle["crashed"]["trace"]]
    assert frames[:-1] == theirs[:-1]
    assert "types missing" in result.stdout.splitlines()[0]
    result = kdumpy("crash", str(smap), dump, "-c", "struct task_struct")
    assert result.stdout.count("\n") == 1
    assert "types missing" in result.stdout and "kdumpy crash VMLINUX DUMP" in result.stdout


def test_types_from_the_vmlinux_dwarf_match_the_kernels_btf(lab_dump, monkeypatch, tmp_path):
    """Where the dump has no BTF, pahole turns the vmlinux's DWARF into BTF: its
    task_struct must have the kernel's own BTF layout (the oracle).  One pahole run
    per kernel (~25 s), then cached by build id."""
    from kdumpy.analysis.symfile import load_vmlinux

    vmlinux = str(lab_dump.kernel.dbg_vmlinux())
    with Program.open(lab_dump.vmcore) as prog:
        want = {m.name: (off, m.type.strip().size) for m, off in _members(prog)}
    sf = load_vmlinux(vmlinux)
    keep = [i for i, n in enumerate(sf.names) if "_BTF" not in n]
    sf.names = [sf.names[i] for i in keep]
    sf.types = [sf.types[i] for i in keep]
    sf.addresses = [sf.addresses[i] for i in keep]
    sf.sizes = [sf.sizes[i] for i in keep]
    with open_dump(lab_dump.vmcore) as dump:
        prog = Program(dump, str(lab_dump.vmcore), sf)
        assert "BTF from DWARF" in prog.btf.source
        got = {m.name: (off, m.type.strip().size) for m, off in _members(prog)}
    assert got == want


def _members(prog: Program) -> list:
    t = prog.type("struct task_struct").strip()
    return [(m, m.bit_offset // 8) for m in t.members if m.name]
