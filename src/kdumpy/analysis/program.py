"""The debugger core: a crashed kernel's memory, symbols and types, from the dump alone.

    prog = Program.open("vmcore")
    task = prog.object("init_task")
    task.comm.string_()                      # b"swapper/0"
    prog.symbols.describe(0xffffffff8100...) # "do_syscall_64+0x5c"

Symbols come from the dump's kallsyms, types from its in-memory BTF (``__start_BTF``),
globals' types from :mod:`kdumpy.analysis.globals` (or a BTF variable for per-CPU
data).  Everything is loaded on first use, so opening a dump is cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from kdumpy.analysis.btf import Btf
from kdumpy.analysis.dwarf import btf_from_dwarf
from kdumpy.analysis.globals import GLOBALS
from kdumpy.analysis.kallsyms import Kallsyms
from kdumpy.analysis.kallsyms_scan import kallsyms_from_image
from kdumpy.analysis.memory import FaultError, KernelMemory
from kdumpy.analysis.objects import Object
from kdumpy.analysis.symbols import Symbol, SymbolTable
from kdumpy.analysis.symfile import (
    DUMP,
    VMLINUX,
    SymbolFile,
    check_match,
    classify,
    kaslr_offset,
    load_symbol_file,
)
from kdumpy.analysis.types import (
    ArrayType,
    IntType,
    PointerType,
    StructType,
    Type,
    array_of,
    pointer_to,
)
from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.base import Dump
from kdumpy.vmcore.notes import PrStatus

# C spellings of base types -> the names pahole writes into BTF.
_INT_SYNONYMS = {
    "unsigned long": "long unsigned int",
    "long": "long int",
    "unsigned long long": "long long unsigned int",
    "long long": "long long int",
    "unsigned": "unsigned int",
    "unsigned short": "short unsigned int",
    "short": "short int",
    "signed char": "signed char",
    "bool": "_Bool",
}
_TYPE_SPEC = re.compile(
    r"^\s*(?P<base>[A-Za-z_][\w ]*?)\s*(?P<stars>[\s*]*)(?:\[(?P<len>\d*)\])?\s*$"
)


# Per-CPU addresses wrap: since 6.15 x86_64 per-CPU symbols are ordinary kernel
# addresses and __per_cpu_offset[] may be "negative".
_U64 = (1 << 64) - 1


class LookupError_(KdumpyError):
    """No such symbol, type or variable."""


class TypesMissingError(DumpFormatError):
    """The kernel has no BTF and no vmlinux was given: symbols and memory only."""


class Program:
    """A crashed kernel as seen through its dump."""

    # Reads the modules' symbols and BTF into a program.  It walks the module list with
    # objects of this program, so it lives above it (kdumpy.analysis.helpers.modules),
    # and the analysis package installs it when it is imported.
    module_loader: ClassVar[Callable[[Program], None] | None] = None

    def __init__(
        self, dump: Dump, path: str | None = None, symbol_file: SymbolFile | None = None
    ) -> None:
        self.dump = dump
        self.path = path or dump.path
        self.info = dump.vmcoreinfo
        self.memory = KernelMemory(dump)
        self.arch = dump.arch
        self.symbol_file = symbol_file
        self._modules_loaded = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        symbol_file: str | os.PathLike[str] | None = None,
        force: bool = False,
    ) -> Program:
        """Open a dump file for analysis (any format :func:`open_dump` reads), with a
        vmlinux or System.map of the same build if given (``force``: even if not)."""
        for name in (path, symbol_file):
            if name is not None and not Path(name).exists():
                raise KdumpyError(f"{name}: no such file")
        sf = None
        if symbol_file is not None:
            kind = classify(str(symbol_file))
            if kind == DUMP:
                raise KdumpyError(f"{symbol_file}: a dump, not a vmlinux or System.map")
            sf = load_symbol_file(str(symbol_file), kind)
        dump = open_dump(path)
        try:
            if sf is not None:
                check_match(sf, dump.vmcoreinfo, force)
        except KdumpyError:
            dump.close()
            raise
        return cls(dump, str(path), sf)

    @classmethod
    def open_files(cls, paths: list[str], force: bool = False) -> Program:
        """``[VMLINUX | System.map] DUMP`` in either order, told apart by content."""
        kinds = {p: classify(p) for p in paths if Path(p).exists()}
        missing = [p for p in paths if p not in kinds]
        if missing:
            raise KdumpyError(f"{missing[0]}: no such file")
        dumps = [p for p, k in kinds.items() if k == DUMP]
        others = [p for p, k in kinds.items() if k != DUMP]
        if len(dumps) != 1 or len(others) > 1:
            raise KdumpyError(
                f"give one dump and at most one vmlinux or System.map (got {' '.join(paths)})"
            )
        return cls.open(dumps[0], others[0] if others else None, force)

    def close(self) -> None:
        self.dump.close()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- memory -----------------------------------------------------------------------------
    def read(self, address: int, size: int) -> bytes:
        return self.memory.read(address, size)

    def read_u64(self, address: int) -> int:
        return self.memory.u64(address)

    def read_u32(self, address: int) -> int:
        return self.memory.u32(address)

    # -- symbols ------------------------------------------------------------------------------
    @cached_property
    def kallsyms(self) -> Kallsyms:
        """The kernel's kallsyms: where VMCOREINFO says (Linux >= 6.0), else found by
        scanning the kernel image in the dump."""
        if self.info.symbol("kallsyms_names") is not None:
            return Kallsyms.from_vmcoreinfo(self.info, self.memory.read)
        return kallsyms_from_image(self.dump.read_phys, self.dump.translator.vtop, self.info)

    @cached_property
    def symbols(self) -> SymbolTable:
        """vmlinux symbols: from the vmlinux or System.map given, else kallsyms."""
        table = SymbolTable()
        sf = self.symbol_file
        if sf is not None:
            addresses = sf.relocated(kaslr_offset(self.info), self.arch.image_start)
            table.add_arrays(sf.names, sf.types, addresses, None, sf.sizes)
        else:
            table.add_kallsyms(self.kallsyms)
        return table

    def symbol_address(self, name: str) -> int:
        """Address of a vmlinux or module symbol; a one-line error if unknown."""
        addr = self.symbols.address_of(name)
        if addr is None:
            self.load_modules()
            addr = self.symbols.address_of(name)
        if addr is None:
            raise LookupError_(f"symbol not found: {name}{self._why_no_data_symbols()}")
        return addr

    def _why_no_data_symbols(self) -> str:
        """What to pass when the dump's kallsyms hold code symbols only: a kernel built
        without KALLSYMS_ALL (Debian 11 and 12 on arm64) keeps no variables in them."""
        if self.symbol_file is not None or self.symbols.address_of("init_task") is not None:
            return ""
        return (" (this kernel's kallsyms has no data symbols: built without "
                "CONFIG_KALLSYMS_ALL; pass the vmlinux or System.map)")  # fmt: skip

    def find_symbol(self, address: int) -> Symbol | None:
        """The symbol covering an address, vmlinux or module (modules load on demand)."""
        if address >= self.dump.translator.modules_start:
            self.load_modules()
        return self.symbols.find(address)

    def describe(self, address: int) -> str:
        """``function+0x1a [module]`` or the bare hex address."""
        sym = self.find_symbol(address)
        return sym.describe(address) if sym else f"{address:#x}"

    def has_symbol(self, name: str) -> bool:
        return self.symbols.address_of(name) is not None

    # -- types ----------------------------------------------------------------------------------
    @cached_property
    def btf(self) -> Btf:
        """The kernel's BTF from the dump (``__start_BTF``; RHEL 8 calls it
        ``_binary__btf_vmlinux_bin_start``), else from the vmlinux's DWARF."""
        for first, last in (
            ("__start_BTF", "__stop_BTF"),
            ("_binary__btf_vmlinux_bin_start", "_binary__btf_vmlinux_bin_end"),
        ):
            start = self.symbols.address_of(first)
            stop = self.symbols.address_of(last)
            if start is not None and stop is not None and stop > start:
                return Btf(self.memory.read(start, stop - start), f"{self.path}: vmlinux BTF")
        sf = self.symbol_file
        if sf is not None and sf.kind == VMLINUX:
            return Btf(btf_from_dwarf(sf.path, sf.build_id), f"{sf.path}: BTF from DWARF")
        given = f" and {sf.path} is a System.map" if sf is not None else ""
        raise TypesMissingError(
            f"{self.path}: types missing: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF){given}; "
            "pass its vmlinux with debug info (kdumpy crash VMLINUX DUMP)"
        )

    @cached_property
    def _btfs(self) -> list[Btf]:
        """vmlinux BTF followed by the modules' split BTF, once modules are loaded."""
        return [self.btf]

    def add_btf(self, btf: Btf) -> None:
        self._btfs.append(btf)

    def _find_type_id(self, name: str, space: str) -> tuple[Btf, int] | None:
        for btf in self._btfs:
            found = btf.lookup(name, space)
            if found is not None:
                return btf, found
        return None

    def type(self, spec: str) -> Type:
        """A type by its C spelling: ``"struct task_struct"``, ``"unsigned long"``,
        ``"struct page *"``, ``"char [16]"``, typedef names like ``"pid_t"``."""
        match = _TYPE_SPEC.match(spec)
        if not match:
            raise LookupError_(f"cannot parse type '{spec}'")
        base = " ".join(match["base"].split())
        t = self._base_type(base)
        for _ in range(match["stars"].count("*")):
            t = pointer_to(t)
        if match["len"] is not None:
            t = array_of(t, int(match["len"] or 0))
        return t

    def _base_type(self, base: str) -> Type:
        space, _, name = base.partition(" ")
        if space in ("struct", "union", "enum") and name:
            found = self._find_type_id(name, space)
            if found is None and space in ("struct", "union"):
                other = "union" if space == "struct" else "struct"
                found = self._find_type_id(name, other)
        else:
            name = base
            found = self._find_type_id(_INT_SYNONYMS.get(base, base), "")
        if found is None:
            if base == "void":
                return self.btf.type(0)
            raise LookupError_(f"no type named '{base}' in the dump's BTF")
        btf, type_id = found
        return btf.type(type_id)

    def offsetof(self, t: Type | str, member: str) -> int:
        """Byte offset of a (possibly dotted) member."""
        s = (self.type(t) if isinstance(t, str) else t).strip()
        offset = 0
        for part in member.split("."):
            if not isinstance(s, StructType):
                raise LookupError_(f"{s.spelling()} has no member '{part}'")
            found = s.member(part)
            if found is None:
                raise LookupError_(f"{s.spelling()} has no member '{part}'")
            offset += found[1] // 8
            s = found[0].type.strip()
        return offset

    def has_member(self, t: Type | str, member: str) -> bool:
        try:
            self.offsetof(t, member)
            return True
        except KdumpyError:
            return False

    def sizeof(self, t: Type | str) -> int:
        return (self.type(t) if isinstance(t, str) else t).size

    def constant(self, name: str) -> int:
        """An enumeration constant (``PIDTYPE_PID``, ``NR_FREE_PAGES``)."""
        for btf in self._btfs:
            value = btf.enumerator(name)
            if value is not None:
                return value
        raise LookupError_(f"no enumerator named '{name}' in the dump's BTF")

    # -- objects --------------------------------------------------------------------------------
    def variable_type(self, name: str) -> Type:
        """The declared type of a global: BTF variable (per-CPU) or the built-in table."""
        var = self.btf.variable(name)
        if var is not None:
            return self.btf.type(var)
        for spec in GLOBALS.get(name, ()):
            try:
                t = self.type(spec)
            except KdumpyError:
                continue
            if isinstance(t, ArrayType) and t.length == 0:
                t = array_of(t.element, self._guess_length(name, t.element.strip().size))
            return t
        raise LookupError_(f"type of '{name}' unknown (not in BTF; declare it with a cast)")

    def _guess_length(self, name: str, elem_size: int) -> int:
        """Elements of an array global: up to the next symbol (bounded)."""
        sym = self.symbols.lookup(name)
        if sym is None or elem_size <= 0:
            return 0
        end = self.symbols.next_after(sym.address) or 0
        if name == "__per_cpu_offset" or not end:
            return self.nr_cpu_ids if name == "__per_cpu_offset" else 1
        return max(1, min((end - sym.address) // elem_size, 1 << 16))

    def object(self, name: str, type_: Type | str | None = None) -> Object:
        """A global variable as a typed object (``prog.object("init_task")``)."""
        address = self.symbol_address(name)
        if type_ is None:
            t = self.variable_type(name)
        else:
            t = self.type(type_) if isinstance(type_, str) else type_
        return Object(self, t, address)

    def object_at(self, type_: Type | str, address: int) -> Object:
        t = self.type(type_) if isinstance(type_, str) else type_
        return Object(self, t, address)

    def pointer(self, type_: Type | str, address: int) -> Object:
        """A pointer value ``(type *)address``."""
        t = self.type(type_) if isinstance(type_, str) else type_
        return Object(self, pointer_to(t), value=address)

    def value(self, type_: Type | str, value: int) -> Object:
        t = self.type(type_) if isinstance(type_, str) else type_
        return Object(self, t, value=value)

    # -- CPUs and per-CPU data -----------------------------------------------------------------
    @cached_property
    def nr_cpu_ids(self) -> int:
        try:
            return self.read_u32(self.symbol_address("nr_cpu_ids"))
        except KdumpyError:
            return max(1, len(self.dump.prstatus))

    @cached_property
    def per_cpu_offsets(self) -> list[int]:
        base = self.symbol_address("__per_cpu_offset")
        return [self.read_u64(base + 8 * cpu) for cpu in range(self.nr_cpu_ids)]

    def _cpumask(self, name: str) -> list[int]:
        try:
            address = self.symbol_address(name)
        except KdumpyError:
            return list(range(self.nr_cpu_ids))
        words = (self.nr_cpu_ids + 63) // 64
        cpus = []
        for w in range(words):
            bits = self.read_u64(address + 8 * w)
            cpus += [w * 64 + b for b in range(64) if bits >> b & 1]
        return [cpu for cpu in cpus if cpu < self.nr_cpu_ids]

    @cached_property
    def possible_cpus(self) -> list[int]:
        return self._cpumask("__cpu_possible_mask")

    @cached_property
    def online_cpus(self) -> list[int]:
        """The CPUs online when the kernel crashed.  arm64's crash stop takes every other
        CPU offline once it has saved its registers (``ipi_cpu_crash_stop``), leaving only
        the panic CPU in the mask: the CPUs that saved a PRSTATUS note count too (the
        notes come in CPU order, so the first present CPUs)."""
        online = self._cpumask("__cpu_online_mask")
        saved = len(self.dump.prstatus)
        if len(online) >= saved:
            return online
        try:
            present = self._cpumask("__cpu_present_mask")
        except KdumpyError:
            present = self.possible_cpus
        return sorted(set(online) | set(present[:saved]))

    def per_cpu(self, var: str | Object, cpu: int) -> Object:
        """A per-CPU variable's instance on ``cpu`` (``per_cpu(runqueues, cpu)``)."""
        if isinstance(var, str):
            var = self.object(var)
        if var.address_ is None:
            raise LookupError_("per_cpu: object has no address")
        return Object(self, var.type_, (var.address_ + self.per_cpu_offsets[cpu]) & _U64)

    def per_cpu_ptr(self, pointer: Object, cpu: int) -> Object:
        """``per_cpu_ptr(ptr, cpu)`` for a ``__percpu`` pointer value."""
        t = pointer.type_.strip()
        target = t.target if isinstance(t, PointerType) else t
        return Object(self, target, (int(pointer) + self.per_cpu_offsets[cpu]) & _U64)

    # -- the crash ---------------------------------------------------------------------------
    @cached_property
    def panic_cpu(self) -> int | None:
        """The CPU that panicked (``panic_cpu``, or x86's ``crashing_cpu``), if known."""
        for name in ("panic_cpu", "crashing_cpu"):
            try:
                value = int.from_bytes(
                    self.read(self.symbol_address(name), 4), "little", signed=True
                )
            except KdumpyError:
                continue
            if 0 <= value < self.nr_cpu_ids:
                return value
        return None

    @cached_property
    def cpu_prstatus(self) -> dict[int, PrStatus]:
        """PRSTATUS registers by CPU: the notes come in CPU order, one per CPU that saved
        its state, so they are matched to online CPUs in order."""
        notes = self.dump.prstatus
        cpus = self.online_cpus if len(self.online_cpus) >= len(notes) else self.possible_cpus
        return dict(zip(cpus, notes, strict=False))

    @property
    def int_type(self) -> IntType:
        t = self.type("int").strip()
        assert isinstance(t, IntType)
        return t

    # -- modules -------------------------------------------------------------------------------
    def load_modules(self) -> None:
        """Add module symbols and module BTF (once), with :attr:`module_loader`."""
        if self._modules_loaded:
            return
        self._modules_loaded = True
        if Program.module_loader is not None:
            with contextlib.suppress(FaultError):
                Program.module_loader(self)
