"""kdumpy's arm64 kexec_load loader: segments, ELF core header, device tree, purgatory.

Inputs are built here: /proc/iomem text as a 1 GiB QEMU virt guest prints it (and one with a
`,high` + `,low` reservation), VMCOREINFO entries, a device tree compiled by dtc or dumped by
QEMU.  Oracles: the rules the kernel's kexec_load applies (kernel/kexec_core.c
sanity_check_segment_list: page-aligned, disjoint, inside crashk_res, at most 16), arm64's
booting.rst (Image at a 2 MiB-aligned base + text_offset; dtb 8-byte aligned, not crossing 2
MiB), pyelftools reading the ELF core header, dtc decompiling the device tree, capstone
disassembling the purgatory.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from kdumpy.arch.arm64.image import parse_image
from kdumpy.arch.arm64.kexec_load import (
    CrashSystem,
    LoadError,
    capture_dtb,
    elfcorehdr,
    kcore_vmcoreinfo,
    kexec_load,
    parse_iomem,
    plan_capture,
    purgatory,
    read_system,
)
from kdumpy.lab.arm64 import loader_modules

MiB = 1 << 20
PAGE = 4096
VA_BITS = 48
PHYS_OFFSET = 0x40000000
KIMAGE_VOFFSET = 0xFFFF67C4D8400000
STEXT_PA = 0x40210000
STEXT = STEXT_PA + KIMAGE_VOFFSET

# A 1 GiB `-M virt` guest with crashkernel=256M (6.1.0-50-cloud-arm64's /proc/iomem).
IOMEM = """\
09000000-09000fff : pl011@9000000
  09000000-09000fff : 9000000.pl011 pl011@9000000
10000000-3efeffff : pcie@10000000
40000000-7fffffff : System RAM
  40210000-4157ffff : Kernel code
  41580000-419fffff : reserved
  41a00000-41c9ffff : Kernel data
  48000000-480fefff : reserved
  6ac00000-7abfffff : Crash kernel
  7ac00000-7fbfffff : reserved
4010000000-401fffffff : PCI ECAM
"""
CRASH = (0x6AC00000, 0x7AC00000)
# A 5 GiB guest with crashkernel=256M,high: the main region above 4 GiB, 128 MiB low.
IOMEM_HIGH = """\
40000000-13fffffff : System RAM
  40210000-4157ffff : Kernel code
  41a00000-41c9ffff : Kernel data
  b8000000-bfffffff : Crash kernel
  12f000000-13effffff : Crash kernel
"""

DTS = """/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    compatible = "linux,dummy-virt";
    memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x40000000>; };
    chosen {
        bootargs = "console=ttyAMA0 crashkernel=256M";
        kaslr-seed = <0x11111111 0x22222222>;
        linux,initrd-start = <0x0 0x48000000>;
        linux,initrd-end = <0x0 0x480ff000>;
        stdout-path = "/pl011@9000000";
    };
};
"""

needs_dtc = pytest.mark.skipif(shutil.which("dtc") is None, reason="needs dtc")


def dtc(source: str, inform: str = "dts", outform: str = "dtb") -> bytes:
    proc = subprocess.run(
        ["dtc", "-q", "-I", inform, "-O", outform],
        input=source.encode() if isinstance(source, str) else source,
        capture_output=True,
        check=True,
    )
    return proc.stdout


def decompile(blob: bytes) -> str:
    return subprocess.run(
        ["dtc", "-q", "-I", "dtb", "-O", "dts"], input=blob, capture_output=True, check=True
    ).stdout.decode()


def system(iomem: str = IOMEM, crash_size: int = 256 * MiB, fdt: bytes = b"") -> CrashSystem:
    info = {
        "NUMBER(VA_BITS)": str(VA_BITS),
        "NUMBER(PHYS_OFFSET)": f"{PHYS_OFFSET:#x}",
        "NUMBER(kimage_voffset)": f"{KIMAGE_VOFFSET:#x}",
        "SYMBOL(_stext)": f"{STEXT:x}",
    }
    return CrashSystem(
        iomem=parse_iomem(iomem),
        crash_size=crash_size,
        vmcoreinfo=info,
        vmcoreinfo_note=(0x42330000, 0x1024),
        cpu_notes=[(0x7FBCF000, 0x1A8), (0x7FBDF000, 0x1A8)],
        fdt=fdt,
    )


def image(image_size: int = 0x1AB0000, length: int = 0x19F0000, text_offset: int = 0) -> bytes:
    header = struct.pack(
        "<IIQQQQQQ4sI", 0x5A4D, 0, text_offset, image_size, 0b1010, 0, 0, 0, b"ARM\x64", 0x40
    )
    return header + bytes(length - len(header))


def test_purgatory_disassembles_to_the_handoff():
    code = purgatory(dtb=0x6C7B1000, entry=0x6AC00000)
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    insns = [f"{i.mnemonic} {i.op_str}" for i in md.disasm(code[:24], 0)]
    assert insns == ["ldr x0, #0x18", "mov x1, xzr", "mov x2, xzr", "mov x3, xzr",
                     "ldr x4, #0x20", "br x4"]  # fmt: skip
    assert struct.unpack_from("<QQ", code, 0x18) == (0x6C7B1000, 0x6AC00000)


def test_elf_core_header_covers_ram_outside_crashkernel():
    sysm = system()
    with ELFFile(io.BytesIO(elfcorehdr(sysm))) as elf:
        assert elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_AARCH64"
        segs = [s.header for s in elf.iter_segments()]
    notes = [(s.p_paddr, s.p_filesz) for s in segs if s.p_type == "PT_NOTE"]
    assert notes == [(0x7FBCF000, 0x1A8), (0x7FBDF000, 0x1A8), (0x42330000, 0x1024)]
    loads = [s for s in segs if s.p_type == "PT_LOAD"]
    # The kernel image: _stext's physical address is /proc/iomem's "Kernel code".
    assert (loads[0].p_vaddr, loads[0].p_paddr) == (STEXT, 0x40210000)
    assert loads[0].p_memsz == 0x41CA0000 - 0x40210000
    # RAM 0x40000000-0x80000000 minus the crashkernel region, in the linear map.
    ram = [(s.p_paddr, s.p_paddr + s.p_memsz) for s in loads[1:]]
    assert ram == [(0x40000000, CRASH[0]), (CRASH[1], 0x80000000)]
    page_offset = (1 << 64) - (1 << VA_BITS)
    for s in loads[1:]:
        assert s.p_vaddr == s.p_paddr - PHYS_OFFSET + page_offset
        assert s.p_offset == s.p_paddr and s.p_filesz == s.p_memsz
    assert sum(s.p_memsz for s in loads[1:]) == (1 << 30) - (256 * MiB)


def test_kernel_code_from_text():
    """6.12's /proc/iomem starts "Kernel code" at _text (64 KiB before _stext): the kernel
    segment starts there too, at the same offset from kimage_voffset."""
    sysm = system(IOMEM.replace("40210000-4157ffff", "40200000-4157ffff"))
    vaddr, paddr, size = sysm.kernel_segment()
    assert (paddr, vaddr, size) == (0x40200000, STEXT - 0x10000, 0x41CA0000 - 0x40200000)


def test_high_and_low_reservations_both_left_out():
    sysm = system(IOMEM_HIGH, crash_size=256 * MiB)
    main, low = sysm.crash_regions()
    assert main == (0x12F000000, 0x13F000000) and low == (0xB8000000, 0xC0000000)
    with ELFFile(io.BytesIO(elfcorehdr(sysm))) as elf:
        ram = [(s.header.p_paddr, s.header.p_paddr + s.header.p_memsz)
               for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"][1:]  # fmt: skip
    assert ram == [(0x40000000, 0xB8000000), (0xC0000000, 0x12F000000), (0x13F000000, 0x140000000)]


@pytest.mark.parametrize(
    "iomem, kernel, message",
    [
        (IOMEM.replace("Crash kernel", "reserved"), image(), "no crashkernel memory"),
        (IOMEM.replace("40210000-4157ffff", "40220000-4157ffff"), image(), "outside the kernel"),
        (IOMEM.replace("Kernel data", "reserved"), image(), "no 'Kernel code' or 'Kernel data'"),
        (IOMEM.replace("6ac00000-7abfffff", "6ac00000-6bbfffff"), image(), "reserve more"),
    ],
    ids=["no-crashkernel", "stext-mismatch", "no-kernel-data", "too-small"],
)
@needs_dtc
def test_refusals_are_one_line(iomem, kernel, message):
    size = 16 * MiB if "6bbfffff" in iomem else 256 * MiB
    sysm = system(iomem, size, fdt=dtc(DTS))
    with pytest.raises(LoadError) as err:
        plan_capture(sysm, parse_image(kernel, "Image"), None, "console=ttyAMA0")
    assert message in str(err.value) and "\n" not in str(err.value)


@needs_dtc
@pytest.mark.parametrize(
    "iomem, crash_size", [(IOMEM, 256 * MiB), (IOMEM_HIGH, 256 * MiB)], ids=["low", "high"]
)
@pytest.mark.parametrize("text_offset", [0, 0x80000])
def test_segments_obey_kexec_load_rules(iomem, crash_size, text_offset):
    sysm = system(iomem, crash_size, fdt=dtc(DTS))
    initrd = bytes(3 * MiB + 123)
    img = parse_image(image(text_offset=text_offset), "Image")
    plan = plan_capture(sysm, img, initrd, "console=ttyAMA0 nr_cpus=1", b"seedseed")
    start, end = sysm.crash_regions()[0]
    segs = plan.segments
    assert len(segs) <= 16
    for seg in segs:
        assert seg.mem % PAGE == 0 and seg.memsz % PAGE == 0
        assert start <= seg.mem and seg.mem + seg.memsz <= end
        assert len(seg.data) <= seg.memsz
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.mem + a.memsz <= b.mem
    by_name = {s.name: s for s in segs}
    kernel = by_name["kernel"]
    assert (kernel.mem - text_offset) % (2 * MiB) == 0 and kernel.memsz >= img.image_size
    dtb = by_name["dtb"]
    assert dtb.mem % 8 == 0 and dtb.mem // (2 * MiB) == (dtb.mem + len(dtb.data) - 1) // (2 * MiB)
    purg = by_name["purgatory"]
    assert plan.entry == purg.mem
    assert struct.unpack_from("<QQ", purg.data, 0x18) == (dtb.mem, kernel.mem)
    # The device tree hands the capture kernel its initrd, core header and memory.
    dts = decompile(dtb.data)
    hdr = by_name["elfcorehdr"]
    assert f"linux,elfcorehdr = <{cells(hdr.mem, 2)} {cells(hdr.memsz, 2)}>" in dts
    initrd_seg = by_name["initrd"]
    assert f"linux,initrd-start = <{cells(initrd_seg.mem, 2)}>" in dts
    assert f"linux,initrd-end = <{cells(initrd_seg.mem + len(initrd), 2)}>" in dts
    main, low = sysm.crash_regions()
    ranges = [main] + ([low] if low else [])
    usable = " ".join(cells(a, 2) + " " + cells(b - a, 2) for a, b in ranges)
    assert f"linux,usable-memory-range = <{usable}>" in dts
    assert hdr.data == elfcorehdr(sysm)


def cells(value: int, count: int) -> str:
    """*value* as dtc prints *count* 32-bit cells."""
    return " ".join(f"0x{(value >> (32 * i)) & 0xFFFFFFFF:02x}" for i in reversed(range(count)))


def without_chosen(dts: str) -> str:
    out, skip = [], False
    for line in dts.splitlines():
        if line.strip() == "chosen {":
            skip = True
        if not skip:
            out.append(line)
        if skip and line.strip() == "};":
            skip = False
    return "\n".join(out)


@needs_dtc
def test_device_tree_changes_only_chosen():
    blob = dtc(DTS)
    usable = [(0x6AC00000, 0x10000000)]
    initrd = (0x6C000000, 0x6C100000)
    out = capture_dtb(
        blob, "console=ttyAMA0 irqpoll", (0x7A000000, 0x1000), usable, initrd, b"ABCDEFGH"
    )
    before, after = decompile(blob), decompile(out)
    assert without_chosen(before) == without_chosen(after)
    assert 'bootargs = "console=ttyAMA0 irqpoll";' in after
    assert "linux,usable-memory-range = <0x00 0x6ac00000 0x00 0x10000000>;" in after
    assert "linux,initrd-start = <0x00 0x6c000000>;" in after
    assert "linux,initrd-end = <0x00 0x6c100000>;" in after
    assert "kaslr-seed = <0x41424344 0x45464748>;" in after  # refreshed, not the first boot's
    assert 'stdout-path = "/pl011@9000000";' in after
    assert after.count("bootargs") == 1 and after.count("linux,initrd-start") == 1


@needs_dtc
def test_device_tree_without_chosen_gets_one():
    blob = dtc("/dts-v1/;\n/ { #address-cells = <1>; #size-cells = <1>; cpus { }; };\n")
    after = decompile(capture_dtb(blob, "x", (0x1000, 0x2000), [(0x100000, 0x200000)], None))
    assert "chosen {" in after and "linux,elfcorehdr = <0x1000 0x2000>;" in after
    assert "linux,usable-memory-range = <0x100000 0x200000>;" in after
    assert "linux,initrd-start" not in after


@pytest.mark.skipif(shutil.which("qemu-system-aarch64") is None, reason="needs QEMU")
@needs_dtc
def test_qemu_virt_device_tree_with_nop_tokens(tmp_path):
    """QEMU's own tree (with FDT_NOP tokens from its edits) round-trips outside /chosen."""
    dumped = tmp_path / "virt.dtb"
    subprocess.run(
        ["qemu-system-aarch64", "-M", f"virt,dumpdtb={dumped}", "-cpu", "max", "-m", "1024",
         "-nodefaults", "-display", "none"],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    blob = dumped.read_bytes()
    out = capture_dtb(blob, "console=ttyAMA0", (0x7A000000, 0x1000), [CRASH], None)
    assert without_chosen(decompile(blob)) == without_chosen(decompile(out))


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"\xd0\x0d\xfe\xed" + bytes(10), "too short"),
        (bytes(64), "not a version 17"),
    ],
    ids=["short", "magic"],
)
def test_bad_device_tree(blob, message):
    with pytest.raises(LoadError, match=message):
        capture_dtb(blob, "x", (0, 0), [], None)


@needs_dtc
def test_truncated_device_tree_structure():
    blob = bytearray(dtc(DTS))
    size_struct_at = 36
    struct.pack_into(">I", blob, size_struct_at, 40)  # the structure block cut mid-property
    with pytest.raises(LoadError, match="/sys/firmware/fdt: "):
        capture_dtb(bytes(blob), "x", (0, 0), [], None)


def kcore_header(info: bytes) -> bytes:
    """An ELF64 core header with one PT_NOTE holding CORE/PRSTATUS then VMCOREINFO."""

    def note(name: bytes, ntype: int, desc: bytes) -> bytes:
        name += b"\0"
        return (struct.pack("<III", len(name), len(desc), ntype) + name + bytes(-len(name) % 4)
                + desc + bytes(-len(desc) % 4))  # fmt: skip

    notes = note(b"CORE", 1, bytes(392)) + note(b"VMCOREINFO", 0, info)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 183, 1, 0,
                       64, 0, 0, 64, 56, 1, 0, 0, 0)  # fmt: skip
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 120, 0, 0, len(notes), 0, 0)
    return ehdr + phdr + notes


def test_vmcoreinfo_from_kcore():
    info = kcore_vmcoreinfo(kcore_header(b"OSRELEASE=6.1.0\nNUMBER(VA_BITS)=48\n"))
    assert info == {"OSRELEASE": "6.1.0", "NUMBER(VA_BITS)": "48"}
    with pytest.raises(LoadError, match="no VMCOREINFO note"):
        kcore_vmcoreinfo(kcore_header(b"")[:120])
    with pytest.raises(LoadError, match="not an ELF64 core"):
        kcore_vmcoreinfo(b"junk" * 20)


@needs_dtc
def test_read_system_parses_the_kernel_files(tmp_path):
    """The sysfs formats: vmcoreinfo "%pa %x", crash_notes "%llx", crash_notes_size "%zu"."""
    files = {
        "proc/iomem": IOMEM,
        "proc/kcore": kcore_header(b"NUMBER(VA_BITS)=48\nSYMBOL(_stext)=ffff\n"),
        "sys/kernel/vmcoreinfo": "0x0000000042330000 1024\n",
        "sys/kernel/kexec_crash_size": "268435456\n",
        "sys/devices/system/cpu/possible": "0-1\n",
        "sys/devices/system/cpu/cpu0/crash_notes": "7fbcf000\n",
        "sys/devices/system/cpu/cpu0/crash_notes_size": "424\n",
        "sys/devices/system/cpu/cpu1/crash_notes": "7fbdf000\n",
        "sys/devices/system/cpu/cpu1/crash_notes_size": "424\n",
        "sys/firmware/fdt": dtc(DTS),
    }
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    sysm = read_system(tmp_path)
    assert sysm.vmcoreinfo_note == (0x42330000, 0x1024)
    assert sysm.cpu_notes == [(0x7FBCF000, 424), (0x7FBDF000, 424)]
    assert sysm.crash_regions() == (CRASH, None)
    assert sysm.vmcoreinfo["NUMBER(VA_BITS)"] == "48"
    (tmp_path / "sys/kernel/vmcoreinfo").unlink()
    with pytest.raises(LoadError, match=r"sys/kernel/vmcoreinfo: No such file"):
        read_system(Path(tmp_path))


@pytest.mark.skipif(os.uname().machine == "aarch64", reason="checks the refusal elsewhere")
@needs_dtc
def test_system_call_refused_off_arm64():
    """arm64's kexec_load number (104) is another call elsewhere (getgid on x86_64)."""
    plan = plan_capture(system(fdt=dtc(DTS)), parse_image(image(), "Image"), None, "x")
    with pytest.raises(LoadError, match="needs an arm64 machine"):
        kexec_load(plan)


def test_the_loader_ships_with_the_standard_library_only():
    """The loader runs in the lab's minimal arm64 guest (and, later, early kdump's
    initramfs): every module it imports is the standard library's or its own.  Merging the
    architecture layer once made ``kdumpy.arch`` import numpy through its package
    ``__init__``, which only a rebuild of the guest noticed."""
    ours = {n for n in loader_modules() if n.split(".")[0] not in sys.stdlib_module_names}
    assert ours == {"kdumpy", "kdumpy.errors", "kdumpy.arch", "kdumpy.arch.arm64",
                    "kdumpy.arch.arm64.image", "kdumpy.arch.arm64.kexec_load"}  # fmt: skip
