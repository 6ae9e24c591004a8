"""What the architecture layer needs from a dump, and what every architecture answers.

The layer sits below :mod:`kdumpy.vmcore`: it never imports a dump class.  A dump hands
itself over as a :class:`DumpMemory` (physical reads, as libaddrxlat takes read
callbacks, plus VMCOREINFO lookups and what the file itself says about virtual
addresses), and gets back an :class:`Architecture`'s answers: a translator for kernel
virtual addresses, the register layout of its ``NT_PRSTATUS`` notes, page and stack
sizes, the disassembler mode.
"""

import re
import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from kdumpy.errors import KdumpyError

ReadFn = Callable[[int, int], bytes]


class Readable(Protocol):
    """Anything that reads kernel virtual memory (the analysis program's memory)."""

    def read(self, address: int, size: int) -> bytes: ...


class TranslationError(KdumpyError):
    """A virtual address is not mapped by the crashed kernel's page tables."""


class Mapping(NamedTuple):
    """A virtual range the dump file itself states (an ELF ``PT_LOAD`` of /proc/vmcore)."""

    vaddr: int
    paddr: int
    size: int


def release_version(release: str | None) -> tuple[int, int] | None:
    """(major, minor) of a kernel release such as ``6.12.43+deb13-amd64``; None when the
    text does not start with one (the callers choose what an unknown release means)."""
    match = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


class VmcoreInfoLookup(Protocol):
    """The VMCOREINFO lookups the layer uses (``kdumpy.vmcore.vmcoreinfo.VmcoreInfo``)."""

    def symbol(self, name: str) -> int | None: ...
    def number(self, name: str) -> int | None: ...
    def size(self, name: str) -> int | None: ...
    def offset(self, name: str) -> int | None: ...
    def length(self, name: str) -> int | None: ...
    def require(self, key: str) -> int: ...

    @property
    def osrelease(self) -> str | None: ...


class DumpMemory(Protocol):
    """What a translator reads through: every dump format implements it."""

    @property
    def path(self) -> str: ...
    @property
    def page_size(self) -> int: ...
    @property
    def max_pfn(self) -> int: ...
    @property
    def vmcoreinfo(self) -> VmcoreInfoLookup: ...

    def read_phys(self, paddr: int, size: int) -> bytes:
        """Physical bytes; :class:`kdumpy.errors.PageNotPresent` if a page is missing."""
        ...

    def stated_mappings(self) -> Sequence[Mapping]:
        """Virtual ranges the file states (ELF PT_LOADs); empty when it states none."""
        ...

    def stated_phys_base(self) -> int | None:
        """The kernel's ``phys_base`` as the file's own header records it, if it does."""
        ...


class Translator(Protocol):
    """Kernel virtual -> physical for one dump."""

    def vtop(self, vaddr: int) -> int:
        """Physical address; :class:`TranslationError` if unmapped."""
        ...

    def walk(self, vaddr: int) -> int:
        """Physical address by the page tables alone (no shortcut, no cache)."""
        ...

    def mapping(self, vaddr: int, read: ReadFn | None = None) -> tuple[int, int] | None:
        """``(paddr, bytes mapped contiguously from vaddr)`` or None if unmapped; page
        tables read through ``read`` (default: the dump's)."""
        ...

    def walk_user(self, pgd_paddr: int, vaddr: int) -> int:
        """Physical address of a user virtual address, by the page tables rooted at
        ``pgd_paddr`` (a process's ``mm->pgd``); :class:`TranslationError` if unmapped."""
        ...

    def read_virt(self, vaddr: int, size: int) -> bytes: ...
    def read_u64(self, vaddr: int) -> int: ...
    def read_u32(self, vaddr: int) -> int: ...

    @property
    def page_offset(self) -> int:
        """Virtual address of the direct (linear) map's start."""
        ...

    def phys_to_virt(self, phys: int) -> int:
        """``__va``: the direct (linear) map's address of a physical address."""
        ...

    @property
    def vmemmap(self) -> int:
        """Virtual address of ``struct page`` for pfn 0."""
        ...

    @property
    def modules_start(self) -> int:
        """Lowest address of the module area (modules and image lie above it)."""
        ...


class PageTableReads:
    """Reads of kernel virtual memory for a translator: ``vtop`` page by page, so a read
    may cross pages mapped anywhere.  A translator sets ``dump`` and ``page_size`` and
    defines ``vtop``; this is the one copy of the reads every machine shares."""

    dump: DumpMemory
    page_size: int

    def vtop(self, vaddr: int) -> int:
        raise NotImplementedError

    def read_virt(self, vaddr: int, size: int) -> bytes:
        """``size`` bytes at ``vaddr``, crossing page boundaries as needed."""
        mask = self.page_size - 1
        if (vaddr & mask) + size <= self.page_size:  # the common case: one page
            return self.dump.read_phys(self.vtop(vaddr), size)
        out = bytearray()
        while size > 0:
            chunk = min(size, self.page_size - (vaddr & mask))
            out += self.dump.read_phys(self.vtop(vaddr), chunk)
            vaddr += chunk
            size -= chunk
        return bytes(out)

    def read_u64(self, vaddr: int) -> int:
        return int(struct.unpack("<Q", self.read_virt(vaddr, 8))[0])

    def read_u32(self, vaddr: int) -> int:
        return int(struct.unpack("<I", self.read_virt(vaddr, 4))[0])


class RegisterLayout(NamedTuple):
    """The registers of one architecture's ``NT_PRSTATUS`` note (``pr_reg``)."""

    names: tuple[str, ...]  # pr_reg in order, as the kernel's user_regs_struct names them
    pc: str  # the program counter's name in ``names``
    sp: str  # the stack pointer's
    fp: str  # the frame pointer's

    def parse(self, desc: bytes, offset: int) -> dict[str, int] | None:
        """``pr_reg`` at ``offset`` of an ``elf_prstatus``; None if the note is too short."""
        fmt = struct.Struct(f"<{len(self.names)}Q")
        if len(desc) < offset + fmt.size:
            return None
        return dict(zip(self.names, fmt.unpack_from(desc, offset), strict=True))


class QemuCpuState(NamedTuple):
    """QEMU's per-vCPU state note: general registers, segments, control registers."""

    version: int
    regs: dict[str, int]
    segments: dict[str, dict[str, int]] = {}  # noqa: RUF012  (shared, never mutated: a tuple)
    cr: tuple[int, ...] = ()
    kernel_gs_base: int | None = None


def _no_qemu_note(desc: bytes) -> QemuCpuState | None:
    return None


class Architecture(NamedTuple):
    """Every machine question one architecture answers (see :mod:`kdumpy.arch`)."""

    name: str  # kdumpy's and the kernel's name: "x86_64", "arm64"
    uname: str  # ``uname -m``: "x86_64", "aarch64"
    elf_machine: int  # e_machine: EM_X86_64, EM_AARCH64
    registers: RegisterLayout
    thread_size: int  # kernel stack size (THREAD_SIZE, without KASAN)
    image_start: int  # lowest address of the (unrelocated) kernel image's symbols
    max_physmem_bits: int  # MAX_PHYSMEM_BITS where VMCOREINFO lacks it
    phys_base_number: str  # the NUMBER() whose value a kdump header keeps as phys_base
    capstone: tuple[str, str]  # capstone's arch and mode constant names
    make_translator: Callable[[DumpMemory], Translator]
    # QEMU dump-guest-memory's "QEMU" CPU-state note, where the machine has one
    qemu_cpu_state: Callable[[bytes], QemuCpuState | None] = _no_qemu_note

    def stack_size(self, page_size: int) -> int:
        """THREAD_SIZE for this page size: a vmapped stack is at least one page."""
        return max(self.thread_size, page_size)

    def translator(self, dump: DumpMemory) -> Translator:
        """A translator for this dump's kernel addresses."""
        return self.make_translator(dump)

    def disassembler(self, capstone: Any) -> Any:
        """A capstone ``Cs`` for this machine's kernel code, from the ``capstone``
        module the caller imported (capstone has no types)."""
        arch, mode = self.capstone
        return capstone.Cs(getattr(capstone, arch), getattr(capstone, mode))
