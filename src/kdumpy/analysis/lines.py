"""Source lines of kernel addresses, from the DWARF line tables of a vmlinux
(``bt -l``, ``dis -l``).

Neither the dump nor BTF carries line tables, so this needs the vmlinux given with
the dump.  Only the compilation unit covering an address is decoded: ``.debug_aranges``
names it, and its line program is read once and kept (pyelftools).  Addresses are
looked up unrelocated (the dump's KASLR offset taken off).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kdumpy.analysis.symfile import VMLINUX, kaslr_offset
from kdumpy.errors import KdumpyError


class LinesUnavailable(KdumpyError):
    """No line tables: no vmlinux given, or it has no DWARF."""


@dataclass(frozen=True)
class SourceLine:
    file: str
    line: int


class LineTable:
    """``address -> SourceLine`` for a vmlinux, CU by CU on demand."""

    def __init__(self, path: str, kaslr: int) -> None:
        # pyelftools is imported when lines are first asked for, not with the commands
        # (it costs as much start-up time as numpy, and most sessions never need it).
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        self.path = path
        self.kaslr = kaslr
        self._file = open(path, "rb")  # noqa: SIM115 - kept open for lazy section reads
        self._units: dict[int, tuple[list[int], list[SourceLine | None]]] = {}
        try:
            self._elf = ELFFile(self._file)
            if not self._elf.has_dwarf_info():
                raise LinesUnavailable(f"{path}: no DWARF debug information (line tables)")
        except ELFError as exc:
            raise LinesUnavailable(f"{path}: cannot read DWARF: {exc}") from None

    @cached_property
    def _dwarf(self) -> Any:
        return self._elf.get_dwarf_info(relocate_dwarf_sections=False)

    @cached_property
    def _aranges(self) -> Any:
        aranges = self._dwarf.get_aranges()
        if aranges is None:
            raise LinesUnavailable(f"{self.path}: no .debug_aranges to find line tables by")
        return aranges

    def lookup(self, address: int) -> SourceLine | None:
        """The source line of the code at ``address`` (a run-time address), or None."""
        pc = (address - self.kaslr) & ((1 << 64) - 1)
        cu_offset = self._aranges.cu_offset_at_addr(pc)
        if cu_offset is None:
            return None
        starts, rows = self._unit(cu_offset)
        i = bisect.bisect_right(starts, pc) - 1
        return rows[i] if i >= 0 else None

    def _unit(self, cu_offset: int) -> tuple[list[int], list[SourceLine | None]]:
        """The CU's line table as sorted row addresses and their lines (None past an
        end of sequence)."""
        cached = self._units.get(cu_offset)
        if cached is not None:
            return cached
        cu = self._dwarf.get_CU_at(cu_offset)
        program = self._dwarf.line_program_for_CU(cu)
        rows: list[tuple[int, SourceLine | None]] = []
        if program is not None:
            comp_dir = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
            names = _file_names(program, _text(comp_dir.value) if comp_dir else "")
            for entry in program.get_entries():
                state = entry.state
                if state is None:
                    continue
                if state.end_sequence:
                    rows.append((state.address, None))
                else:
                    name = names.get(state.file, "??")
                    rows.append((state.address, SourceLine(name, state.line)))
        rows.sort(key=lambda r: r[0])
        result = ([a for a, _ in rows], [r for _, r in rows])
        self._units[cu_offset] = result
        return result


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _file_names(program: Any, comp_dir: str) -> dict[int, str]:
    """File index -> path as gdb (so crash) names it: relative names joined to their
    directory, relative directories to the compilation directory; for DWARF 4 (files
    from 1) and 5 (from 0, directory 0 being the compilation directory)."""
    header = program.header
    version = header["version"]
    dirs = [_text(d) for d in header["include_directory"]]
    if version < 5:
        dirs = [comp_dir, *dirs]
    base = 0 if version >= 5 else 1
    out = {}
    for i, entry in enumerate(header["file_entry"]):
        name = _text(entry.name)
        d = entry.dir_index
        if not name.startswith("/") and d < len(dirs):
            directory = dirs[d]
            if d and not directory.startswith("/") and dirs[0]:
                directory = f"{dirs[0]}/{directory}"
            name = f"{directory}/{name}" if directory else name
        out[i + base] = name
    return out


def line_table(prog: Any) -> LineTable:
    """The program's line table (built once), or :class:`LinesUnavailable`."""
    cached = prog.__dict__.get("_line_table")
    if cached is not None:
        return cached
    sf = prog.symbol_file
    if sf is None or sf.kind != VMLINUX:
        raise LinesUnavailable(
            "source lines need the vmlinux with debug info (kdumpy crash VMLINUX DUMP)"
        )
    table = LineTable(sf.path, kaslr_offset(prog.info))
    prog.__dict__["_line_table"] = table
    return table
