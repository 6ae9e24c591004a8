"""A synthetic kernel for analysis tests without a VM.

:func:`build_machine` builds a small x86_64 kernel's memory the way Linux lays it out
(page tables, kallsyms, BTF, ORC, per-CPU run queues, task lists, a printk ring,
modules, files, memory counters) and returns its ELF vmcore with a record of what it
holds: the oracle.  :class:`SyntheticKernel` is the toolkit to build other machines;
:func:`open_program` reads a dump's bytes through kdumpy's own ELF reader.
"""

from __future__ import annotations

from kdumpy.analysis import Program
from kdumpy.vmcore.elf import ElfDump
from kdumpy.vmcore.source import ByteSource

from .kernel import StackFrame, SyntheticKernel
from .scenario import HOSTILE_COMM, HOSTILE_LOG, HOSTILE_MODULE, Machine, Task, build_machine


class MemorySource(ByteSource):
    """A dump file's bytes held in memory (no file, no mmap)."""

    def __init__(self, data: bytes, path: str = "synthetic.vmcore") -> None:
        self.data = data
        self.path = path
        self.size = self.stored = len(data)

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]


def open_program(data: bytes, path: str = "synthetic.vmcore") -> Program:
    """kdumpy's analysis Program over an ELF vmcore held in memory."""
    return Program(ElfDump(MemorySource(data, path)), path)


__all__ = ["HOSTILE_COMM", "HOSTILE_LOG", "HOSTILE_MODULE", "Machine", "MemorySource",
           "StackFrame", "SyntheticKernel", "Task", "build_machine", "open_program"]  # fmt: skip
