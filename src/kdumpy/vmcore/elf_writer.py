"""Writing a filtered ELF dump (makedumpfile ``-E``).

ELF64 little-endian ``ET_CORE`` with the source dump's machine: the ELF header, one
``PT_NOTE`` with the vmcore's notes, then the ``PT_LOAD`` program headers (more than
65534 are counted in section header 0, ``PN_XNUM``), then the note data and the page
data of each load in
order.  A load's ``p_filesz`` covers the pages written; ``p_memsz`` may extend over a
run of excluded pages after them (memory that existed but is not in the file).  A
dump cut short by a full disk gets ``e_flags |= 1`` (makedumpfile's
``DUMP_ELF_INCOMPLETE``).
"""

import struct
from typing import NamedTuple

from kdumpy.arch.select import DEFAULT_ARCH
from kdumpy.vmcore.kdump_writer import Sink

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
ET_CORE = 4
EV_CURRENT = 1
PT_LOAD = 1
PT_NOTE = 4
PF_RWX = 7
PN_XNUM = 0xFFFF
DUMP_ELF_INCOMPLETE = 0x1
_IDENT = b"\x7fELF\x02\x01\x01" + bytes(9)


class Load(NamedTuple):
    """One PT_LOAD to write: physical and virtual start, bytes in the file, bytes of memory.

    ``last``: the last piece of a source PT_LOAD.  makedumpfile gives a load without file
    data offset 0, except the last piece, which keeps the running file offset.
    """

    paddr: int
    vaddr: int
    filesz: int
    memsz: int
    last: bool = True


class ElfWriter:
    """Lays out and writes an ELF dump through a sink."""

    def __init__(
        self, sink: Sink, page_size: int, notes: bytes, machine: int = DEFAULT_ARCH.elf_machine
    ) -> None:
        self.sink = sink
        self.machine = machine  # e_machine: the source dump's architecture
        self.page_size = page_size
        self.notes = notes
        self.loads: list[Load] = []
        self.offsets: list[int] = []
        self.flags = 0

    def _ehdr(self) -> bytes:
        nphdr = 1 + len(self.loads)
        phnum = PN_XNUM if nphdr >= PN_XNUM else nphdr
        shoff = EHDR.size + PHDR.size * nphdr if phnum == PN_XNUM else 0
        shnum = 1 if phnum == PN_XNUM else 0
        return EHDR.pack(
            _IDENT, ET_CORE, self.machine, EV_CURRENT, 0, EHDR.size, shoff, self.flags,
            EHDR.size, PHDR.size, phnum, SHDR.size if shnum else 0, shnum, 0,
        )  # fmt: skip

    def write_headers(self, loads: list[Load]) -> None:
        """Fix the layout for ``loads`` and write the ELF header, program headers and notes."""
        self.loads = loads
        nphdr = 1 + len(loads)
        pos = EHDR.size + PHDR.size * nphdr
        if nphdr >= PN_XNUM:
            pos += SHDR.size
        note_off = pos
        pos += len(self.notes)  # page data follows unaligned, as makedumpfile writes it
        table = bytearray(
            PHDR.pack(PT_NOTE, 0, note_off, 0, 0, len(self.notes), len(self.notes), 0)
        )
        self.offsets = []
        for load in loads:
            off = pos if load.filesz or load.last else 0
            self.offsets.append(off)
            table += PHDR.pack(
                PT_LOAD, PF_RWX, off, load.vaddr, load.paddr, load.filesz, load.memsz, 0
            )
            pos += load.filesz
        self.sink.write_at(0, self._ehdr())
        self.sink.write_at(EHDR.size, bytes(table))
        if nphdr >= PN_XNUM:
            sh0 = SHDR.pack(0, 0, 0, 0, 0, 0, 0, nphdr, 0, 0)
            self.sink.write_at(EHDR.size + PHDR.size * nphdr, sh0)
        self.sink.write_at(note_off, self.notes)

    def write_data(self, index: int, offset_in_load: int, data: bytes | memoryview) -> None:
        """Page data of load ``index`` at ``offset_in_load``."""
        self.sink.write_at(self.offsets[index] + offset_in_load, data)

    def mark_incomplete(self) -> None:
        """Set ``DUMP_ELF_INCOMPLETE`` in ``e_flags`` (re-writes the ELF header only)."""
        self.flags |= DUMP_ELF_INCOMPLETE
        self.sink.write_at(0, self._ehdr())
