"""The arm64 lab end to end: Debian's arm64 cloud kernels in qemu-system-aarch64, the capture
kernel loaded by kdumpy's kexec_load loader, a sysrq panic, /proc/vmcore saved by the capture
kernel.

Oracles: the first kernel's serial console (its crashkernel reservation and panic), QEMU's
`-M virt` memory map (RAM from 0x40000000), pyelftools on the dump's ELF header, drgn 0.3.0
with Debian's -dbg vmlinux reading the dump cross-architecture (task names, utsname, the
kernel log, its own phys_to_virt), and the vmlinux's bytes at _stext.
"""

from __future__ import annotations

import os
import re

import pytest
from elftools.elf.elffile import ELFFile

from kdumpy.lab.dumps import capture_vmcore, lab_dump

RAM_BASE = 0x40000000  # QEMU -M virt
GiB = 1 << 30
# arm64-6.1 runs in CI; arm64-6.12 is in the full matrix: from a cold cache the pair cost
# 7.8 minutes on the loaded lab machine (downloads, -dbg vmlinux, initramfs, two cycles), over
# the 4 minutes CI can give it.  KDUMPY_ARM64_LAB_KERNELS picks others.
ARM64_KERNELS = tuple(os.environ.get("KDUMPY_ARM64_LAB_KERNELS", "arm64-6.1,arm64-6.12").split(","))
FULL_ONLY = ("arm64-6.12",)


def _marks(series: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.vm, pytest.mark.full] if series in FULL_ONLY else [pytest.mark.vm]


@pytest.fixture(scope="module", params=[pytest.param(k, marks=_marks(k)) for k in ARM64_KERNELS])
def arm64_dump(request):
    return lab_dump(request.param)


def first_kernel_console(serial: str) -> str:
    """The serial console up to the capture kernel's boot (its log restarts at 0.000000)."""
    panic = serial.index("Kernel panic - not syncing")
    restart = serial.find("Linux version", panic)
    return serial[:restart] if restart > 0 else serial


def reservations(console: str) -> list[tuple[int, int]]:
    """crashkernel ranges [start, end) the first kernel printed: the main one, then any low."""
    out = []
    for kind in ("", "low memory "):
        pattern = rf"crashkernel {kind}reserved: 0x([0-9a-f]+) - 0x([0-9a-f]+)"
        out += [(int(a, 16), int(b, 16)) for a, b in re.findall(pattern, console)]
    assert out, "no crashkernel reservation on the console"
    return out


def ram_outside(memory: int, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    ranges = [(RAM_BASE, RAM_BASE + memory)]
    for h0, h1 in sorted(holes):
        out = []
        for a, b in ranges:
            if b <= h0 or a >= h1:
                out.append((a, b))
                continue
            if a < h0:
                out.append((a, h0))
            if b > h1:
                out.append((h1, b))
        ranges = out
    return ranges


def program_headers(path) -> list:
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        assert elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_AARCH64"
        return [seg.header for seg in elf.iter_segments()]


def test_elf_header_matches_system_ram(arm64_dump):
    console = first_kernel_console(arm64_dump.serial_log.read_text(errors="replace"))
    loads = [h for h in program_headers(arm64_dump.vmcore) if h.p_type == "PT_LOAD"]
    ram = sorted((h.p_paddr, h.p_paddr + h.p_memsz) for h in loads[1:])
    assert ram == ram_outside(arm64_dump.memory, reservations(console))
    assert all(h.p_memsz <= arm64_dump.memory for h in loads)  # the 16 EiB header of 2.0.25
    kernel = loads[0]
    assert RAM_BASE <= kernel.p_paddr < kernel.p_paddr + kernel.p_memsz <= RAM_BASE + GiB
    assert arm64_dump.size == max(
        h.p_offset + h.p_filesz for h in program_headers(arm64_dump.vmcore)
    )


drgn = pytest.importorskip("drgn")


@pytest.fixture(scope="module")
def program(arm64_dump):
    prog = drgn.Program()
    prog.set_core_dump(str(arm64_dump.vmcore))
    prog.load_debug_info([str(arm64_dump.kernel.dbg_vmlinux())])
    return prog


def test_drgn_reads_tasks_and_release(arm64_dump, program):
    assert program.platform.arch == drgn.Architecture.AARCH64
    assert program["init_task"].comm.string_() == b"swapper/0"
    assert program["init_uts_ns"].name.release.string_().decode() == arm64_dump.kernel.release
    frames = [f.name for f in program.crashed_thread().stack_trace()]
    assert "sysrq_handle_crash" in frames


def test_workload_processes_in_their_states(program):
    """The x86_64 lab's workload, cross-compiled, ran in the first kernel (drgn's task list)."""
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import task_state_to_char

    states = {}
    for task in for_each_task(program):
        states.setdefault(task.comm.string_().decode(), set()).add(task_state_to_char(task))
    assert states["kdumpy-anon"] == {"S"} and states["kdumpy-zero"] == {"S"}
    assert states["kdumpy-dstate"] == {"D"} and states["kdumpy-vchild"] == {"S"}
    assert states["kdumpy-frozen"] == {"D"}  # a writer on the frozen ext4
    assert "S" in states["sleep"]


def test_linear_map_and_kernel_segment_agree_with_the_kernel(arm64_dump, program):
    from drgn.helpers.linux.mm import phys_to_virt

    loads = [h for h in program_headers(arm64_dump.vmcore) if h.p_type == "PT_LOAD"]
    for h in loads[1:]:
        assert phys_to_virt(program, h.p_paddr).value_() == h.p_vaddr
    # The kernel segment maps the image: through it, linux_banner (placed by the vmlinux's
    # symbols and the dump's KASLR offset) reads as the "Linux version" line on the console.
    kernel = loads[0]
    banner = program.symbol("linux_banner").address
    assert kernel.p_vaddr <= banner < kernel.p_vaddr + kernel.p_memsz
    console = arm64_dump.serial_log.read_text(errors="replace")
    expected = re.search(r"\] (Linux version [^\n]*)", console).group(1).strip()
    with open(arm64_dump.vmcore, "rb") as fh:
        fh.seek(kernel.p_offset + (banner - kernel.p_vaddr))
        text = fh.read(len(expected) + 1)
    assert text.decode(errors="replace") == expected + "\n"


def test_kernel_log_ends_with_the_console_panic(arm64_dump, program):
    from drgn.helpers.linux.printk import get_printk_records

    console = first_kernel_console(arm64_dump.serial_log.read_text(errors="replace"))
    panic = re.search(r"\] (Kernel panic - not syncing: .*)", console).group(1).strip()
    texts = [r.text.decode(errors="replace") for r in get_printk_records(program)]
    at = max(i for i, t in enumerate(texts) if t == panic)
    # Every record from the panic on was printed on the serial console, in order.
    lines = console[console.index(panic) :].splitlines()
    pos = 0
    for text in texts[at:]:
        first = text.splitlines()[0] if text else ""
        while pos < len(lines) and first not in lines[pos]:
            pos += 1
        assert pos < len(lines), f"record {first!r} not on the console after the panic"
    assert len(texts) - at < 80  # the panic is the end of the log, not its middle


@pytest.mark.vm
@pytest.mark.full
@pytest.mark.parametrize("crashkernel", ["256M,high", "256M,high 64M,low"])
def test_high_and_low_reservations(tmp_path, crashkernel):
    """A 4 GiB guest: ",high" goes above 4 GiB with a low part (128 MiB by default, or the
    ",low" size); the loader puts every segment in the high part, leaves both out of the ELF
    header and hands both to the capture kernel, which boots and sees the right /proc/vmcore.
    Only the header is kept (the whole dump would be 3.6 GiB)."""
    memory = 4 * GiB
    dump = capture_vmcore(
        "arm64-6.1", tmp_path / "vmcore", memory="4G", crashkernel=crashkernel, head_only=True
    )
    serial = dump.serial_log.read_text(errors="replace")
    console = first_kernel_console(serial)
    reserved = reservations(console)
    main = reserved[0]
    assert main[0] >= 4 * GiB
    if ",low" in crashkernel:
        assert reserved[1:] == [(reserved[1][0], reserved[1][0] + (64 << 20))]
    assert all(end <= 4 * GiB for _, end in reserved[1:])
    segments = re.findall(r"^(kernel|initrd|elfcorehdr|dtb|purgatory) +0x([0-9a-f]+)-0x([0-9a-f]+)",
                          serial, re.M)  # fmt: skip
    assert len(segments) == 5
    for _, start, end in segments:
        assert main[0] <= int(start, 16) < int(end, 16) <= main[1]
    # The capture kernel was given every reserved range as its memory, and nothing else.
    capture = serial[len(console) :]
    total_kib = int(re.search(r"Memory: \d+K/(\d+)K available", capture).group(1))
    assert total_kib << 10 == sum(end - start for start, end in reserved)
    headers = program_headers(dump.vmcore)
    loads = [h for h in headers if h.p_type == "PT_LOAD"]
    ram = sorted((h.p_paddr, h.p_paddr + h.p_memsz) for h in loads[1:])
    assert ram == ram_outside(memory, reserved)
    size = int(re.search(r"kdumpy-lab: vmcore size (\d+)", serial).group(1))
    assert size == max(h.p_offset + h.p_filesz for h in headers)
    assert dump.timings["panic_to_saved"] < 60  # the header alone, not 3.7 GiB


@pytest.mark.vm
@pytest.mark.full
@pytest.mark.parametrize(
    "crash, message",
    [
        ("hung", "hung_task: blocked tasks"),
        ("oom", "Out of memory: system-wide panic_on_oom is enabled"),
        ("init", "Attempted to kill init!"),
    ],
)
def test_other_crash_kinds(tmp_path, crash, message):
    """The x86_64 lab's other crash methods on arm64: the kernel panics as asked (its console
    says why) and the capture kernel, loaded by kdumpy, saves a sane dump."""
    dump = capture_vmcore("arm64-6.1", tmp_path / "vmcore", crash=crash)
    assert dump.panic_message.startswith(message)
    console = first_kernel_console(dump.serial_log.read_text(errors="replace"))
    loads = [h for h in program_headers(dump.vmcore) if h.p_type == "PT_LOAD"]
    ram = sorted((h.p_paddr, h.p_paddr + h.p_memsz) for h in loads[1:])
    assert ram == ram_outside(dump.memory, reservations(console))
