"""arm64 lab dumps against drgn 0.3.0 with the Debian dbg vmlinux (cross-arch).

The dumps are the arm64 lab's (``~/.cache/kdumpy/lab/dumps/arm64-*.vmcore``, made by
the arm64 QEMU lab): Debian 12's 6.1 (4K pages, 48-bit VAs, 4 levels) and Debian 13's
6.12 (52-bit VAs with LPA2, 5 levels), both with pointer authentication.  drgn reads
memory through its own translator and unwinds with the vmlinux's DWARF call-frame
information: independent of kdumpy's page-table walk and frame-record unwinder.  The
dumps are made on first use (cached); 6.1 runs in CI, 6.12 in the full matrix.
"""

from __future__ import annotations

import re
from pathlib import Path

import drgn
import pytest
from drgn.helpers.linux.mm import totalram_pages
from drgn.helpers.linux.sched import cpu_curr

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line
from kdumpy.analysis.helpers.system import ram_bytes
from kdumpy.analysis.helpers.tasks import active_tasks, for_each_task, panic_task
from kdumpy.analysis.unwind import stack_trace
from kdumpy.arch.arm64.unwind import Arm64Unwinder
from kdumpy.collect import CollectOptions, collect
from kdumpy.lab.dumps import lab_dump
from kdumpy.vmcore import open_dump

pytestmark = pytest.mark.vm

RELEASES = {"6.1": "6.1.0-50-cloud-arm64", "6.12": "6.12.117+deb13-cloud-arm64"}


def _lab_dump(version: str) -> tuple[Path, Path]:
    """The arm64 lab's sysrq dump of this kernel and its Debian dbg vmlinux."""
    made = lab_dump(f"arm64-{version}")
    assert made.kernel.release == RELEASES[version]
    return made.vmcore, made.kernel.dbg_vmlinux()


@pytest.fixture(scope="module", params=["6.1", pytest.param("6.12", marks=pytest.mark.full)])
def arm64_dump(request: pytest.FixtureRequest):  # noqa: ANN201
    dump_path, vmlinux = _lab_dump(request.param)
    prog = drgn.Program()
    prog.set_core_dump(str(dump_path))
    prog.load_debug_info([str(vmlinux)])
    with open_dump(dump_path) as dump:
        yield request.param, dump, prog


def test_layout_is_what_the_kernel_configs_say(arm64_dump) -> None:  # noqa: ANN001
    version, dump, _prog = arm64_dump
    tr = dump.translator
    assert dump.arch.name == "arm64" and dump.page_size == 4096
    # reach.md 6.2: Debian 12 4K/48-bit, 4 levels; Debian 13 52-bit LPA2, 5 levels.
    expected = (4, False) if version == "6.1" else (5, True)
    assert (tr.levels, tr.lpa2) == expected


def test_reads_match_drgn_in_every_region(arm64_dump) -> None:  # noqa: ANN001
    from drgn.helpers.linux.mm import pfn_to_page

    _version, dump, prog = arm64_dump
    thread = prog.crashed_thread()
    addresses = {
        "kernel image (init_task)": prog["init_task"].address_of_().value_(),
        "linear map (mem_section)": prog["mem_section"].value_(),
        "vmalloc (the crashed task's stack)": thread.stack_trace()[2].sp,
        "vmemmap (struct page of pfn 0x40100)": pfn_to_page(prog, 0x40100).value_(),
        "linear map (a task_struct)": thread.object.value_(),
    }
    for where, address in addresses.items():
        assert dump.read_virt(address, 256) == prog.read(address, 256), where
    page = pfn_to_page(prog, 0x40100).value_()
    assert page == dump.translator.vmemmap + 0x40100 * prog.type("struct page").size


def test_crashed_cpu_stack_matches_drgn(arm64_dump) -> None:  # noqa: ANN001
    """Frame records with PAC stripped give the physical frames drgn's DWARF unwinding
    gives (drgn repeats a pc for each function inlined there)."""
    _version, dump, prog = arm64_dump
    thread = prog.crashed_thread()
    expected: list[int] = []
    for frame in thread.stack_trace():
        if not expected or expected[-1] != frame.pc:
            expected.append(frame.pc)
    (prstatus,) = [p for p in dump.prstatus if p.pid == thread.tid]
    mask = (dump.vmcoreinfo.number("KERNELPACMASK") or 0) & ((1 << 64) - 1)
    frames = Arm64Unwinder(pac_mask=mask).walk(prstatus.regs, dump.read_virt)
    assert [f.regs["pc"] for f in frames] == expected
    assert len(expected) > 10  # down to the system call entry


def test_collected_kdump_reads_back_in_drgn(arm64_dump, tmp_path: Path) -> None:  # noqa: ANN001
    """kdumpy collect -d 31 -l on the arm64 dump: pages classified through arm64's
    vmemmap; drgn (libkdumpfile) reads every kept page back as the source has it."""
    version, dump, _prog = arm64_dump
    out = tmp_path / f"arm64-{version}.kdump"
    collect(dump.path, str(out), CollectOptions(dump_levels=[31], compression="lzo"))
    back = drgn.Program()
    back.set_core_dump(str(out))
    with open_dump(out) as written:
        assert written.header.machine == "aarch64" and written.arch.name == "arm64"
        # makedumpfile's get_phys_base_arm64 keeps NUMBER(PHYS_OFFSET) as phys_base
        assert written.sub_header.phys_base == dump.vmcoreinfo.number("PHYS_OFFSET")
        kept = [pfn for start, end in written.pfn_ranges() for pfn in range(start, end)]
    ram = sum(end - start for start, end in dump.ram_ranges())
    assert 0 < len(kept) < ram // 2  # free and cache pages were left out
    for pfn in kept:
        assert back.read(pfn << 12, 4096, True) == dump.read_pfn(pfn), f"pfn {pfn:#x}"


def test_every_task_backtrace_matches_drgn(arm64_dump) -> None:  # noqa: ANN001
    """``bt`` of every task through the analysis layer (PRSTATUS for the CPUs' tasks,
    ``thread.cpu_context`` for sleeping ones), symbols from the dbg vmlinux: the pcs
    drgn's DWARF unwinding gives (drgn repeats a pc per inlined function)."""
    version, dump, prog = arm64_dump
    with Program.open(dump.path, _lab_dump(version)[1]) as ours:
        compared = 0
        for task in for_each_task(ours):
            pid = int(task.pid)
            theirs: list[int] = []
            address = task.address_ if task.address_ is not None else int(task)
            their_task = drgn.Object(prog, "struct task_struct *", value=address)
            for frame in prog.stack_trace(their_task):
                if not theirs or theirs[-1] != frame.pc:
                    theirs.append(frame.pc)
            mine = [f.pc for f in stack_trace(ours, task)]
            assert mine == theirs, f"pid {pid}"
            compared += 1
    assert compared > 40


def test_frame_names_are_drgns_functions(arm64_dump) -> None:  # noqa: ANN001
    """Names of the crashed task's frames with symbols from the vmlinux (.symtab, which
    also holds arm64's $x/$d mapping symbols: never a frame's name) are the functions
    drgn's DWARF names at those pcs (the outermost of the inlined ones; GCC's
    .constprop/.isra clones carry the suffix in the symbol only)."""

    version, dump, prog = arm64_dump
    outer: dict[int, str] = {}
    for frame in prog.crashed_thread().stack_trace():
        if frame.name:
            outer[frame.pc] = frame.name  # the last frame at a pc is the real function
    with Program.open(dump.path, _lab_dump(version)[1]) as ours:
        task = panic_task(ours)
        assert task is not None
        names = [(f.pc, re.sub(r"\.(constprop|isra|part)\.\d+$", "", f.name))
                 for f in stack_trace(ours, task)]  # fmt: skip
    assert names == [(pc, outer[pc]) for pc, _ in names]


def test_sys_memory_is_the_guests(arm64_dump) -> None:  # noqa: ANN001
    """``sys``'s MEMORY is what the nodes span: the guest's 1 GiB (QEMU -m), not
    ``max_pfn`` pages, which on arm64 (RAM from PHYS_OFFSET = 1 GiB) said 2 GB."""
    version, dump, prog = arm64_dump
    node = prog["contig_page_data"] if "contig_page_data" in prog else prog["node_data"][0][0]
    spanned = node.node_spanned_pages.value_() * prog["PAGE_SIZE"].value_()
    assert totalram_pages(prog) * 4096 <= spanned == 1 << 30
    with Program.open(dump.path, _lab_dump(version)[1]) as ours:
        assert ram_bytes(ours) == spanned


def test_every_cpu_that_saved_registers_is_active(arm64_dump) -> None:  # noqa: ANN001
    """arm64's crash stop takes the other CPUs offline after they save their registers, so
    the online mask holds the panic CPU alone; ``bt -a`` showed only it.  Every CPU with a
    PRSTATUS note is active, its task drgn's ``cpu_curr`` and its first pc drgn's."""
    version, dump, prog = arm64_dump
    with Program.open(dump.path, _lab_dump(version)[1]) as ours:
        active = active_tasks(ours)
        assert sorted(active) == list(range(len(dump.prstatus))) == [0, 1]
        for cpu, task in active.items():
            theirs = cpu_curr(prog, cpu)
            assert int(task) == theirs.value_()
            assert stack_trace(ours, task)[0].pc == prog.stack_trace(theirs)[0].pc


def test_from_the_dump_alone_or_with_the_vmlinux(arm64_dump) -> None:  # noqa: ANN001
    """Debian 12's arm64 kernel keeps no data symbols in kallsyms (KALLSYMS_ALL off): from
    the dump alone ``log`` works and ``sys`` says precisely what it needs; with the dbg
    vmlinux ``sys`` reads the release drgn reads.  Debian 13's has them: ``sys`` works from
    the dump alone."""
    version, dump, prog = arm64_dump
    release = prog["init_uts_ns"].name.release.string_().decode()
    with Program.open(dump.path) as alone:
        session = Session(alone)
        assert "Kernel panic - not syncing" in run_line(session, "log")
        out = run_line(session, "sys")
        if version == "6.1":
            assert session.failed and "CONFIG_KALLSYMS_ALL; pass the vmlinux" in out, out
        else:
            assert f"RELEASE: {release}" in out, out
    with Program.open(dump.path, _lab_dump(version)[1]) as full:
        assert f"RELEASE: {release}" in run_line(Session(full), "sys")
