"""Loaded kernel modules: the ``modules`` list, their symbols, BTF and ORC tables.

Module symbols come from ``module->kallsyms`` (an ELF symbol table kept for
``/proc/kallsyms``, with the nm type letters in ``typetab``); module BTF from the
``btf_modules`` list (``module->btf_data`` itself is cleared once the module is live);
ORC tables from ``module->arch``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from kdumpy.analysis.btf import Btf
from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.symbols import Symbol
from kdumpy.arch.x86_64.orc import OrcEntry
from kdumpy.arch.x86_64.orc_table import OrcTable
from kdumpy.errors import KdumpyError

_ELF64_SYM = struct.Struct("<IBBHQQ")
MOD_TEXT = 0
# enum mod_mem_type (6.4+): the core (non-init) memory types.
_CORE_MEM_TYPES = ("MOD_TEXT", "MOD_DATA", "MOD_RODATA", "MOD_RO_AFTER_INIT")


@dataclass(frozen=True)
class ModuleInfo:
    """What ``mod``/``lsmod`` print about a module."""

    name: str
    address: int  # struct module *
    base: int  # start of its core text
    size: int  # bytes of core memory
    text_size: int
    taints: int


def for_each_module(prog: Program) -> Iterator[Object]:
    """``struct module *`` for every loaded module, in list order (newest first)."""
    yield from list_for_each_entry("struct module", prog.object("modules"), "list")


def module_name(mod: Object) -> str:
    """A module's name as the kernel holds it (print it through ``shown``)."""
    return mod.name.string_().decode("utf-8", "backslashreplace")


def module_layout(prog: Program, mod: Object) -> tuple[int, int, int]:
    """``(text base, core size, text size)`` across the 6.4 ``mem[]`` rework."""
    if mod.has_member_("mem"):
        text = mod.mem[MOD_TEXT]
        size = 0
        for name in _CORE_MEM_TYPES:
            try:
                size += int(mod.mem[prog.constant(name)].size)
            except KdumpyError:
                continue
        return int(text.base), size, int(text.size)
    layout = mod.core_layout
    return int(layout.base), int(layout.size), int(layout.text_size)


def module_info(prog: Program, mod: Object) -> ModuleInfo:
    """Name, address, text base and sizes of a ``struct module *``."""
    base, size, text = module_layout(prog, mod)
    return ModuleInfo(module_name(mod), int(mod), base, size, text, int(mod.taints))


def module_symbols(prog: Program, mod: Object) -> list[Symbol]:
    """The module's symbols from its own kallsyms table."""
    ks = mod.kallsyms
    count = int(ks.num_symtab)
    if count <= 0 or count > 1_000_000:
        return []
    name = module_name(mod)
    raw = prog.read(int(ks.symtab), count * _ELF64_SYM.size)
    types = prog.read(int(ks.typetab), count) if ks.has_member_("typetab") else b"?" * count
    strtab = int(ks.strtab)
    out = []
    for i in range(1, count):
        st_name, _info, _other, _shndx, value, size = _ELF64_SYM.unpack_from(raw, i * 24)
        if not value or not st_name:
            continue
        sym_name = prog.memory.cstring(strtab + st_name, 512).decode("ascii", "replace")
        if not sym_name or sym_name.startswith("$"):
            continue
        out.append(Symbol(sym_name, value, chr(types[i]), name, size))
    return out


def module_btfs(prog: Program) -> Iterator[tuple[str, bytes]]:
    """``(module name, raw BTF)`` from the ``btf_modules`` list."""
    try:
        head = prog.object("btf_modules")
    except KdumpyError:
        return
    for entry in list_for_each_entry("struct btf_module", head, "list"):
        btf = entry.btf
        size = int(btf.data_size)
        if not int(btf.data) or not 0 < size < 64 << 20:
            continue
        yield module_name(entry.module), prog.read(int(btf.data), size)


def load_module_debug_info(prog: Program) -> None:
    """Add every module's symbols and split BTF to the program."""
    symbols: list[Symbol] = []
    for mod in for_each_module(prog):
        try:
            symbols += module_symbols(prog, mod)
        except KdumpyError:
            continue
    prog.symbols.add_many(symbols)
    for name, data in module_btfs(prog):
        try:
            prog.add_btf(Btf(data, f"{prog.path}: BTF of module {name}", base=prog.btf))
        except KdumpyError:
            continue


class _LazyOrcTable(OrcTable):
    """A module's ORC table, read from the dump the first time a pc in the module is
    looked up: a backtrace rarely passes through modules, so opening them all up
    front would be wasted work on the way to the first ``bt``."""

    def __init__(self, prog: Program, mod: Object, count: int, version: int) -> None:
        self._prog, self._mod, self._count, self._version = prog, mod, count, version
        self._table: OrcTable | None = None
        self._unreadable = False

    def _loaded(self) -> OrcTable | None:
        if self._table is None and not self._unreadable:
            mod = self._mod
            try:
                self._table = OrcTable.read(
                    self._prog.memory,
                    int(mod.arch.orc_unwind_ip),
                    self._count,
                    int(mod.arch.orc_unwind),
                    self._version,
                    module_name(mod),
                )
            except KdumpyError:
                # Unreadable (pages left out of the dump): no entries, as if absent.
                self._unreadable = True
        return self._table

    def __getattr__(self, name: str) -> object:
        # ips, entries, flags, start, end, name: from the table, read on first use.
        if name.startswith("_"):
            raise AttributeError(name)
        table = self._loaded()
        if table is None:
            raise AttributeError(f"{name}: module ORC table unreadable")
        return getattr(table, name)

    def find(self, pc: int) -> OrcEntry | None:
        table = self._loaded()
        return table.find(pc) if table is not None else None


def module_orc_tables(prog: Program, version: int) -> list[tuple[int, int, OrcTable]]:
    """ORC tables of the loaded modules, with the text range each covers (each table
    is read when first used)."""
    out: list[tuple[int, int, OrcTable]] = []
    for mod in for_each_module(prog):
        try:
            count = int(mod.arch.num_orcs)
            if count <= 0:
                continue
            ranges = module_text_ranges(prog, mod)
        except KdumpyError:
            continue
        table = _LazyOrcTable(prog, mod, count, version)
        out += [(lo, hi, table) for lo, hi in ranges]
    return out


def module_text_ranges(prog: Program, mod: Object) -> list[tuple[int, int]]:
    """``[lo, hi)`` of the module's core text and, while it initialises, its init text."""
    base, _size, text = module_layout(prog, mod)
    ranges = [(base, base + text)]
    try:
        if mod.has_member_("mem"):
            init = mod.mem[prog.constant("MOD_INIT_TEXT")]
            init_base, init_size = int(init.base), int(init.size)
        else:
            init_base, init_size = int(mod.init_layout.base), int(mod.init_layout.text_size)
    except KdumpyError:
        return ranges
    if init_base and init_size:
        ranges.append((init_base, init_base + init_size))
    return ranges


# The names a module's object file takes in a distribution's trees: the module itself
# (/lib/modules/RELEASE, maybe compressed) and its separate debuginfo
# (/usr/lib/debug/lib/modules/RELEASE/.../NAME.ko.debug).
MODULE_OBJECT_SUFFIXES = (".ko", ".ko.debug", ".ko.xz", ".ko.zst", ".ko.gz")
_MAX_TREE_FILES = 1 << 20  # a tree this big is not a module tree: stop walking


def module_search_dirs(release: str, directory: str | None = None) -> list[str]:
    """Where crash's ``mod -s``/``-S`` look for modules' object files: the directory
    given, else ``/lib/modules/RELEASE`` and the debuginfo tree
    ``/usr/lib/debug/lib/modules/RELEASE``."""
    if directory is not None:
        return [directory]
    return [f"/lib/modules/{release}", f"/usr/lib/debug/lib/modules/{release}"]


def module_file_key(name: str) -> str:
    """A module name as its file is named: the kernel treats ``-`` and ``_`` alike."""
    return name.replace("-", "_")


def module_objects(dirs: list[str]) -> dict[str, str]:
    """Module name (``module_file_key``) -> the first object file for it under ``dirs``,
    in their order (a directory's own files before its subdirectories', by name).
    Names come from the files found, never from the dump, so no path is built from
    what a dump says."""
    found: dict[str, str] = {}
    seen = 0
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            subdirs.sort()
            for file in sorted(files):
                seen += 1
                if seen > _MAX_TREE_FILES:
                    return found
                suffix = next((s for s in MODULE_OBJECT_SUFFIXES if file.endswith(s)), None)
                if suffix is not None:
                    found.setdefault(
                        module_file_key(file[: -len(suffix)]), os.path.join(root, file)
                    )
    return found
