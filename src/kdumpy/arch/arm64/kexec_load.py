"""Load an arm64 capture kernel with kexec_load(2): every segment built in userspace.

Debian's arm64 kernels lack kexec_file_load, so the loader does what the kernel would do for it
(and what kexec-tools does, without its Debian 12 bug: it finds the kernel's placement by
``_text``, absent from kallsyms without KALLSYMS_ALL, and writes an ELF core header whose
kernel segment is garbage).  Segments, all inside the crashkernel region (kexec_load refuses
anything else for a crash image):

* kernel: the plain Image at a 2 MiB-aligned base + text_offset, image_size bytes of memory;
* initrd;
* dtb: the running kernel's device tree (/sys/firmware/fdt) with /chosen rewritten: bootargs,
  linux,initrd-start/end, linux,elfcorehdr, linux,usable-memory-range (the crashkernel ranges);
* elfcorehdr: the ELF core header /proc/vmcore is made from: a PT_NOTE per possible CPU
  (/sys/devices/system/cpu/cpuN/crash_notes), one for VMCOREINFO (/sys/kernel/vmcoreinfo),
  a PT_LOAD for the kernel image (/proc/iomem's "Kernel code" to the end of "Kernel data", at
  pa + kimage_voffset, checked against _stext from VMCOREINFO) and one per System RAM
  range outside the crashkernel regions, at its linear-map address (PHYS_OFFSET, VA_BITS);
* purgatory: six instructions.  arm64's machine_kexec enters a kexec_load image with x0 = 0
  (only kexec_file records a dtb), so this sets x0 = dtb, x1-x3 = 0 and jumps to the kernel.

VMCOREINFO's text comes from /proc/kcore's note (as kexec-tools reads PHYS_OFFSET); the layout
arithmetic assumes the 5.11+ linear map (PAGE_OFFSET = -2**VA_BITS).  Standard library only
the loader runs in small initramfs images.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy.arch.arm64.image import ArmImage, load_image
from kdumpy.errors import KdumpyError

MiB = 1 << 20
KERNEL_ALIGN = 2 * MiB  # the Image's base (booting.rst)
DTB_MAX = 2 * MiB  # the dtb must not exceed 2 MiB nor cross a 2 MiB boundary
EM_AARCH64 = 183
KEXEC_ON_CRASH = 1
KEXEC_ARCH_AARCH64 = EM_AARCH64 << 16
KEXEC_SEGMENT_MAX = 16
NR_KEXEC_LOAD = 104  # asm-generic/unistd.h
PT_LOAD, PT_NOTE = 1, 4
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
NOTE_HDR = struct.Struct("<III")

# ldr x0, dtb; mov x1, xzr; mov x2, xzr; mov x3, xzr; ldr x4, entry; br x4; dtb: .quad;
# entry: .quad.  (LDR literal: 0x58000000 | imm19 << 5 | Rt, imm19 = byte offset / 4.)
PURGATORY_CODE = struct.pack(
    "<6I", 0x580000C0, 0xAA1F03E1, 0xAA1F03E2, 0xAA1F03E3, 0x58000084, 0xD61F0080
)


class LoadError(KdumpyError):
    """The capture kernel cannot be loaded: what the system says, or what kexec refused."""


def purgatory(dtb: int, entry: int) -> bytes:
    """The entry code: x0 = *dtb*, x1..x3 = 0, branch to the kernel at *entry*."""
    return PURGATORY_CODE + struct.pack("<QQ", dtb, entry)


# ---------------------------------------------------------------- what the running kernel says


@dataclass(frozen=True)
class IomemEntry:
    start: int
    end: int  # inclusive, as /proc/iomem prints it
    name: str
    depth: int


def parse_iomem(text: str) -> list[IomemEntry]:
    """/proc/iomem's lines (root reads real addresses; others see zeros)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^( *)([0-9a-f]+)-([0-9a-f]+) : (.*)$", line)
        if m:
            out.append(IomemEntry(int(m[2], 16), int(m[3], 16), m[4], len(m[1]) // 2))
    return out


def parse_vmcoreinfo(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def kcore_vmcoreinfo(data: bytes, name: str = "/proc/kcore") -> dict[str, str]:
    """VMCOREINFO from the PT_NOTE of a /proc/kcore header (kernels since 4.19 put it there)."""
    if len(data) < EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2:
        raise LoadError(f"{name}: not an ELF64 core")
    ehdr = EHDR.unpack_from(data)
    phoff, phnum = ehdr[5], ehdr[10]
    for i in range(phnum):
        off = phoff + i * PHDR.size
        if off + PHDR.size > len(data):
            break
        p_type, _, p_offset, _, _, p_filesz, _, _ = PHDR.unpack_from(data, off)
        if p_type != PT_NOTE:
            continue
        notes = data[p_offset : p_offset + p_filesz]
        pos = 0
        while pos + NOTE_HDR.size <= len(notes):
            namesz, descsz, _ = NOTE_HDR.unpack_from(notes, pos)
            pos += NOTE_HDR.size
            note_name = notes[pos : pos + namesz].rstrip(b"\0")
            pos += (namesz + 3) & ~3
            desc = notes[pos : pos + descsz]
            pos += (descsz + 3) & ~3
            if note_name == b"VMCOREINFO":
                return parse_vmcoreinfo(desc.decode("ascii", "replace"))
    raise LoadError(f"{name}: no VMCOREINFO note (the kernel is older than 4.19?)")


@dataclass(frozen=True)
class CrashSystem:
    """What the ELF core header and the device tree need from the running kernel."""

    iomem: list[IomemEntry]
    crash_size: int  # /sys/kernel/kexec_crash_size: the main crashkernel region's size
    vmcoreinfo: dict[str, str]  # the text, for PHYS_OFFSET, VA_BITS, kimage_voffset, _stext
    vmcoreinfo_note: tuple[int, int]  # (paddr, size) from /sys/kernel/vmcoreinfo
    cpu_notes: list[tuple[int, int]]  # (paddr, size) per possible CPU
    fdt: bytes  # /sys/firmware/fdt
    page_size: int = 4096

    def entries(self, name: str) -> list[IomemEntry]:
        return [e for e in self.iomem if e.name == name]

    def crash_regions(self) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """(main, low) crashkernel ranges [start, end); segments must go in main."""
        regions = [(e.start, e.end + 1) for e in self.entries("Crash kernel")]
        if not regions or self.crash_size == 0:
            raise LoadError("no crashkernel memory reserved: boot with crashkernel=SIZE")
        main = [r for r in regions if r[1] - r[0] == self.crash_size]
        if not main:
            raise LoadError(
                f"/proc/iomem has no 'Crash kernel' range of the reserved size "
                f"{self.crash_size:#x} (/sys/kernel/kexec_crash_size)"
            )
        low = [r for r in regions if r != main[-1]]
        return main[-1], (low[0] if low else None)

    def number(self, key: str) -> int:
        value = self.vmcoreinfo.get(f"NUMBER({key})")
        if value is None:
            raise LoadError(f"VMCOREINFO has no NUMBER({key})")
        return int(value, 0)

    def symbol(self, key: str) -> int:
        value = self.vmcoreinfo.get(f"SYMBOL({key})")
        if value is None:
            raise LoadError(f"VMCOREINFO has no SYMBOL({key})")
        return int(value, 16)

    def phys_to_linear(self, paddr: int) -> int:
        """__va(): the linear map (5.11+: PAGE_OFFSET = -2**VA_BITS, from PHYS_OFFSET)."""
        page_offset = (1 << 64) - (1 << self.number("VA_BITS"))
        return (paddr - self.number("PHYS_OFFSET") + page_offset) & ((1 << 64) - 1)

    def kernel_segment(self) -> tuple[int, int, int]:
        """(vaddr, paddr, size) of the kernel image: /proc/iomem's "Kernel code" (from
        _stext up to 6.x, from _text in later kernels) to the end of "Kernel data", mapped at
        pa + kimage_voffset; _stext (VMCOREINFO) must fall in it."""
        voffset = self.number("kimage_voffset")
        stext_pa = (self.symbol("_stext") - voffset) & ((1 << 64) - 1)
        code, data = self.entries("Kernel code"), self.entries("Kernel data")
        if not code or not data:
            raise LoadError("/proc/iomem has no 'Kernel code' or 'Kernel data' (not root?)")
        start, end = code[0].start, data[0].end + 1
        if not start <= stext_pa <= code[0].end:
            raise LoadError(
                f"_stext - kimage_voffset = {stext_pa:#x} is outside the kernel code "
                f"{start:#x}-{code[0].end:#x} that /proc/iomem shows"
            )
        return (start + voffset) & ((1 << 64) - 1), start, end - start


def read_system(root: Path = Path("/")) -> CrashSystem:
    """Gather a CrashSystem from the running kernel (root: a test may point at a copy)."""

    def read(rel: str) -> bytes:
        path = root / rel
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LoadError(f"{path}: {exc.strerror}") from None

    def text(rel: str) -> str:
        return read(rel).decode("ascii", "replace")

    kcore = root / "proc/kcore"
    try:
        with open(kcore, "rb") as fh:
            head = fh.read(64 << 10)  # the ELF header, program headers and notes
    except OSError as exc:
        raise LoadError(f"{kcore}: {exc.strerror}") from None
    addr, size = text("sys/kernel/vmcoreinfo").split()
    notes = []
    for cpu in _cpu_list(text("sys/devices/system/cpu/possible")):
        base = root / f"sys/devices/system/cpu/cpu{cpu}"
        if (base / "crash_notes").exists():
            notes.append(
                (
                    int((base / "crash_notes").read_text(), 16),
                    int((base / "crash_notes_size").read_text()),
                )
            )
    return CrashSystem(
        iomem=parse_iomem(text("proc/iomem")),
        crash_size=int(text("sys/kernel/kexec_crash_size")),
        vmcoreinfo=kcore_vmcoreinfo(head, str(kcore)),
        vmcoreinfo_note=(int(addr, 16), int(size, 16)),
        cpu_notes=notes,
        fdt=read("sys/firmware/fdt"),
        page_size=os.sysconf("SC_PAGE_SIZE"),
    )


def _cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


# ---------------------------------------------------------------- the ELF core header


def subtract(ranges: Sequence[tuple[int, int]], holes: Sequence[tuple[int, int]]):
    """Half-open *ranges* minus *holes*, sorted."""
    out = sorted(ranges)
    for h0, h1 in holes:
        cut = []
        for a, b in out:
            if b <= h0 or a >= h1:
                cut.append((a, b))
                continue
            if a < h0:
                cut.append((a, h0))
            if b > h1:
                cut.append((h1, b))
        out = cut
    return out


def crash_ram(system: CrashSystem) -> list[tuple[int, int]]:
    """System RAM the capture kernel must dump: all of it but the crashkernel regions."""
    main, low = system.crash_regions()
    ram = [(e.start, e.end + 1) for e in system.iomem if e.name == "System RAM" and e.depth == 0]
    return subtract(ram, [main] + ([low] if low else []))


def elfcorehdr(system: CrashSystem) -> bytes:
    """The ELF core header, laid out as the kernel's own crash_prepare_elf64_headers does."""
    phdrs = [
        PHDR.pack(PT_NOTE, 0, paddr, 0, paddr, size, size, 0)
        for paddr, size in [*system.cpu_notes, system.vmcoreinfo_note]
    ]
    vaddr, paddr, size = system.kernel_segment()
    phdrs.append(PHDR.pack(PT_LOAD, 7, paddr, vaddr, paddr, size, size, 0))
    for start, end in crash_ram(system):
        va = system.phys_to_linear(start)
        phdrs.append(PHDR.pack(PT_LOAD, 7, start, va, start, end - start, end - start, 0))
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = EHDR.pack(ident, 4, EM_AARCH64, 1, 0, EHDR.size, 0, 0, EHDR.size, PHDR.size,
                     len(phdrs), 0, 0, 0)  # fmt: skip
    return ehdr + b"".join(phdrs)


# ---------------------------------------------------------------- the device tree
# The flattened device tree (devicetree-specification, "Flattened Devicetree (DTB) Format"):
# a header, the memory reservation block, the structure block of big-endian tokens and the
# strings block.  Only /chosen changes, so the structure block is copied token by token and
# /chosen's properties are replaced in passing.  (The PyPI ``fdt`` package was tried: it
# rejects the FDT_NOP tokens QEMU's and firmware's trees contain.)

FDT_MAGIC = 0xD00DFEED
FDT_HEADER = struct.Struct(">10I")
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
CHOSEN_SET = ("bootargs", "linux,initrd-start", "linux,initrd-end", "linux,elfcorehdr",
              "linux,usable-memory-range")  # fmt: skip
SEEDS = ("kaslr-seed", "rng-seed")


def _be(value: int, cells: int) -> bytes:
    return value.to_bytes(4 * cells, "big")


def _cells_of(props: dict[str, bytes], name: str, default: int) -> int:
    raw = props.get(name)
    if raw is None:
        return default
    value = int.from_bytes(raw, "big") if len(raw) == 4 else -1
    if value not in (1, 2):
        raise LoadError(f"/sys/firmware/fdt: {name} of the root node is not 1 or 2")
    return value


class _Fdt:
    """The token stream of one device tree, checked while read (the blob is the kernel's, but
    a bad one must give an error, not a wrong tree)."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < FDT_HEADER.size:
            raise LoadError("/sys/firmware/fdt: too short for a device tree header")
        fields = FDT_HEADER.unpack_from(blob)
        magic, total, self.off_struct, self.off_strings, self.off_rsv, version = fields[:6]
        self.boot_cpu, self.size_strings, self.size_struct = fields[7:]
        if magic != FDT_MAGIC or total > len(blob) or version < 17:
            raise LoadError("/sys/firmware/fdt: not a version 17 flattened device tree")
        if max(self.off_struct + self.size_struct, self.off_strings + self.size_strings) > total:
            raise LoadError("/sys/firmware/fdt: blocks beyond the tree's total size")
        self.blob = blob

    def tokens(self):
        """(token, name, value, raw bytes) in order; names of nodes and properties decoded."""
        pos, end = self.off_struct, self.off_struct + self.size_struct
        while pos + 4 <= end:
            start = pos
            token = int.from_bytes(self.blob[pos : pos + 4], "big")
            pos += 4
            name, value = "", b""
            if token == FDT_BEGIN_NODE:
                nul = self.blob.find(b"\0", pos, end)
                if nul < 0:
                    raise LoadError("/sys/firmware/fdt: unterminated node name")
                name = self.blob[pos:nul].decode("ascii", "replace")
                pos = (nul + 4) & ~3
            elif token == FDT_PROP:
                if pos + 8 > end:
                    raise LoadError("/sys/firmware/fdt: truncated property")
                size, nameoff = struct.unpack_from(">II", self.blob, pos)
                if pos + 8 + size > end or nameoff >= self.size_strings:
                    raise LoadError("/sys/firmware/fdt: property beyond its block")
                value = self.blob[pos + 8 : pos + 8 + size]
                names = self.blob[self.off_strings + nameoff : self.off_strings + self.size_strings]
                name = names.split(b"\0", 1)[0].decode("ascii", "replace")
                pos = (pos + 8 + size + 3) & ~3
            elif token not in (FDT_END_NODE, FDT_NOP, FDT_END):
                raise LoadError(f"/sys/firmware/fdt: unknown token {token:#x}")
            yield token, name, value, self.blob[start:pos]
            if token == FDT_END:
                return
        raise LoadError("/sys/firmware/fdt: no FDT_END token")


def capture_dtb(
    blob: bytes,
    cmdline: str,
    elfcorehdr_range: tuple[int, int],
    usable: Sequence[tuple[int, int]],
    initrd: tuple[int, int] | None,
    seed: bytes | None = None,
) -> bytes:
    """The running kernel's device tree with /chosen set for the capture kernel.

    *elfcorehdr_range* and *usable* are (start, size), in the root's #address-cells and
    #size-cells; *initrd* is (start, end).  *seed* (random bytes) refreshes kaslr-seed and
    rng-seed where the tree has them.
    """
    tree = _Fdt(blob)
    root_props: dict[str, bytes] = {}
    depth = 0
    for token, name, value, _ in tree.tokens():
        depth += (token == FDT_BEGIN_NODE) - (token == FDT_END_NODE)
        if token == FDT_PROP and depth == 1:
            root_props[name] = value
        if token == FDT_BEGIN_NODE and depth == 2:
            break
    acells = _cells_of(root_props, "#address-cells", 2)
    scells = _cells_of(root_props, "#size-cells", 1)
    chosen = {
        "bootargs": cmdline.encode() + b"\0",
        "linux,elfcorehdr": _be(elfcorehdr_range[0], acells) + _be(elfcorehdr_range[1], scells),
        "linux,usable-memory-range": b"".join(
            _be(start, acells) + _be(size, scells) for start, size in usable
        ),
    }
    if initrd is not None:
        chosen["linux,initrd-start"] = _be(initrd[0], 2)
        chosen["linux,initrd-end"] = _be(initrd[1], 2)
    strings = bytearray(blob[tree.off_strings : tree.off_strings + tree.size_strings])

    def prop(name: str, value: bytes) -> bytes:
        at = strings.find(name.encode() + b"\0")
        while at > 0 and strings[at - 1] != 0:  # a suffix of a longer name: not this one
            at = strings.find(name.encode() + b"\0", at + 1)
        if at < 0:
            at = len(strings)
            strings.extend(name.encode() + b"\0")
        pad = b"\0" * (-len(value) % 4)
        return struct.pack(">III", FDT_PROP, len(value), at) + value + pad

    def chosen_props() -> bytes:
        return b"".join(prop(n, v) for n, v in chosen.items())

    out = bytearray()
    depth, in_chosen, seen_chosen = 0, False, False
    for token, name, value, raw in tree.tokens():
        if token == FDT_NOP:
            continue
        if token == FDT_BEGIN_NODE:
            depth += 1
            in_chosen = depth == 2 and name == "chosen"
            seen_chosen |= in_chosen
        elif token == FDT_END_NODE:
            if in_chosen and depth == 2:
                out += chosen_props()
                in_chosen = False
            elif depth == 1 and not seen_chosen:
                out += struct.pack(">I", FDT_BEGIN_NODE) + b"chosen\0\0" + chosen_props()
                out += struct.pack(">I", FDT_END_NODE)
            depth -= 1
        elif token == FDT_PROP and in_chosen and depth == 2:
            if name in CHOSEN_SET:
                continue
            if name in SEEDS and seed is not None:
                raw = prop(name, (seed * (len(value) // max(len(seed), 1) + 1))[: len(value)])
        out += raw
    rsv_end = tree.off_rsv
    while True:  # the reservation block: (address, size) pairs up to a (0, 0) pair
        if rsv_end + 16 > len(blob):
            raise LoadError("/sys/firmware/fdt: unterminated memory reservation block")
        rsv_end += 16
        if blob[rsv_end - 16 : rsv_end] == bytes(16):
            break
    rsv = blob[tree.off_rsv : rsv_end]
    off_rsv = FDT_HEADER.size + (-FDT_HEADER.size % 8)
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(out)
    total = off_strings + len(strings)
    header = FDT_HEADER.pack(FDT_MAGIC, total, off_struct, off_strings, off_rsv, 17, 16,
                             tree.boot_cpu, len(strings), len(out))  # fmt: skip
    dtb = header + bytes(off_rsv - FDT_HEADER.size) + rsv + bytes(out) + bytes(strings)
    if len(dtb) > DTB_MAX:
        raise LoadError(f"the capture kernel's device tree is {len(dtb)} bytes, over 2 MiB")
    return dtb


# ---------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segment:
    name: str
    data: bytes
    mem: int
    memsz: int


@dataclass
class CapturePlan:
    """The segments and entry point kexec_load is handed."""

    segments: list[Segment] = field(default_factory=list)
    entry: int = 0
    kernel_entry: int = 0
    dtb: int = 0


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def plan_capture(
    system: CrashSystem,
    image: ArmImage,
    initrd: bytes | None,
    cmdline: str,
    seed: bytes | None = None,
) -> CapturePlan:
    """Place kernel, initrd, dtb, ELF core header and purgatory in the crashkernel region."""
    page = system.page_size
    if image.big_endian:
        raise LoadError("the capture kernel is a big-endian Image; this kernel is little-endian")
    if image.page_size not in (None, page):
        raise LoadError(
            f"the capture kernel uses {image.page_size}-byte pages, the running kernel {page}"
        )
    (start, end), low = system.crash_regions()
    kernel_at = _align(start, KERNEL_ALIGN) + image.text_offset
    pos = kernel_at + _align(max(image.image_size, len(image.data)), page)
    initrd_range = None
    placed: list[tuple[str, bytes, int, int]] = [("kernel", image.data, kernel_at, pos - kernel_at)]
    if initrd is not None:
        initrd_range = (pos, pos + len(initrd))
        placed.append(("initrd", initrd, pos, _align(len(initrd), page)))
        pos += _align(len(initrd), page)
    header = elfcorehdr(system)
    hdr_at = pos
    hdr_size = _align(len(header), page)
    pos += hdr_size
    usable = [(start, end - start)] + ([(low[0], low[1] - low[0])] if low else [])
    dtb = capture_dtb(system.fdt, cmdline, (hdr_at, hdr_size), usable, initrd_range, seed)
    crosses = pos // DTB_MAX != (pos + len(dtb) - 1) // DTB_MAX  # then start it at the next
    dtb_at = _align(pos, DTB_MAX) if crosses else pos
    pos = dtb_at + _align(len(dtb), page)
    code_at = pos
    pos += page
    placed += [
        ("elfcorehdr", header, hdr_at, hdr_size),
        ("dtb", dtb, dtb_at, _align(len(dtb), page)),
        ("purgatory", purgatory(dtb_at, kernel_at), code_at, page),
    ]
    if pos > end:
        raise LoadError(
            f"the capture kernel needs {(pos - start) >> 20} MiB from {start:#x}, but the "
            f"crashkernel region holds {(end - start) >> 20} MiB: reserve more"
        )
    segments = [Segment(n, d, m, s) for n, d, m, s in sorted(placed, key=lambda p: p[2])]
    return CapturePlan(segments, code_at, kernel_at, dtb_at)


# ---------------------------------------------------------------- the system call


KEXEC_ERRNO_HINTS = {
    errno.EPERM: " (needs root with CAP_SYS_BOOT; /proc/sys/kernel/kexec_load_disabled may be"
    " set, or lockdown forbids kexec_load)",
    errno.EBUSY: " (a crash kernel is being loaded or the crash region is in use)",
    errno.EADDRNOTAVAIL: " (a segment lies outside the crashkernel region)",
    errno.ENOSYS: " (the kernel is built without CONFIG_KEXEC)",
}


class _KexecSegment(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("bufsz", ctypes.c_size_t),
        ("mem", ctypes.c_void_p),
        ("memsz", ctypes.c_size_t),
    ]


def kexec_load(plan: CapturePlan) -> None:
    """Hand *plan* to the kernel as the crash image (replacing any loaded one)."""
    machine = os.uname().machine
    if machine != "aarch64":  # the syscall number is arm64's: 104 is getgid on x86_64
        raise LoadError(f"loading an arm64 capture kernel needs an arm64 machine, not {machine}")
    if len(plan.segments) > KEXEC_SEGMENT_MAX:
        raise LoadError(f"{len(plan.segments)} segments, kexec_load takes {KEXEC_SEGMENT_MAX}")
    buffers = [ctypes.create_string_buffer(s.data, len(s.data)) for s in plan.segments]
    array = (_KexecSegment * len(plan.segments))(
        *[
            _KexecSegment(ctypes.addressof(b), len(s.data), s.mem, s.memsz)
            for b, s in zip(buffers, plan.segments, strict=True)
        ]
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(
        ctypes.c_long(NR_KEXEC_LOAD),
        ctypes.c_ulong(plan.entry),
        ctypes.c_ulong(len(plan.segments)),
        array,
        ctypes.c_ulong(KEXEC_ON_CRASH | KEXEC_ARCH_AARCH64),
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise LoadError(f"kexec_load: {os.strerror(err)}{KEXEC_ERRNO_HINTS.get(err, '')}")


def load_capture_kernel(
    kernel: Path, initrd: Path | None, cmdline: str, root: Path = Path("/")
) -> CapturePlan:
    """Read the running system and the files, build the segments, load them."""
    try:
        image = load_image(kernel.read_bytes(), str(kernel))
        initrd_data = initrd.read_bytes() if initrd else None
    except OSError as exc:
        raise LoadError(f"{exc.filename}: {exc.strerror}") from None
    plan = plan_capture(read_system(root), image, initrd_data, cmdline, os.urandom(64))
    kexec_load(plan)
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kdumpy-arm64-kexec-load", description="load an arm64 capture kernel (kexec_load)"
    )
    parser.add_argument("--kernel", type=Path, required=True)
    parser.add_argument("--initrd", type=Path)
    parser.add_argument("--append", default="", help="the capture kernel's command line")
    args = parser.parse_args(argv)
    try:
        plan = load_capture_kernel(args.kernel, args.initrd, args.append)
    except KdumpyError as exc:
        print(f"kdumpy: {exc}", file=sys.stderr)
        return 1
    for seg in plan.segments:
        print(f"{seg.name:11} {seg.mem:#014x}-{seg.mem + seg.memsz:#014x} {len(seg.data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
