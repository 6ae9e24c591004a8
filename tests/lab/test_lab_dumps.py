"""The lab's dumps are what a real capture kernel saw: checked against independent records.

Oracles: the ELF parser of pyelftools (not ours), the Debian package's kernel release string,
and the first kernel's serial console (its e820 memory map and crashkernel reservation, and the
panic message).
"""

from __future__ import annotations

import re

import pytest
from elftools.elf.elffile import ELFFile

START_KERNEL_MAP = 0xFFFFFFFF80000000
PAGE = 4096


def first_kernel_console(serial: str) -> str:
    """The serial console up to the capture kernel's boot (its log restarts at 0.000000)."""
    panic = serial.index("Kernel panic - not syncing")
    restart = serial.find("Linux version", panic)
    return serial[:restart] if restart > 0 else serial


def usable_ram(console: str) -> list[tuple[int, int]]:
    ranges = []
    # "usable" until 6.x; "System RAM" in 7.x's reworded e820 table.
    pattern = r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\]\s+(?:usable|System RAM)"
    for m in re.finditer(pattern, console):
        ranges.append((int(m.group(1), 16), int(m.group(2), 16) + 1))
    return ranges


def crashkernel_range(console: str) -> tuple[int, int]:
    # 6.1: "Reserving 256MB of memory at 752MB for crashkernel (System RAM: 1023MB)"
    m = re.search(r"Reserving (\d+)MB of memory at (\d+)MB for crashkernel", console)
    if m:
        size, start = int(m.group(1)) << 20, int(m.group(2)) << 20
        return start, start + size
    # 6.12+: "crashkernel reserved: 0x0000000024000000 - 0x0000000034000000 (256 MB)"
    m = re.search(r"crashkernel reserved: 0x([0-9a-f]+) - 0x([0-9a-f]+)", console)
    assert m, "no crashkernel reservation on the console"
    return int(m.group(1), 16), int(m.group(2), 16)


def subtract(ranges: list[tuple[int, int]], hole: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    for a, b in ranges:
        if b <= hole[0] or a >= hole[1]:
            out.append((a, b))
            continue
        if a < hole[0]:
            out.append((a, hole[0]))
        if b > hole[1]:
            out.append((hole[1], b))
    return out


def vmcoreinfo(elf: ELFFile) -> dict[str, str]:
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_NOTE":
            continue
        for note in seg.iter_notes():
            if note["n_name"] == "VMCOREINFO":
                desc = note["n_desc"]
                text = desc if isinstance(desc, str) else desc.decode()
                return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    raise AssertionError("no VMCOREINFO note")


def test_vmcore_is_an_elf_core_of_the_booted_kernel(lab_dump):
    with open(lab_dump.vmcore, "rb") as fh:
        elf = ELFFile(fh)
        assert elf["e_type"] == "ET_CORE"
        assert elf["e_machine"] == "EM_X86_64"
        info = vmcoreinfo(elf)
    assert info["OSRELEASE"] == lab_dump.kernel.release
    assert int(info["PAGESIZE"]) == PAGE
    assert "CRASHTIME" in info


def test_pt_loads_cover_guest_ram_minus_the_reservation(lab_dump):
    console = first_kernel_console(lab_dump.serial_log.read_text(errors="replace"))
    expected = usable_ram(console)
    # The kernel leaves the first MiB out of /proc/vmcore (x86 keeps it for the BIOS and
    # real-mode trampolines; the capture kernel reuses it).
    expected = subtract(expected, (0, 1 << 20))
    expected = subtract(expected, crashkernel_range(console))
    expected = [(a, b - (b % PAGE)) for a, b in expected if b - a >= PAGE]
    with open(lab_dump.vmcore, "rb") as fh:
        elf = ELFFile(fh)
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        ram = sorted(
            (s["p_paddr"], s["p_paddr"] + s["p_memsz"])
            for s in loads
            if s["p_vaddr"] < START_KERNEL_MAP
        )
        text = [s for s in loads if s["p_vaddr"] >= START_KERNEL_MAP]
        assert all(s["p_filesz"] == s["p_memsz"] for s in loads)
        size = max(s["p_offset"] + s["p_filesz"] for s in loads)
    assert ram == expected
    assert len(text) == 1, "one PT_LOAD for the kernel text mapping"
    assert lab_dump.vmcore.stat().st_size == size


def test_crash_reason_is_on_the_serial_console(lab_dump):
    serial = lab_dump.serial_log.read_text(errors="replace")
    assert "sysrq: Trigger a crash" in serial
    assert "Kernel panic - not syncing: sysrq triggered crash" in serial
    assert lab_dump.panic_message == "sysrq triggered crash"
    # The workload ran and the capture kernel booted from the reservation.
    for marker in (
        "workload ready",
        "capture kernel loaded (1)",
        "capture kernel up",
        "vmcore saved",
    ):
        assert f"kdumpy-lab: {marker}" in serial
    assert "elfcorehdr=" in serial


def test_dump_is_private(lab_dump):
    assert lab_dump.vmcore.stat().st_mode & 0o777 == 0o600


@pytest.mark.vm
def test_workload_processes_are_running(lab_dump_61):
    """The known processes the later tests look for are alive at the crash (from the log)."""
    serial = lab_dump_61.serial_log.read_text(errors="replace")
    assert "EXT4-fs (vdb): mounted filesystem" in serial
    assert "workload disk missing" not in serial
    assert "failed" not in "".join(ln for ln in serial.splitlines() if "kdumpy-lab:" in ln)


# What the kernel itself says for each way the lab crashes a guest: panic() callers in
# mm/oom_kill.c check_panic_on_oom, kernel/hung_task.c, kernel/exit.c (init exits),
# kernel/panic.c check_panic_on_warn; and the oops report lines of arch/x86/mm/fault.c
# (NULL dereference) and lib/bug.c (BUG()), which go straight to the capture kernel.
CRASH_MESSAGES = {
    "oom": "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled",
    "hung": "Kernel panic - not syncing: hung_task: blocked tasks",
    "init": "Kernel panic - not syncing: Attempted to kill init!",
    "null": "BUG: kernel NULL pointer dereference, address: 0000000000000020",
    "bug": "kernel BUG at ",
    "warn": "Kernel panic - not syncing: kernel: panic_on_warn set",
}


@pytest.mark.vm
@pytest.mark.parametrize("crash", sorted(CRASH_MESSAGES))
def test_other_crash_methods(crash):
    from kdumpy.lab.dumps import lab_dump

    dump = lab_dump("6.1", crash=crash)
    serial = dump.serial_log.read_text(errors="replace")
    assert f"kdumpy-lab: crashing by {crash}" in serial
    assert CRASH_MESSAGES[crash] in serial
    assert CRASH_MESSAGES[crash].removeprefix("Kernel panic - not syncing: ") in dump.panic_message
    with open(dump.vmcore, "rb") as fh:
        assert vmcoreinfo(ELFFile(fh))["OSRELEASE"] == dump.kernel.release
    if crash == "hung":
        assert "INFO: task kdumpy-frozen:" in serial
    if crash in ("null", "bug", "warn"):
        # The test module taints the kernel (out-of-tree, unsigned) and is in the oops.
        assert "kdumpy_crash: loading out-of-tree module taints kernel." in serial
        assert f"kdumpy_crash_{crash}" in serial


@pytest.mark.vm
@pytest.mark.parametrize(("memory", "crashkernel"), [("512M", "160M"), ("4G", "256M")])
def test_guest_memory_sizes(memory, crashkernel):
    """The smallest and a large guest: the dump covers what the console says the RAM is."""
    from kdumpy.lab.dumps import lab_dump

    dump = lab_dump("6.1", memory=memory, crashkernel=crashkernel)
    console = first_kernel_console(dump.serial_log.read_text(errors="replace"))
    expected = subtract(subtract(usable_ram(console), (0, 1 << 20)), crashkernel_range(console))
    start, end = crashkernel_range(console)
    assert end - start == int(crashkernel[:-1]) << 20
    with open(dump.vmcore, "rb") as fh:
        loads = [s for s in ELFFile(fh).iter_segments() if s["p_type"] == "PT_LOAD"]
        ram = sum(s["p_memsz"] for s in loads if s["p_vaddr"] < START_KERNEL_MAP)
    assert ram == sum((b - b % PAGE) - a for a, b in expected)
