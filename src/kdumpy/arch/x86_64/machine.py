"""x86_64: every answer the architecture layer gives for it (see :mod:`kdumpy.arch`)."""

from __future__ import annotations

from kdumpy.arch.base import Architecture
from kdumpy.arch.x86_64.registers import REGISTERS, parse_qemu_cpu_state
from kdumpy.arch.x86_64.translate import START_KERNEL_MAP, X86_64Translator

EM_386 = 3
EM_X86_64 = 62
THREAD_SIZE = 16 << 10  # kernel (and IRQ) stacks, without KASAN

X86_64 = Architecture(
    name="x86_64",
    uname="x86_64",
    elf_machine=EM_X86_64,
    registers=REGISTERS,
    thread_size=THREAD_SIZE,
    image_start=START_KERNEL_MAP,
    max_physmem_bits=46,  # 4-level paging (5-level kernels export 52)
    phys_base_number="phys_base",
    capstone=("CS_ARCH_X86", "CS_MODE_64"),
    make_translator=X86_64Translator,
    qemu_cpu_state=parse_qemu_cpu_state,
)
