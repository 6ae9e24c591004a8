"""Choosing a dump's :class:`Architecture` (from its ELF machine, kdump header or
VMCOREINFO), and the names the layers above import (see :mod:`kdumpy.arch`)."""

from __future__ import annotations

from kdumpy.arch.arm64.machine import ARM64
from kdumpy.arch.base import (
    Architecture,
    DumpMemory,
    Mapping,
    QemuCpuState,
    ReadFn,
    RegisterLayout,
    TranslationError,
    Translator,
    VmcoreInfoLookup,
)
from kdumpy.arch.x86_64.machine import EM_386, X86_64
from kdumpy.errors import DumpFormatError

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_ARCH",
    "Architecture",
    "DumpMemory",
    "Mapping",
    "QemuCpuState",
    "ReadFn",
    "RegisterLayout",
    "TranslationError",
    "Translator",
    "SUPPORTED",
    "VmcoreInfoLookup",
    "elf_machine_name",
    "from_elf_machine",
    "from_uname",
    "from_vmcoreinfo",
]

ARCHITECTURES = (X86_64, ARM64)
# What a dump that names no machine and whose VMCOREINFO tells none is taken for.
DEFAULT_ARCH = X86_64
SUPPORTED = "kdumpy reads only 64-bit little-endian x86_64 and arm64 dumps"

# e_machine values of machines kdumpy does not read, to name them in the error.
ELF_MACHINE_NAMES = {
    2: "sparc", 3: "i386", 4: "m68k", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390",
    40: "arm", 42: "superh", 43: "sparcv9", 50: "ia64", 62: "x86_64", 183: "aarch64",
    243: "riscv", 258: "loongarch",
}  # fmt: skip


def elf_machine_name(machine: int) -> str:
    """``"ppc64"`` for e_machine 21; ``"machine 1234"`` for one without a name here."""
    return ELF_MACHINE_NAMES.get(machine, f"machine {machine}")


def from_elf_machine(machine: int, path: str) -> Architecture:
    """The architecture of a 64-bit little-endian ELF dump, or a one-line error.

    QEMU labels a dump EM_386 while the guest CPU is not in long mode (firmware): its
    physical memory reads the same, so it is taken as x86_64.
    """
    if machine == EM_386:
        return X86_64
    for arch in ARCHITECTURES:
        if arch.elf_machine == machine:
            return arch
    raise DumpFormatError(f"{path}: {elf_machine_name(machine)} dump: {SUPPORTED}")


def from_uname(machine: str, path: str) -> Architecture | None:
    """The architecture named by ``uname -m`` (a kdump header's ``utsname.machine``);
    None for an empty name; a one-line error for a machine kdumpy does not read."""
    if not machine:
        return None
    for arch in ARCHITECTURES:
        if machine in (arch.uname, arch.name):
            return arch
    raise DumpFormatError(f"{path}: {machine[:64]!r} dump: {SUPPORTED}")


def from_vmcoreinfo(info: VmcoreInfoLookup | None) -> Architecture:
    """The architecture whose VMCOREINFO entries these are: arm64 writes
    ``NUMBER(kimage_voffset)`` and ``NUMBER(VA_BITS)``, x86_64 neither
    (:data:`DEFAULT_ARCH` when nothing tells)."""
    if info is not None and info.number("kimage_voffset") is not None:
        return ARM64
    return DEFAULT_ARCH
