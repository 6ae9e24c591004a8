"""arm64 (AArch64, little-endian): every answer the architecture layer gives for it."""

from __future__ import annotations

from kdumpy.arch.arm64.registers import REGISTERS
from kdumpy.arch.arm64.translate import Arm64Translator
from kdumpy.arch.base import Architecture

EM_AARCH64 = 183
# THREAD_SIZE: 16 KiB (MIN_THREAD_SHIFT 14); with VMAP_STACK and 64K pages one page.
THREAD_SIZE = 16 << 10

ARM64 = Architecture(
    name="arm64",
    uname="aarch64",
    elf_machine=EM_AARCH64,
    registers=REGISTERS,
    thread_size=THREAD_SIZE,
    image_start=1 << 63,  # the image is in the kernel half; System.map has nothing else
    max_physmem_bits=48,
    phys_base_number="PHYS_OFFSET",  # makedumpfile's phys_base on arm64
    capstone=("CS_ARCH_ARM64", "CS_MODE_ARM"),
    make_translator=Arm64Translator,
)
