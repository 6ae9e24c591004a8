"""The reader interface every dump format implements (see DEVELOPERS.md, vmcore)."""

import bisect
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, NamedTuple, TypeAlias

from kdumpy.arch.select import Architecture, Mapping, QemuCpuState, Translator, from_vmcoreinfo
from kdumpy.errors import DumpFormatError, PageNotPresent
from kdumpy.vmcore.notes import (
    DeviceDump,
    Note,
    PrStatus,
    eraseinfo_text,
    find_note,
    parse_device_dump,
    parse_prstatus,
    parse_qemu_cpu_state,
)
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

Buffer: TypeAlias = Any  # bytes, bytearray, memoryview, a numpy array: the buffer protocol
BATCH_BYTES = 16 << 20  # the most page data iter_pages hands out at once


class Extent(NamedTuple):
    """Physical bytes ``[start, end)`` stored at file offset ``offset``."""

    start: int
    end: int
    offset: int


class Dump:
    """A crash dump opened for reading: physical pages, notes, VMCOREINFO.

    Subclasses set ``format``, ``path``, ``page_size``, ``max_pfn``, ``notes`` and
    implement :meth:`pfn_ranges`, :meth:`ram_ranges` and :meth:`read_pfns`; a format
    that knows its machine sets :attr:`arch`, and one whose file states more than
    pages overrides :meth:`stated_mappings`, :meth:`stated_phys_base`,
    :meth:`file_extents` and :attr:`input_dump_level`.
    """

    format: str = "unknown"
    path: str = "dump"
    page_size: int = 4096
    max_pfn: int = 0
    notes: list[Note]
    incomplete: bool = False  # the writer ran out of space (or hit -L): pages are missing
    # One-line notices about what the dump lacks but could still be opened without (a
    # file missing from a split set): for the command to show once, not errors.
    warnings: tuple[str, ...] = ()
    # The dump level the file was already filtered with (kdump-compressed); 0: all pages.
    input_dump_level: int = 0

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> "Dump":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release files and mappings."""

    # -- notes ---------------------------------------------------------------------------
    def _vmcoreinfo_text(self) -> bytes | None:
        note = find_note(self.notes, "VMCOREINFO")
        return None if note is None else note.desc

    @cached_property
    def has_vmcoreinfo(self) -> bool:
        return self._vmcoreinfo_text() is not None

    @cached_property
    def vmcoreinfo(self) -> VmcoreInfo:
        """The crashed kernel's VMCOREINFO; a one-line error if the dump has none."""
        text = self._vmcoreinfo_text()
        if text is None:
            raise DumpFormatError(f"{self.path}: dump has no VMCOREINFO note")
        return VmcoreInfo(text, self.path)

    @cached_property
    def arch(self) -> Architecture:
        """The crashed machine's architecture (formats that record it set it from the
        file; otherwise it is told by VMCOREINFO)."""
        return from_vmcoreinfo(self.vmcoreinfo if self.has_vmcoreinfo else None)

    @cached_property
    def prstatus(self) -> list[PrStatus]:
        """Registers of each CPU (``NT_PRSTATUS``), in note order."""
        regs = self.arch.registers
        return [p for p in (parse_prstatus(n, regs) for n in self.notes) if p is not None]

    @cached_property
    def qemu_cpu_states(self) -> list[QemuCpuState]:
        """QEMU's per-vCPU state notes (QEMU dump-guest-memory only)."""
        states = (parse_qemu_cpu_state(n, self.arch) for n in self.notes)
        return [q for q in states if q is not None]

    @cached_property
    def device_dumps(self) -> list[DeviceDump]:
        """Device dumps (``VMCOREDD``) attached by drivers."""
        return [d for d in map(parse_device_dump, self.notes) if d is not None]

    @cached_property
    def eraseinfo(self) -> str | None:
        """makedumpfile's record of erased symbols, if the dump was filtered with one."""
        return eraseinfo_text(self.notes)

    # -- pages ---------------------------------------------------------------------------
    def ram_ranges(self) -> list[tuple[int, int]]:
        """``[(start_pfn, end_pfn))`` of memory that existed in the dump's source."""
        raise NotImplementedError

    def pfn_ranges(self) -> list[tuple[int, int]]:
        """``[(start_pfn, end_pfn))`` whose page data is in the file, sorted, disjoint."""
        raise NotImplementedError

    @cached_property
    def _dumpable_starts(self) -> list[int]:
        return [start for start, _ in self.pfn_ranges()]

    def is_dumpable(self, pfn: int) -> bool:
        """True if the page's data is in the file."""
        ranges = self.pfn_ranges()
        i = bisect.bisect_right(self._dumpable_starts, pfn) - 1
        return i >= 0 and pfn < ranges[i][1]

    def read_pfns(self, start_pfn: int, count: int) -> tuple[Buffer, Buffer]:
        """Pages ``start_pfn .. start_pfn+count-1`` at once.

        Returns ``(pages, present)``, two C-contiguous buffers: ``count * page_size``
        bytes of page data (possibly a read-only view of the file mapping, valid until
        :meth:`close`) and one byte per page, nonzero where the page is in the file;
        pages not in the file are zero.  Wrap them with ``numpy.frombuffer`` for arrays.
        """
        raise NotImplementedError

    def iter_pages(self, batch: int = 4096) -> Iterator[tuple[int, Buffer, Buffer]]:
        """``(start_pfn, pages, present)`` over :meth:`pfn_ranges` in batches of at most
        ``batch`` pages and 16 MiB (memory stays bounded by one batch)."""
        batch = max(1, min(batch, BATCH_BYTES // self.page_size))
        for start, end in self.pfn_ranges():
            for lo in range(start, end, batch):
                pages, present = self.read_pfns(lo, min(batch, end - lo))
                yield lo, pages, present
                del pages, present  # one batch alive at a time, not two

    def read_pfn(self, pfn: int) -> bytes:
        """One page; raises :class:`PageNotPresent` if it is not in the file."""
        pages, present = self.read_pfns(pfn, 1)
        if not memoryview(present).cast("B")[0]:
            raise PageNotPresent(f"{self.path}: page frame {pfn:#x} is not in the dump")
        return memoryview(pages).cast("B")[: self.page_size].tobytes()

    def read_phys(self, paddr: int, size: int) -> bytes:
        """``size`` bytes of physical memory; :class:`PageNotPresent` if any page is missing."""
        if size <= 0:
            return b""
        shift = self.page_size.bit_length() - 1
        first = paddr >> shift
        last = (paddr + size - 1) >> shift
        pages, present = self.read_pfns(first, last - first + 1)
        absent = memoryview(present).cast("B").tobytes().find(0)
        if absent >= 0:
            missing = first + absent
            raise PageNotPresent(
                f"{self.path}: physical address {max(paddr, missing << shift):#x} "
                "is not in the dump"
            )
        start = paddr - (first << shift)
        return memoryview(pages).cast("B")[start : start + size].tobytes()

    def file_extents(self) -> list[Extent] | None:
        """Where page data lies verbatim in a plain file (an ELF dump), for readers
        that read the file directly; None for other formats."""
        return None

    # -- virtual memory ------------------------------------------------------------------
    def stated_mappings(self) -> Sequence[Mapping]:
        """Virtual ranges the file itself states (/proc/vmcore's PT_LOADs); empty here."""
        return ()

    def stated_phys_base(self) -> int | None:
        """``phys_base`` as the file's own header records it (kdump sub-header)."""
        return None

    @cached_property
    def translator(self) -> Translator:
        """Kernel virtual address translation (the architecture's, from VMCOREINFO)."""
        return self.arch.translator(self)

    def read_virt(self, vaddr: int, size: int) -> bytes:
        """``size`` bytes at a kernel virtual address (see :mod:`kdumpy.arch`)."""
        return self.translator.read_virt(vaddr, size)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort ``[start, end)`` ranges and merge overlapping or touching ones; drop empty."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out
