"""The analysis core against the reference: drgn 0.3.0 with the DWARF vmlinux.

Each lab kernel (5.10, 6.1, 6.12, 7) is crashed in QEMU; kdumpy reads the dump with nothing
but the dump (kallsyms, BTF and ORC from its memory) and must agree with drgn, which
reads the same dump with Debian's -dbg vmlinux, run in a subprocess.
"""

from __future__ import annotations

import pytest
from analysis_oracle import drgn_answers

from kdumpy.analysis import Program
from kdumpy.analysis.helpers.modules import for_each_module, module_name
from kdumpy.analysis.helpers.printk import kernel_log_text, log_records
from kdumpy.analysis.helpers.tasks import (
    cpu_of_active_task,
    for_each_task,
    panic_task,
    task_comm,
    task_state_to_char,
)
from kdumpy.analysis.unwind import Frame, stack_trace

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def prog(lab_dump):
    with Program.open(lab_dump.vmcore) as p:
        yield p


@pytest.fixture(scope="module")
def oracle(lab_dump):
    return drgn_answers(lab_dump)


def kernel_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.pc >> 63]


def assert_same_trace(ours: list[Frame], theirs: list[list], what: str) -> None:
    """Same program counters, frame by frame, and the same function: either the same
    name, or a kallsyms label inside drgn's (sized) ELF function symbol."""
    ours = kernel_frames(ours)
    assert [hex(f.pc) for f in ours] == [hex(t[1]) for t in theirs], what
    for frame, (name, _pc, start, size) in zip(ours, theirs, strict=True):
        if frame.name == name:
            continue
        assert frame.symbol is not None, f"{what}: no symbol for {frame.pc:#x} ({name})"
        inside = start <= frame.symbol.address < start + size
        assert inside, f"{what}: {frame.name} is not {name}"


def test_task_list_matches_drgn(prog, oracle):
    ours = sorted(
        (int(t.pid), task_comm(t), task_state_to_char(t), int(t)) for t in for_each_task(prog)
    )
    theirs = sorted((t["pid"], t["comm"], t["state"], t["address"]) for t in oracle["tasks"])
    assert ours == theirs
    assert len(ours) > 30


def test_panic_task_backtrace_matches_drgn(prog, oracle):
    task = panic_task(prog)
    assert task is not None
    assert int(task.pid) == oracle["crashed"]["pid"]
    assert_same_trace(stack_trace(prog, task), oracle["crashed"]["trace"], "panic task")


def test_sleeping_task_backtraces_match_drgn(prog, oracle):
    checked = 0
    for task in for_each_task(prog):
        if cpu_of_active_task(prog, task) is not None:
            continue
        pid = int(task.pid)
        theirs = oracle["traces"][str(pid)]
        assert_same_trace(stack_trace(prog, task), theirs, f"pid {pid} {task_comm(task)}")
        checked += 1
    assert checked > 20


def test_module_list_matches_drgn(prog, oracle):
    assert [module_name(m) for m in for_each_module(prog)] == oracle["modules"]


def test_log_identical_to_drgn(prog, oracle):
    assert kernel_log_text(prog) == oracle["dmesg"]


def test_log_matches_serial_console_up_to_the_panic(prog, lab_dump):
    """What the guest's serial console printed up to the panic is in the log, in
    order.  (The console shows only messages under the console log level, so the
    log holds more: debug messages such as e820 updates.)"""
    # The console repeats the time stamp on each line of a multi-line record.
    ours = []
    for rec in log_records(prog):
        secs, rem = divmod(rec.ts_nsec, 1_000_000_000)
        for text in rec.text.decode("utf-8", "replace").split("\n"):
            ours.append(f"[{secs:5d}.{rem // 1000:06d}] {text}".rstrip())
    console = []
    for line in lab_dump.serial_log.read_text(errors="replace").replace("\r", "").splitlines():
        at = line.find("[")
        if at >= 0 and line[at:].startswith("[") and "] " in line[at:]:
            console.append(line[at:].rstrip())
            if "Kernel panic - not syncing" in line:
                break
    assert console and "Kernel panic - not syncing" in console[-1]
    pos = 0
    for line in console:
        while pos < len(ours) and ours[pos] != line:
            pos += 1
        assert pos < len(ours), f"console line missing from the dump's log: {line!r}"
        pos += 1


def test_init_task_fields_match_drgn(prog, oracle):
    init = prog.object("init_task")
    compared = 0
    for name, value in oracle["init_task"].items():
        ours = init.member_(name)
        got = ours.string_().decode("utf-8", "replace") if isinstance(value, str) else int(ours)
        if not isinstance(value, str) and value < 0:
            got = got - (1 << (8 * ours.type_.size)) if got > value and got >> 63 else got
        assert got == value, f"init_task.{name}"
        compared += 1
    assert compared > 40


def test_init_uts_ns_matches_drgn(prog, oracle):
    uts = prog.object("init_uts_ns")
    for name, value in oracle["init_uts_ns"].items():
        assert uts.name.member_(name).string_().decode() == value, name
    for name, value in oracle["uts_ns_scalars"].items():
        assert int(uts.member_(name)) == value, name
    assert uts.name.release.string_().decode() == prog.info.osrelease


def test_rss_of_every_task_matches_drgn(prog, oracle):
    from kdumpy.analysis.helpers.mm import task_rss_vsz

    page_kb = prog.dump.page_size // 1024
    ours = {int(t.pid): task_rss_vsz(prog, t)[0] // page_kb for t in for_each_task(prog)}
    theirs = {t["pid"]: t["rss"] for t in oracle["tasks"]}
    assert ours == theirs
    assert sum(ours.values()) > 1000


def test_open_files_match_drgn(prog, oracle):
    from kdumpy.analysis.helpers.files import task_files

    checked = 0
    for task in for_each_task(prog):
        ours = [[fd, path] for fd, _f, _d, _i, _kind, path in task_files(prog, task)]
        theirs = oracle["files"][str(int(task.pid))]
        # drgn lists descriptors by the open_fds bitmap: a descriptor reserved by an
        # open() still in progress has no file yet (its d_path faults); crash and
        # kdumpy list only installed files.
        theirs = [[fd, p] for fd, p in theirs if not p.startswith("error:")]
        assert [fd for fd, _ in ours] == [fd for fd, _ in theirs], int(task.pid)
        for (fd, path), (_, their_path) in zip(ours, theirs, strict=True):
            # Sockets and pipes are named by their filesystem (d_dname), not a path.
            if not their_path.startswith(("socket:", "pipe:", "anon_inode:")):
                assert path == their_path, (int(task.pid), fd)
            checked += 1
    assert checked > 10


def test_running_task_of_each_cpu_and_totalram_match_drgn(prog, oracle):
    from kdumpy.analysis.helpers.mm import totalram_pages
    from kdumpy.analysis.helpers.tasks import cpu_curr

    for cpu, pid in oracle["cpu_curr"].items():
        assert int(cpu_curr(prog, int(cpu)).pid) == pid
    assert totalram_pages(prog) == oracle["totalram_pages"]


def test_pid_idr_finds_the_same_tasks_as_drgn(prog, oracle):
    """The pid namespace's IDR (a second, independent path to every task)."""
    from kdumpy.analysis.helpers.pid import for_each_pid, pid_task

    tasks = [pid_task(prog, pid) for pid in for_each_pid(prog)]
    ours = sorted((int(t.pid), int(t)) for t in tasks if t is not None)
    assert ours == sorted((t["pid"], t["address"]) for t in oracle["tasks"])


def test_module_types_come_from_module_btf(prog, lab_dump):
    """Module BTF is split BTF on top of vmlinux's: a type defined only by the
    virtio_blk module resolves, and its 'vdev' member points at a struct
    virtio_device (a vmlinux type).  No oracle has these types without module
    debug info, so this checks the wiring, not values."""
    if lab_dump.kernel.config("DEBUG_INFO_BTF_MODULES") != "y":
        pytest.skip("module BTF needs Linux >= 5.11 (CONFIG_DEBUG_INFO_BTF_MODULES)")
    prog.load_modules()
    t = prog.type("struct virtio_blk").strip()
    member = t.member("vdev")
    assert member is not None
    assert member[0].type.strip().target.strip().name == "virtio_device"
